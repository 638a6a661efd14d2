"""Outbound pacing: a drift-free 20 ms deadline grid and the RTP header fields of the frames sent on it.

Theory of operation
-------------------
Deadlines are absolute, ``start + n * interval``: a late wake-up never pushes the following deadlines back, so
the packet rate cannot drift, whatever the scheduling noise. When the caller wakes after several deadlines
(an event-loop stall, a GC pause), sending every missed frame at once would hit the peer's jitter buffer with a
burst it must discard (the classic "catch-up burst" of sleep-based senders), while sending none would leave a
hole. The schedule sends at most ``max_burst`` frames (the most recent slots) and *skips* the older ones.

A skipped slot still consumes its 20 ms of media time: RFC 3550 §5.1 ties the RTP timestamp to the sampling
instant, so the timestamp jumps by the skipped samples while the sequence number (one per packet *sent*) does
not. The receiver then sees a timestamp gap with no sequence gap, exactly what DTX looks like (RFC 3389 §1),
and its playout clock stays aligned with ours.

Both classes here are sans-I/O: time comes in as ``now`` (seconds, monotonic) and packets go out as bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rtp.packet import build_rtp
from rtp.seqnum import seq_add, ts_add

# Slack for deadlines that sit on the same grid but were computed from a different anchor (one ulp apart):
# a deadline within 1 us of ``now`` counts as reached.
_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Due:
    """What one wake-up of a :class:`PacerSchedule` asks for."""

    send: int
    """Frames to send now (0 .. max_burst), the most recent slots."""
    skipped: int
    """Older missed slots that will never be sent; their timestamps must still be consumed (``skip``)."""


# poll() runs once per stream per tick: hand out shared values for the common outcomes instead of allocating.
_NOTHING = Due(0, 0)
_ON_TIME = Due(1, 0)


class PacerSchedule:
    """Absolute deadlines ``start + n * interval``; ``n`` counts the slots already sent or skipped."""

    __slots__ = ("interval", "max_burst", "sent", "skipped", "start", "_n", "_next")

    def __init__(self, start: float, interval: float = 0.020, max_burst: int = 2) -> None:
        if not interval > 0:
            raise ValueError(f"pacer interval must be positive, got {interval}")
        if max_burst < 1:
            raise ValueError(f"pacer max_burst must be at least 1, got {max_burst}")
        self.start = start
        self.interval = interval
        self.max_burst = max_burst
        self.sent = 0
        """Frames handed out for sending so far."""
        self.skipped = 0
        """Slots skipped after stalls so far."""
        self._n = 0
        self._next = start

    @property
    def slot(self) -> int:
        """Index of the next slot: the number of slots already sent or skipped."""
        return self._n

    def next_deadline(self) -> float:
        return self._next

    def poll(self, now: float) -> Due:
        soon = now + _EPSILON
        if soon < self._next:
            return _NOTHING
        if soon < self._next + self.interval:  # the usual wake-up: exactly one slot reached
            self._n += 1
            self._next = self.start + self._n * self.interval
            self.sent += 1
            return _ON_TIME
        # Number of grid points <= now, computed from the anchor rather than by stepping (drift-free).
        reached = math.floor((now - self.start + _EPSILON) / self.interval) + 1
        missed = max(reached - self._n, 1)
        self._n += missed
        self._next = self.start + self._n * self.interval
        send = min(missed, self.max_burst)
        self.sent += send
        self.skipped += missed - send
        return Due(send, missed - send)

    def due(self, now: float) -> int:
        """Frames to send now. Callers that build packets need ``poll`` instead, which also reports the skipped
        slots whose timestamps must be consumed."""
        return self.poll(now).send


class OutboundStream:
    """Header state of one outbound RTP stream: sequence numbers, timestamps and talkspurt marker bits.

    ``next_packet`` is the low-level builder (the caller decides the marker); ``next_frame`` is the usual
    per-slot call: ``None`` means "no speech in this slot" and becomes an encoded-silence packet in continuous
    mode, or nothing at all (only the timestamp advances) in DTX mode (``send_silence=False``).

    Marker bit (RFC 3551 §4.1): a sender with silence suppression SHOULD set it on the first packet of each
    talkspurt, i.e. the first packet after a period in which it sent nothing; an application *without* silence
    suppression MUST leave it at zero, so by default ``next_frame`` marks talkspurts only in DTX mode.
    ``mark_talkspurts=True`` marks the first speech frame after silence frames even in continuous mode, for
    peers whose jitter buffer re-adapts at markers; ``False`` never marks.
    """

    __slots__ = (
        "mark_talkspurts", "octets_sent", "packets_sent", "payload_type", "samples_per_frame",
        "send_silence", "sequence_number", "silence_payload", "ssrc", "timestamp", "_in_talkspurt",
    )

    def __init__(self, ssrc: int, payload_type: int, initial_seq: int, initial_ts: int,
                 samples_per_frame: int = 160, *, silence_payload: bytes | None = None,
                 send_silence: bool = True, mark_talkspurts: bool | None = None) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type {payload_type} out of range 0-127")
        if not 0 <= ssrc < 1 << 32:
            raise ValueError(f"RTP SSRC {ssrc} out of range")
        if samples_per_frame <= 0:
            raise ValueError(f"samples_per_frame must be positive, got {samples_per_frame}")
        if send_silence and silence_payload is None:
            raise ValueError("continuous mode (send_silence=True) needs a silence_payload")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence_number = seq_add(initial_seq, 0)
        """Sequence number of the next packet."""
        self.timestamp = ts_add(initial_ts, 0)
        """RTP timestamp of the next frame (sent or skipped)."""
        self.samples_per_frame = samples_per_frame
        self.silence_payload = silence_payload
        self.send_silence = send_silence
        self.mark_talkspurts = (not send_silence) if mark_talkspurts is None else mark_talkspurts
        self.packets_sent = 0
        """RFC 3550 §6.4.1 sender's packet count."""
        self.octets_sent = 0
        """RFC 3550 §6.4.1 sender's octet count: payload octets only, no header or padding."""
        self._in_talkspurt = False

    def next_packet(self, payload: bytes, talkspurt_start: bool = False) -> bytes:
        packet = build_rtp(self.payload_type, self.sequence_number, self.timestamp, self.ssrc, payload,
                           talkspurt_start)
        self.sequence_number = seq_add(self.sequence_number, 1)
        self.timestamp = ts_add(self.timestamp, self.samples_per_frame)
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return packet

    def skip(self, frames: int) -> None:
        """Consume ``frames`` slots without sending: the timestamp advances, the sequence number does not."""
        if frames < 0:
            raise ValueError(f"cannot skip a negative number of frames ({frames})")
        self.timestamp = ts_add(self.timestamp, frames * self.samples_per_frame)

    def next_frame(self, speech: bytes | None) -> bytes | None:
        if speech is None:
            self._in_talkspurt = False
            if self.send_silence:
                if self.silence_payload is None:
                    raise ValueError("continuous mode (send_silence=True) needs a silence_payload")
                return self.next_packet(self.silence_payload, False)
            self.skip(1)
            return None
        start = not self._in_talkspurt
        self._in_talkspurt = True
        return self.next_packet(speech, start and self.mark_talkspurts)

    def end_talkspurt(self) -> None:
        """Make the next speech frame start a talkspurt (e.g. after a barge-in flushed the current one)."""
        self._in_talkspurt = False


__all__ = ["Due", "OutboundStream", "PacerSchedule"]
