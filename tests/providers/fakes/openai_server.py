"""A fake OpenAI HTTP server on 127.0.0.1: just enough HTTP/1.1 and SSE for the real ``openai`` SDK.

Endpoints: ``POST /v1/responses`` (Responses streaming events, in the order the SDK's strict helper accepts),
``POST /v1/conversations`` and ``POST /v1/chat/completions`` (chunks ending with ``data: [DONE]``). Each streaming
request pops the next scripted ``FakeReply`` of its endpoint; every request is recorded, with events telling
whether the client hung up before the reply was over.

One request per connection (``Connection: close``), so a closed client stream is a closed socket the server sees.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakeOpenAI", "FakeReply", "Recorded"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class FakeReply:
    deltas: tuple[str, ...] = ()
    """Text streamed one delta per item."""
    function_call: tuple[str, dict[str, Any]] | None = None
    """A function call (name, arguments) made after the text."""
    failure: tuple[str, str] | None = None
    """End with ``response.failed`` carrying this (code, message) instead of ``response.completed``."""
    status: int = 200
    error: str = "scripted failure"
    headers_delay: float = 0.0
    """Seconds before the response headers are sent."""
    delta_delay: float = 0.0
    """Seconds between streamed events after the first delta."""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    """The client closed the connection before the reply was complete."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """The server has finished with the request (complete or abandoned)."""
    ids: dict[str, str] = field(default_factory=dict)
    """Ids the server gave its reply: ``response``, ``call`` (a function call's call_id)."""


class FakeOpenAI:
    def __init__(self, *, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.responses: deque[FakeReply] = deque()
        self.chat: deque[FakeReply] = deque()
        self.requests: list[Recorded] = []
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    def posted(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await self._read_request(reader)
            if request is not None:
                self.requests.append(request)
                try:
                    await _Exchange(self, request, reader, writer).run()
                except (ConnectionError, OSError):
                    request.hung_up.set()
                request.done.set()
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _read_request(self, reader: asyncio.StreamReader) -> Recorded | None:
        line = await reader.readline()
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        return Recorded(method, path, headers, json.loads(raw) if raw else None)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"


class _Exchange:
    def __init__(self, fake: FakeOpenAI, request: Recorded, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.fake, self.request, self.writer = fake, request, writer
        # The client sends nothing more on this connection, so a read completing means it hung up.
        self.watch = asyncio.ensure_future(reader.read(1))

    async def run(self) -> None:
        try:
            await self._dispatch()
        finally:
            self.watch.cancel()

    async def _dispatch(self) -> None:
        fake, request = self.fake, self.request
        if request.headers.get("authorization") != f"Bearer {fake.api_key}":
            await self._json(401, {"error": {"message": "Incorrect API key provided: sk-w***", "type":
                                             "invalid_request_error", "param": None, "code": "invalid_api_key"}})
        elif request.path == "/v1/conversations":
            await self._json(200, {"id": fake.next_id("conv"), "object": "conversation", "created_at": 1,
                                   "metadata": {}})
        elif request.path in ("/v1/responses", "/v1/chat/completions"):
            queue = fake.responses if request.path == "/v1/responses" else fake.chat
            reply = queue.popleft() if queue else FakeReply(status=500, error="no scripted reply left")
            if await self._pause(reply.headers_delay):
                return
            if reply.status != 200:
                await self._json(reply.status, {"error": {"message": reply.error, "type": "server_error",
                                                          "param": None, "code": None}})
                return
            make = _responses_events if queue is fake.responses else _chat_chunks
            events = make(fake, reply, request.ids)
            await self._stream(reply, events)
        else:
            await self._json(404, {"error": {"message": f"no route {request.path}", "type": "invalid_request_error",
                                             "param": None, "code": None}})

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds (the scripted server latency); True if the client hung up meanwhile."""
        if delay > 0:
            await asyncio.wait([self.watch], timeout=delay)
        if self.watch.done():
            self.request.hung_up.set()
        return self.watch.done()

    async def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.writer.write(self._head(status, "application/json", f"Content-Length: {len(data)}\r\n") + data)
        await self.writer.drain()

    def _head(self, status: int, content_type: str, extra: str = "") -> bytes:
        return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {content_type}\r\n"
                f"{extra}Connection: close\r\n\r\n").encode()

    async def _stream(self, reply: FakeReply, events: Iterator[tuple[str | None, str]]) -> None:
        self.writer.write(self._head(200, "text/event-stream"))
        started = False
        for name, data in events:
            if started and await self._pause(reply.delta_delay):
                return
            self.writer.write((f"event: {name}\n" if name else "").encode() + f"data: {data}\n\n".encode())
            await self.writer.drain()
            started = started or '"delta"' in data
        # Let the client read to the end, then close (the body is delimited by the close).


def _responses_events(fake: FakeOpenAI, reply: FakeReply, ids: dict[str, str]) -> Iterator[tuple[str | None, str]]:
    response_id = ids["response"] = fake.next_id("resp")
    seq = itertools.count()
    base = {"id": response_id, "object": "response", "created_at": 1, "model": "fake-model",
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    output: list[dict[str, Any]] = []

    def event(kind: str, **fields: Any) -> tuple[str, str]:
        return kind, json.dumps({"type": kind, "sequence_number": next(seq), **fields})

    yield event("response.created", response={**base, "output": [], "status": "in_progress"})
    yield event("response.in_progress", response={**base, "output": [], "status": "in_progress"})
    if reply.deltas:
        index, item_id, text = len(output), fake.next_id("msg"), "".join(reply.deltas)
        item = {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress", "content": []}
        yield event("response.output_item.added", output_index=index, item=item)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        yield event("response.content_part.added", **where, part={"type": "output_text", "text": "",
                                                                 "annotations": []})
        for delta in reply.deltas:
            yield event("response.output_text.delta", **where, delta=delta, logprobs=[])
        part = {"type": "output_text", "text": text, "annotations": []}
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part=part)
        output.append({**item, "status": "completed", "content": [part]})
        yield event("response.output_item.done", output_index=index, item=output[-1])
    if reply.function_call is not None:
        name, arguments = reply.function_call
        index, item_id, args = len(output), fake.next_id("fc"), json.dumps(arguments)
        ids["call"] = fake.next_id("call")
        item = {"type": "function_call", "id": item_id, "call_id": ids["call"], "name": name,
                "arguments": "", "status": "in_progress"}
        yield event("response.output_item.added", output_index=index, item=item)
        half = len(args) // 2  # the arguments arrive in pieces, keyed by item_id
        for piece in (args[:half], args[half:]):
            yield event("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=piece)
        yield event("response.function_call_arguments.done", item_id=item_id, output_index=index, arguments=args)
        output.append({**item, "arguments": args, "status": "completed"})
        yield event("response.output_item.done", output_index=index, item=output[-1])
    if reply.failure is not None:
        code, message = reply.failure
        yield event("response.failed", response={**base, "output": output, "status": "failed",
                                                 "error": {"code": code, "message": message}})
        return
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    yield event("response.completed", response={**base, "output": output, "status": "completed", "usage": usage})


def _chat_chunks(fake: FakeOpenAI, reply: FakeReply, ids: dict[str, str]) -> Iterator[tuple[str | None, str]]:
    chunk_id = fake.next_id("chatcmpl")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, str]:
        return None, json.dumps({"id": chunk_id, "object": "chat.completion.chunk", "created": 1,
                                 "model": "fake-model",
                                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    for delta in reply.deltas:
        yield chunk({"content": delta})
    if reply.function_call is not None:
        name, arguments = reply.function_call
        args = json.dumps(arguments)
        half = len(args) // 2
        ids["call"] = fake.next_id("call")
        yield chunk({"tool_calls": [{"index": 0, "id": ids["call"], "type": "function",
                                     "function": {"name": name, "arguments": ""}}]})
        for piece in (args[:half], args[half:]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls" if reply.function_call is not None else "stop")
    yield None, "[DONE]"
