"""Cartesia text to speech over its websocket API, through the ``cartesia`` SDK connection.

One websocket per ``CartesiaTts`` (every call's replies share it) and one context per reply: the reply's text may be
pushed piece by piece as the language model produces it (``continue: true``), and Cartesia keeps prosody across the
pieces. Audio comes back as raw ``pcm_mulaw`` at 8 kHz, ready for a G.711 mu-law RTP stream without transcoding, or
as ``pcm_s16le``. Barge-in cancels the context on the server, so it stops generating.

The SDK's context helper routes replies with a background reader that only logs a dropped link, which would leave
a reply waiting for ever; so this module sends requests through the SDK connection and reads its parsed events in
its own reader task, which fails every open reply with ``ProviderConnectionError`` when the link drops. The next
reply opens a new link.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import websockets.exceptions
from cartesia import AsyncCartesia

from sipagent.log import get_logger
from sipagent.providers.base import AudioChunk, TtsCapabilities
from sipagent.providers.errors import (
    ProviderConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
)

__all__ = ["CartesiaEncoding", "CartesiaTts", "CartesiaTtsStream", "WordTimestamp"]

CartesiaEncoding = Literal["pcm_mulaw", "pcm_s16le"]


@dataclass(frozen=True, slots=True)
class WordTimestamp:
    word: str
    start: float
    """Seconds from the start of the reply's audio."""
    end: float


def _handshake_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            message = f"Cartesia rejected the API key ({status} on the TTS websocket handshake): check CARTESIA_API_KEY"
        else:
            message = "Cartesia refused the TTS websocket"
        return ProviderStatusError(message, status=status, body=exc.response.body.decode(errors="replace"))
    return ProviderConnectionError(f"cannot reach Cartesia TTS: {exc!r}")


class _Link:
    """One websocket and the replies waiting on it."""

    def __init__(self, manager: Any, conn: Any) -> None:
        self.manager = manager
        self.conn = conn
        self.streams: dict[str, CartesiaTtsStream] = {}
        self.alive = True
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        reason: ProviderError = ProviderConnectionError("the Cartesia TTS websocket closed")
        try:
            async for event in self.conn:  # ends on a clean close
                context_id = getattr(event, "context_id", None)
                stream = self.streams.get(context_id) if context_id else None
                if stream is not None:
                    stream._on_event(event)
                elif event.type == "error":  # not tied to a context: the link itself is in trouble
                    reason = _event_error(event)
                    return
        except websockets.exceptions.ConnectionClosed as exc:
            reason = ProviderConnectionError(f"the Cartesia TTS websocket dropped: {exc}")
        except (ValueError, TypeError) as exc:  # an unparseable message
            reason = ProviderError(f"bad message from Cartesia TTS: {exc!r}", retryable=True)
        finally:
            self.alive = False
            for stream in list(self.streams.values()):
                stream._on_failure(reason)
            self.streams.clear()

    async def send(self, request: dict[str, Any]) -> None:
        try:
            await self.conn.send(request)
        except (websockets.exceptions.ConnectionClosed, OSError) as exc:
            self.alive = False
            raise ProviderConnectionError(f"the Cartesia TTS websocket dropped: {exc!r}") from exc

    async def close(self) -> None:
        self.alive = False
        with contextlib.suppress(websockets.exceptions.WebSocketException, OSError):
            await self.conn.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


def _event_error(event: Any) -> ProviderError:
    message = f"Cartesia TTS error: {event.title or event.error_code or 'error'}: {event.message or ''}".rstrip(": ")
    if event.status_code:
        return ProviderStatusError(message, status=int(event.status_code))
    return ProviderError(message, retryable=False)


class CartesiaTts:
    """``TextToSpeech`` over Cartesia's websocket; ``reply()`` is the incremental form of ``synthesize()``."""

    def __init__(self, api_key: str, *, url: str | None = None, model_id: str = "sonic-3", voice_id: str,
                 encoding: CartesiaEncoding = "pcm_mulaw", sample_rate: int = 8000, language: str = "en",
                 add_timestamps: bool = False, max_buffer_delay_ms: int | None = None,
                 connect_timeout_s: float = 5.0) -> None:
        if not api_key or not voice_id:
            raise ProviderConfigError("Cartesia needs an API key (CARTESIA_API_KEY) and a voice_id")
        if encoding not in ("pcm_mulaw", "pcm_s16le") or sample_rate not in (8000, 16000, 22050, 24000, 44100, 48000):
            raise ProviderConfigError(f"unsupported Cartesia output: encoding={encoding!r}, sample_rate={sample_rate}")
        self.model_id = model_id
        self.voice_id = voice_id
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.language = language
        self.add_timestamps = add_timestamps
        self.max_buffer_delay_ms = max_buffer_delay_ms
        self.connect_timeout_s = connect_timeout_s
        # The SDK forces wss:// on base_url, so a local or on-prem ws:// server is given as websocket_base_url.
        self._client = AsyncCartesia(api_key=api_key, websocket_base_url=url) if url else AsyncCartesia(api_key=api_key)
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    @property
    def capabilities(self) -> TtsCapabilities:
        return TtsCapabilities(sample_rate=self.sample_rate,
                               encoding="mulaw" if self.encoding == "pcm_mulaw" else "pcm16", streaming=True)

    async def start(self) -> None:
        await self.link()

    def synthesize(self, text: str) -> CartesiaTtsStream:
        return CartesiaTtsStream(self, text)

    def reply(self) -> CartesiaTtsStream:
        """A reply whose text is given piece by piece with ``push()`` and ended with ``finish()``."""
        return CartesiaTtsStream(self, None)

    async def link(self) -> _Link:
        async with self._lock:
            if self._link is None or not self._link.alive:
                if self._link is not None:
                    await self._link.close()
                manager = self._client.tts.websocket_connect()
                try:
                    async with asyncio.timeout(self.connect_timeout_s):
                        conn = await manager.enter()
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                    raise _handshake_error(exc) from exc
                self._link = _Link(manager, conn)
                self.connections += 1
            return self._link

    def request(self, context_id: str, transcript: str, *, more: bool) -> dict[str, Any]:
        request: dict[str, Any] = {
            "context_id": context_id, "model_id": self.model_id, "transcript": transcript,
            "voice": {"mode": "id", "id": self.voice_id}, "language": self.language, "continue": more,
            "output_format": {"container": "raw", "encoding": self.encoding, "sample_rate": self.sample_rate},
        }
        if self.add_timestamps:
            request["add_timestamps"] = True
        if self.max_buffer_delay_ms is not None:
            request["max_buffer_delay_ms"] = self.max_buffer_delay_ms
        return request

    def spawn_cancel(self, link: _Link, context_id: str) -> None:
        async def send_cancel() -> None:
            try:
                await link.send({"context_id": context_id, "cancel": True})
            except ProviderError as exc:  # the link is gone, and the context with it
                get_logger(provider="cartesia").debug("cartesia cancel not sent", error=str(exc))

        task = asyncio.create_task(send_cancel())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._link is not None:
            await self._link.close()
            self._link = None


