"""RFC 4733 telephone-events: the payload format (§2.3), a de-duplicating receiver and a sender.

One event (a key press) is one RTP timestamp: every packet of it repeats that timestamp with a growing
duration (§2.5.1.2), and the last one, with the E bit, is sent three times (§2.5.1.4). An event longer
than the 16-bit duration field continues in segments with new timestamps (§2.5.1.3, §2.5.2.3).
The receiver is sans-I/O: packets and ``now`` in, :data:`DtmfEvent` values out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from rtp.errors import PacketError
from rtp.packet import RtpPacket
from rtp.seqnum import ts_diff

_EVENT = struct.Struct("!BBH")
_CHARS = "0123456789*#ABCD!"  # §3.2: events 0-15 are DTMF digits, 16 is flash (written "!")
MAX_DURATION = 0xFFFF
ENDED_MEMORY = 32


def event_to_char(event: int) -> str:
    if not 0 <= event < len(_CHARS):
        raise ValueError(f"telephone-event {event} is not a DTMF digit or flash")
    return _CHARS[event]


def char_to_event(char: str) -> int:
    index = _CHARS.find(char.upper()) if len(char) == 1 else -1
    if index < 0:
        raise ValueError(f"{char!r} is not a DTMF digit (0-9, *, #, A-D) or flash (!)")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One §2.3 event block: event code, E(nd) bit, R(eserved) bit, volume (-dBm0) and duration."""

    event: int
    end: bool = False
    volume: int = 0
    """Power level of the tone, 0 to 63 meaning 0 to -63 dBm0 (§2.3.4)."""
    duration: int = 0
    """Samples since the event's RTP timestamp (§2.3.5)."""
    reserved: bool = False
    """The R bit: sent as zero, ignored on receipt (§2.3.3)."""

    SIZE: ClassVar[int] = 4

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first event block; further blocks (§2.5.1.5, RFC 2198 redundancy) are ignored."""
        if len(payload) < cls.SIZE:
            raise PacketError(f"telephone-event payload truncated: {len(payload)} bytes, need 4")
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration, bool(flags & 0x40))

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255:
            raise PacketError(f"telephone-event code {self.event} out of range 0-255")
        if not 0 <= self.volume <= 63:
            raise PacketError(f"telephone-event volume {self.volume} out of range 0-63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise PacketError(f"telephone-event duration {self.duration} out of range 0-65535")
        flags = (0x80 if self.end else 0) | (0x40 if self.reserved else 0) | self.volume
        return _EVENT.pack(self.event, flags, self.duration)


@dataclass(frozen=True, slots=True)
class DigitStarted:
    digit: str
    timestamp: int
    """RTP timestamp of the event: the instant the key went down."""
    now: float


@dataclass(frozen=True, slots=True)
class DigitEnded:
    digit: str
    timestamp: int
    """RTP timestamp of the event's first segment."""
    duration: int
    """In samples (RTP timestamp units), over all segments."""
    duration_ms: float
    volume: int
    inferred: bool = False
    """True when no end packet arrived: ended by the timeout or by the next event."""


DtmfEvent = DigitStarted | DigitEnded


class _Active:
    __slots__ = ("base", "duration", "event", "last_seen", "seg_ts", "ssrc", "start_ts", "volume")

    def __init__(self, ssrc: int, timestamp: int, event: int, now: float) -> None:
        self.ssrc = ssrc
        self.start_ts = self.seg_ts = timestamp
        self.event = event
        self.base = 0  # duration of the segments before the current one
        self.duration = 0
        self.volume = 0
        self.last_seen = now


