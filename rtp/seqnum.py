"""Serial-number arithmetic for 16-bit sequence numbers and 32-bit timestamps (RFC 3550 §5.1, A.1).

This is the one place where wrap-around is handled: nobody else masks with 0xFFFF.
"""

from __future__ import annotations

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_add(seq: int, n: int) -> int:
    return (seq + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in (-32768, 32768]; positive when a is after b."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d > SEQ_MOD // 2 else d


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def ts_add(ts: int, n: int) -> int:
    return (ts + n) % TS_MOD


def ts_diff(a: int, b: int) -> int:
    """Signed distance a - b of two RTP timestamps in (-2**31, 2**31]."""
    d = (a - b) % TS_MOD
    return d - TS_MOD if d > TS_MOD // 2 else d


def ts_gt(a: int, b: int) -> bool:
    return ts_diff(a, b) > 0


class SequenceExtender:
    """Extended (cycle-counting) sequence numbers with the source validation of RFC 3550 A.1.

    ``update(seq)`` returns the 32-bit extended sequence number, or ``None`` while the source is on
    probation or when the packet is a wild jump not yet confirmed. A jump of more than ``max_dropout``
    ahead (or ``max_misorder`` behind) is accepted as a restart when the next packet follows it, as
    A.1 does for a source that restarted its numbering.
    """

    MAX_DROPOUT = 3000
    MAX_MISORDER = 100
    MIN_SEQUENTIAL = 2

    __slots__ = ("base_seq", "bad_seq", "cycles", "max_seq", "probation", "received", "_min_sequential", "_started")

    def __init__(self, min_sequential: int = MIN_SEQUENTIAL) -> None:
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = SEQ_MOD + 1  # impossible value: no pending jump
        # A.1 validates a source after MIN_SEQUENTIAL in-order packets; fewer than one makes no sense.
        self._min_sequential = max(1, min_sequential)
        self.probation = self._min_sequential
        self.received = 0
        self._started = False

    def _init(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = SEQ_MOD + 1
        self.cycles = 0
        self.received = 0

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    def update(self, seq: int) -> int | None:
        if not self._started:
            # A.1: the first packet initialises the source with max_seq = seq - 1 and then goes through the
            # probation check below like any other, so it counts as the first of MIN_SEQUENTIAL packets.
            self._started = True
            self._init(seq)
            self.max_seq = (seq - 1) % SEQ_MOD
        udelta = (seq - self.max_seq) % SEQ_MOD
        if self.probation:
            # A.1: packets must be in sequence to leave probation.
            if seq == (self.max_seq + 1) % SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init(seq)
                    self.received = 1
                    return self.cycles + seq
            else:
                self.probation = self._min_sequential - 1
                self.max_seq = seq
            return None
        if udelta < self.MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD  # wrapped
            self.max_seq = seq
        elif udelta <= SEQ_MOD - self.MAX_MISORDER:
            # A very large jump: accept it only if the next packet confirms it (source restarted).
            if seq == self.bad_seq:
                self._init(seq)
            else:
                self.bad_seq = (seq + 1) % SEQ_MOD
                return None
        else:
            # Duplicate or reordered packet: extend relative to the current cycle.
            ext = self.cycles + seq
            if seq > self.max_seq and self.cycles >= SEQ_MOD:
                ext -= SEQ_MOD
            self.received += 1
            return ext
        self.received += 1
        return self.cycles + seq


__all__ = [
    "SEQ_MOD", "TS_MOD", "SequenceExtender", "seq_add", "seq_diff", "seq_gt", "ts_add", "ts_diff", "ts_gt",
]
