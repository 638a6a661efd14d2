"""Whole calls to the default offline assistant, with baresip as the caller over real SIP and RTP on loopback.

The caller's voice is the offline TTS saying a question (16 kHz, taken down to the 8 kHz of baresip's WAV
microphone with ``rtp.resample.StreamResampler``); what the caller heard is baresip's decoded recording. The
oracle for "which line did the agent say" is a fresh synthesis of that line's text: espeak-ng output is
deterministic, so the line comes back through G.711 and two resamplers as a waveform whose normalised
cross-correlation with the synthesis is far above that of any other line (see :func:`locate`).

Timelines. baresip's microphone (and its ``enc`` recording, what it sent) starts when the call's media starts
(the 200 OK); its ``dec`` recording holds the packets it received, in arrival order, from the first one we sent,
which the endpoint sends from the moment it answers. So sample n of either file is n/8000 s after the start of
the call, up to the few milliseconds between our answer and baresip's media start on loopback: the barge-in test
aligns them there, and bounds that offset from the recordings' lengths (see there).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from rtp.resample import StreamResampler
from sipagent.agent.assistant import DEFAULT_SCRIPT, AssistantAgent, AssistantFactory
from sipagent.agent.base import CallContext
from sipagent.agent.script import Script
from sipagent.media import Pcm
from sipagent.providers.offline.tts import OfflineTextToSpeech
from sipagent.sip.events import CallEnded
from tests.conftest import require_tool
from tests.interop.endpoint import WatchedEndpoint, endpoint_settings
from tests.interop.peers import FRAME, RATE, Baresip, read_wav, write_wav

pytestmark = pytest.mark.e2e
module_loop = pytest.mark.asyncio(loop_scope="module")

SCRIPT = Script.load(DEFAULT_SCRIPT)
QUESTION = "What are your opening hours?"
OPENING_HOURS = next(i.answer for i in SCRIPT.intents if i.name == "opening_hours")
SPEECH_DB = -40.0  # dBFS per 20 ms frame: espeak's voiced frames sit near -20, G.711 idle noise below -60


# -- signals ---------------------------------------------------------------------------------------------------


async def speak(tts: OfflineTextToSpeech, text: str) -> Pcm:
    """``text`` as the telephone carries it: the offline TTS at 16 kHz, resampled to 8 kHz."""
    wide = np.concatenate([chunk.pcm async for chunk in tts.synthesize(text)]).astype(np.int16)
    return StreamResampler(16000, RATE).process(wide)


def silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * RATE), np.int16)


def frame_db(pcm: Pcm) -> np.ndarray:
    """Level of each whole 20 ms frame in dBFS."""
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    rms = np.sqrt((frames**2).mean(axis=1))
    db: np.ndarray = 20 * np.log10(np.maximum(rms, 1e-3) / 32768)
    return db


def voiced_s(line: Pcm) -> float:
    """Length of a synthesized line up to the end of its last voiced frame (it ends with a little silence)."""
    return float((np.flatnonzero(frame_db(line) > SPEECH_DB)[-1] + 1) * FRAME / RATE)


def locate(reference: Pcm, heard: Pcm, start: int = 0, stop: int | None = None) -> tuple[float, int]:
    """Where ``reference`` best sits in ``heard`` beginning between samples ``start`` and ``stop``: the peak
    normalised cross-correlation (each candidate window of ``heard`` normalised by its own energy, so the rest of
    the recording does not dilute it) and that position in samples."""
    stop = len(heard) if stop is None else min(stop, len(heard))
    a = reference.astype(np.float64)
    b = np.concatenate([heard[max(start, 0): stop + len(a)].astype(np.float64), np.zeros(len(a))])
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xcorr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: len(b) - len(a) + 1]
    energy = np.concatenate([[0.0], np.cumsum(b**2)])
    window = np.sqrt(np.maximum(energy[len(a):] - energy[: len(energy) - len(a)], 1e-9))
    scores = np.abs(xcorr) / (np.linalg.norm(a) * window)
    scores[window < 1e-3 * np.linalg.norm(a)] = 0  # a silent window has no meaningful correlation
    best = int(np.argmax(scores))
    return float(scores[best]), max(start, 0) + best


def match(line: Pcm, heard: Pcm, start: int = 0, stop: int | None = None) -> tuple[float, float]:
    """How well ``heard`` holds ``line`` played once, beginning between ``start`` and ``stop``, and where (s).

    The line is compared in half-second pieces, each found within 10 ms of where the previous one ended: the
    jitter buffers on the way may stretch or shrink a gap by a few samples, which would ruin one correlation
    over the whole line while every piece still matches. The score is the median piece's: above 0.5 for the
    line itself, below 0.3 for any other line of the same voice (measured: 0.05-0.28)."""
    piece, slack = RATE // 2, RATE // 100
    scores = []
    score, at = locate(line[:piece], heard, start, stop)
    first = position = at
    for offset in range(0, len(line) - piece + 1, piece):
        if offset:
            score, at = locate(line[offset: offset + piece], heard, position - slack, position + slack)
        scores.append(score)
        position = at + piece
    return float(np.median(scores)), first / RATE


# -- the call --------------------------------------------------------------------------------------------------


class KeepingFactory:
    """The endpoint's own assistant factory, keeping each agent it builds so a test can read its history."""

    def __init__(self, inner: AssistantFactory) -> None:
        self.inner = inner
        self.agents: list[AssistantAgent] = []

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __call__(self, context: CallContext) -> AssistantAgent:
        self.agents.append(self.inner(context))
        return self.agents[-1]


