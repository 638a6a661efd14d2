"""A local Deepgram Flux (listen v2) websocket server for tests.

It speaks the wire protocol the SDK expects (``/v2/listen``, ``Authorization: Token <key>``, a Connected message,
then TurnInfo JSON events) and scripts the turns from the audio it actually receives: 20 ms frames of linear16 whose
RMS is above ``threshold`` are speech. A turn starts at the first speech frame (StartOfTurn), reports Update every
``update_s`` of speech, EagerEndOfTurn after ``eager_s`` of silence (only when the client asked for it with
``eager_eot_threshold``), TurnResumed when speech comes back after that, and EndOfTurn after ``end_s`` of silence,
carrying the next transcript of ``transcripts``. Times are seconds of audio received on that connection.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["FakeFlux", "FluxConnection"]

RATE = 16000
FRAME = 320  # samples in 20 ms
FRAME_S = FRAME / RATE


@dataclass
class FluxConnection:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    """Audio the server processed (not counting anything received after it dropped the link)."""
    sent: list[dict[str, Any]] = field(default_factory=list)
    control: list[dict[str, Any]] = field(default_factory=list)
    """JSON messages from the client (CloseStream, ...)."""


class FakeFlux:
    def __init__(self, *, api_key: str = "test-key", transcripts: tuple[str, ...] = ("hello there",),
                 threshold: float = 1000.0, update_s: float = 0.1, eager_s: float = 0.2, end_s: float = 0.5,
                 drop_after_frames: int | None = None, hold_reconnects: bool = False,
                 error_after_frames: int | None = None) -> None:
        self.api_key = api_key
        self.transcripts = transcripts
        self.threshold = threshold
        self.update_frames = round(update_s / FRAME_S)
        self.eager_frames = round(eager_s / FRAME_S)
        self.end_frames = round(end_s / FRAME_S)
        self.drop_after_frames = drop_after_frames
        """The first connection is aborted (no close frame) once it has processed this many frames."""
        self.error_after_frames = error_after_frames
        """Send a fatal Error message and close after this many frames (every connection)."""
        self.gate = asyncio.Event()
        """Handshakes after the first wait for this when ``hold_reconnects``."""
        if not hold_reconnects:
            self.gate.set()
        self.attempts = 0
        self.connections: list[FluxConnection] = []
        self.turns_ended = 0
        self._attempt_seen: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
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

    async def wait_attempts(self, count: int) -> None:
        await self._attempt_seen[count].wait()

    async def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts += 1
        self._attempt_seen[self.attempts].set()
        if self.attempts > 1:
            await self.gate.wait()
        if urlsplit(request.path).path != "/v2/listen":
            return connection.respond(404, "Not Found\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return connection.respond(401, "Websocket initialized with invalid credentials.\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        split = urlsplit(request.path)
        record = FluxConnection(split.path, dict(parse_qsl(split.query)),
                                {k.lower(): v for k, v in request.headers.raw_items()})
        self.connections.append(record)
        session = _Session(self, ws, record, drop_after=self.drop_after_frames if len(self.connections) == 1 else None)
        try:
            await session.run()
        except ConnectionClosed:
            pass


class _Session:
    def __init__(self, fake: FakeFlux, ws: ServerConnection, record: FluxConnection, drop_after: int | None) -> None:
        self.fake = fake
        self.ws = ws
        self.record = record
        self.drop_after = drop_after
        self.eager_enabled = "eager_eot_threshold" in record.query
        self.request_id = str(uuid.uuid4())
        self.seq = 0
        self.frames = 0
        self.leftover = b""
        self.in_turn = False
        self.turn_start = 0
        self.voiced = 0
        self.silence = 0
        self.eager = False

    async def send(self, message: dict[str, Any]) -> None:
        message = {"request_id": self.request_id, "sequence_id": self.seq, **message}
        self.seq += 1
        self.record.sent.append(message)
        await self.ws.send(json.dumps(message))

    async def turn_info(self, event: str, transcript: str = "", **extra: Any) -> None:
        words = transcript.split()
        await self.send({
            "type": "TurnInfo", "event": event, "turn_index": self.fake.turns_ended,
            "audio_window_start": self.turn_start * FRAME_S, "audio_window_end": self.frames * FRAME_S,
            "transcript": transcript, "end_of_turn_confidence": 0.9 if event.endswith("EndOfTurn") else 0.1,
            "words": [{"word": w, "confidence": 0.9} for w in words], **extra,
        })

    def transcript(self) -> str:
        return self.fake.transcripts[min(self.fake.turns_ended, len(self.fake.transcripts) - 1)]

    async def run(self) -> None:
        await self.send({"type": "Connected"})
        async for message in self.ws:
            if isinstance(message, str):
                control = json.loads(message)
                self.record.control.append(control)
                if control.get("type") == "CloseStream":
                    if self.in_turn:
                        await self.end_turn("manual")
                    await self.ws.close()
                    return
                continue
            data = self.leftover + message
            whole = len(data) // (2 * FRAME) * 2 * FRAME
            self.leftover = data[whole:]
            samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64).reshape(-1, FRAME)
            rms = np.sqrt(np.mean(samples * samples, axis=1))
            for i, level in enumerate(rms):
                self.record.audio += data[i * 2 * FRAME:(i + 1) * 2 * FRAME]
                await self.frame(bool(level > self.fake.threshold))
                if self.drop_after is not None and self.frames >= self.drop_after:
                    self.ws.transport.abort()  # a link lost without a close frame
                    return
                if self.fake.error_after_frames is not None and self.frames >= self.fake.error_after_frames:
                    await self.send({"type": "Error", "code": "INTERNAL_SERVER_ERROR", "description": "scripted"})
                    await self.ws.close(1011)
                    return

    async def frame(self, speech: bool) -> None:
        self.frames += 1
        if not self.in_turn:
            if speech:
                self.in_turn, self.turn_start, self.voiced, self.silence = True, self.frames - 1, 1, 0
                await self.turn_info("StartOfTurn")
            return
        words = self.transcript().split()
        if speech:
            self.silence = 0
            self.voiced += 1
            if self.eager:
                self.eager = False
                await self.turn_info("TurnResumed")
            if self.voiced % self.fake.update_frames == 0:
                heard = min(len(words), self.voiced // self.fake.update_frames)
                await self.turn_info("Update", " ".join(words[:heard]))
            return
        self.silence += 1
        if self.eager_enabled and self.silence == self.fake.eager_frames and not self.eager:
            self.eager = True
            await self.turn_info("EagerEndOfTurn", self.transcript())
        if self.silence >= self.fake.end_frames:
            await self.end_turn("model")

    async def end_turn(self, trigger: str) -> None:
        await self.turn_info("EndOfTurn", self.transcript(), trigger=trigger)
        self.fake.turns_ended += 1
        self.in_turn = self.eager = False
