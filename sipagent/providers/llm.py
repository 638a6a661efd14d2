"""The narrow streaming interface every language model implements, the tools it may call, and the script adapter.

One caller turn, one stream::

    stream = llm.respond(UserTurn("what are your hours", call_id, history_heard))
    async for item in stream:               # TextDelta as the words arrive; ToolCall for the call-control tools
        ...
    await stream.aclose()                   # or stream.cancel() on barge-in: nothing is yielded after it returns

Tools: a ``Tool`` with a ``handler`` is run inside the stream and its result goes back to the model, which goes on
answering in the same turn; a ``Tool`` without one (the call-control tools ``end_call``, ``transfer_to_human``,
``send_dtmf``) is yielded as a ``ToolCall`` for the pipeline to act on once the reply has played, and the model is
told it was accepted. Either way the consumer sees one stream per turn.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sipagent.agent.script import Script
from sipagent.log import get_logger

__all__ = [
    "CALL_CONTROL_TOOLS",
    "END_CALL",
    "SEND_DTMF",
    "TRANSFER_TO_HUMAN",
    "LanguageModel",
    "LlmEvent",
    "LlmStream",
    "Message",
    "ProducerStream",
    "ScriptLanguageModel",
    "TextDelta",
    "Tool",
    "ToolBox",
    "ToolCall",
    "ToolHandler",
    "UserTurn",
]

_log = get_logger(component="llm")


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class UserTurn:
    text: str
    """What the caller said in this turn."""
    call_id: str
    """The SIP call the turn belongs to: models keep per-call state under it."""
    history_heard: Sequence[Message] = ()
    """Earlier turns in order, as the caller actually heard them: an assistant reply cut short by barge-in appears
    only up to where playback stopped. The current turn's ``text`` is not in it."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]
    call_id: str
    """The model's id for this tool call (not the SIP call)."""


LlmEvent = TextDelta | ToolCall
ToolHandler = Callable[[Mapping[str, Any]], Awaitable[object] | object]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON schema of the arguments object."""
    handler: ToolHandler | None = None
    """Runs the tool and returns its result (a str, or anything JSON-serialisable); None: yield a ToolCall."""


END_CALL = Tool("end_call", "Hang up once your reply has been spoken. Say goodbye first.")
TRANSFER_TO_HUMAN = Tool(
    "transfer_to_human", "Transfer the caller to a human operator once your reply has been spoken.",
    {"type": "object", "properties": {"reason": {"type": "string", "description": "Why, in a few words."}}},
)
# RFC 4733 section 3.2 events 0-15: the digits, '*', '#' and A-D.
SEND_DTMF = Tool(
    "send_dtmf", "Press keys on the phone line, e.g. to navigate another system's menu.",
    {"type": "object", "required": ["digits"],
     "properties": {"digits": {"type": "string", "pattern": "^[0-9*#A-Da-d]+$", "description": "Keys to press."}}},
)
CALL_CONTROL_TOOLS: tuple[Tool, ...] = (END_CALL, TRANSFER_TO_HUMAN, SEND_DTMF)


class ToolBox:
    """Dispatches the model's tool calls: runs handlers, returns the text the model gets back."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self.tools = {tool.name: tool for tool in tools}
        if len(self.tools) != len(tools):
            raise ValueError("two tools share a name")

    async def run(self, name: str, arguments: str, call_id: str) -> tuple[ToolCall | None, str]:
        """The ToolCall to yield (call-control tools only) and the output to send back to the model."""
        tool = self.tools.get(name)
        if tool is None:
            return None, f"error: there is no tool named {name!r}"
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None, "error: the arguments are not valid JSON"
        if not isinstance(args, dict):
            return None, "error: the arguments must be a JSON object"
        if tool.handler is None:
            return ToolCall(name, args, call_id), "ok"
        try:
            result = tool.handler(args)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # a failing tool must not end the caller's turn: the model hears the error
            _log.warning("tool failed", tool=name, error=repr(exc))
            return None, f"error: {exc}"
        return None, result if isinstance(result, str) else json.dumps(result, default=str)


class LlmStream(Protocol):
    def __aiter__(self) -> AsyncIterator[LlmEvent]: ...

    async def __anext__(self) -> LlmEvent: ...

    def cancel(self) -> None:
        """Stop now: nothing is yielded after this returns, and the request to the model is abandoned."""

    async def aclose(self) -> None:
        """Cancel and wait until the connection to the model is released."""


class LanguageModel(Protocol):
    def respond(self, turn: UserTurn) -> LlmStream:
        """Start answering ``turn``; work begins at the first ``__anext__``. Errors surface there as ProviderError."""

    def end_call(self, call_id: str) -> None:
        """Forget the call's state."""

    async def aclose(self) -> None: ...


_DONE = object()


class ProducerStream:
    """An LlmStream fed by an async generator run in its own task, so ``cancel()`` works from any task and at once.

    The task reads ahead of the consumer (text keeps arriving while TTS speaks the first words); cancelling it runs
    the generator's ``finally`` blocks, which is where providers close their HTTP streams.
    """

    def __init__(self, produce: Callable[[], AsyncIterator[LlmEvent]]) -> None:
        self._produce = produce
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __aiter__(self) -> ProducerStream:
        return self

    async def __anext__(self) -> LlmEvent:
        if self._closed:
            raise StopAsyncIteration
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())
        item = await self._queue.get()
        if self._closed or item is _DONE:
            self._closed = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._closed = True
            raise item
        assert isinstance(item, TextDelta | ToolCall)
        return item

    async def _pump(self) -> None:
        try:
            async for item in self._produce():
                self._queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._queue.put_nowait(exc)
        self._queue.put_nowait(_DONE)

    def cancel(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self._queue.put_nowait(_DONE)  # wakes a consumer blocked in __anext__

    async def aclose(self) -> None:
        self.cancel()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                # Re-raise only if *we* are being cancelled, not because the pump was.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise


class ScriptLanguageModel:
    """The rule-based script behind the LanguageModel interface: its answer as one delta, its action as a tool call."""

    _ACTION_TOOLS = {"hangup": END_CALL.name, "transfer": TRANSFER_TO_HUMAN.name}

    def __init__(self, script: Script) -> None:
        self.script = script
        self._count = 0

    def respond(self, turn: UserTurn) -> ProducerStream:
        reply = self.script.reply(turn.text)
        self._count += 1
        call_id = f"script-{self._count}"

        async def produce() -> AsyncIterator[LlmEvent]:
            yield TextDelta(reply.text)
            if reply.action is not None:
                yield ToolCall(self._ACTION_TOOLS[reply.action], {}, call_id)

        return ProducerStream(produce)

    def end_call(self, call_id: str) -> None:
        pass

    async def aclose(self) -> None:
        pass
