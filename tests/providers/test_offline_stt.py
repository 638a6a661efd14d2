"""Offline STT (pocketsphinx in worker processes): TTS -> STT round trips, with and without a G.711 leg, turn
events and their timing, two calls at once, and proof that the decoding stays off the event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from rtp.g711 import ulaw_decode_array, ulaw_encode_array
from rtp.resample import StreamResampler
from sipagent.providers.base import SttEvent, SttEventKind
from sipagent.providers.offline.stt import OfflineSpeechToText, SphinxSttConfig, build_grammar, normalize
from sipagent.providers.offline.tts import OfflineTextToSpeech
from sipagent.providers.offline.worker import WorkerPool

pytestmark = pytest.mark.aio
module_loop = pytest.mark.asyncio(loop_scope="module")

# An agent script's intents.
PHRASES = (
    "hello",
    "yes",
    "no",
    "goodbye",
    "what are your opening hours",
    "i would like to book an appointment",
    "i want to cancel my appointment",
    "talk to a human",
    "where are you located",
    "can i speak to someone",
)
LEAD_S = 0.5
HAS_PROC = Path("/proc/self/stat").exists()
TRAIL_S = 1.0


class Engines:
    def __init__(self, pool: WorkerPool, stt: OfflineSpeechToText, tts: OfflineTextToSpeech) -> None:
        self.pool, self.stt, self.tts = pool, stt, tts
        self._audio: dict[str, np.ndarray] = {}

    async def speak(self, text: str) -> np.ndarray:
        if text not in self._audio:
            self._audio[text] = np.concatenate([c.pcm async for c in self.tts.synthesize(text)])
        return self._audio[text]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines() -> AsyncIterator[Engines]:
    # One pool for both engines, as a deployment would share it; two workers so two calls decode in parallel.
    pool = WorkerPool(2, warm=[("sphinx", {"options": ()}), ("espeak", {"voice": "en-us", "rate": 165})])
    stt = OfflineSpeechToText(SphinxSttConfig(phrases=PHRASES), pool=pool)
    tts = OfflineTextToSpeech(pool=pool)
    await pool.start()
    yield Engines(pool, stt, tts)
    await pool.aclose()


def g711_round_trip(pcm16k: np.ndarray) -> np.ndarray:
    """What the far end of a phone call hears: 16 -> 8 kHz, mu-law encode and decode, 8 -> 16 kHz."""
    narrow = StreamResampler(16000, 8000).process(pcm16k)
    return StreamResampler(8000, 16000).process(ulaw_decode_array(ulaw_encode_array(narrow)))


def framed(speech: np.ndarray) -> np.ndarray:
    signal = np.concatenate([np.zeros(round(LEAD_S * 16000), np.int16), speech,
                             np.zeros(round(TRAIL_S * 16000), np.int16)])
    return signal[: len(signal) // 320 * 320].reshape(-1, 320)


async def recognize(stt: OfflineSpeechToText, speech: np.ndarray, call_id: str) -> list[SttEvent]:
    """Push the speech in 20 ms frames (yielding to the loop every 100 ms) and collect one turn's events."""
    stream = await stt.open(call_id)
    events: list[SttEvent] = []

    async def feed() -> None:
        for i, frame in enumerate(framed(speech)):
            stream.push(frame)
            if i % 5 == 4:
                await asyncio.sleep(0)

    async def read() -> None:
        async for event in stream.events():
            events.append(event)
            if event.kind is SttEventKind.END_OF_TURN:
                return

    try:
        async with asyncio.timeout(10):
            await asyncio.gather(feed(), read())
    finally:
        await stream.close()
    return events


def final_text(events: list[SttEvent]) -> str | None:
    finals = [e.text for e in events if e.kind is SttEventKind.FINAL]
    return finals[-1] if finals else None


@module_loop
@pytest.mark.parametrize("channel", ["wideband", "g711"])
@pytest.mark.parametrize("phrase", ["what are your opening hours", "i would like to book an appointment",
                                    "talk to a human", "where are you located", "hello", "goodbye"])
async def test_round_trip_recognizes_the_spoken_phrase(engines: Engines, phrase: str, channel: str) -> None:
    speech = await engines.speak(phrase.capitalize() + ".")
    if channel == "g711":
        speech = g711_round_trip(speech)
    events = await recognize(engines.stt, speech, f"call-{phrase}-{channel}")
    assert final_text(events) == phrase
    assert events[-1].kind is SttEventKind.END_OF_TURN and events[-1].text == phrase


@module_loop
async def test_turn_events_come_in_order_with_audio_timestamps(engines: Engines) -> None:
    speech = await engines.speak("I want to cancel my appointment.")
    events = await recognize(engines.stt, speech, "call-order")
    kinds = [e.kind for e in events]
    assert kinds[0] is SttEventKind.START_OF_TURN
    assert kinds[-2:] == [SttEventKind.FINAL, SttEventKind.END_OF_TURN]
    assert set(kinds[1:-2]) <= {SttEventKind.PARTIAL, SttEventKind.EAGER_END_OF_TURN}
    assert SttEventKind.PARTIAL in kinds
    # Oracle for the speech boundaries: the first and last samples of the synthesized audio above -40 dBFS.
    loud = np.flatnonzero(np.abs(speech) > 328)
    onset, offset = LEAD_S + loud[0] / 16000, LEAD_S + (loud[-1] + 1) / 16000
    assert events[0].start == pytest.approx(onset, abs=0.06)
    end = events[-1]
    assert end.start == events[0].start
    # webrtcvad keeps flagging ~100 ms after speech stops (see agent/vad.py).
    assert offset - 0.06 <= end.end <= offset + 0.2
    partial_ends = [e.end for e in events if e.kind is SttEventKind.PARTIAL]
    assert partial_ends == sorted(partial_ends)


