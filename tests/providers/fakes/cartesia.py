"""A local Cartesia TTS websocket server (``/tts/websocket``) for tests.

Each context's transcripts become a deterministic 440 Hz tone, ``seconds_per_char`` of audio per character, in the
requested raw ``output_format`` (``pcm_mulaw`` through G.711 mu-law, or ``pcm_s16le``), sent as base64 ``chunk``
messages of ``chunk_ms``; ``timestamps`` messages give each word's span when ``add_timestamps`` is set; ``done``
follows the audio of the request that had ``continue: false``. A ``cancel`` stops the context's audio. Faults: a
wrong key gets 401 on the handshake, a transcript containing ``error_trigger`` gets an ``error`` message, and the
link is aborted once ``drop_after_messages`` messages were sent on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rtp.g711 import ulaw_encode_array

__all__ = ["CartesiaContext", "FakeCartesia"]

TONE_HZ = 440.0


@dataclass
class CartesiaContext:
    requests: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    """Audio bytes sent for this context, in the requested encoding."""
    chunks_sent: int = 0
    chunks_planned: int = 0
    cancelled: bool = False
    done: bool = False
    samples: int = 0
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class FakeCartesia:
    def __init__(self, *, api_key: str = "test-key", seconds_per_char: float = 0.01, chunk_ms: int = 20,
                 chunk_delay: float = 0.0, error_trigger: str = "TRIGGER-ERROR",
                 drop_after_messages: int | None = None) -> None:
        self.api_key = api_key
        self.seconds_per_char = seconds_per_char
        self.chunk_ms = chunk_ms
        self.chunk_delay = chunk_delay
        self.error_trigger = error_trigger
        self.drop_after_messages = drop_after_messages
        self.handshakes: list[tuple[str, dict[str, str]]] = []
        self.contexts: dict[str, CartesiaContext] = {}
        self.cancel_received = asyncio.Event()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"ws://{host}:{port}"

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append((request.path, {k.lower(): v for k, v in request.headers.raw_items()}))
        if request.path.split("?")[0] != "/tts/websocket":
            return connection.respond(404, "Not Found\n")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return connection.respond(401, "Invalid API key\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        link = _Link(self, ws)
        try:
            async for message in ws:
                link.on_message(json.loads(message))
        except ConnectionClosed:
            pass
        finally:
            for task in link.tasks:
                task.cancel()


class _Link:
    def __init__(self, fake: FakeCartesia, ws: ServerConnection) -> None:
        self.fake = fake
        self.ws = ws
        self.sent = 0
        self.tasks: list[asyncio.Task[None]] = []

    def on_message(self, message: dict[str, Any]) -> None:
        context_id = message["context_id"]
        if message.get("cancel"):
            if context_id in self.fake.contexts:
                self.fake.contexts[context_id].cancelled = True
            self.fake.cancel_received.set()
            return
        if context_id not in self.fake.contexts:
            self.fake.contexts[context_id] = CartesiaContext()
            self.tasks.append(asyncio.create_task(self.generate(context_id, self.fake.contexts[context_id])))
        context = self.fake.contexts[context_id]
        context.requests.append(message)
        context.queue.put_nowait(message)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))
        self.sent += 1
        if self.fake.drop_after_messages is not None and self.sent >= self.fake.drop_after_messages:
            self.ws.transport.abort()
            raise ConnectionClosed(None, None)

    async def generate(self, context_id: str, context: CartesiaContext) -> None:
        try:
            while not context.cancelled:
                request = await context.queue.get()
                if context.cancelled:
                    return
                if self.fake.error_trigger in request["transcript"]:
                    await self.send({"type": "error", "context_id": context_id, "done": True, "status_code": 400,
                                     "title": "Invalid request", "message": "scripted failure",
                                     "error_code": "invalid_request"})
                    return
                await self.speak(context_id, context, request)
                if not request.get("continue", False):
                    context.done = True
                    await self.send({"type": "done", "context_id": context_id, "done": True, "status_code": 206})
                    return
        except ConnectionClosed:
            pass

    async def speak(self, context_id: str, context: CartesiaContext, request: dict[str, Any]) -> None:
        fmt = request["output_format"]
        rate = int(fmt["sample_rate"])
        text = request["transcript"]
        offset = context.samples / rate
        if request.get("add_timestamps") and text.strip():
            words, starts, ends, position = [], [], [], 0
            for word in text.split():
                position = text.index(word, position)
                words.append(word)
                starts.append(offset + position * self.fake.seconds_per_char)
                position += len(word)
                ends.append(offset + position * self.fake.seconds_per_char)
            await self.send({"type": "timestamps", "context_id": context_id, "done": False, "status_code": 206,
                             "word_timestamps": {"words": words, "start": starts, "end": ends}})
        total = round(len(text) * self.fake.seconds_per_char * rate)
        t = (context.samples + np.arange(total)) / rate
        pcm = (8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
        context.samples += total
        step = rate * self.fake.chunk_ms // 1000
        context.chunks_planned += -(-total // step)
        for i in range(0, total, step):
            await asyncio.sleep(self.fake.chunk_delay)  # generation time
            if context.cancelled:
                return
            piece = pcm[i:i + step]
            data = ulaw_encode_array(piece).tobytes() if fmt["encoding"] == "pcm_mulaw" else piece.astype(
                "<i2").tobytes()
            context.audio += data
            context.chunks_sent += 1
            await self.send({"type": "chunk", "context_id": context_id, "data": base64.b64encode(data).decode(),
                             "done": False, "status_code": 206, "step_time": 1.0})
