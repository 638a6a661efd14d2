"""Offline text to speech: espeak-ng (from ``espeakng-loader``, through ctypes) or piper when it is installed.

Both engines run in worker processes: libespeak-ng keeps process-global state (one synthesis at a time per process,
which a single-threaded worker guarantees), and piper's neural model takes 60 ms of CPU per second of speech.

Streaming is per sentence and pulled: the stream asks the worker for the next sentence while the consumer plays the
current one (``prefetch`` sentences ahead). espeak-ng runs about 1000x faster than real time, so the first chunk of a
short sentence is ready in a few milliseconds; cancelling drops the session in the worker, which then synthesizes at
most the sentences already asked for. Output (22050 Hz from both engines) is resampled in the worker with
``rtp.resample.StreamResampler``, whose state carries across sentences, so the joins are seamless.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rtp.resample import StreamResampler
from sipagent.providers.base import AudioChunk, Int16Array, TtsCapabilities
from sipagent.providers.errors import ProviderConfigError, ProviderError
from sipagent.providers.offline.worker import Channel, WorkerPool, error_from_reply

__all__ = ["EspeakEngine", "OfflineTextToSpeech", "OfflineTtsConfig", "OfflineTtsStream", "PiperEngine",
           "piper_available", "split_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_CLAUSE_END = re.compile(r"(?<=,)\s+")
_MAX_SENTENCE = 240  # characters; longer sentences are cut at commas so no single chunk is huge
_DEFAULT_RATE = 165  # words per minute: espeak-ng's default is 175, a little fast on the telephone
_keys = itertools.count(1)


def piper_available() -> bool:
    return importlib.util.find_spec("piper") is not None


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        if len(sentence) > _MAX_SENTENCE:
            sentences.extend(_CLAUSE_END.split(sentence))
        elif sentence:
            sentences.append(sentence)
    return [s for s in sentences if s.strip()]


@dataclass(frozen=True, slots=True)
class OfflineTtsConfig:
    engine: Literal["espeak", "piper"] = "espeak"
    voice: str = "en-us"
    """espeak-ng voice name."""
    rate: int = _DEFAULT_RATE
    """Words per minute (espeak-ng accepts 80-450); piper scales its phoneme lengths by 165 / rate."""
    sample_rate: int = 16000
    piper_model: str | None = None
    """Path of a piper ``.onnx`` voice (its ``.onnx.json`` beside it unless ``piper_config`` is given)."""
    piper_config: str | None = None
    prefetch: int = 1
    """Sentences synthesized ahead of the one being consumed."""

    def __post_init__(self) -> None:
        if self.engine == "piper" and (self.piper_model is None or not piper_available()):
            raise ProviderConfigError("the piper engine needs the piper-tts package and piper_model set")
        if self.sample_rate <= 0 or self.prefetch < 0 or not 80 <= self.rate <= 450:
            raise ProviderConfigError(f"bad offline TTS settings: sample_rate={self.sample_rate}, "
                                      f"prefetch={self.prefetch}, rate={self.rate} (80-450)")

    def worker_config(self) -> dict[str, Any]:
        return {"voice": self.voice, "rate": self.rate, "sample_rate": self.sample_rate,
                "model": self.piper_model, "model_config": self.piper_config}


class OfflineTextToSpeech:
    """``TextToSpeech`` over worker processes; one pool serves every call."""

    def __init__(self, config: OfflineTtsConfig | None = None, *, pool: WorkerPool | None = None,
                 workers: int = 1) -> None:
        self.config = config or OfflineTtsConfig()
        self._owns_pool = pool is None
        self.pool = pool or WorkerPool(workers, warm=[(self.config.engine, self.config.worker_config())])

    @property
    def capabilities(self) -> TtsCapabilities:
        return TtsCapabilities(sample_rate=self.config.sample_rate, encoding="pcm16", streaming=True)

    async def start(self) -> None:
        await self.pool.start()

    def synthesize(self, text: str) -> OfflineTtsStream:
        return OfflineTtsStream(self.pool, self.config, text)

    async def aclose(self) -> None:
        if self._owns_pool:
            await self.pool.aclose()


class OfflineTtsStream:
    """Async iterator of 16 kHz (``sample_rate``) int16 chunks, one per sentence."""

    def __init__(self, pool: WorkerPool, config: OfflineTtsConfig, text: str) -> None:
        self._pool = pool
        self._config = config
        self._text = text
        self._channel: Channel | None = None
        self._queue: asyncio.Queue[AudioChunk | ProviderError | None] = asyncio.Queue()
        self._cancelled = False
        self._finished = False

    def __aiter__(self) -> OfflineTtsStream:
        return self

    async def __anext__(self) -> AudioChunk:
        if self._cancelled or self._finished:
            raise StopAsyncIteration
        if self._channel is None:
            payload = dict(self._config.worker_config(), text=self._text)
            self._channel = await self._pool.open(self._config.engine, payload, self._on_reply, key=f"tts{next(_keys)}")
            if self._cancelled:  # cancelled while the pool was opening the session
                self._channel.close()
                raise StopAsyncIteration
            for _ in range(1 + self._config.prefetch):
                self._channel.send("next")
        item = await self._queue.get()
        if self._cancelled or item is None:
            self._finish()
            raise StopAsyncIteration
        if isinstance(item, ProviderError):
            self._finish()
            raise item
        self._channel.send("next")
        return item

    def _on_reply(self, kind: str, payload: Any) -> None:
        if kind == "chunk":
            pcm: Int16Array = np.frombuffer(payload, dtype=np.int16)
            self._queue.put_nowait(AudioChunk(pcm, self._config.sample_rate))
        elif kind == "done":
            self._queue.put_nowait(None)
        elif kind == "error":
            self._queue.put_nowait(error_from_reply(payload))

    def _finish(self) -> None:
        self._finished = True
        if self._channel is not None:
            self._channel.close()

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self._finish()
            self._queue.put_nowait(None)  # wakes a consumer waiting in __anext__

    async def aclose(self) -> None:
        self.cancel()


# ---------------------------------------------------------------------------------------------------------------
# Worker side.


class _SpeechSession:
    """Turns an iterator of (samples, rate) pieces into resampled chunks, one per ``next`` request."""

    info = None

    def __init__(self, pieces: Iterator[tuple[Int16Array, int]], out_rate: int) -> None:
        self._pieces = pieces
        self._out_rate = out_rate
        self._resampler: StreamResampler | None = None
        self._done = False

    def handle(self, op: str, payload: Any) -> list[tuple[str, Any]]:
        if op != "next":
            raise ValueError(f"unknown tts op {op!r}")
        if self._done:
            return []
        for samples, rate in self._pieces:
            if self._resampler is None:
                self._resampler = StreamResampler(rate, self._out_rate)
            out = self._resampler.process(samples)
            if out.size:
                return [("chunk", out.tobytes())]
        self._done = True
        replies: list[tuple[str, Any]] = []
        if self._resampler is not None and self._resampler.delay_samples:
            # Push zeros through so the last delay_samples of speech come out of the filter.
            r = self._resampler
            tail = r.process(np.zeros(math.ceil(r.delay_samples * r.in_rate / r.out_rate) + 1, dtype=np.int16))
            replies.append(("chunk", tail.tobytes()))
        replies.append(("done", None))
        return replies

    def close(self) -> None:
        self._done = True


class EspeakEngine:
    """libespeak-ng of one worker process, driven through ctypes (speak_lib.h)."""

    # speak_lib.h constants.
    _SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when done, audio goes to the callback
    _RATE = 1  # espeakRATE
    _POS_CHARACTER = 1
    _FLAGS = 0x1 | 0x1000  # espeakCHARS_UTF8 | espeakENDPAUSE (the natural pause after each sentence)

    def __init__(self) -> None:
        import ctypes

        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(self._SYNCHRONOUS, 100, espeakng_loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise ProviderConfigError("libespeak-ng failed to initialise")
        self._lib = lib
        self._pieces: list[Int16Array] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(self._on_audio)  # kept referenced: C holds only a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._settings: tuple[str, int] | None = None

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        if wav and count > 0:
            self._pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16))
        return 0

    def synthesize(self, text: str, voice: str, rate: int) -> Int16Array:
        if self._settings != (voice, rate):
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ProviderConfigError(f"espeak-ng has no voice {voice!r}")
            self._lib.espeak_SetParameter(self._RATE, rate, 0)
            self._settings = (voice, rate)
        data = text.encode() + b"\0"
        self._pieces = []
        if self._lib.espeak_Synth(data, len(data), 0, self._POS_CHARACTER, 0, self._FLAGS, None, None) != 0:
            raise ProviderError("espeak_Synth failed", retryable=False)
        pieces, self._pieces = self._pieces, []
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)

    def warm(self, config: Any) -> None:
        self.synthesize("Ready.", config["voice"], config["rate"])  # loads the voice and its dictionary

    def idle(self) -> None:
        pass

    def open(self, config: Any) -> _SpeechSession:
        voice, rate = config["voice"], config["rate"]
        pieces = ((self.synthesize(s, voice, rate), self.rate) for s in split_sentences(config["text"]))
        return _SpeechSession(pieces, config["sample_rate"])


class PiperEngine:
    """piper-tts voices of one worker process (optional: used only when ``piper`` is importable)."""

    def __init__(self) -> None:
        import piper

        self._piper = piper
        self._voices: dict[tuple[str, str | None], Any] = {}

    def _voice(self, config: Any) -> Any:
        key = (config["model"], config["model_config"])
        if key not in self._voices:
            self._voices[key] = self._piper.PiperVoice.load(key[0], config_path=key[1])
        return self._voices[key]

    def warm(self, config: Any) -> None:
        self._voice(config)

    def idle(self) -> None:
        pass

    def open(self, config: Any) -> _SpeechSession:
        voice = self._voice(config)
        syn_config = self._piper.SynthesisConfig(length_scale=_DEFAULT_RATE / config["rate"])
        chunks = voice.synthesize(config["text"], syn_config=syn_config)
        return _SpeechSession(((c.audio_int16_array, c.sample_rate) for c in chunks), config["sample_rate"])
