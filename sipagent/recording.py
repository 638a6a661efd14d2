"""What a call leaves behind: a stereo WAV (caller left, agent right) and a JSONL timeline, on one call clock.

The call clock starts when the call is established (``clock_start``, loop time). A 20 ms frame handed in at loop
time ``now`` belongs to frame slot ``round((now - clock_start) / 0.02)``; both channels are placed by slot, and a
slot nobody filled stays silent, so the channels line up sample for sample however the two sides talk.

Both sides arrive once per media tick. After a loop stall the stream hands over several frames at the same
``now`` (the jitter buffer is popped once per elapsed slot), so each channel counts its frames from where the
last one went and only re-anchors on the clock when that count and the clock disagree by more than
``MAX_SLIP_FRAMES``: short stalls keep every frame, a real gap (hold, a silent agent) becomes silence.

Writing: the audio is kept in a two-second window of memory and the oldest second is written once a frame lands
past the window, together with the timeline lines gathered meanwhile: one synchronous append of 64 KB per second
of call (16 kHz x 2 channels x 2 bytes). Such an append to the page cache costs microseconds, far below the 20 ms
tick, so it is done on the loop rather than in an executor (whose hand-off would cost more than the write). The
files are opened when the call is established and the WAV header's sizes are patched on close.

Without a directory the recorder writes nothing and only keeps the call's figures (turns, response times,
barge-ins) for the summary line and the metrics.
"""

from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from sipagent.media import AGENT_RATE, FRAME_SAMPLES, Pcm

FRAME_S = FRAME_SAMPLES / AGENT_RATE
CHUNK_FRAMES = 50
"""Frames per write: one second of audio."""
MAX_SLIP_FRAMES = 5
"""How far (100 ms) a channel's frame count may drift from the clock before it is re-anchored on the clock."""
SILENCE_PEAK = 64
"""An agent frame whose peak stays at or below this (about -54 dBFS) counts as silence for first_agent_rtp."""
CLOCK_FIELDS = frozenset({"at", "detected_at", "decided_at", "voice_since"})
"""Timeline fields the assistant gives in loop time: written on the call clock like ``t``."""

_CALLER, _AGENT = 0, 1
_WAV_HEADER = 44


@dataclass(frozen=True, slots=True)
class CallFigures:
    duration_s: float
    turns: int
    """Caller turns the recognizer ended (end_of_turn entries)."""
    turn_latencies_s: tuple[float, ...]
    """Per answered turn: end_of_turn -> the first non-silent agent frame sent after the reply started."""
    barge_ins: int
    barge_in_latencies_s: tuple[float, ...]
    """Per barge-in: the caller's voice onset -> the last agent frame sent (the line goes quiet)."""

    @property
    def response_ms_p50(self) -> float | None:
        if not self.turn_latencies_s:
            return None
        return round(float(np.median(self.turn_latencies_s)) * 1000, 1)


