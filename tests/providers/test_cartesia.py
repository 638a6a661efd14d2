"""Cartesia TTS through the real cartesia SDK websocket connection, against a local fake of its protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from rtp.g711 import ulaw_decode_array
from sipagent.providers.base import AudioChunk
from sipagent.providers.cartesia import CartesiaEncoding, CartesiaTts, CartesiaTtsStream
from sipagent.providers.errors import ProviderConnectionError, ProviderStatusError
from tests.providers.fakes.cartesia import TONE_HZ, FakeCartesia

pytestmark = pytest.mark.aio

KEY = "test-key"
VOICE = "voice-1234"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCartesia]:
    server = FakeCartesia()
    await server.start()
    yield server
    await server.stop()


def tts_for(fake: FakeCartesia, *, key: str = KEY, encoding: CartesiaEncoding = "pcm_mulaw", sample_rate: int = 8000,
            add_timestamps: bool = False) -> CartesiaTts:
    return CartesiaTts(key, url=fake.url, model_id="sonic-3", voice_id=VOICE, encoding=encoding,
                       sample_rate=sample_rate, add_timestamps=add_timestamps)


async def drain(stream: CartesiaTtsStream) -> list[AudioChunk]:
    async with asyncio.timeout(5):
        return [chunk async for chunk in stream]


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


async def test_streamed_text_in_one_context_gives_mulaw_8k(fake: FakeCartesia) -> None:
    tts = tts_for(fake, add_timestamps=True)
    try:
        reply = tts.reply()
        pieces = ["Hello there, ", "how can I help ", "you today?"]
        for piece in pieces:
            await reply.push(piece)
        await reply.finish()
        chunks = await drain(reply)
    finally:
        await tts.aclose()

    path, headers = fake.handshakes[0]
    assert path == "/tts/websocket"
    assert headers["authorization"] == f"Bearer {KEY}" and "cartesia-version" in headers
    context = fake.contexts[reply.context_id]
    assert list(fake.contexts) == [reply.context_id]
    assert [r["transcript"] for r in context.requests] == [*pieces, ""]
    assert [r["continue"] for r in context.requests] == [True, True, True, False]
    first = context.requests[0]
    assert first["model_id"] == "sonic-3" and first["voice"]["id"] == VOICE
    assert first["output_format"] == {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}

    assert chunks and all(c.encoding == "mulaw" and c.sample_rate == 8000 and c.pcm.dtype == np.uint8 for c in chunks)
    delivered = np.concatenate([c.pcm for c in chunks])
    assert delivered.tobytes() == bytes(context.audio)
    assert reply.samples == len(delivered)
    assert dominant_hz(ulaw_decode_array(delivered), 8000) == pytest.approx(TONE_HZ, abs=8000 / len(delivered) * 2)

    text = "".join(pieces)
    assert [w.word for w in reply.words] == text.split()
    assert all(a.end <= b.start for a, b in zip(reply.words, reply.words[1:], strict=False))
    assert reply.heard(reply.words[1].end) == "Hello there,"
    assert reply.heard(0.0) == ""


async def test_synthesize_pcm16_and_link_shared_between_replies(fake: FakeCartesia) -> None:
    tts = tts_for(fake, encoding="pcm_s16le", sample_rate=16000)
    assert tts.capabilities.encoding == "pcm16" and tts.capabilities.sample_rate == 16000
    try:
        first = tts.synthesize("Thanks for calling.")
        second = tts.synthesize("Goodbye.")
        chunks = await drain(first) + await drain(second)
    finally:
        await tts.aclose()

    assert tts.connections == 1 and len(fake.handshakes) == 1
    assert all(c.encoding == "pcm16" and c.sample_rate == 16000 and c.pcm.dtype == np.int16 for c in chunks)
    expected = bytes(fake.contexts[first.context_id].audio) + bytes(fake.contexts[second.context_id].audio)
    assert np.concatenate([c.pcm for c in chunks]).astype("<i2").tobytes() == expected
    assert [r["continue"] for r in fake.contexts[first.context_id].requests] == [False]


async def test_cancel_sends_cancel_and_stops_chunks() -> None:
    fake = FakeCartesia(chunk_delay=0.005)
    await fake.start()
    tts = tts_for(fake)
    try:
        reply = tts.synthesize("This is a long answer that the caller interrupts. " * 4)
        async with asyncio.timeout(5):
            await reply.__anext__()
            reply.cancel()
            with pytest.raises(StopAsyncIteration):
                await reply.__anext__()
            await fake.cancel_received.wait()
        context = fake.contexts[reply.context_id]
        assert context.cancelled and not context.done
        # The link stays usable for the next reply, and the cancelled context sent nothing after the cancel.
        after_cancel = context.chunks_sent
        chunks = await drain(tts.synthesize("Yes?"))
        assert chunks and context.chunks_sent == after_cancel < context.chunks_planned
        assert tts.connections == 1
    finally:
        await tts.aclose()
        await fake.stop()


async def test_error_message_raises_provider_error(fake: FakeCartesia) -> None:
    tts = tts_for(fake)
    try:
        with pytest.raises(ProviderStatusError) as info:
            await drain(tts.synthesize("please TRIGGER-ERROR now"))
        assert info.value.status == 400 and not info.value.retryable
        assert "Cartesia" in str(info.value) and "scripted failure" in str(info.value)
        assert await drain(tts.synthesize("Still here.")), "the link survives a context error"
    finally:
        await tts.aclose()


async def test_bad_key_is_a_401_status_error(fake: FakeCartesia) -> None:
    tts = tts_for(fake, key="wrong")
    try:
        with pytest.raises(ProviderStatusError) as info:
            await drain(tts.synthesize("Hello."))
    finally:
        await tts.aclose()
    assert info.value.status == 401 and not info.value.retryable
    assert "Cartesia" in str(info.value) and "\n" not in str(info.value)


async def test_dropped_link_fails_the_reply_and_next_reply_reconnects() -> None:
    fake = FakeCartesia(drop_after_messages=3)
    await fake.start()
    tts = tts_for(fake)
    try:
        with pytest.raises(ProviderConnectionError) as info:
            await drain(tts.synthesize("A reply long enough to need several chunks."))
        assert info.value.retryable
        fake.drop_after_messages = None
        assert await drain(tts.synthesize("Hello again."))
        assert tts.connections == 2 and len(fake.handshakes) == 2
    finally:
        await tts.aclose()
        await fake.stop()
