"""Deepgram Flux speech to text (listen v2) through the ``deepgram-sdk`` websocket client.

One websocket per call, opened by ``open()`` and kept for the whole call: Flux models turns itself, so its
StartOfTurn / EagerEndOfTurn / TurnResumed / EndOfTurn events become the stream's turn events and the pipeline can
skip its own end-of-turn policy. Audio goes out as linear16 at 16 kHz, one binary message per pushed 20 ms frame
(a backlog after a reconnect is coalesced into larger messages).

Faults: a link that drops mid-call is reopened with exponential back-off. Audio pushed meanwhile waits in a bounded
buffer (``max_buffer_s``, oldest dropped first and counted) and is sent once the link is back. A turn that was open
when the link dropped is not lost: its audio (kept in the same bounded history) is sent again on the new link from
the turn's start, the new StartOfTurn is swallowed, and event times stay in the caller's stream clock because each
link's times are offset by the first sample sent on it. A refused handshake (401 for a bad key) fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import websockets.exceptions
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment

from sipagent.log import get_logger
from sipagent.providers.base import Int16Array, SttCapabilities, SttEvent, SttEventKind
from sipagent.providers.errors import (
    ProviderConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
)

__all__ = ["DeepgramFluxStream", "DeepgramFluxStt", "flux_environment"]

_RATE = 16000
_MAX_BATCH_FRAMES = 8  # a backlog is sent in messages of up to 160 ms instead of one per 20 ms frame
_MAX_QUEUED_PARTIALS = 32
_REPLAY_PREROLL_S = 0.2  # audio replayed before a dropped turn's start, so its onset is not cut


def flux_environment(url: str) -> DeepgramClientEnvironment:
    """An SDK environment whose websockets (listen, speak, agent) and REST calls all go to ``url``."""
    base = url.rstrip("/")
    if base.startswith("http"):
        ws = "ws" + base[len("http"):]
    else:
        ws, base = base, "http" + base[len("ws"):]
    return DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)


def _status_error(exc: ApiError) -> ProviderStatusError:
    status = int(exc.status_code or 0)
    if status in (401, 403):
        message = f"Deepgram rejected the API key ({status} on the Flux websocket handshake): check DEEPGRAM_API_KEY"
    else:
        message = f"Deepgram refused the Flux websocket: {exc.body}"
    return ProviderStatusError(message, status=status, body=str(exc.body or ""))


class DeepgramFluxStt:
    """``SpeechToText`` over Deepgram Flux; one SDK client for every call, one websocket per call."""

    def __init__(self, api_key: str, *, url: str | None = None, model: str = "flux-general-en",
                 eot_threshold: float = 0.7, eager_eot_threshold: float | None = 0.5, eot_timeout_ms: int = 5000,
                 keyterms: tuple[str, ...] = (), max_buffer_s: float = 10.0, backoff: tuple[float, float] = (0.1, 2.0),
                 reconnect_deadline_s: float = 30.0, close_timeout_s: float = 2.0) -> None:
        if not api_key:
            raise ProviderConfigError("Deepgram needs an API key (DEEPGRAM_API_KEY)")
        # Ranges documented for listen v2 (deepgram/types/listen_v2_*.py).
        if not 0.5 <= eot_threshold <= 1.0 or not 500 <= eot_timeout_ms <= 60000 or (
                eager_eot_threshold is not None and not 0.3 <= eager_eot_threshold <= 0.9):
            raise ProviderConfigError(
                f"bad Deepgram Flux thresholds: eot_threshold={eot_threshold} (0.5-1.0), eager_eot_threshold="
                f"{eager_eot_threshold} (0.3-0.9), eot_timeout_ms={eot_timeout_ms} (500-60000)")
        self.api_key = api_key
        self.url = url
        self.params: dict[str, Any] = {
            "model": model, "encoding": "linear16", "sample_rate": _RATE, "eot_threshold": eot_threshold,
            "eager_eot_threshold": eager_eot_threshold, "eot_timeout_ms": eot_timeout_ms,
        }
        if keyterms:
            self.params["keyterm"] = list(keyterms)
        self.max_buffer_s = max_buffer_s
        self.backoff = backoff
        self.reconnect_deadline_s = reconnect_deadline_s
        self.close_timeout_s = close_timeout_s
        self._client: AsyncDeepgramClient | None = None

    @property
    def capabilities(self) -> SttCapabilities:
        return SttCapabilities(partials=True, turn_events=True,
                               eager_end_of_turn=self.params["eager_eot_threshold"] is not None)

    async def start(self) -> None:
        if self._client is None:
            env = flux_environment(self.url) if self.url else DeepgramClientEnvironment.PRODUCTION
            try:
                self._client = AsyncDeepgramClient(api_key=self.api_key, environment=env)
            except ApiError as exc:
                raise ProviderConfigError(f"Deepgram client setup failed: {exc.body}") from exc

    async def open(self, call_id: str) -> DeepgramFluxStream:
        await self.start()
        assert self._client is not None
        stream = DeepgramFluxStream(self, self._client, call_id)
        await stream.start()
        return stream

    async def aclose(self) -> None:
        self._client = None


class DeepgramFluxStream:
    """One call's Flux websocket; ``push`` only queues, a sender task drains the queue."""

    def __init__(self, settings: DeepgramFluxStt, client: AsyncDeepgramClient, call_id: str) -> None:
        self._settings = settings
        self._client = client
        self._log = get_logger(call_id=call_id, provider="deepgram")
        self._max_samples = int(settings.max_buffer_s * _RATE)
        # (first sample index, linear16 bytes): not yet sent, and sent but kept to replay an interrupted turn.
        self._pending: deque[tuple[int, bytes]] = deque()
        self._history: deque[tuple[int, bytes]] = deque()
        self._held = 0  # samples in _pending and _history together
        self._pushed = 0
        self._wake = asyncio.Event()
        self._close_requested = asyncio.Event()
        self._events: asyncio.Queue[SttEvent | ProviderError | None] = asyncio.Queue()
        self._opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._offset = 0  # stream sample index of the first sample sent on the current link
        self._turn_start: int | None = None  # stream sample index where the open turn started
        self._eager = False
        self._swallow_start = False
        self._last_partial = ""
        self._fatal: ProviderError | None = None
        self.connections = 0
        """Websocket links opened so far (1 for a call without faults)."""
        self.dropped_samples = 0
        """Samples discarded because more than ``max_buffer_s`` waited for a link."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        try:
            await self._opened
        except BaseException:
            await self.close()
            raise

    # -- audio in ------------------------------------------------------------------------------------------------

    def push(self, frame: Int16Array) -> None:
        if self._closing:
            return
        data = frame.astype("<i2", copy=False).tobytes()
        self._pending.append((self._pushed, data))
        self._pushed += len(frame)
        self._held += len(frame)
        while self._held > self._max_samples:
            if self._history:
                self._held -= len(self._history.popleft()[1]) // 2
            else:
                lost = len(self._pending.popleft()[1]) // 2
                self._held -= lost
                self.dropped_samples += lost
        self._wake.set()

    async def _send_loop(self, conn: Any) -> None:
        while True:
            while self._pending:
                batch = [self._pending[i] for i in range(min(_MAX_BATCH_FRAMES, len(self._pending)))]
                # A failed send leaves the batch pending, so it goes out again on the next link.
                await conn.send_media(b"".join(data for _, data in batch))
                for frame in batch:
                    if self._pending and self._pending[0] is frame:  # push() may have trimmed it meanwhile
                        self._pending.popleft()
                        self._history.append(frame)
            if self._closing:
                await conn.send_close_stream()
                return
            self._wake.clear()
            await self._wake.wait()

    # -- the link ------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay, max_delay = self._settings.backoff
        failing_since: float | None = None
        try:
            while True:
                try:
                    async with self._client.listen.v2.connect(**self._settings.params) as conn:
                        self.connections += 1
                        self._resume()
                        if not self._opened.done():
                            self._opened.set_result(None)
                        delay, failing_since = self._settings.backoff[0], None
                        await self._session(conn)
                    if self._fatal is not None:
                        raise self._fatal
                    if self._closing:
                        return
                    self._log.warning("deepgram flux: link dropped, reconnecting", pending_samples=self._held)
                except ApiError as exc:
                    error = _status_error(exc)
                    if not error.retryable or not self._opened.done():
                        raise error from exc
                    self._log.warning("deepgram flux: reconnect refused", error=str(error))
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                    if not self._opened.done():
                        raise ProviderConnectionError(f"cannot reach Deepgram Flux: {exc!r}") from exc
                    self._log.warning("deepgram flux: reconnect failed", error=repr(exc))
                now = loop.time()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since > self._settings.reconnect_deadline_s:
                    raise ProviderConnectionError(
                        f"Deepgram Flux link lost for more than {self._settings.reconnect_deadline_s:.0f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._close_requested.wait(), delay)
                if self._closing:
                    return
                delay = min(delay * 2, max_delay)
        except ProviderError as error:
            if not self._opened.done():
                self._opened.set_exception(error)
            else:
                self._events.put_nowait(error)
        finally:
            self._events.put_nowait(None)

    def _resume(self) -> None:
        if self._turn_start is not None:
            # The turn in progress was cut: send its audio again so the new link transcribes the whole of it.
            replay_from = self._turn_start - int(_REPLAY_PREROLL_S * _RATE)
            while self._history and self._history[-1][0] + len(self._history[-1][1]) // 2 > replay_from:
                self._pending.appendleft(self._history.pop())
            self._swallow_start = True
            if self._eager:
                # The speculative reply was built on the cut link's transcript; a fresh EagerEndOfTurn will follow.
                self._eager = False
                self._put(SttEvent(SttEventKind.TURN_RESUMED, start=self._turn_start / _RATE,
                                   end=self._pushed / _RATE))
        self._history.clear()
        self._held = sum(len(data) // 2 for _, data in self._pending)
        self._offset = self._pending[0][0] if self._pending else self._pushed

    async def _session(self, conn: Any) -> None:
        sender = asyncio.create_task(self._send_loop(conn))
        try:
            async for message in conn:
                self._on_message(message)
                if self._fatal is not None:
                    break
        except websockets.exceptions.ConnectionClosed:
            pass  # an abnormal close: reconnect
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.exceptions.ConnectionClosed):
                await sender

    # -- events out ----------------------------------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        kind = getattr(message, "type", None)
        if kind == "TurnInfo":
            self._on_turn(message)
        elif kind == "Error":
            self._fatal = ProviderError(f"Deepgram Flux error {message.code}: {message.description}", retryable=True)
        elif kind == "Warning":
            self._log.warning("deepgram flux warning", code=message.code, description=message.description)
        elif kind == "Connected":
            self._log.debug("deepgram flux connected", request_id=message.request_id)

    def _on_turn(self, info: Any) -> None:
        base = self._offset / _RATE
        start, end = base + float(info.audio_window_start), base + float(info.audio_window_end)
        text = info.transcript or ""
        words = info.words or []
        confidence = sum(w.confidence for w in words) / len(words) if words else None
        event = info.event
        if event == "StartOfTurn":
            if self._swallow_start:  # the replayed turn's start was already reported
                self._swallow_start = False
                return
            self._turn_start = self._offset + round(float(info.audio_window_start) * _RATE)
            self._put(SttEvent(SttEventKind.START_OF_TURN, start=start, end=end))
        elif event == "Update":
            if text and text != self._last_partial:
                self._last_partial = text
                self._put(SttEvent(SttEventKind.PARTIAL, text, start, end, confidence))
        elif event == "EagerEndOfTurn":
            self._eager = True
            self._put(SttEvent(SttEventKind.EAGER_END_OF_TURN, text, start, end, confidence))
        elif event == "TurnResumed":
            self._eager = False
            self._put(SttEvent(SttEventKind.TURN_RESUMED, start=start, end=end))
        elif event == "EndOfTurn":
            self._turn_start = None
            self._eager = self._swallow_start = False
            self._last_partial = ""
            if text:
                self._put(SttEvent(SttEventKind.FINAL, text, start, end, confidence))
            self._put(SttEvent(SttEventKind.END_OF_TURN, text, start, end, confidence))

    def _put(self, event: SttEvent) -> None:
        # PARTIALs are advisory: a consumer that stopped reading must not make the queue grow for ever.
        if event.kind is SttEventKind.PARTIAL and self._events.qsize() >= _MAX_QUEUED_PARTIALS:
            return
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[SttEvent]:
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def close(self) -> None:
        """Send CloseStream after the queued audio, wait up to ``close_timeout_s`` for the server to finish."""
        if self._closing:
            return
        self._closing = True
        self._close_requested.set()
        self._wake.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self._settings.close_timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # its finally still ends events()