class DtmfReceiver:
    """Turns telephone-event packets into one :class:`DigitStarted` and one :class:`DigitEnded` per key press."""

    __slots__ = ("_active", "_clock_rate", "_ended", "_timeout")

    def __init__(self, clock_rate: int = 8000, timeout: float = 1.0) -> None:
        self._clock_rate = clock_rate
        self._timeout = timeout
        self._active: _Active | None = None
        # Events already ended, by (SSRC, timestamp): the repeated end packets and stragglers land here.
        self._ended: dict[tuple[int, int], None] = {}

    def feed(self, packet: RtpPacket, now: float) -> list[DtmfEvent]:
        """Raise :class:`PacketError` for a payload too short to hold an event."""
        block = TelephoneEvent.parse(packet.payload)
        if (packet.ssrc, packet.timestamp) in self._ended or block.event >= len(_CHARS):
            return []  # a repeat of a finished event, or a tone that is not a digit (RFC 4734)
        out: list[DtmfEvent] = []
        act = self._active
        if act is not None:
            same_source = act.ssrc == packet.ssrc
            if same_source and act.seg_ts == packet.timestamp and act.event == block.event:
                self._update(act, block, now, out)
                return out
            step = ts_diff(packet.timestamp, act.seg_ts)
            if (same_source and act.event == block.event and not packet.marker
                    and max(act.duration, MAX_DURATION - self._clock_rate) <= step <= MAX_DURATION):
                # §2.5.2.3: a new segment of the same long event starts where the last one ended.
                act.base += step
                act.seg_ts = packet.timestamp
                act.duration = 0
                self._update(act, block, now, out)
                return out
            if same_source and step < 0:
                return out  # a late packet of an event before this one
            # §2.5.1.2: a new timestamp is a new event, so the previous one is over even if its
            # end packets were all lost.
            out.append(self._finish(act, inferred=True))
        act = self._active = _Active(packet.ssrc, packet.timestamp, block.event, now)
        out.append(DigitStarted(event_to_char(block.event), packet.timestamp, now))
        self._update(act, block, now, out)
        return out

    def poll(self, now: float) -> list[DtmfEvent]:
        """End an event whose updates stopped coming (RFC 4733 event state is soft)."""
        act = self._active
        if act is not None and now - act.last_seen >= self._timeout:
            return [self._finish(act, inferred=True)]
        return []

    def get_timer(self) -> float | None:
        """When :meth:`poll` next needs calling, or ``None``."""
        return None if self._active is None else self._active.last_seen + self._timeout

    def _update(self, act: _Active, block: TelephoneEvent, now: float, out: list[DtmfEvent]) -> None:
        if block.duration > act.duration:  # reordered updates carry smaller durations
            act.duration = block.duration
        act.volume = block.volume
        act.last_seen = now
        if block.end:
            out.append(self._finish(act, inferred=False))

    def _finish(self, act: _Active, *, inferred: bool) -> DigitEnded:
        self._active = None
        ended = self._ended
        ended[(act.ssrc, act.seg_ts)] = None
        ended[(act.ssrc, act.start_ts)] = None
        while len(ended) > ENDED_MEMORY:
            del ended[next(iter(ended))]
        total = act.base + act.duration
        return DigitEnded(event_to_char(act.event), act.start_ts, total, 1000 * total / self._clock_rate,
                          act.volume, inferred)


class DtmfSender:
    """Builds the telephone-event packets of one key press; the caller adds RTP headers and sequence numbers."""

    __slots__ = ()

    def packets(self, digit: str, start_timestamp: int, duration_ms: int = 100, volume: int = 10,
                clock_rate: int = 8000, ptime_ms: int = 20) -> list[tuple[TelephoneEvent, bool]]:
        """(payload, marker) per packet, one every ``ptime_ms``; all use ``start_timestamp`` as RTP timestamp.

        The first packet has the marker bit (§2.5.1.2), the duration grows by one packet time each
        packet, and the final packet with the E bit is sent three times (§2.5.1.4). Events longer than
        one 16-bit segment (§2.5.1.3) are refused, as they need new timestamps.
        """
        event = char_to_event(digit)
        if not 0 <= start_timestamp < 1 << 32:
            raise ValueError(f"RTP timestamp {start_timestamp} out of range")
        if not 0 <= volume <= 63:
            raise ValueError(f"volume {volume} out of range 0-63 (-dBm0)")
        total = duration_ms * clock_rate // 1000
        step = ptime_ms * clock_rate // 1000
        if total < 1 or step < 1:
            raise ValueError("duration_ms and ptime_ms must each span at least one sample")
        if total > MAX_DURATION:
            raise ValueError(f"{duration_ms} ms is longer than one telephone-event segment ({MAX_DURATION} samples)")
        out = [(TelephoneEvent(event, False, volume, d), d == step) for d in range(step, total, step)]
        final = TelephoneEvent(event, True, volume, total)
        out.append((final, not out))
        out += [(final, False)] * 2
        return out


__all__ = [
    "DigitEnded", "DigitStarted", "DtmfEvent", "DtmfReceiver", "DtmfSender", "TelephoneEvent",
    "char_to_event", "event_to_char",
]
