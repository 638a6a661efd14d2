"""Offline TTS (espeak-ng in a worker process): audio format and content, streaming, cancellation, failures."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
import webrtcvad
from scipy.signal import resample_poly, welch

from sipagent.providers.base import AudioChunk
from sipagent.providers.errors import ProviderConfigError, ProviderConnectionError
from sipagent.providers.offline.tts import (
    EspeakEngine,
    OfflineTextToSpeech,
    OfflineTtsConfig,
    piper_available,
    split_sentences,
)

pytestmark = pytest.mark.aio
module_loop = pytest.mark.asyncio(loop_scope="module")

HELLO = "Hello, thanks for calling."
LONG = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 13))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tts() -> AsyncIterator[OfflineTextToSpeech]:
    provider = OfflineTextToSpeech()
    await provider.start()
    yield provider
    await provider.aclose()


async def collect(stream: AsyncIterator[AudioChunk]) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


def voiced_fraction(pcm: np.ndarray) -> float:
    vad = webrtcvad.Vad(3)
    frames = pcm[: len(pcm) // 320 * 320].reshape(-1, 320)
    return sum(vad.is_speech(f.tobytes(), 16000) for f in frames) / len(frames)


@module_loop
async def test_hello_is_16khz_int16_speech_of_plausible_length(tts: OfflineTextToSpeech) -> None:
    chunks = await collect(tts.synthesize(HELLO))
    assert chunks and all(c.sample_rate == 16000 and c.encoding == "pcm16" for c in chunks)
    assert all(c.pcm.dtype == np.int16 and c.pcm.ndim == 1 for c in chunks)
    pcm = np.concatenate([c.pcm for c in chunks])
    assert 1.0 <= len(pcm) / 16000 <= 3.0  # four words at 165 words per minute, plus the sentence pause
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) / 32768)
    assert rms_dbfs > -35.0
    assert voiced_fraction(pcm) > 0.4  # an independent detector hears speech in most of it


def envelope_correlation(a: np.ndarray, b: np.ndarray) -> float:
    def envelope(x: np.ndarray) -> np.ndarray:  # RMS per 50 ms
        frames = len(x) // 800
        return np.sqrt((x[: frames * 800].astype(np.float64).reshape(frames, 800) ** 2).mean(axis=1))

    ea, eb = envelope(a), envelope(b)
    n = min(len(ea), len(eb))
    return float(np.corrcoef(ea[:n], eb[:n])[0, 1])


def same_speech(a: np.ndarray, b: np.ndarray) -> bool:
    # espeak-ng is not bit-exact from run to run (a sentence's length varies by up to about 1 %), so compare durations
    # and energy envelopes (measured 0.96-1.0 for the same sentence, about 0.25 for a different one).
    return abs(len(a) - len(b)) < 0.05 * max(len(a), len(b)) and envelope_correlation(a, b) > 0.9


@module_loop
async def test_output_is_espeak_resampled_to_16khz(tts: OfflineTextToSpeech) -> None:
    # Oracle: libespeak-ng run here, at its native 22050 Hz, resampled by scipy's polyphase filter.
    engine = EspeakEngine()
    native = engine.synthesize(HELLO, "en-us", 165)
    assert engine.rate == 22050
    expected = resample_poly(native.astype(np.float64), 320, 441)
    got = np.concatenate([c.pcm for c in await collect(tts.synthesize(HELLO))]).astype(np.float64)
    assert same_speech(got, expected)
    # Same spectral shape over the speech band (log-PSD correlation: about 0.995 measured, 0.84 for another text).
    freqs, psd_got = welch(got, 16000, nperseg=512)
    _, psd_expected = welch(expected, 16000, nperseg=512)
    band = (freqs > 100) & (freqs < 7000)
    assert np.corrcoef(np.log(psd_got[band]), np.log(psd_expected[band]))[0, 1] > 0.97


@module_loop
async def test_streams_one_chunk_per_sentence_and_the_first_one_fast(tts: OfflineTextToSpeech) -> None:
    start = time.perf_counter()
    stream = tts.synthesize(LONG)
    first = await anext(stream)
    first_latency = time.perf_counter() - start
    rest = await collect(stream)
    assert len(rest) + 1 >= len(split_sentences(LONG))
    assert first.duration < 0.25 * (first.duration + sum(c.duration for c in rest))
    assert first_latency < 0.5  # measured about 5-20 ms; generous for a loaded machine


@module_loop
async def test_cancel_stops_the_stream_at_once(tts: OfflineTextToSpeech) -> None:
    stream = tts.synthesize(LONG)
    await anext(stream)
    stream.cancel()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    # The worker was told to drop the rest: it is free for the next synthesis straight away.
    assert len(await collect(tts.synthesize(HELLO))) >= 1


@module_loop
async def test_cancel_from_another_task_wakes_the_consumer(tts: OfflineTextToSpeech) -> None:
    stream = tts.synthesize(LONG)
    received: list[AudioChunk] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)
            first.set()
            await asyncio.sleep(0.05)  # a consumer playing audio out more slowly than it is made

    consumer = asyncio.create_task(consume())
    await first.wait()
    stream.cancel()
    count = len(received)
    await asyncio.wait_for(consumer, 1.0)
    assert len(received) == count < len(split_sentences(LONG))


@module_loop
async def test_concurrent_syntheses_do_not_mix(tts: OfflineTextToSpeech) -> None:
    texts = [HELLO, "What are your opening hours?", LONG, "Goodbye."]
    alone = [await collect(tts.synthesize(t)) for t in texts]
    together = await asyncio.gather(*(collect(tts.synthesize(t)) for t in texts))
    for expected, got in zip(alone, together, strict=True):
        # Sentence by sentence (the last chunk is the resampler's few-ms tail).
        assert len(got) == len(expected)
        for a, b in zip(got[:-1], expected[:-1], strict=True):
            assert same_speech(a.pcm, b.pcm)


@module_loop
async def test_unknown_voice_is_a_config_error(tts: OfflineTextToSpeech) -> None:
    bad = OfflineTextToSpeech(OfflineTtsConfig(voice="xx-nonexistent"), pool=tts.pool)
    with pytest.raises(ProviderConfigError, match="xx-nonexistent"):
        await collect(bad.synthesize(HELLO))


@module_loop
async def test_dead_worker_is_a_retryable_error_and_is_replaced() -> None:
    provider = OfflineTextToSpeech()
    await provider.start()
    try:
        stream = provider.synthesize(LONG)
        await anext(stream)
        (pid,) = provider.pool.pids
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # our own worker process
        with pytest.raises(ProviderConnectionError) as failure:
            await collect(stream)
        assert failure.value.retryable
        assert len(await collect(provider.synthesize(HELLO))) >= 1
        assert provider.pool.pids != [pid]
    finally:
        await provider.aclose()


def test_sentences_split_at_terminators_and_long_ones_at_commas() -> None:
    assert split_sentences("Hi there. How are you?  Fine!") == ["Hi there.", "How are you?", "Fine!"]
    long = ", ".join(["a clause of several words"] * 12) + "."
    parts = split_sentences(long)
    assert len(parts) == 12 and " ".join(parts) == long
    assert split_sentences("   ") == []


def test_piper_needs_the_package_and_a_model() -> None:
    if piper_available():
        pytest.skip("piper is installed; this checks the configuration error without it")
    with pytest.raises(ProviderConfigError, match="piper"):
        OfflineTtsConfig(engine="piper", piper_model="voice.onnx")