def safe_name(call_id: str) -> str:
    """A Call-ID as one path component: anything but letters, digits, dot, dash and underscore becomes ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:80].strip(".")
    return name or "call"


def wav_header(data_bytes: int, channels: int = 2, rate: int = AGENT_RATE) -> bytes:
    # RIFF/WAVE with one PCM fmt chunk (format tag 1, 16 bits); sizes are patched on close.
    block = channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


class CallRecorder:
    def __init__(self, directory: Path | None, call_id: str, clock_start: float, *,
                 wall_time: float | None = None) -> None:
        self.call_id = call_id
        self.clock_start = clock_start
        self.path: Path | None = None
        self._wav: IO[bytes] | None = None
        self._jsonl: IO[str] | None = None
        if directory is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(wall_time))
            self.path = directory / f"{stamp}-{safe_name(call_id)}"
            self.path.mkdir(parents=True, exist_ok=True)
            self._wav = open(self.path / "call.wav", "wb")  # held for the call, closed in close()
            self._wav.write(wav_header(0))
            self._jsonl = open(self.path / "timeline.jsonl", "w", encoding="utf-8")
        self._window = np.zeros((2 * CHUNK_FRAMES * FRAME_SAMPLES, 2), np.int16)
        self._base = 0  # the frame slot at the start of the window
        self._end = 0  # one past the last slot holding audio
        self._next: list[int | None] = [None, None]
        self._lines: list[str] = []
        self._data_bytes = 0
        self.dropped_frames = 0
        """Frames that came in for slots already written (should stay 0)."""
        self._closed = False
        # Figures.
        self._duration = 0.0
        self._turns = 0
        self._turn_latencies: list[float] = []
        self._barge_ins = 0
        self._barge_latencies: list[float] = []
        self._turn_ended_at: float | None = None
        self._awaiting_first = False
        self._barge_onset: float | None = None
        self._agent_frames = 0
        self._last_agent_at = 0.0

    # -- input ------------------------------------------------------------------------------------------------

    def on_caller(self, pcm: Pcm, now: float) -> None:
        if self._wav is not None:
            self._place(_CALLER, pcm, now)

    def on_agent(self, pcm: Pcm | None, now: float) -> None:
        """One pacer tick of the agent's side: the 16 kHz frame that went out, or ``None`` (buffer empty)."""
        if pcm is None:
            if self._agent_frames:
                self._agent_frames = 0
                self._utterance_end(self._last_agent_at)
            return
        self._agent_frames += 1
        self._last_agent_at = now
        if self._awaiting_first and len(pcm) and int(np.abs(pcm.astype(np.int32)).max()) > SILENCE_PEAK:
            self._awaiting_first = False
            self.event("first_agent_rtp", now)
            if self._turn_ended_at is not None:
                self._turn_latencies.append(now - self._turn_ended_at)
                self._turn_ended_at = None
        if self._wav is not None:
            self._place(_AGENT, pcm, now)

    def event(self, kind: str, now: float, **fields: Any) -> None:
        t = now - self.clock_start
        match kind:
            case "end_of_turn":
                self._turns += 1
                self._turn_ended_at = now
            case "reply_start":
                self._awaiting_first = True
            case "barge_in":
                self._barge_ins += 1
                onset = fields.get("voice_since")
                self._barge_onset = onset if isinstance(onset, int | float) else now
        if self._jsonl is None:
            return
        entry: dict[str, Any] = {"t": round(t, 4), "kind": kind}
        for key, value in fields.items():
            if key in CLOCK_FIELDS and isinstance(value, int | float):
                value = round(value - self.clock_start, 4)
            entry[key] = value
        self._lines.append(json.dumps(entry, default=str, ensure_ascii=False) + "\n")

    def _utterance_end(self, last_at: float) -> None:
        self.event("last_agent_packet", last_at)
        if self._barge_onset is not None:
            self._barge_latencies.append(last_at + FRAME_S - self._barge_onset)
            self._barge_onset = None

    # -- audio placement --------------------------------------------------------------------------------------

    def _place(self, channel: int, pcm: Pcm, now: float) -> None:
        pcm = pcm[:CHUNK_FRAMES * FRAME_SAMPLES]  # agent and caller frames are 20 ms; this only bounds the window
        slot = round((now - self.clock_start) / FRAME_S)
        expected = self._next[channel]
        if expected is not None and abs(slot - expected) <= MAX_SLIP_FRAMES:
            slot = expected
        frames = max(1, -(-len(pcm) // FRAME_SAMPLES))
        self._next[channel] = slot + frames
        if slot < self._base:
            self.dropped_frames += 1
            return
        while slot + frames > self._base + 2 * CHUNK_FRAMES:
            self._write_chunk()
        start = (slot - self._base) * FRAME_SAMPLES
        self._window[start:start + len(pcm), channel] = pcm
        self._end = max(self._end, slot + frames)

    def _write_chunk(self) -> None:
        # The oldest second goes out whole, silent slots included, so the file's time axis is the call clock.
        half = CHUNK_FRAMES * FRAME_SAMPLES
        self._write_audio(self._window[:half])
        self._window[:half] = self._window[half:]
        self._window[half:] = 0
        self._base += CHUNK_FRAMES
        self._write_lines()

    def _write_audio(self, block: np.ndarray[Any, Any]) -> None:
        assert self._wav is not None
        data = block.astype("<i2", copy=False).tobytes()
        self._wav.write(data)
        self._data_bytes += len(data)

    def _write_lines(self) -> None:
        if self._jsonl is not None and self._lines:
            self._jsonl.write("".join(self._lines))
            self._lines.clear()

    # -- the end ----------------------------------------------------------------------------------------------

    def close(self, now: float) -> CallFigures:
        """Write what is left, patch the WAV header, close the files; returns the call's figures."""
        if not self._closed:
            self._closed = True
            self._duration = max(now - self.clock_start, 0.0)
            if self._agent_frames:
                self._agent_frames = 0
                self._utterance_end(self._last_agent_at)
            if self._wav is not None:
                if self._end > self._base:
                    self._write_audio(self._window[:(self._end - self._base) * FRAME_SAMPLES])
                self._wav.seek(0)
                self._wav.write(wav_header(self._data_bytes))
                self._wav.close()
            self._write_lines()
            if self._jsonl is not None:
                self._jsonl.close()
        return self.figures()

    def figures(self) -> CallFigures:
        return CallFigures(duration_s=round(self._duration, 3), turns=self._turns,
                           turn_latencies_s=tuple(self._turn_latencies), barge_ins=self._barge_ins,
                           barge_in_latencies_s=tuple(self._barge_latencies))


__all__ = ["CHUNK_FRAMES", "FRAME_S", "MAX_SLIP_FRAMES", "CallFigures", "CallRecorder", "safe_name", "wav_header"]