@module_loop
async def test_eager_end_of_turn_comes_before_the_end_and_is_dated_at_the_speech_end(engines: Engines) -> None:
    events = await recognize(engines.stt, await engines.speak("Talk to a human."), "call-eager")
    eager = [e for e in events if e.kind is SttEventKind.EAGER_END_OF_TURN]
    assert len(eager) == 1 and events.index(eager[0]) < len(events) - 2
    assert eager[0].text == "talk to a human"
    # Sent after eager_end_ms (200 ms) of silence, the end after end_ms (500 ms); both dated at the speech end.
    assert eager[0].end == pytest.approx(events[-1].end, abs=0.021)


def trimmed(speech: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(speech) > 328)
    return speech[loud[0] : loud[-1] + 1]


@module_loop
async def test_a_pause_between_eager_and_end_resumes_the_same_turn(engines: Engines) -> None:
    # 400 ms of silence: longer than eager_end_ms (200 ms) plus webrtcvad's ~100 ms hangover, shorter than end_ms
    # (500 ms) plus that hangover, so the caller pauses, the stream guesses the end, and the caller goes on.
    first, second = trimmed(await engines.speak("Talk to a human.")), trimmed(await engines.speak("Yes."))
    speech = np.concatenate([first, np.zeros(6400, np.int16), second])
    stt = OfflineSpeechToText(SphinxSttConfig(phrases=PHRASES, open_vocabulary_fallback=False), pool=engines.pool)
    events = await recognize(stt, speech, "call-resume")
    kinds = [e.kind for e in events]
    assert kinds.count(SttEventKind.START_OF_TURN) == 1 and kinds.count(SttEventKind.END_OF_TURN) == 1
    eager, resumed = kinds.index(SttEventKind.EAGER_END_OF_TURN), kinds.index(SttEventKind.TURN_RESUMED)
    assert 0 < eager < resumed < kinds.index(SttEventKind.END_OF_TURN)
    assert events[eager].text == "talk to a human"
    assert events[-1].end > LEAD_S + (len(first) + 6400) / 16000  # the turn runs to the end of the second part


@module_loop
async def test_out_of_grammar_speech_falls_back_to_open_vocabulary(engines: Engines) -> None:
    sentence = "can you repeat that please"
    events = await recognize(engines.stt, await engines.speak("Can you repeat that, please?"), "call-oog")
    text = final_text(events)
    assert text is not None and text not in PHRASES
    assert len(set(text.split()) & set(sentence.split())) >= 3


@module_loop
async def test_two_calls_decode_at_once_without_cross_talk(engines: Engines) -> None:
    first, second = "where are you located", "i would like to book an appointment"
    results = await asyncio.gather(
        recognize(engines.stt, await engines.speak(first), "call-a"),
        recognize(engines.stt, await engines.speak(second), "call-b"),
    )
    assert [final_text(r) for r in results] == [first, second]


@module_loop
async def test_unknown_words_leave_their_phrase_out(engines: Engines) -> None:
    stt = OfflineSpeechToText(SphinxSttConfig(phrases=("talk to a human", "zzyzx qwerty")), pool=engines.pool)
    events = await recognize(stt, await engines.speak("Talk to a human."), "call-oov")
    assert final_text(events) == "talk to a human"


@module_loop
async def test_close_ends_the_event_iterator(engines: Engines) -> None:
    stream = await engines.stt.open("call-close")
    reader = asyncio.create_task(anext(stream.events(), None))
    await stream.close()
    assert await asyncio.wait_for(reader, 1.0) is None


def cpu_seconds(pid: int) -> float:
    # utime + stime of a process we started, from /proc (fields 14 and 15, in clock ticks).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@module_loop
@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to measure the workers' CPU time")
async def test_decoding_and_synthesis_never_stall_the_loop(engines: Engines) -> None:
    loop = asyncio.get_running_loop()
    texts = ("The weather is nice today.", "What are your opening hours?", "I would like to book an appointment.")
    speeches = [await engines.speak(t) for t in texts]
    pids = [pid for pid in engines.pool.pids if pid is not None]
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    lags: list[float] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            start = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - start - 0.005)

    async def synthesize() -> None:
        for _ in range(3):
            async for _chunk in engines.tts.synthesize(" ".join(["Thanks for calling, how may I help you?"] * 8)):
                pass

    watcher = asyncio.create_task(monitor())
    try:
        results = await asyncio.gather(
            synthesize(), *(recognize(engines.stt, s, f"call-stall-{i}") for i, s in enumerate(speeches)))
    finally:
        done.set()
        await watcher
    worker_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    assert [final_text(r) for r in results[2:]] == [normalize(t) for t in texts[1:]]
    # The workers did far more than a stall's worth of CPU work (the open-vocabulary pass alone is ~0.5 s), while
    # the loop never waited more than a scheduler hiccup beyond its 5 ms sleeps.
    assert worker_cpu > 0.2
    assert len(lags) > 50
    assert max(lags) < 0.015, f"loop stalled {max(lags) * 1000:.1f} ms"


def test_grammar_is_jsgf_with_optional_fillers() -> None:
    plain = build_grammar(["hello", "goodbye"], [])
    assert "public <utterance> = hello | goodbye;" in plain and plain.startswith("#JSGF V1.0;")
    with_fillers = build_grammar(["hello"], ["um", "please"])
    assert "<filler> = um | please;" in with_fillers
    assert "public <utterance> = [<filler>] (hello) [<filler>];" in with_fillers


def test_phrases_are_normalized_to_dictionary_words() -> None:
    assert normalize("  What are YOUR opening-hours?! ") == "what are your opening hours"
    assert normalize("That's all, 24/7.") == "that's all"