class CartesiaTtsStream:
    """One reply (one Cartesia context): async iterator of ``AudioChunk``; ``words`` fill in as audio arrives."""

    def __init__(self, tts: CartesiaTts, text: str | None) -> None:
        self._tts = tts
        self._text = text
        self.context_id = uuid.uuid4().hex
        self.words: list[WordTimestamp] = []
        """Word timestamps, when the engine was built with ``add_timestamps=True``."""
        self.samples = 0
        """Samples delivered so far."""
        self._queue: asyncio.Queue[AudioChunk | ProviderError | None] = asyncio.Queue()
        self._link: _Link | None = None
        self._input_done = False
        self._cancelled = False
        self._ended = False
        self._carry = b""  # an odd byte of pcm_s16le split across two chunks

    # -- text in -------------------------------------------------------------------------------------------------

    async def push(self, text: str) -> None:
        await self._send(text, more=True)

    async def finish(self) -> None:
        """No more text: the context's ``done`` follows its last audio."""
        await self._send("", more=False)

    async def _send(self, transcript: str, *, more: bool) -> None:
        if self._cancelled or self._ended:
            return
        if self._input_done:
            raise ProviderError("text pushed to a Cartesia reply after finish()", retryable=False)
        if self._link is None:
            self._link = await self._tts.link()
            self._link.streams[self.context_id] = self
        self._input_done = not more
        await self._link.send(self._tts.request(self.context_id, transcript, more=more))

    # -- audio out -----------------------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self

    async def __anext__(self) -> AudioChunk:
        if self._text is not None and self._link is None and not self._cancelled:
            text, self._text = self._text, None
            try:
                await self._send(text, more=False)
            except ProviderError:
                self._ended = True
                raise
        if self._cancelled or self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if self._cancelled or item is None:
            self._end()
            raise StopAsyncIteration
        if isinstance(item, ProviderError):
            self._end()
            raise item
        self.samples += len(item.pcm)
        return item

    def heard(self, played_s: float) -> str:
        """The words wholly spoken within the first ``played_s`` seconds of this reply's audio."""
        return " ".join(w.word for w in self.words if w.end <= played_s)

    def _on_event(self, event: Any) -> None:
        kind = event.type
        if kind == "chunk":
            audio = event.audio or b""
            if self._tts.encoding == "pcm_mulaw":
                pcm: Any = np.frombuffer(audio, dtype=np.uint8)
                self._queue.put_nowait(AudioChunk(pcm, self._tts.sample_rate, "mulaw"))
            else:
                audio, self._carry = self._carry + audio, b""
                if len(audio) % 2:
                    audio, self._carry = audio[:-1], audio[-1:]
                pcm = np.frombuffer(audio, dtype="<i2").astype(np.int16, copy=False)
                self._queue.put_nowait(AudioChunk(pcm, self._tts.sample_rate, "pcm16"))
        elif kind == "timestamps" and event.word_timestamps is not None:
            ts = event.word_timestamps
            self.words.extend(WordTimestamp(w, float(s), float(e)) for w, s, e in zip(ts.words, ts.start, ts.end,
                                                                                        strict=False))
        elif kind == "done":
            self._detach()
            self._queue.put_nowait(None)
        elif kind == "error":
            self._detach()
            self._queue.put_nowait(_event_error(event))

    def _on_failure(self, error: ProviderError) -> None:
        if not self._ended:
            self._queue.put_nowait(error)

    def _detach(self) -> None:
        if self._link is not None:
            self._link.streams.pop(self.context_id, None)

    def _end(self) -> None:
        self._ended = True
        self._detach()

    def cancel(self) -> None:
        if self._cancelled or self._ended:
            return
        self._cancelled = True
        link = self._link
        self._end()
        self._queue.put_nowait(None)  # wakes a consumer waiting in __anext__
        if link is not None and link.alive:
            self._tts.spawn_cancel(link, self.context_id)

    async def aclose(self) -> None:
        self.cancel()
