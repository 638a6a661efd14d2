"""The ``echo`` agent: the caller hears themselves after a short delay, through the whole media path
(RTP -> jitter buffer -> G.711 decode -> 16 kHz -> back to 8 kHz -> G.711 encode -> paced RTP). A line test:
if echo sounds right, codec, resampling, pacing and NAT latching all work."""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from rtp.jitter import FrameStatus
from sipagent.agent.base import CallContext
from sipagent.media import FRAME_SAMPLES, Pcm


class EchoAgent:
    def __init__(self, context: CallContext, delay_ms: int = 200) -> None:
        self._speech = context.speech
        # A delay line of whole 20 ms frames, primed with silence: what goes in comes out delay_ms later.
        self._line: deque[Pcm] = deque(np.zeros(FRAME_SAMPLES, np.int16) for _ in range(max(delay_ms // 20, 0)))

    def on_audio(self, pcm: Pcm, now: float, status: FrameStatus) -> None:
        self._line.append(pcm)
        self._speech.push(self._line.popleft())

    def on_dtmf(self, digit: str, now: float) -> None:
        """Digits are not echoed: they arrive out of band (RFC 4733 or INFO)."""

    async def run(self) -> None:
        # All the work is per frame in on_audio; returning would end the call, so wait to be cancelled.
        await asyncio.get_running_loop().create_future()


__all__ = ["EchoAgent"]
