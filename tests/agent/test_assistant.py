"""The assistant agent on the offline engines, driven like a call: 20 ms frames of caller audio (espeak speech made
by our TTS, and silence) on a virtual media clock, with a pacer that pops the speech buffer once per frame. The
oracles are the script file's texts and independent syntheses of them; nothing waits on the wall clock except for
the engines' answers."""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from rtp.jitter import FrameStatus
from sipagent.agent.assistant import (
    DEFAULT_SCRIPT,
    AssistantAgent,
    AssistantConfig,
    AssistantFactory,
    Message,
    SentenceCutter,
)
from sipagent.agent.base import CallContext
from sipagent.agent.turns import TurnConfig
from sipagent.log import get_logger
from sipagent.media import FRAME_SAMPLES, SpeechBuffer
from sipagent.providers.offline.tts import OfflineTextToSpeech
from sipagent.providers.offline.worker import WorkerPool

pytestmark = pytest.mark.aio
module_loop = pytest.mark.asyncio(loop_scope="module")

SCRIPT = tomllib.loads(DEFAULT_SCRIPT.read_text(encoding="utf-8"))
ANSWERS = {intent["name"]: intent["answer"] for intent in SCRIPT["intents"]}
FRAME_S = FRAME_SAMPLES / 16000
LOUD = 328  # -40 dBFS: where synthesized speech starts and ends


class Engines:
    def __init__(self, factory: AssistantFactory, tts: OfflineTextToSpeech) -> None:
        self.factory, self.tts = factory, tts
        self._audio: dict[str, np.ndarray] = {}

    async def speak(self, text: str) -> np.ndarray:
        """An independent synthesis (a fresh TTS session, as the agent makes one per sentence)."""
        if text not in self._audio:
            self._audio[text] = np.concatenate([c.pcm async for c in self.tts.synthesize(text)])
        return self._audio[text]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines() -> AsyncIterator[Engines]:
    pool = WorkerPool(1, warm=[("sphinx", {"options": ()}), ("espeak", {"voice": "en-us", "rate": 165})])
    factory = AssistantFactory(AssistantConfig(turns=TurnConfig(max_call_s=None)), pool=pool)
    await factory.start()
    yield Engines(factory, OfflineTextToSpeech(pool=pool))
    await factory.aclose()
    await pool.aclose()


class WatchedBuffer(SpeechBuffer):
    def __init__(self, on_push: Callable[[], None]) -> None:
        super().__init__()
        self._on_push = on_push

    def push(self, pcm: np.ndarray) -> None:
        super().push(pcm)
        self._on_push()


