"""baresip, a headless softphone standing in for MicroSIP, talking to our endpoint running the echo agent.

baresip speaks from a WAV (its microphone) and records what it hears; the echo agent sends the caller's audio
back ~200 ms later through the whole media path (jitter buffer, G.711, 8 <-> 16 kHz, pacing). The witness is
baresip's decoded recording: its normalised cross-correlation against the microphone signal must peak above
0.5 at a lag under a second (echo delay + jitter buffers on both sides), which needs intact, well-timed audio.

Two details of the measurement. The caller says nothing for the first second, as people do: an adaptive jitter
buffer settles in that time (ours may drop one frame to come down from its start delay, preferring a quiet one),
and a 20 ms shift in the middle of the voice would split the correlation peak in two. And the signals are
compared at 16 kHz: the round trip through our 8 -> 16 -> 8 kHz resamplers delays the audio by a whole number
of 16 kHz samples, which can be half an 8 kHz sample; a correlation over whole 8 kHz lags would then lose about
30 % of its peak on a perfect echo. Both signals are band-limited to 4 kHz, so interpolating them is exact.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from rtp.jitter import FrameStatus
from sipagent.agent.base import AgentFactory, CallContext
from sipagent.agent.echo import EchoAgent
from sipagent.call import Call
from sipagent.endpoint import Endpoint
from sipagent.media import Pcm
from sipagent.sip.events import CallEnded, CallEstablished, IncomingCall
from tests.interop.endpoint import FRAMES_PER_SECOND, keep_agents, running_endpoint
from tests.interop.peers import RATE, Baresip, read_wav, require_peer, similarity, speech_like, write_wav

pytestmark = pytest.mark.interop

MAX_LAG = RATE  # search the echo up to 1 s late (8 kHz samples)
MIN_SCORE = 0.5


class EchoThenHangUp(EchoAgent):
    """The echo agent that asks the endpoint to hang up after ``frames`` frames."""

    def __init__(self, context: CallContext, frames: int) -> None:
        super().__init__(context)
        self.context = context
        self.limit = frames
        self.frames = 0

    def on_audio(self, pcm: Pcm, now: float, status: FrameStatus) -> None:
        super().on_audio(pcm, now, status)
        self.frames += 1
        if self.frames == self.limit:
            self.context.hangup()


LEAD_S = 1.0  # silence before the voice: see the module comment
VOICE_S = 1.5
TAIL_S = 0.8  # silence after it, for the echo to come back before baresip hangs up


def speaker(path: Path, seed: int, tail_s: float = TAIL_S) -> tuple[Path, Pcm]:
    """baresip's microphone file and the signal in it: silence, voice, silence. baresip hangs up when it ends."""
    signal = np.concatenate([np.zeros(round(LEAD_S * RATE), np.int16), speech_like(VOICE_S, seed=seed),
                             np.zeros(round(tail_s * RATE), np.int16)])
    return write_wav(path, signal), signal


def _twice_the_rate(pcm: Pcm) -> Pcm:
    # Band-limited interpolation (zero-padding the spectrum); exact for a signal sampled above its Nyquist rate.
    n = len(pcm)
    up = np.fft.irfft(np.fft.rfft(pcm.astype(np.float64)), 2 * n) * 2
    return np.clip(np.round(up), -32768, 32767).astype(np.int16)


def echo_score(phone: Baresip, spoken: Pcm) -> tuple[float, float]:
    """Peak normalised cross-correlation of what baresip heard against what it said, and the lag in seconds."""
    recordings = phone.recordings()
    assert len(recordings.decoded) == 1, (recordings, phone.log[-3000:])
    rate, heard = read_wav(recordings.decoded[0])
    assert rate == RATE
    score, lag = similarity(_twice_the_rate(spoken), _twice_the_rate(heard), max_lag=2 * MAX_LAG)
    return score, lag / (2 * RATE)


async def test_baresip_calls_the_endpoint_and_hears_its_echo(tmp_path: Path) -> None:
    require_peer("baresip")
    mic, spoken = speaker(tmp_path / "mic.wav", seed=11)
    async with running_endpoint() as ep:
        async with Baresip(tmp_path / "baresip", wav_in=mic, dial=f"sip:test@127.0.0.1:{ep.sip_port}") as phone:
            await phone.wait_for_log(r"Call established", 5.0)
            await phone.wait_for_log(r"terminated", 10.0)  # the microphone file ended: baresip sent BYE
            await ep.settled()
            score, lag = echo_score(phone, spoken)
    assert score > MIN_SCORE, (score, lag)
    assert 0.2 <= lag < 1.0, lag  # never earlier than the echo agent's 200 ms delay line
    [incoming] = ep.seen(IncomingCall)
    assert str(incoming.request_uri).startswith("sip:test@127.0.0.1")
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local) == ("bye", False)


async def _dial(ep: Endpoint, phone: Baresip, factory: AgentFactory | None = None) -> Call:
    async with asyncio.timeout(15.0):
        return await ep.dial(phone.uri, answer_timeout=5.0, agent_factory=factory)


async def test_endpoint_dials_baresip_which_hangs_up(tmp_path: Path) -> None:
    require_peer("baresip")
    mic, spoken = speaker(tmp_path / "mic.wav", seed=12)
    async with running_endpoint() as ep:
        async with Baresip(tmp_path / "baresip", wav_in=mic, auto_answer=True) as phone:
            call = await _dial(ep, phone)
            await phone.wait_for_log(r"Call established", 1.0)
            await phone.wait_for_log(r"incoming rtp for 'audio' established", 1.0)  # baresip got our RTP
            await phone.wait_for_log(r"terminated", 5.0)
            await ep.settled()
            score, lag = echo_score(phone, spoken)
    [established] = ep.seen(CallEstablished)
    assert established.media.codec in ("PCMU", "PCMA")
    assert (call.end_reason, call.call_id) == ("bye", established.call_id)
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local) == ("bye", False)  # baresip's BYE when its microphone ran out
    # baresip heard our RTP: its own voice, echoed.
    assert score > MIN_SCORE, (score, lag)


async def test_endpoint_dials_baresip_and_hangs_up(tmp_path: Path) -> None:
    require_peer("baresip")
    mic, spoken = speaker(tmp_path / "mic.wav", seed=13, tail_s=20.0)  # baresip would talk on; we end the call
    # Hang up once the voice and its echo are over.
    agents, factory = keep_agents(
        lambda context: EchoThenHangUp(context, round((LEAD_S + VOICE_S + TAIL_S) * FRAMES_PER_SECOND)))

    async with running_endpoint() as ep:
        async with Baresip(tmp_path / "baresip", wav_in=mic, auto_answer=True) as phone:
            call = await _dial(ep, phone, factory)
            await phone.wait_for_log(r"Call established", 1.0)
            await phone.wait_for_log(r"incoming rtp for 'audio' established", 1.0)
            # baresip took our BYE (RFC 3261 §15.1.2): its SIP stack reports a remote close as ECONNRESET.
            await phone.wait_for_log(r"session closed: Connection reset by peer", 5.0)
            await phone.wait_for_log(r"terminated", 5.0)
            await ep.settled()
            score, lag = echo_score(phone, spoken)
    assert call.end_reason == "bye"
    [agent] = agents
    assert agent.frames >= agent.limit
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local, ended.status) == ("bye", True, 200)
    assert score > MIN_SCORE, (score, lag)
