"""Offline speech to text: pocketsphinx in a worker process, segmented by a VAD on the loop.

Accuracy (notes/offline-engines.md): pocketsphinx's open-vocabulary language model is poor on synthetic and
telephone speech (WER 0.5-1.0) and slow (measured 0.24 s of CPU per second of audio on an idle core, 0.6-1 s on a
loaded one), while a small JSGF grammar of the agent script's phrases is recognised exactly and costs about 14 ms
per second of audio. So each utterance is decoded with a grammar of the configured phrases; only when its best path
is not a complete phrase (the speech was out of grammar) is the buffered utterance decoded again with the
open-vocabulary model, a cost paid only on misses. With no phrases, the language model is used directly. The
grammar will still force near misses onto a phrase ("book a table for two" -> "i would like to book an
appointment"); the reply policy should confirm before acting on anything costly.

Turns come from the stream's own ``VoiceActivityDetector`` (cheap, on the loop): SPEECH_START starts an utterance
(with ``preroll_ms`` of audio from before the confirmed onset, so the first phoneme is not cut), SPEECH_END ends it
with FINAL and END_OF_TURN. After ``eager_end_ms`` of silence the current hypothesis is sent as
EAGER_END_OF_TURN, and TURN_RESUMED follows if the caller goes on. Frames travel to the worker in batches of
``batch_ms``, and every batch is acknowledged with the partial hypothesis.

Ordering: events that the loop side decides (START_OF_TURN, TURN_RESUMED) are held back until the worker has
answered every request sent before them, so the stream's events are in the order of the audio.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sipagent.agent.vad import VadConfig, VadEventKind, VoiceActivityDetector
from sipagent.log import get_logger
from sipagent.providers.base import Int16Array, SttCapabilities, SttEvent, SttEventKind
from sipagent.providers.errors import ProviderError
from sipagent.providers.offline.worker import Channel, WorkerPool, error_from_reply

__all__ = ["OfflineSpeechToText", "OfflineSttStream", "SphinxSttConfig", "build_grammar", "normalize"]

_RATE = 16000
_NON_WORD = re.compile(r"[^a-z']+")
_MAX_QUEUED_PARTIALS = 32


def normalize(text: str) -> str:
    """Lower-case words of letters and apostrophes, single-spaced: the form phrases are matched in."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def build_grammar(phrases: list[str], fillers: list[str]) -> str:
    """A JSGF grammar accepting one phrase, optionally between one leading and one trailing filler word."""
    body = " | ".join(phrases)
    if not fillers:
        return f"#JSGF V1.0;\ngrammar agent;\npublic <utterance> = {body};\n"
    # One optional filler on each side, not a loop: a filler loop measurably swallows short phrases ("hello" was
    # decoded as "the oh"), while one filler still absorbs "um ..." and "... please".
    return (
        f"#JSGF V1.0;\ngrammar agent;\n<filler> = {' | '.join(fillers)};\n"
        f"public <utterance> = [<filler>] ({body}) [<filler>];\n"
    )


@dataclass(frozen=True, slots=True)
class SphinxSttConfig:
    phrases: tuple[str, ...] = ()
    """The agent script's phrases; empty means open vocabulary only."""
    fillers: tuple[str, ...] = ()
    """Words allowed once before and once after a phrase (e.g. "um", "please")."""
    open_vocabulary_fallback: bool = True
    vad: VadConfig = field(default_factory=lambda: VadConfig(end_ms=500))
    batch_ms: int = 160
    preroll_ms: int = 300
    eager_end_ms: int | None = 200
    """Silence after which EAGER_END_OF_TURN is sent; None disables it."""
    max_backlog_ms: int = 3000
    """Audio sent to the worker but not yet decoded beyond which new frames are dropped (and counted)."""
    max_utterance_s: float = 20.0
    """Audio kept per utterance for the fallback pass."""
    noise_floor: float = 32.0
    """Standard deviation (int16 units, 32 is about -60 dBFS) of white noise added before decoding; 0 disables."""
    decoder_options: tuple[tuple[str, Any], ...] = ()
    """Extra pocketsphinx ``Config`` options (model paths, beams), e.g. (("beam", 1e-40),)."""


class OfflineSpeechToText:
    """``SpeechToText`` over pocketsphinx worker processes (one pool, many calls)."""

    def __init__(self, config: SphinxSttConfig | None = None, *, pool: WorkerPool | None = None,
                 workers: int = 1) -> None:
        self.config = config or SphinxSttConfig()
        self._owns_pool = pool is None
        self.pool = pool or WorkerPool(workers, warm=[("sphinx", self.worker_config())])

    @property
    def capabilities(self) -> SttCapabilities:
        return SttCapabilities(partials=True, turn_events=True,
                               eager_end_of_turn=self.config.eager_end_ms is not None)

    async def start(self) -> None:
        await self.pool.start()

    def worker_config(self) -> dict[str, Any]:
        """What the worker's ``SphinxEngine`` needs (plain data: it is pickled to the worker)."""
        cfg = self.config
        return {
            "phrases": list(cfg.phrases),
            "fillers": list(cfg.fillers),
            "fallback": cfg.open_vocabulary_fallback,
            "max_samples": int(cfg.max_utterance_s * _RATE),
            "options": tuple(cfg.decoder_options),
            "noise_floor": cfg.noise_floor,
        }

    async def open(self, call_id: str) -> OfflineSttStream:
        stream = OfflineSttStream(self.config, call_id)
        stream.attach(await self.pool.open("sphinx", self.worker_config(), stream.on_reply, key=call_id))
        try:
            await stream.opened
        except BaseException:
            await stream.close()
            raise
        return stream

    async def aclose(self) -> None:
        if self._owns_pool:
            await self.pool.aclose()