class Call:
    """A fake call: a real SpeechBuffer, a virtual 20 ms media clock and a pacer that pops one frame per tick.

    The clock behaves as on a machine with infinitely fast engines: it stops while the pacer has nothing to send
    but the agent is still synthesizing what it must say, so virtual time never runs ahead of the TTS."""

    def __init__(self, engines: Engines) -> None:
        self.speech = WatchedBuffer(lambda: self.changed.set())
        self.now = 100.0
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.heard: list[np.ndarray] = []  # agent frames that went out, in order
        self.hangups: list[int] = []  # len(speech) at each hangup
        self.changed = asyncio.Event()
        self.in_on_audio = False
        context = CallContext(call_id="call-test", caller="sip:caller@127.0.0.1", called="sip:agent@127.0.0.1",
                              speech=self.speech, hangup=self._hangup, transfer=lambda uri: None,
                              log=get_logger(call_id="call-test"), timeline=self._timeline)
        f = engines.factory
        self.agent = AssistantAgent(context, f.stt, f.tts, f.script, f.config, clock=lambda: self.now)
        self.task = asyncio.create_task(self.agent.run())

    def _timeline(self, kind: str, **fields: Any) -> None:
        # Each entry also notes the media clock, how many agent frames had gone out, what was still queued, and
        # whether it was made during an on_audio call (the loop-side lane) or from the agent's tasks.
        self.entries.append((kind, dict(fields, t=self.now, heard=len(self.heard), in_on_audio=self.in_on_audio,
                                        buffered_ms=self.speech.buffered_ms)))
        self.changed.set()

    def _hangup(self) -> None:
        self.hangups.append(len(self.speech))

    def find(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [f for k, f in self.entries if k == kind and all(f.get(key) == v for key, v in match.items())]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait (without advancing the media clock) until the agent's async work makes ``predicate`` true."""
        async with asyncio.timeout(10):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def play(self, audio: np.ndarray | None = None, *, seconds: float = 0.0,
                   until: Callable[[], bool] | None = None, limit_s: float = 30.0) -> None:
        """Tick frames of caller ``audio`` (or silence for ``seconds``, or until ``until()``): each tick the pacer
        sends one agent frame and the agent gets one caller frame; the loop runs between ticks."""
        frames = [] if audio is None else list(audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, 320))
        silence = np.zeros(FRAME_SAMPLES, np.int16)
        ticks = 0
        async with asyncio.timeout(10):
            while True:
                if ticks < len(frames):
                    frame = frames[ticks]
                elif until is None and ticks * FRAME_S >= seconds - 1e-9:
                    return
                elif until is not None and until():
                    return
                else:
                    frame = silence
                    assert ticks * FRAME_S < limit_s, "the awaited condition never came"
                while not len(self.speech) and self.agent.synthesizing:
                    self.changed.clear()
                    await self.changed.wait()
                self.now += FRAME_S
                out = self.speech.pop()
                if out is not None:
                    self.heard.append(out)
                self.in_on_audio = True
                self.agent.on_audio(frame, self.now, FrameStatus.NORMAL)
                self.in_on_audio = False
                ticks += 1
                await asyncio.sleep(0)  # let recognizer and synthesizer replies in, as between real ticks

    def heard_audio(self, start: int = 0, end: int | None = None) -> np.ndarray:
        frames = self.heard[start:end]
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    async def close(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def with_pauses(speech: np.ndarray, before: float = 0.3, after: float = 0.0) -> np.ndarray:
    loud = np.flatnonzero(np.abs(speech) > LOUD)
    trimmed = speech[loud[0] : loud[-1] + 1]
    return np.concatenate([np.zeros(round(before * 16000), np.int16), trimmed, np.zeros(round(after * 16000),
                                                                                        np.int16)])


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


async def expected_audio(engines: Engines, text: str) -> np.ndarray:
    return np.concatenate([await engines.speak(s) for s in sentences(text)])


def envelope(audio: np.ndarray) -> np.ndarray:
    frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES).astype(np.float64)
    return np.sqrt((frames**2).mean(axis=1))


def sounds_like(heard: np.ndarray, expected: np.ndarray) -> bool:
    """Same speech: espeak-ng is not bit-exact from one synthesis to the next (a few samples of length, slight
    waveform changes), so compare durations (the pacer pads the last frame) and 20 ms loudness envelopes."""
    if not -FRAME_SAMPLES <= len(heard) - len(expected) <= 2 * FRAME_SAMPLES:
        return False
    a, b = envelope(heard), envelope(expected)
    n = min(len(a), len(b))
    return bool(np.corrcoef(a[:n], b[:n])[0, 1] > 0.95)


@module_loop
async def test_greets_first_then_answers_the_opening_hours(engines: Engines) -> None:
    call = Call(engines)
    try:
        await call.wait_for(lambda: bool(call.find("first_tts_audio")))
        assert call.entries[0] == ("reply_start", call.entries[0][1])
        assert call.entries[0][1]["line"] == "greeting" and call.entries[0][1]["text"] == SCRIPT["greeting"]
        await call.play(until=lambda: bool(call.find("reply_end", turn_id=1)))
        # What went out first is the greeting, sentence by sentence, as an independent synthesis makes it.
        greeting = await expected_audio(engines, SCRIPT["greeting"])
        assert sounds_like(call.heard_audio(), greeting)
        assert not sounds_like(call.heard_audio(), await expected_audio(engines, SCRIPT["reprompt"]))

        question = await engines.speak("What are your opening hours?")
        await call.play(with_pauses(question, after=1.0))  # the recognizer ends a turn after 0.5 s of silence
        await call.wait_for(lambda: bool(call.find("end_of_turn")))
        start = call.find("reply_start", caller="what are your opening hours")[0]
        assert start["text"] == ANSWERS["opening_hours"] and start["intent"] == "opening_hours"
        await call.wait_for(lambda: bool(call.find("first_tts_audio", turn_id=start["turn_id"])))
        first = call.find("first_tts_audio", turn_id=start["turn_id"])[0]
        await call.play(until=lambda: bool(call.find("reply_end", turn_id=start["turn_id"])))
        answer = await expected_audio(engines, ANSWERS["opening_hours"])
        assert sounds_like(call.heard_audio(first["heard"]), answer)
        assert call.agent.history[-2:] == [Message("caller", "what are your opening hours"),
                                           Message("agent", ANSWERS["opening_hours"])]
        assert call.find("end_of_turn", text="what are your opening hours")
        assert not call.find("barge_in") and call.hangups == []
    finally:
        await call.close()


