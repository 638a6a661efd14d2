"""Voice activity detection: webrtcvad per frame, plus the hysteresis that turns voiced frames into speech segments.

Sans-I/O: ``update(frame, now)`` takes one frame and the time its last sample arrived, and returns at most one
event. About 4 us per 20 ms frame, almost all of it inside webrtcvad.

Hysteresis (the two halves are deliberately asymmetric):

* Onset needs ``onset_ms`` of voiced frames within the last ``onset_window_ms``. Sparse voiced decisions (one or
  two in a window) never start speech, while a short unvoiced gap inside a real onset does not delay it. A real
  click is not filtered by this alone: webrtcvad's hangover (below) stretches it to about 100 ms of voiced frames.
  The event is dated back to the start of the earliest voiced frame of that window: the true onset, not the moment
  it was confirmed.
* End needs ``end_ms`` of consecutive unvoiced frames; any voiced frame resets the count. The event is dated at
  the end of the last voiced frame. Short pauses between words (100-250 ms) must not end a turn, hence 300-600 ms.
  webrtcvad adds a hangover of its own (measured at mode 3 with 20 ms frames: 80-120 ms of voiced decisions after
  a tone stops), so END is dated that much late and the detection delay seen from the audio is end_ms plus that.
* Warm-up: a fresh webrtcvad instance has no noise estimate yet and flags the first ~80 ms of any line noise as
  voiced (measured: 4 frames at -61 dBFS and above), which would look like an onset at every call's start.
  Frames in the first ``warmup_ms`` train webrtcvad but cannot start speech.

Mode 3 (the most aggressive) is the default: at modes 0-2 webrtcvad flags quiet line noise as speech and, after a
burst of speech, may keep flagging the trailing low-level noise for ever (measured in notes/offline-engines.md).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import webrtcvad

__all__ = ["Classifier", "VadConfig", "VadEvent", "VadEventKind", "VoiceActivityDetector"]

Classifier = Callable[[bytes, int], bool]
"""Per-frame voiced decision ``(pcm16 bytes, sample_rate) -> bool``; webrtcvad's ``Vad(mode).is_speech`` by default."""

_RATES = (8000, 16000, 32000, 48000)
_FRAME_MS = (10, 20, 30)


class VadEventKind(enum.Enum):
    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: VadEventKind
    at: float
    """Estimated boundary: start of the first voiced frame (START) or end of the last voiced frame (END)."""
    detected_at: float
    """``now`` of the frame that confirmed the event; ``detected_at - at`` is the detection delay."""


@dataclass(frozen=True, slots=True)
class VadConfig:
    mode: int = 3
    """webrtcvad aggressiveness, 0-3."""
    sample_rate: int = 16000
    frame_ms: int = 20
    """10, 20 or 30 ms: the only frame sizes webrtcvad accepts."""
    onset_ms: int = 60
    """Voiced audio needed within ``onset_window_ms`` to confirm speech."""
    onset_window_ms: int = 100
    end_ms: int = 400
    """Unvoiced run that ends speech."""
    warmup_ms: int = 100
    """Start of the stream during which speech cannot start (webrtcvad is still learning the noise)."""

    def __post_init__(self) -> None:
        if self.mode not in (0, 1, 2, 3):
            raise ValueError(f"VadConfig.mode must be 0-3, got {self.mode}")
        if self.sample_rate not in _RATES:
            raise ValueError(f"VadConfig.sample_rate must be one of {_RATES}, got {self.sample_rate}")
        if self.frame_ms not in _FRAME_MS:
            raise ValueError(f"VadConfig.frame_ms must be one of {_FRAME_MS}, got {self.frame_ms}")
        if not 0 < self.onset_ms <= self.onset_window_ms:
            raise ValueError(f"VadConfig.onset_ms must be in (0, onset_window_ms], got {self.onset_ms}")
        if self.end_ms <= 0:
            raise ValueError(f"VadConfig.end_ms must be positive, got {self.end_ms}")
        if self.warmup_ms < 0:
            raise ValueError(f"VadConfig.warmup_ms must not be negative, got {self.warmup_ms}")