@dataclass(slots=True)
class _Request:
    op: str
    t: float
    frames: int = 0
    deferred: list[SttEvent] = field(default_factory=list)


class OfflineSttStream:
    """One call's recognizer; ``push`` costs about 7 us per frame on the loop (VAD and batching included)."""

    def __init__(self, config: SphinxSttConfig, call_id: str) -> None:
        self.config = config
        self._log = get_logger(call_id=call_id)
        self._vad = VoiceActivityDetector(config.vad)
        self._frame_s = config.vad.frame_ms / 1000.0
        self._batch_frames = max(1, round(config.batch_ms / config.vad.frame_ms))
        self._max_inflight = max(self._batch_frames, math.ceil(config.max_backlog_ms / config.vad.frame_ms))
        self._eager_s = None if config.eager_end_ms is None else config.eager_end_ms / 1000.0
        self._preroll: deque[Int16Array] = deque(maxlen=max(1, round(config.preroll_ms / config.vad.frame_ms)))
        self._batch: list[Int16Array] = []
        self._awaiting: deque[_Request] = deque()
        self._inflight = 0
        self._events: asyncio.Queue[SttEvent | ProviderError | None] = asyncio.Queue()
        self._channel: Channel | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._t = 0.0
        self._in_utterance = False
        self._utterance_start = 0.0
        self._eager = False
        self._last_partial = ""
        self._closed = False
        self.dropped_frames = 0
        """Frames not decoded because the worker was more than ``max_backlog_ms`` behind."""

    def attach(self, channel: Channel) -> None:
        self._channel = channel

    # -- loop side: audio in --------------------------------------------------------------------------------

    def push(self, frame: Int16Array) -> None:
        if self._closed:
            return
        self._t += self._frame_s
        event = self._vad.update(frame, self._t)
        if not self._in_utterance:
            self._preroll.append(frame)
            if event is not None and event.kind is VadEventKind.SPEECH_START:
                self._begin(event.at)
            return
        if self._inflight + len(self._batch) >= self._max_inflight:
            self.dropped_frames += 1
        else:
            self._batch.append(frame)
            if len(self._batch) >= self._batch_frames:
                self._flush()
        if self._eager_s is not None:
            if not self._eager and self._vad.silence >= self._eager_s:
                self._eager = True
                self._flush()
                self._request("peek", end=self._t - self._vad.silence)  # dated at the end of the last voiced frame
            elif self._eager and self._vad.voiced:
                self._eager = False
                self._emit_local(SttEvent(SttEventKind.TURN_RESUMED, start=self._utterance_start, end=self._t))
        if event is not None and event.kind is VadEventKind.SPEECH_END:
            self._flush()
            self._request("end", end=event.at)
            self._in_utterance = self._eager = False

    def _begin(self, onset: float) -> None:
        self._in_utterance = True
        self._utterance_start = onset
        self._last_partial = ""
        self._request("start")
        self._batch = list(self._preroll)
        self._preroll.clear()
        self._emit_local(SttEvent(SttEventKind.START_OF_TURN, start=onset, end=self._t))

    def _flush(self) -> None:
        if self._batch:
            frames = len(self._batch)
            self._request("audio", np.concatenate(self._batch).tobytes(), frames=frames)
            self._inflight += frames
            self._batch = []

    def _request(self, op: str, payload: Any = None, *, frames: int = 0, end: float | None = None) -> None:
        assert self._channel is not None
        self._awaiting.append(_Request(op, self._t if end is None else end, frames))
        self._channel.send(op, payload)

    def _emit_local(self, event: SttEvent) -> None:
        if self._awaiting:
            self._awaiting[-1].deferred.append(event)
        else:
            self._events.put_nowait(event)

    # -- loop side: replies from the worker -----------------------------------------------------------------

    def on_reply(self, kind: str, payload: Any) -> None:
        if kind == "error":
            self._fail(error_from_reply(payload))
            return
        if kind == "opened":
            if payload:
                self._log.warning("offline stt: phrases with words missing from the dictionary were left out",
                                  phrases=payload)
            if not self.opened.done():
                self.opened.set_result(None)
            return
        if not self._awaiting:
            return
        request = self._awaiting.popleft()
        start = self._utterance_start
        if kind == "partial":
            self._inflight -= request.frames
            if payload and payload != self._last_partial:
                self._last_partial = payload
                self._put(SttEvent(SttEventKind.PARTIAL, payload, start, request.t))
        elif kind == "peek":
            self._put(SttEvent(SttEventKind.EAGER_END_OF_TURN, payload or "", start, request.t))
        elif kind == "final":
            if payload:
                self._put(SttEvent(SttEventKind.FINAL, payload, start, request.t))
            self._put(SttEvent(SttEventKind.END_OF_TURN, payload or "", start, request.t))
        for event in request.deferred:
            self._put(event)

    def _put(self, event: SttEvent) -> None:
        # PARTIALs are advisory: a consumer that stopped reading must not make the queue grow for ever.
        if event.kind is SttEventKind.PARTIAL and self._events.qsize() >= _MAX_QUEUED_PARTIALS:
            return
        self._events.put_nowait(event)

    def _fail(self, error: ProviderError) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
            return
        if not self._closed:
            self._events.put_nowait(error)
            self._shut()

    def _shut(self) -> None:
        self._closed = True
        self._awaiting.clear()
        if self._channel is not None:
            self._channel.close()

    # -- consumer side --------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[SttEvent]:
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def close(self) -> None:
        if not self._closed:
            self._shut()
            self._events.put_nowait(None)
