"""Time-based adaptive jitter buffer for decoded audio (timing from RFC 3550 §5.1 and §6.4.1).

Packets are placed on the media timeline by RTP timestamp, as sample positions relative to a base
timestamp (re-based long before the 2**31 limit of :func:`rtp.seqnum.ts_diff`). ``pop`` plays the
frame at the cursor and moves it on, so a sample at position ``p`` plays at ``offset + p / rate``,
``offset = now - cursor / rate`` being fixed by the caller's tick.

Delay is measured from the fastest path seen: ``transit = arrival - p / rate``, ``ref = min(transit)``
(leaking upwards slowly to follow clock drift). A packet needs ``transit - ref`` of delay plus its
offset inside a frame; the target is the worst need of the last few seconds, clamped to
``[min_delay, max_delay]``, and the current delay is ``offset - ref``.

- Below target (a late packet raises the target at once): a concealment frame is inserted without
  moving the cursor. An underrun holds the cursor the same way, so a delayed burst still plays.
- Above target (the worst need aged out): one frame of received audio is dropped at most every
  200 ms, a quiet one if possible and only while two frames are buffered, so latency never creeps.
- With nothing buffered, after an underrun or at a talkspurt start (marker bit, RFC 3551 §4.1),
  the cursor is re-synchronised to the target delay: a DTX gap is not loss, however long.
- An SSRC change or a timestamp jump of more than a few seconds restarts the buffer (``RESET``);
  a packet more than ``max_delay`` ahead moves the cursor up, discarding older audio.

Frames share memory with the pushed arrays: neither may be modified afterwards.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtp.packet import RtpPacket
from rtp.seqnum import seq_add, seq_diff, ts_add, ts_diff

Samples = npt.NDArray[np.int16]

JUMP_S = 3.0  # a timestamp this far outside the window starts a new timeline
MAX_CONCEALED = 3  # fading repeats before silence
PEAK_BUCKET_S = 1.0
PEAK_BUCKETS = 4  # the target is the worst need of the last 3-4 s
REF_LEAK = 0.001  # s/s: lets the fastest-path reference follow a sender clock slower than ours
SHRINK_GAP_S = 0.2
SHRINK_FORCE_S = 1.0  # drop even a loud frame after this long over target
QUIET_RMS = 200.0  # about -44 dBFS
MAX_DROPOUT = 3000  # RFC 3550 A.1: a bigger sequence jump is a restart, not loss
FLOOR_SPAN = 1000
SKIPPED_MAX = 256
PREV_SSRC_GRACE_S = 1.0
REBASE_AT = 1 << 30
_I16 = np.dtype(np.int16)


class PushResult(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"
    RESET = "reset"


class FrameStatus(enum.Enum):
    NORMAL = "normal"
    CONCEALED = "concealed"
    SILENCE = "silence"


@dataclass(frozen=True, slots=True)
class JitterFrame:
    samples: Samples
    """Exactly one frame of int16 PCM, not to be modified."""
    status: FrameStatus


# The generated __init__ of a frozen dataclass costs about 1 us; pop builds one per tick through the slots.
_new_frame = object.__new__
_set_samples = vars(JitterFrame)["samples"].__set__
_set_status = vars(JitterFrame)["status"].__set__


def _frame(samples: Samples, status: FrameStatus) -> JitterFrame:
    frame: JitterFrame = _new_frame(JitterFrame)
    _set_samples(frame, samples)
    _set_status(frame, status)
    return frame


@dataclass(frozen=True, slots=True)
class JitterStats:
    received: int
    """Every packet pushed, duplicates and late ones included."""
    lost: int
    """Packets skipped at playout because they had not arrived (late ones count here too)."""
    late: int
    duplicate: int
    reordered: int
    concealed_frames: int
    dropped_ms: float
    """Received audio discarded to cut latency or because it came more than max_delay early."""
    delay_ms: float
    target_delay_ms: float
    buffered_ms: float
    resets: int


class JitterBuffer:
    __slots__ = (
        "_base_ts", "_bucket_t", "_buckets", "_c", "_concealed", "_dropped", "_dup", "_excess_since", "_f_s",
        "_floor_seq", "_frame", "_highest", "_items", "_jump_ahead", "_jump_back", "_last_arrival", "_last_drop",
        "_last_good", "_last_pop", "_late", "_lost", "_max_ahead", "_max_s", "_min_s", "_offset", "_played_from",
        "_played_seq", "_prev_ssrc", "_rate", "_received", "_ref", "_reordered", "_resets", "_silence",
        "_skipped", "_ssrc", "_ssrc_since", "_start_s", "_starts", "_streak", "_target", "_underrun",
    )

    def __init__(self, clock_rate: int = 8000, frame_ms: int = 20, min_delay_ms: int = 20,
                 start_delay_ms: int = 40, max_delay_ms: int = 200) -> None:
        if clock_rate <= 0 or frame_ms <= 0 or (clock_rate * frame_ms) % 1000:
            raise ValueError(f"frame_ms {frame_ms} is not a whole number of samples at {clock_rate} Hz")
        if not 0 <= min_delay_ms <= start_delay_ms <= max_delay_ms:
            raise ValueError("delays must satisfy 0 <= min_delay_ms <= start_delay_ms <= max_delay_ms")
        self._rate = clock_rate
        self._frame = clock_rate * frame_ms // 1000
        self._f_s = frame_ms / 1000
        self._min_s, self._start_s, self._max_s = min_delay_ms / 1000, start_delay_ms / 1000, max_delay_ms / 1000
        self._max_ahead = clock_rate * max_delay_ms // 1000 + self._frame
        self._jump_ahead = int((self._max_s + JUMP_S) * clock_rate)
        self._jump_back = int(JUMP_S * clock_rate)
        silence = np.zeros(self._frame, np.int16)
        silence.flags.writeable = False
        self._silence = JitterFrame(silence, FrameStatus.SILENCE)
        self._ssrc: int | None = None
        self._prev_ssrc: int | None = None
        self._ssrc_since = 0.0
        self._last_pop: float | None = None
        self._received = self._lost = self._late = self._dup = self._reordered = 0
        self._concealed = self._dropped = self._resets = 0
        self._clear(0, 0, 0.0)

    def _clear(self, base_ts: int, seq: int, now: float) -> None:
        self._base_ts = base_ts
        self._c = 0
        self._starts: list[int] = []
        self._items: list[tuple[int, Samples, int]] = []  # (end, samples, seq), parallel to _starts
        self._highest = seq
        self._played_seq: int | None = None
        self._played_from = seq
        self._skipped: set[int] = set()  # sequence numbers playout went past: a later copy is late
        self._floor_seq: int | None = None
        self._ref = self._last_arrival = now
        self._buckets = [0.0] * (PEAK_BUCKETS - 1) + [self._start_s]
        self._bucket_t = now
        self._target = self._start_s
        self._offset: float | None = None
        self._underrun = False
        self._last_good: Samples | None = None
        self._streak = 0
        self._last_drop = now
        self._excess_since: float | None = None

    # -- input ---------------------------------------------------------------------------------------

    def push(self, packet: RtpPacket, samples: Samples, now: float) -> PushResult:
        self._received += 1
        if samples.dtype is not _I16:
            samples = samples.astype(np.int16)
        seq = packet.sequence_number
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None and packet.ssrc == self._prev_ssrc and now - self._ssrc_since < PREV_SSRC_GRACE_S:
                self._late += 1  # a straggler from the source we just left must not switch us back
                return PushResult.LATE
            first = self._ssrc is None
            self._restart(packet, samples, now, hard=not first)
            return PushResult.ACCEPTED if first else PushResult.RESET
        pos = ts_diff(packet.timestamp, self._base_ts)
        c = self._c
        floor = self._floor_seq
        if floor is not None:
            if seq_diff(seq, floor) < 0:
                self._late += 1  # sent before the restart: it belongs to the old timeline
                return PushResult.LATE
            if seq_diff(self._highest, floor) > FLOOR_SPAN:
                self._floor_seq = None
        fresh = not self._starts and (self._underrun or packet.marker)
        ahead = pos - c
        gap = seq_diff(seq, self._highest)
        newest = gap > 0 or gap <= -MAX_DROPOUT
        if (ahead > self._jump_ahead and not fresh) or (ahead < -self._jump_back and not (fresh and newest)):
            self._restart(packet, samples, now, hard=True)
            return PushResult.RESET
        n = len(samples)
        if not n:
            return PushResult.ACCEPTED  # nothing to play: it only had to be checked as a source
        start = pos
        end = pos + n
        if end <= c:
            if newest and fresh:
                # Timestamps went back across a pause (a new talkspurt on a reset clock): follow them.
                self._highest = seq
                self._floor_seq = seq
                self._ref = now - pos / self._rate
                self._recenter(pos, now, None)
                self._store(pos, samples, seq)
                return PushResult.ACCEPTED
            played = self._played_seq
            if (played is not None and seq not in self._skipped and seq_diff(seq, played) <= 0
                    and seq_diff(seq, self._played_from) >= 0):
                self._dup += 1  # played already, or already counted late
                return PushResult.DUPLICATE
            self._skipped.discard(seq)
            self._late += 1
        elif pos < c:
            samples = samples[c - pos:]  # its head was already played or concealed
            pos = c
        if end > c:
            items = self._items
            if items and pos >= items[-1][0]:  # in order: the common case
                self._starts.append(pos)
                items.append((end, samples, seq))
            elif not self._store(pos, samples, seq):
                self._dup += 1
                return PushResult.DUPLICATE
        if newest:
            self._highest = seq
        else:
            self._reordered += 1

        rate = self._rate
        transit = now - start / rate
        ref = self._ref + REF_LEAK * (now - self._last_arrival)
        if transit < ref:
            ref = transit
        self._last_arrival = now
        excess = transit - ref
        if excess > self._max_s and end > c:
            ref = transit  # more than any jitter we absorb: the timeline shifted (e.g. across DTX)
        else:
            if now - self._bucket_t >= PEAK_BUCKET_S:
                self._age_peaks(now)
            need = excess + ((start - c) % self._frame) / rate
            if need > self._buckets[-1]:
                self._raise_peak(need)
        self._ref = ref
        if end <= c:
            return PushResult.LATE
        if fresh:
            self._recenter(pos, now, c)
        elif ahead > self._max_ahead:
            self._recenter(pos, now, c)
            upto, self._c = self._c, c
            self._discard(upto)
        return PushResult.ACCEPTED

    def _restart(self, packet: RtpPacket, samples: Samples, now: float, *, hard: bool) -> None:
        if hard:
            self._resets += 1
        if packet.ssrc != self._ssrc:
            self._prev_ssrc, self._ssrc, self._ssrc_since = self._ssrc, packet.ssrc, now
        seq = packet.sequence_number
        self._clear(packet.timestamp, seq, now)
        self._floor_seq = seq if hard else None
        self._recenter(0, now, None)
        if len(samples):
            self._store(0, samples, seq)

    def _age_peaks(self, now: float) -> None:
        buckets = self._buckets
        steps = int((now - self._bucket_t) / PEAK_BUCKET_S)
        if steps >= PEAK_BUCKETS:
            buckets[:] = [0.0] * PEAK_BUCKETS
            self._bucket_t = now
        else:
            del buckets[:steps]
            buckets.extend([0.0] * steps)
            self._bucket_t += steps * PEAK_BUCKET_S
        self._target = min(max(max(buckets), self._min_s), self._max_s)

    def _raise_peak(self, need: float) -> None:
        self._buckets[-1] = need
        if need > self._target:
            self._target = min(need, self._max_s)

    def _recenter(self, pos: int, now: float, low: int | None) -> None:
        """Move the cursor so that ``pos`` plays ``target`` after the fastest path would deliver it."""
        frame, last = self._frame, self._last_pop
        t_next = now if last is None or last + self._f_s < now else last + self._f_s
        lead = pos - (t_next - self._ref - self._target) * self._rate
        # Whole frames of lead keep frame-sized packets aligned with the frames we play.
        c = pos - max(0, math.ceil(lead / frame)) * frame
        if low is not None and c < low:
            c = pos - ((pos - low) // frame) * frame
        self._c = c
        self._underrun = False

    def _store(self, pos: int, samples: Samples, seq: int) -> bool:
        starts, items = self._starts, self._items
        end = pos + len(samples)
        i = bisect_right(starts, pos)
        if i and items[i - 1][0] > pos:  # overlaps audio we hold: keep only what is new
            cut = items[i - 1][0] - pos
            if cut >= len(samples):
                return False
            samples = samples[cut:]
            pos += cut
        if i < len(starts) and starts[i] < end:
            end = starts[i]
            if end <= pos:
                return False
            samples = samples[: end - pos]
        starts.insert(i, pos)
        items.insert(i, (end, samples, seq))
        return True

    def _discard(self, upto: int) -> None:
        """Skip the cursor forward to ``upto``, throwing away the received audio before it."""
        c, starts, items = self._c, self._starts, self._items
        k = dropped = 0
        for i, s in enumerate(starts):
            if s >= upto:
                break
            end, _, seq = items[i]
            dropped += min(end, upto) - max(s, c)
            self._consume(seq)
            if end <= upto:
                k = i + 1
        del starts[:k], items[:k]
        self._dropped += dropped
        self._c = upto

    def _consume(self, seq: int) -> None:
        last = self._played_seq
        if last is None:
            self._played_seq = self._played_from = seq
            return
        gap = seq_diff(seq, last)
        if gap > 0:
            if gap < MAX_DROPOUT:
                self._lost += gap - 1
                if gap > 1 and len(self._skipped) < SKIPPED_MAX:
                    self._skipped.update(seq_add(last, k) for k in range(1, min(gap, SKIPPED_MAX)))
            self._played_seq = seq

    def _rebase(self) -> None:
        # Keep positions far from the 2**31 horizon of ts_diff on very long calls.
        c = self._c
        self._base_ts = ts_add(self._base_ts, c)
        self._starts[:] = [s - c for s in self._starts]
        self._items[:] = [(e - c, d, q) for e, d, q in self._items]
        self._ref += c / self._rate
        self._c = 0

    # -- output --------------------------------------------------------------------------------------

    def pop(self, now: float) -> JitterFrame:
        if self._ssrc is None:
            return self._silence
        self._last_pop = now
        c = self._c
        if c > REBASE_AT:
            self._rebase()
            c = 0
        starts = self._starts
        offset = now - c / self._rate
        if not starts:
            # Underrun: hold the cursor so delayed audio still plays; the delay grows by one frame.
            self._underrun = True
            self._offset = min(offset, self._ref + self._max_s)
            return self._gap_frame()
        self._offset = offset
        delay = offset - self._ref
        target = self._target
        if delay < target - self._f_s / 2:
            return self._gap_frame()  # stretch towards a target raised by late packets
        if delay - target >= self._f_s:
            self._shrink(now)
            c = self._c
        elif self._excess_since is not None:
            self._excess_since = None
        items = self._items
        s = starts[0]
        end, data, seq = items[0]
        w_end = c + self._frame
        if s > c or end < w_end:
            return self._stitch()
        if seq != self._played_seq:
            self._consume(seq)
        if end == w_end:
            del starts[0], items[0]
        out = data if s == c and end == w_end else data[c - s: w_end - s]
        self._c = w_end
        self._underrun = False
        self._streak = 0
        self._last_good = out
        return _frame(out, FrameStatus.NORMAL)

    def _shrink(self, now: float) -> None:
        if self._excess_since is None:
            self._excess_since = now
        c, frame = self._c, self._frame
        if (now - self._last_drop >= SHRINK_GAP_S and self._items[-1][0] - c >= 2 * frame
                and (now - self._excess_since >= SHRINK_FORCE_S or self._quiet())):
            self._discard(c + frame)
            self._last_drop = self._excess_since = now
            self._offset = now - self._c / self._rate

    def _quiet(self) -> bool:
        c, frame = self._c, self._frame
        s = self._starts[0]
        if s >= c + frame:
            return True
        seg = self._items[0][1][max(c - s, 0): c + frame - s].astype(np.float32)
        return float(np.dot(seg, seg)) < QUIET_RMS * QUIET_RMS * len(seg)

    def _stitch(self) -> JitterFrame:
        c, frame, starts, items = self._c, self._frame, self._starts, self._items
        w_end = c + frame
        pieces: list[tuple[int, Samples]] = []
        covered = k = 0
        for i, s in enumerate(starts):
            if s >= w_end:
                break
            end, data, seq = items[i]
            a, b = max(s, c), min(end, w_end)
            pieces.append((a - c, data[a - s: b - s]))
            covered += b - a
            self._consume(seq)
            if end <= w_end:
                k = i + 1
        del starts[:k], items[:k]
        self._c = w_end
        if not covered:
            return self._gap_frame()  # lost, or still on its way (then it will count late)
        self._underrun = False
        if covered == frame:  # several packets make one frame (10 ms or 30 ms packets)
            out = self._last_good = np.concatenate([p for _, p in pieces])
            self._streak = 0
            return _frame(out, FrameStatus.NORMAL)
        fill = self._conceal()
        out = np.zeros(frame, np.int16) if fill is None else fill
        for off, part in pieces:
            out[off: off + len(part)] = part
        self._concealed += 1
        return _frame(out, FrameStatus.CONCEALED)

    def _conceal(self) -> Samples | None:
        # Repeat the last good frame 6 dB quieter each time (one bit shift per frame), then give up.
        last = self._last_good
        if last is None or self._streak >= MAX_CONCEALED:
            return None
        self._streak += 1
        return last >> self._streak

    def _gap_frame(self) -> JitterFrame:
        fill = self._conceal()
        if fill is None:
            return self._silence
        self._concealed += 1
        return _frame(fill, FrameStatus.CONCEALED)

    # -- state ---------------------------------------------------------------------------------------

    def stats(self) -> JitterStats:
        buffered = (self._items[-1][0] - self._c) / self._rate if self._items else 0.0
        delay = self._target if self._offset is None else self._offset - self._ref
        return JitterStats(
            received=self._received, lost=self._lost, late=self._late, duplicate=self._dup,
            reordered=self._reordered, concealed_frames=self._concealed,
            dropped_ms=1000 * self._dropped / self._rate, delay_ms=1000 * delay,
            target_delay_ms=1000 * self._target, buffered_ms=1000 * buffered, resets=self._resets,
        )


__all__ = ["FrameStatus", "JitterBuffer", "JitterFrame", "JitterStats", "PushResult", "Samples"]