class VoiceActivityDetector:
    """One per audio stream (webrtcvad keeps per-instance noise estimates)."""

    __slots__ = (
        "_classifier",
        "_custom",
        "_end_frames",
        "_frame_len",
        "_frame_s",
        "_history",
        "_last_voiced_end",
        "_onset_frames",
        "_rate",
        "_unvoiced_run",
        "_warmup",
        "_window_mask",
        "config",
        "speaking",
        "voiced",
    )

    def __init__(self, config: VadConfig | None = None, classifier: Classifier | None = None) -> None:
        self.config = config = config or VadConfig()
        self._custom = classifier
        self._classifier = classifier or webrtcvad.Vad(config.mode).is_speech
        self._rate = config.sample_rate
        self._frame_len = config.sample_rate * config.frame_ms // 1000
        self._frame_s = config.frame_ms / 1000.0
        self._onset_frames = math.ceil(config.onset_ms / config.frame_ms)
        window = max(self._onset_frames, math.ceil(config.onset_window_ms / config.frame_ms))
        self._window_mask = (1 << window) - 1
        self._end_frames = math.ceil(config.end_ms / config.frame_ms)
        self._warmup = math.ceil(config.warmup_ms / config.frame_ms)  # frames left before speech may start
        self.voiced = False
        """Whether the latest frame was voiced (raw webrtcvad decision, before hysteresis)."""
        self.speaking = False
        """Whether the detector is inside a speech segment (after hysteresis)."""
        self._history = 0  # bit i set: the frame i frames ago was voiced (bit 0 is the latest)
        self._unvoiced_run = 0
        self._last_voiced_end = 0.0

    @property
    def silence(self) -> float:
        """Length of the current unvoiced run inside a speech segment, in seconds (0 outside speech)."""
        return self._unvoiced_run * self._frame_s if self.speaking else 0.0

    def reset(self) -> None:
        self._classifier = self._custom or webrtcvad.Vad(self.config.mode).is_speech
        self._warmup = math.ceil(self.config.warmup_ms / self.config.frame_ms)
        self.voiced = self.speaking = False
        self._history = self._unvoiced_run = 0
        self._last_voiced_end = 0.0

    def update(self, frame: npt.NDArray[np.int16], now: float) -> VadEvent | None:
        """Classify one frame whose last sample arrived at ``now``; return the event it confirms, if any."""
        if frame.shape != (self._frame_len,) or frame.dtype != np.int16:
            raise ValueError(
                f"VAD frame must be {self._frame_len} int16 samples ({self.config.frame_ms} ms at {self._rate} Hz), "
                f"got shape {frame.shape} {frame.dtype}"
            )
        # Bytes, not the array: webrtcvad takes len(buf) / 2 as the sample count, which for an int16 array is half
        # the frame (and still a valid 10 ms frame at 16 kHz, so nothing would complain).
        voiced = self.voiced = self._classifier(frame.tobytes(), self._rate)
        if self.speaking:
            if voiced:
                self._unvoiced_run = 0
                self._last_voiced_end = now
                return None
            self._unvoiced_run += 1
            if self._unvoiced_run < self._end_frames:
                return None
            self.speaking = False
            self._history = self._unvoiced_run = 0
            return VadEvent(VadEventKind.SPEECH_END, self._last_voiced_end, now)
        if self._warmup:
            self._warmup -= 1
            return None
        history = self._history = ((self._history << 1) | voiced) & self._window_mask
        if not voiced or history.bit_count() < self._onset_frames:
            return None
        self.speaking = True
        self._unvoiced_run = 0
        self._last_voiced_end = now
        # The highest set bit is the earliest voiced frame still in the window; it began (index + 1) frames ago.
        onset = now - history.bit_length() * self._frame_s
        return VadEvent(VadEventKind.SPEECH_START, onset, now)