@dataclass(frozen=True, slots=True)
class CallResult:
    heard: Pcm
    said: Pcm
    log: str
    ended: list[CallEnded]
    agent: AssistantAgent


@contextlib.asynccontextmanager
async def assistant_endpoint(**agent: Any) -> AsyncIterator[WatchedEndpoint]:
    """Our endpoint on 127.0.0.1 running the built-in ``assistant`` agent, which it builds from the settings."""
    ep = WatchedEndpoint(endpoint_settings(agent={"name": "assistant", **agent}))
    assert isinstance(ep.agent_factory, AssistantFactory)
    ep.agent_factory = KeepingFactory(ep.agent_factory)
    async with ep:
        await ep.ready()
        yield ep


async def call(ep: WatchedEndpoint, directory: Path, mic: Pcm, *, dtmf: str | None = None,
               within: float = 40.0) -> CallResult:
    """baresip dials ``ep`` with ``mic`` as its microphone and hangs up when the file ends (or is hung up on)."""
    wav = write_wav(directory / "mic.wav", mic)
    earlier = len(ep.seen(CallEnded))
    async with Baresip(directory / "baresip", wav_in=wav, dial=f"sip:assistant@127.0.0.1:{ep.sip_port}") as phone:
        await phone.wait_for_log(r"Call established", 5.0)
        if dtmf is not None:
            # A console key presses the key: baresip sends RFC 4733 updates of a held key until the release
            # (baresip's KEYCODE_REL, 0x04) makes it send the event's end packets (§2.5.1.4).
            await phone.command(dtmf)
            await phone.command("\x04")
        await phone.wait_for_log(r"terminated", within)
        await ep.settled()
        log = phone.log
        recordings = phone.recordings()
        assert len(recordings.decoded) == 1 and len(recordings.encoded) == 1, (recordings, log[-2000:])
        rate, heard = read_wav(recordings.decoded[0])
        rate_out, said = read_wav(recordings.encoded[0])
    assert rate == rate_out == RATE
    keeping = ep.agent_factory
    assert isinstance(keeping, KeepingFactory)
    return CallResult(heard, said, log, ep.seen(CallEnded)[earlier:], keeping.agents[-1])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def endpoint() -> AsyncIterator[WatchedEndpoint]:
    require_tool("baresip")
    # No reprompt may interfere with tests 1, 2 and 4: the longest of them lasts ~15 s.
    async with assistant_endpoint(reprompt_s=60.0) as ep:
        yield ep


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tts(endpoint: WatchedEndpoint) -> OfflineTextToSpeech:
    keeping = endpoint.agent_factory
    assert isinstance(keeping, KeepingFactory)
    return keeping.inner.tts  # the same engine, already warm; its output is deterministic


@dataclass(frozen=True, slots=True)
class BargeInCall:
    result: CallResult
    question: Pcm
    onset_s: float  # the caller's speech onset on the microphone's timeline


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def barge_in_call(endpoint: WatchedEndpoint, tts: OfflineTextToSpeech,
                        tmp_path_factory: pytest.TempPathFactory) -> BargeInCall:
    # The caller asks its question 1 s into the greeting, then listens until the answer has played.
    question = await speak(tts, QUESTION)
    answer_s = len(await speak(tts, OPENING_HOURS)) / RATE
    mic = np.concatenate([silence(1.0), question, silence(answer_s + 4.0)])
    onset = float(np.argmax(frame_db(mic) > SPEECH_DB) * FRAME / RATE)
    result = await call(endpoint, tmp_path_factory.mktemp("barge-in"), mic)
    return BargeInCall(result, question, onset)


@module_loop
async def test_a_spoken_question_gets_the_scripted_answer(barge_in_call: BargeInCall,
                                                          tts: OfflineTextToSpeech) -> None:
    result = barge_in_call.result
    question_end = barge_in_call.onset_s + len(barge_in_call.question) / RATE
    score, at = match(await speak(tts, OPENING_HOURS), result.heard)
    fallback_score, _ = match(await speak(tts, SCRIPT.fallback), result.heard)
    assert score > 0.5, (score, at, fallback_score)
    assert fallback_score < 0.3, fallback_score  # the recognizer understood: no "Sorry, I can only help with..."
    assert question_end < at < question_end + 2.0, (question_end, at)  # the answer follows the question
    # What the agent believes it said agrees with what the caller heard.
    assert [(m.role, m.text) for m in result.agent.history[1:]] == [("caller", "what are your opening hours"),
                                                                      ("agent", OPENING_HOURS)]
    assert [(e.reason, e.local) for e in result.ended] == [("bye", False)]  # baresip hung up at the end


