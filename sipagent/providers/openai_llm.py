"""OpenAI language models through the official SDK: the Responses API, and Chat Completions for compatible servers.

Responses keeps the conversation server-side by chaining ``previous_response_id`` (a Conversation object would do
too, but a chain can be rewound): after each completed turn the model remembers a checkpoint (the response id and the
messages it stands for). The next turn chains from the newest checkpoint whose messages the caller's heard history
still begins with, and sends only what follows. So a reply cut short by barge-in, or a speculative reply cancelled
on TURN_RESUMED, is never in the chain: the model sees exactly what the caller heard.

Chat Completions has no server state (Ollama, llama.cpp, vLLM): each turn sends the heard history in full.

Every SDK exception is translated here into the ProviderError tree; nothing from ``openai`` escapes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import openai

from sipagent.log import get_logger
from sipagent.providers.errors import (
    ProviderConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from sipagent.providers.llm import (
    CALL_CONTROL_TOOLS,
    LlmEvent,
    Message,
    ProducerStream,
    TextDelta,
    Tool,
    ToolBox,
    UserTurn,
)

__all__ = ["OpenAIChatModel", "OpenAIResponsesModel"]

_log = get_logger(component="openai_llm")
_MAX_CHECKPOINTS = 8
# Stream error codes that describe the service, not the request: sending the same turn again may work.
_RETRYABLE_CODES = frozenset({"server_error", "rate_limit_exceeded", "internal_error", "server_is_overloaded"})


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _same(a: Sequence[Message], b: Sequence[Message]) -> bool:
    return len(a) == len(b) and all(
        x.role == y.role and x.text.split() == y.text.split() for x, y in zip(a, b, strict=True)
    )


class _OpenAIBase:
    _label = "OpenAI"

    def __init__(self, api_key: str | None, *, base_url: str | None, model: str, instructions: str,
                 tools: Sequence[Tool], timeout: float, max_retries: int, max_tool_rounds: int) -> None:
        try:
            # max_retries defaults to 0: a caller is waiting on the line, and the SDK's back-off costs seconds; the
            # pipeline decides what to do from ProviderError.retryable (say a filler, fall back to the script).
            self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout,
                                              max_retries=max_retries)
        except openai.OpenAIError as exc:
            raise ProviderConfigError(f"{self._label}: {_one_line(str(exc))}") from None
        self.model = model
        self.instructions = instructions
        self.toolbox = ToolBox(tools)
        self.timeout = timeout
        self.max_tool_rounds = max_tool_rounds

    def _translate(self, exc: openai.OpenAIError) -> ProviderError:
        where = f"{self._label} ({self._client.base_url})"
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError(f"{where} did not answer within {self.timeout:g} s")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderConnectionError(f"cannot reach {where}: {_one_line(str(exc.__cause__ or exc))}")
        if isinstance(exc, openai.APIStatusError):
            body = exc.body
            detail = body.get("message") if isinstance(body, Mapping) else None
            if not isinstance(detail, str) or not detail:
                detail = exc.response.reason_phrase or "error"
            raw = json.dumps(body) if isinstance(body, Mapping) else str(body or "")
            return ProviderStatusError(f"{where} refused the request: {_one_line(detail)}",
                                       status=exc.status_code, body=raw[:1000])
        if isinstance(exc, openai.APIError):  # an error object inside the stream
            return ProviderError(f"{where} stream error: {_one_line(exc.message)}",
                                 retryable=exc.code in _RETRYABLE_CODES)
        return ProviderConfigError(f"{where}: {_one_line(str(exc))}")

    def _stream_error(self, code: str | None, message: str | None) -> ProviderError:
        return ProviderError(f"{self._label} ({self._client.base_url}) failed the response: "
                             f"{_one_line(message or code or 'no reason given')}", retryable=code in _RETRYABLE_CODES)

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIResponsesModel(_OpenAIBase):
    def __init__(self, api_key: str | None, *, base_url: str | None = None, model: str, instructions: str,
                 tools: Sequence[Tool] = CALL_CONTROL_TOOLS, timeout: float = 10.0, max_retries: int = 0,
                 max_tool_rounds: int = 5) -> None:
        super().__init__(api_key, base_url=base_url, model=model, instructions=instructions, tools=tools,
                         timeout=timeout, max_retries=max_retries, max_tool_rounds=max_tool_rounds)
        self._tools = [{"type": "function", "name": t.name, "description": t.description,
                        "parameters": dict(t.parameters), "strict": False} for t in tools]
        self._checkpoints: dict[str, list[tuple[str, tuple[Message, ...]]]] = {}

    def end_call(self, call_id: str) -> None:
        self._checkpoints.pop(call_id, None)

    def respond(self, turn: UserTurn) -> ProducerStream:
        heard = tuple(turn.history_heard)
        checkpoints = self._checkpoints.setdefault(turn.call_id, [])
        previous, known = None, 0
        for response_id, messages in reversed(checkpoints):
            if _same(messages, heard[: len(messages)]):
                previous, known = response_id, len(messages)
                break
        items: list[Any] = [{"role": m.role, "content": m.text} for m in heard[known:]]
        items.append({"role": "user", "content": turn.text})

        async def produce() -> AsyncIterator[LlmEvent]:
            try:
                async for event in self._turn(turn, heard, previous, items, checkpoints):
                    yield event
            except openai.OpenAIError as exc:
                raise self._translate(exc) from None

        return ProducerStream(produce)

    async def _turn(self, turn: UserTurn, heard: tuple[Message, ...], previous: str | None, items: list[Any],
                    checkpoints: list[tuple[str, tuple[Message, ...]]]) -> AsyncIterator[LlmEvent]:
        said: list[str] = []
        for _ in range(self.max_tool_rounds + 1):
            extra: dict[str, Any] = {"previous_response_id": previous} if previous else {}
            if self._tools:
                extra["tools"] = self._tools
            stream = await self._client.responses.create(model=self.model, instructions=self.instructions,
                                                         input=items, stream=True, **extra)
            outputs: list[Any] = []
            response_id = previous
            try:
                async for event in stream:
                    kind = event.type
                    if kind == "response.created":
                        response_id = event.response.id
                    elif kind == "response.output_text.delta":
                        said.append(event.delta)
                        yield TextDelta(event.delta)
                    elif kind == "response.output_item.done" and event.item.type == "function_call":
                        item = event.item
                        call, output = await self.toolbox.run(item.name, item.arguments, item.call_id)
                        if call is not None:
                            yield call
                        outputs.append({"type": "function_call_output", "call_id": item.call_id, "output": output})
                    elif kind == "response.failed":
                        error = event.response.error
                        raise self._stream_error(error.code if error else None, error.message if error else None)
                    elif kind == "error":
                        raise self._stream_error(event.code, event.message)
            finally:
                await stream.close()
            if not outputs:
                break
            # The function outputs continue the same turn: the model answers again, knowing the results.
            previous, items = response_id, outputs
        else:
            # The last response still waits for tool outputs, so it cannot be chained from: no checkpoint.
            _log.warning("tool rounds exhausted", call_id=turn.call_id, rounds=self.max_tool_rounds)
            return
        if response_id is None:
            return
        reply = "".join(said)
        messages = (*heard, Message("user", turn.text), *([Message("assistant", reply)] if reply.strip() else []))
        checkpoints.append((response_id, messages))
        del checkpoints[:-_MAX_CHECKPOINTS]


class OpenAIChatModel(_OpenAIBase):
    _label = "OpenAI-compatible server"

    def __init__(self, api_key: str | None, *, base_url: str | None, model: str, instructions: str,
                 tools: Sequence[Tool] = CALL_CONTROL_TOOLS, timeout: float = 10.0, max_retries: int = 0,
                 max_tool_rounds: int = 5) -> None:
        super().__init__(api_key, base_url=base_url, model=model, instructions=instructions, tools=tools,
                         timeout=timeout, max_retries=max_retries, max_tool_rounds=max_tool_rounds)
        self._tools = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                         "parameters": dict(t.parameters)}} for t in tools]

    def end_call(self, call_id: str) -> None:
        pass

    def respond(self, turn: UserTurn) -> ProducerStream:
        messages: list[Any] = [{"role": "system", "content": self.instructions}]
        messages += [{"role": m.role, "content": m.text} for m in turn.history_heard]
        messages.append({"role": "user", "content": turn.text})

        async def produce() -> AsyncIterator[LlmEvent]:
            try:
                async for event in self._turn(messages):
                    yield event
            except openai.OpenAIError as exc:
                raise self._translate(exc) from None

        return ProducerStream(produce)

    async def _turn(self, messages: list[Any]) -> AsyncIterator[LlmEvent]:
        for _ in range(self.max_tool_rounds + 1):
            extra: dict[str, Any] = {"tools": self._tools} if self._tools else {}
            stream = await self._client.chat.completions.create(model=self.model, messages=messages, stream=True,
                                                                **extra)
            said: list[str] = []
            # Tool-call fragments are keyed by index: id and name come first, the arguments accumulate after.
            fragments: dict[int, list[str]] = {}
            try:
                async for chunk in stream:
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    if delta.content:
                        said.append(delta.content)
                        yield TextDelta(delta.content)
                    for part in delta.tool_calls or ():
                        entry = fragments.setdefault(part.index, [f"call_{part.index}", "", ""])
                        if part.id:
                            entry[0] = part.id
                        if part.function is not None:
                            entry[1] = part.function.name or entry[1]
                            entry[2] += part.function.arguments or ""
            finally:
                await stream.close()
            if not fragments:
                return
            calls = [fragments[i] for i in sorted(fragments)]
            messages.append({"role": "assistant", "content": "".join(said) or None, "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in calls]})
            for cid, name, args in calls:
                call, output = await self.toolbox.run(name, args, cid)
                if call is not None:
                    yield call
                messages.append({"role": "tool", "tool_call_id": cid, "content": output})
        _log.warning("tool rounds exhausted", rounds=self.max_tool_rounds)