@module_loop
async def test_barge_in_during_the_greeting_flushes_at_once_and_keeps_only_what_was_heard(engines: Engines) -> None:
    call = Call(engines)
    try:
        await call.wait_for(lambda: bool(call.find("first_tts_audio")))
        await call.play(seconds=0.6)
        assert len(call.speech) > 0  # the greeting is still playing
        question = with_pauses(await engines.speak("What are your opening hours?"), before=0.0, after=1.0)
        voice_at = call.now + np.flatnonzero(np.abs(question) > LOUD)[0] / 16000
        await call.play(question)
        barge = call.find("barge_in")
        assert len(barge) == 1 and barge[0]["turn_id"] == 1
        # Flushed inside the very on_audio call that decided: nothing of the greeting was left to send.
        assert barge[0]["in_on_audio"] and barge[0]["buffered_ms"] == 0
        # Decided min_barge_in_ms (120 ms) after the voice began, give or take a frame of VAD alignment.
        assert 0.10 <= barge[0]["t"] - voice_at <= 0.16
        assert barge[0]["flushed_ms"] > 1000  # most of the greeting was still queued
        # Nothing of the greeting went out after the decision (the pacer had no frame left to send).
        assert len(call.heard) == barge[0]["heard"]
        heard = call.find("reply_text_heard", turn_id=1)[0]
        words, full = heard["text"].split(), SCRIPT["greeting"].split()
        assert 0 < len(words) < len(sentences(SCRIPT["greeting"])[0].split()) and words == full[: len(words)]
        assert Message("agent", heard["text"], interrupted=True) in call.agent.history
        # The interruption was a turn of its own and is answered.
        await call.wait_for(lambda: bool(call.find("reply_start", caller="what are your opening hours")))
        assert call.find("reply_start", caller="what are your opening hours")[0]["text"] == ANSWERS["opening_hours"]
    finally:
        await call.close()


@module_loop
async def test_goodbye_hangs_up_after_the_goodbye_has_played_out(engines: Engines) -> None:
    call = Call(engines)
    try:
        await call.wait_for(lambda: bool(call.find("first_tts_audio")))
        await call.play(until=lambda: bool(call.find("reply_end", turn_id=1)))
        await call.play(with_pauses(await engines.speak("Goodbye."), after=1.0))
        await call.wait_for(lambda: bool(call.find("end_of_turn")))
        await call.play(until=lambda: bool(call.hangups), limit_s=20)
        start = call.find("reply_start", caller="goodbye")[0]
        assert start["text"] == ANSWERS["goodbye"] and start["action"] == "hangup"
        # BYE only once the whole goodbye was sent: the buffer was empty and every sample of it went out.
        assert call.hangups == [0]
        first = call.find("first_tts_audio", turn_id=start["turn_id"])[0]
        assert sounds_like(call.heard_audio(first["heard"]), await expected_audio(engines, ANSWERS["goodbye"]))
        kinds = [k for k, f in call.entries if f.get("turn_id") == start["turn_id"] or k == "hangup"]
        assert kinds == ["reply_start", "first_tts_audio", "reply_end", "hangup"]
        async with asyncio.timeout(5):
            await call.task  # the agent's run ends with the call
    finally:
        if not call.task.done():
            await call.close()


@module_loop
async def test_operator_digit_without_an_operator_says_so(engines: Engines) -> None:
    call = Call(engines)
    try:
        await call.wait_for(lambda: bool(call.find("first_tts_audio")))
        await call.play(seconds=0.2)
        call.agent.on_dtmf("0", call.now)
        assert len(call.speech) == 0  # the greeting stops at once
        await call.wait_for(lambda: bool(call.find("first_tts_audio", turn_id=2)))
        assert call.find("reply_start", turn_id=2)[0]["text"] == SCRIPT["no_operator"]
    finally:
        await call.close()


def test_sentence_cutter_emits_each_sentence_as_soon_as_it_is_complete() -> None:
    cutter = SentenceCutter()
    assert cutter.push("Hello there") == []
    assert cutter.push(". We open at 9.") == ["Hello there."]  # cut once white space follows the full stop
    assert cutter.push("30 tomorrow! Ask Dr. Smith") == ["We open at 9.30 tomorrow!"]
    assert cutter.push("? Yes. ") == ["Ask Dr. Smith?", "Yes."]
    assert cutter.flush() == []
    long = "word " * 30 + "then, a clause " + "more " * 40
    pieces = cutter.push(long) + cutter.flush()
    assert " ".join(pieces) == " ".join(long.split()) and all(len(p) <= 240 for p in pieces)
    assert pieces[0].endswith("then,")
