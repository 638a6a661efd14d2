"""The bridge between a call's RTP stream (codec rate, 8 kHz) and its agent (16 kHz, 20 ms frames).

Inbound: jitter-buffer frame -> 8->16 kHz streaming resampler -> the agent's ``on_audio``.
Outbound: the agent pushes 16 kHz PCM of any length into a :class:`SpeechBuffer`; each media tick takes one
20 ms frame from it, resamples it to 8 kHz and hands it to the pacer, which encodes and sends it at once. So
exactly one frame of agent audio is committed past the pacer at any time, and ``flush()`` (barge-in) silences
the line from the next tick on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from rtp.jitter import FrameStatus, JitterFrame
from rtp.resample import StreamResampler

AGENT_RATE = 16000
FRAME_SAMPLES = AGENT_RATE // 50  # 20 ms at 16 kHz

Pcm = npt.NDArray[np.int16]


class SpeechBuffer:
    """Agent audio waiting for the pacer, in 20 ms frames at 16 kHz; droppable at once."""

    def __init__(self) -> None:
        self._frames: deque[Pcm] = deque()
        self._partial: Pcm = np.zeros(0, np.int16)
        self.played_samples = 0
        """16 kHz samples actually sent on the wire: what the caller heard of the agent."""

    def push(self, pcm: Pcm) -> None:
        data = np.concatenate((self._partial, pcm)) if len(self._partial) else np.asarray(pcm, np.int16)
        whole = len(data) - len(data) % FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            self._frames.append(data[start:start + FRAME_SAMPLES])
        self._partial = data[whole:]

    def end_utterance(self) -> None:
        """Pad the last partial frame with silence so the utterance plays to its end."""
        if len(self._partial):
            frame = np.zeros(FRAME_SAMPLES, np.int16)
            frame[:len(self._partial)] = self._partial
            self._frames.append(frame)
            self._partial = np.zeros(0, np.int16)

    def pop(self) -> Pcm | None:
        if not self._frames:
            return None
        self.played_samples += FRAME_SAMPLES
        return self._frames.popleft()

    def flush(self) -> int:
        """Drop everything not yet sent; returns the 16 kHz samples dropped."""
        dropped = len(self._frames) * FRAME_SAMPLES + len(self._partial)
        self._frames.clear()
        self._partial = np.zeros(0, np.int16)
        return dropped

    @property
    def buffered_ms(self) -> float:
        return (len(self._frames) * FRAME_SAMPLES + len(self._partial)) * 1000 / AGENT_RATE

    def __len__(self) -> int:
        return len(self._frames)


class CallAudio:
    """Rate conversion and buffering between one RTP stream and one agent.

    ``sink`` and ``source`` plug into :class:`rtp.transport.MediaStream`; ``on_audio(pcm16, now, status)``
    receives every inbound frame (concealed and silent frames too, so the agent's clock never stops).
    ``on_sent(pcm16 | None, now)``, if given, sees each tick's agent frame as it goes to the pacer (``None``: the
    buffer was empty and the line carries silence): the recording's agent channel is exactly what was sent.
    """

    def __init__(self, on_audio: Callable[[Pcm, float, FrameStatus], None], line_rate: int = 8000, *,
                 on_sent: Callable[[Pcm | None, float], None] | None = None) -> None:
        self.on_audio = on_audio
        self.on_sent = on_sent
        self.speech = SpeechBuffer()
        self._up = StreamResampler(line_rate, AGENT_RATE)
        self._down = StreamResampler(AGENT_RATE, line_rate)
        self._talking = False

    def sink(self, frame: JitterFrame, now: float) -> None:
        self.on_audio(self._up.process(frame.samples), now, frame.status)

    def source(self, now: float) -> Pcm | None:
        frame = self.speech.pop()
        if self.on_sent is not None:
            self.on_sent(frame, now)
        if frame is None:
            if self._talking:
                # Between utterances the line carries encoded silence; start the next one from a clean filter
                # so no tail of the last utterance leaks into it.
                self._talking = False
                self._down.reset()
            return None
        self._talking = True
        return self._down.process(frame)

    def flush(self) -> int:
        return self.speech.flush()


__all__ = ["AGENT_RATE", "FRAME_SAMPLES", "CallAudio", "SpeechBuffer"]