@module_loop
async def test_the_caller_barging_in_silences_the_greeting(barge_in_call: BargeInCall,
                                                          tts: OfflineTextToSpeech) -> None:
    result, onset = barge_in_call.result, barge_in_call.onset_s
    greeting = await speak(tts, SCRIPT.greeting)
    # Left alone, the greeting would have played for seconds after the caller started talking.
    assert len(greeting) / RATE > onset + 5.0
    head_score, greeting_at = match(greeting[: RATE // 2], result.heard)
    assert head_score > 0.5 and greeting_at < 0.3, (head_score, greeting_at)  # the greeting did start playing
    answer_at = match(await speak(tts, OPENING_HOURS), result.heard)[1]
    voiced = frame_db(result.heard) > SPEECH_DB
    first, last = round(onset * RATE / FRAME), round(answer_at * RATE / FRAME) - 5
    assert voiced[first - 10: first].any()  # the agent was talking when the caller started
    after = np.flatnonzero(voiced[first:last])
    stop_ms = 0.0 if not len(after) else (after[-1] + 1) * FRAME * 1000 / RATE
    # Files aligned at their starts (module comment). If baresip's first received packet came after its
    # microphone started, this underestimates by that offset. Both files end at baresip's BYE, the received one
    # earlier by baresip's jitter buffer (frames still in it are never decoded; 100 ms by default), so
    # (sent length - received length) = offset + buffer bounds the offset: stop + that is a true upper bound,
    # held to the same 300 ms plus baresip's 100 ms buffer, which is not ours.
    slack_ms = (len(result.said) - len(result.heard)) * 1000 / RATE
    print(f"barge-in: agent speech stopped {stop_ms:.0f} ms after the caller's onset "
          f"(upper bound {stop_ms + slack_ms:.0f} ms)")
    assert stop_ms <= 300, stop_ms
    assert stop_ms + slack_ms <= 400, (stop_ms, slack_ms)
    # ... and stayed silent for the rest of the turn: the greeting was dropped, not paused.
    assert answer_at - onset - stop_ms / 1000 > 1.0, answer_at


@module_loop
async def test_a_dtmf_zero_without_operator_gets_the_no_operator_line(endpoint: WatchedEndpoint,
                                                                      tts: OfflineTextToSpeech,
                                                                      tmp_path: Path) -> None:
    line = await speak(tts, SCRIPT.no_operator)
    result = await call(endpoint, tmp_path, silence(len(line) / RATE + 3.0), dtmf="0")
    score, at = match(line, result.heard)
    fallback_score, _ = match(await speak(tts, SCRIPT.fallback), result.heard)
    assert score > 0.5 and fallback_score < 0.3, (score, fallback_score)
    assert at < 1.0, at  # said at once, over the greeting the digit cut short
    assert result.agent.history[-1].text == SCRIPT.no_operator
    assert not result.agent.history[0].text.endswith("goodbye.")  # the greeting was not played out
    assert [(e.reason, e.local) for e in result.ended] == [("bye", False)]  # no transfer, no hang-up


async def test_silence_gets_a_reprompt_then_a_goodbye_and_our_bye(tmp_path: Path) -> None:
    require_tool("baresip")
    reprompt_s = 2.0
    async with assistant_endpoint(reprompt_s=reprompt_s, max_reprompts=1) as ep:
        keeping = ep.agent_factory
        assert isinstance(keeping, KeepingFactory)
        tts = keeping.inner.tts
        lines = [await speak(tts, text) for text in (SCRIPT.greeting, SCRIPT.reprompt, SCRIPT.goodbye)]
        expected_s = sum(len(line) for line in lines) / RATE + 2 * reprompt_s
        # The caller never speaks; its microphone outlasts the call by far, so only we can end it.
        result = await call(ep, tmp_path, silence(expected_s + 15.0), within=expected_s + 10.0)
    # baresip took our BYE (RFC 3261 §15.1.2): its SIP stack reports a remote close as ECONNRESET.
    assert "session closed: Connection reset by peer" in result.log, result.log[-2000:]
    assert [(e.reason, e.local) for e in result.ended] == [("bye", True)]
    found = [match(line, result.heard) for line in lines]
    assert all(score > 0.5 for score, _ in found), found
    starts = [at for _, at in found]
    # Each line follows the previous one's end after the configured silence (+ a few 20 ms ticks: the line's
    # padded last frame, the speech buffer draining, the first frame of the next line).
    for line, at, after in zip(lines[:2], starts[:2], starts[1:], strict=True):
        gap = after - (at + voiced_s(line))
        assert reprompt_s - 0.1 <= gap <= reprompt_s + 0.5, (gap, found)
    # The BYE followed the goodbye's end promptly: the recording ends with it (baresip's jitter buffer, 100 ms,
    # still held the last frames when the BYE came; the synthesis ends with a few frames of silence).
    goodbye_end = starts[2] + voiced_s(lines[2])
    ended_at = len(result.heard) / RATE
    assert goodbye_end - 0.15 <= ended_at <= goodbye_end + 1.0, (goodbye_end, ended_at)
