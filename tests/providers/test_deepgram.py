"""Deepgram Flux through the real deepgram-sdk websocket client, against a local fake of the listen v2 protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from sipagent.providers.base import SttEvent, SttEventKind
from sipagent.providers.deepgram import DeepgramFluxStream, DeepgramFluxStt
from sipagent.providers.errors import ProviderError, ProviderStatusError
from tests.providers.fakes.flux import FRAME, RATE, FakeFlux

pytestmark = [pytest.mark.aio,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # the SDK uses websockets.legacy

KEY = "test-key"
K = SttEventKind


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def frames(signal: np.ndarray) -> list[np.ndarray]:
    return [signal[i:i + FRAME] for i in range(0, len(signal), FRAME)]


async def collect(stream: DeepgramFluxStream, turns: int) -> list[SttEvent]:
    events: list[SttEvent] = []
    async with asyncio.timeout(5):
        async for event in stream.events():
            events.append(event)
            if sum(e.kind is K.END_OF_TURN for e in events) == turns:
                return events
    return events


def kinds(events: list[SttEvent]) -> list[SttEventKind]:
    """Event kinds with runs of PARTIAL collapsed (how many Updates arrive is the engine's business)."""
    out: list[SttEventKind] = []
    for e in events:
        if not (e.kind is K.PARTIAL and out and out[-1] is K.PARTIAL):
            out.append(e.kind)
    return out


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeFlux]:
    server = FakeFlux(transcripts=("hello there", "i need an appointment for next week please"))
    await server.start()
    yield server
    await server.stop()


def stt_for(fake: FakeFlux, key: str = KEY) -> DeepgramFluxStt:
    return DeepgramFluxStt(key, url=fake.url, backoff=(0.01, 0.05))


async def test_query_and_auth_header_seen_by_server(fake: FakeFlux) -> None:
    stream = await stt_for(fake).open("call-1")
    await stream.close()
    (conn,) = fake.connections
    assert conn.path == "/v2/listen"
    # Flux listen v2 query parameters for linear16 16 kHz with the documented thresholds.
    assert conn.query == {"model": "flux-general-en", "encoding": "linear16", "sample_rate": "16000",
                          "eot_threshold": "0.7", "eager_eot_threshold": "0.5", "eot_timeout_ms": "5000"}
    assert conn.headers["authorization"] == f"Token {KEY}"
    assert conn.control == [{"type": "CloseStream"}]


async def test_multi_turn_call_on_one_connection(fake: FakeFlux) -> None:
    # turn 1: one burst; turn 2: a burst, a pause longer than the eager silence but shorter than the end one, more.
    parts = [silence(0.3), tone(0.6), silence(1.0), tone(0.4), silence(0.3), tone(0.4), silence(1.0)]
    onsets = [0.3, 0.3 + 0.6 + 1.0]
    signal = np.concatenate(parts)
    stt = stt_for(fake)
    stream = await stt.open("call-1")
    for frame in frames(signal):
        stream.push(frame)
    events = await collect(stream, turns=2)
    await stream.close()

    assert kinds(events) == [K.START_OF_TURN, K.PARTIAL, K.EAGER_END_OF_TURN, K.FINAL, K.END_OF_TURN,
                             K.START_OF_TURN, K.PARTIAL, K.EAGER_END_OF_TURN, K.TURN_RESUMED, K.PARTIAL,
                             K.EAGER_END_OF_TURN, K.FINAL, K.END_OF_TURN]
    ends = [e for e in events if e.kind is K.END_OF_TURN]
    assert [e.text for e in ends] == ["hello there", "i need an appointment for next week please"]
    assert [e.text for e in events if e.kind is K.FINAL] == [e.text for e in ends]
    starts = [e.start for e in events if e.kind is K.START_OF_TURN]
    assert starts == pytest.approx(onsets, abs=0.02)
    assert ends[0].confidence == pytest.approx(0.9)
    assert len(fake.connections) == 1 and stream.connections == 1
    assert bytes(fake.connections[0].audio) == signal.astype("<i2").tobytes()


async def test_reconnect_delivers_audio_buffered_while_down() -> None:
    fake = FakeFlux(transcripts=("first", "second"), drop_after_frames=60, hold_reconnects=True)
    await fake.start()
    try:
        before = np.concatenate([silence(0.2), tone(0.4), silence(0.6)])  # 60 frames: turn 1 ends before the drop
        after = np.concatenate([silence(0.2), tone(0.4), silence(0.8)])
        stream = await stt_for(fake).open("call-1")
        for frame in frames(before):
            stream.push(frame)
        await fake.wait_attempts(2)  # the client saw the drop and is reconnecting; the handshake is held
        for frame in frames(after):
            stream.push(frame)  # buffered: no link right now
        fake.gate.set()
        events = await collect(stream, turns=2)
        await stream.close()
    finally:
        await fake.stop()

    pushed = np.concatenate([before, after]).astype("<i2").tobytes()
    assert len(fake.connections) == 2 and stream.connections == 2
    assert sum(len(c.audio) for c in fake.connections) == len(pushed)
    assert b"".join(bytes(c.audio) for c in fake.connections) == pushed
    assert stream.dropped_samples == 0
    ends = [e for e in events if e.kind is K.END_OF_TURN]
    assert [e.text for e in ends] == ["first", "second"]
    # Times are in the call's stream clock, not the second link's.
    starts = [e.start for e in events if e.kind is K.START_OF_TURN]
    assert starts == pytest.approx([0.2, 1.2 + 0.2], abs=0.02)


async def test_turn_cut_by_a_drop_is_not_lost() -> None:
    fake = FakeFlux(transcripts=("book me in for tuesday",), drop_after_frames=30, hold_reconnects=True)
    await fake.start()
    try:
        signal = np.concatenate([silence(0.3), tone(0.8), silence(1.0)])
        parts = frames(signal)
        stream = await stt_for(fake).open("call-1")
        for frame in parts[:30]:  # the link drops 0.3 s into the caller's turn
            stream.push(frame)
        await fake.wait_attempts(2)
        for frame in parts[30:]:
            stream.push(frame)
        fake.gate.set()
        events = await collect(stream, turns=1)
        await stream.close()
    finally:
        await fake.stop()

    assert [e.kind for e in events].count(K.START_OF_TURN) == 1
    (end,) = [e for e in events if e.kind is K.END_OF_TURN]
    assert end.text == "book me in for tuesday"
    assert end.start == pytest.approx(0.3, abs=0.02)
    # The second link heard the whole turn: its audio is a tail of the call that begins before the onset.
    pushed = signal.astype("<i2").tobytes()
    second = bytes(fake.connections[1].audio)
    assert pushed.endswith(second) and len(pushed) - len(second) <= round(0.3 * RATE) * 2


async def test_bad_key_fails_at_once_with_401(fake: FakeFlux) -> None:
    with pytest.raises(ProviderStatusError) as info:
        await stt_for(fake, key="wrong").open("call-1")
    error = info.value
    assert error.status == 401 and not error.retryable
    assert "Deepgram" in str(error) and "\n" not in str(error)
    assert fake.attempts == 1 and fake.connections == []


async def test_server_error_ends_events_with_provider_error() -> None:
    fake = FakeFlux(error_after_frames=5)
    await fake.start()
    try:
        stream = await stt_for(fake).open("call-1")
        for frame in frames(silence(0.2)):
            stream.push(frame)
        with pytest.raises(ProviderError, match="INTERNAL_SERVER_ERROR"):
            await collect(stream, turns=1)
        await stream.close()
    finally:
        await fake.stop()
