"""Reception statistics of one RTP source (RFC 3550 A.3 loss, A.8 jitter) and the sender's SR counters."""

from __future__ import annotations

from rtp.rtcp import ReportBlock
from rtp.seqnum import SequenceExtender, ts_diff

__all__ = ["ReceiverStats", "SenderStats"]

_U32 = 1 << 32
_LOST_MAX = (1 << 23) - 1
_LOST_MIN = -(1 << 23)
# Recently received sequence numbers, as bits below the extended maximum. A.1 rejects anything more than
# MAX_MISORDER (100) behind the maximum, so 128 bits see every packet it accepts as reordered or duplicate.
_WINDOW = 128
_WINDOW_MASK = (1 << _WINDOW) - 1


class ReceiverStats:
    """Per-packet ``update`` is O(1); ``report_block`` closes the interval used for ``fraction_lost``."""

    __slots__ = ("clock_rate", "duplicates", "reordered", "_expected_prior", "_jitter", "_last_arrival",
                 "_last_ts", "_received_prior", "_seen", "_seq")

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self.duplicates = 0
        self.reordered = 0
        # min_sequential=1: the media was negotiated in SDP, so the first packet is trusted and counted.
        self._seq = SequenceExtender(min_sequential=1)
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_arrival = 0.0
        self._last_ts = 0
        self._seen = 0

    def update(self, seq: int, timestamp: int, arrival: float) -> None:
        """Account one packet; ``arrival`` is a monotonic time in seconds."""
        ext_seq = self._seq
        prev_max = ext_seq.cycles + ext_seq.max_seq  # extended_max, without the property call per packet
        ext = ext_seq.update(seq)
        if ext is None:
            return  # A.1: an unconfirmed large jump is discarded
        if ext_seq.received == 1:
            # First packet, or A.1 init_seq after a confirmed restart: the interval counters start again,
            # and the transit time of the previous numbering says nothing about this one.
            self._expected_prior = self._received_prior = 0
            self._seen = 1
        else:
            new_max = ext_seq.cycles + ext_seq.max_seq
            if new_max != prev_max:
                ahead = new_max - prev_max
                self._seen = ((self._seen << ahead) | 1) & _WINDOW_MASK if ahead < _WINDOW else 1
            else:
                bit = 1 << (new_max - ext) if 0 <= new_max - ext < _WINDOW else 0
                if self._seen & bit:
                    self.duplicates += 1
                else:
                    self.reordered += 1
                    self._seen |= bit
            # A.8: D is the change in transit time, computed from differences so that 32-bit timestamp
            # wrap-around needs no special case; J += (|D| - J) / 16.
            d = (arrival - self._last_arrival) * self.clock_rate - ts_diff(timestamp, self._last_ts)
            self._jitter += (abs(d) - self._jitter) / 16
        self._last_arrival = arrival
        self._last_ts = timestamp

    @property
    def received(self) -> int:
        """Packets received, duplicates included (A.3)."""
        return self._seq.received

    @property
    def expected(self) -> int:
        if not self._seq.received:
            return 0
        return self._seq.extended_max - self._seq.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative loss; negative when duplicates outnumber losses (A.3)."""
        return self.expected - self.received

    @property
    def highest_seq(self) -> int:
        return self._seq.extended_max % _U32

    @property
    def jitter(self) -> float:
        """Interarrival jitter in RTP timestamp units."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self.clock_rate

    def report_block(self, ssrc: int, lsr: int, dlsr: int) -> ReportBlock:
        """The §6.4.1 report block for this source; starts the next fraction-lost interval (A.3)."""
        expected = self.expected
        received = self.received
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (received - self._received_prior)
        self._expected_prior = expected
        self._received_prior = received
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        cumulative = min(_LOST_MAX, max(_LOST_MIN, expected - received))  # A.3 clamps to 24 bits
        return ReportBlock(ssrc, fraction, cumulative, self.highest_seq, min(int(self._jitter), _U32 - 1),
                           lsr, dlsr)


class SenderStats:
    """The SR sender info counters (§6.4.1): packets and payload octets sent, both modulo 2**32."""

    __slots__ = ("octet_count", "packet_count")

    def __init__(self) -> None:
        self.packet_count = 0
        self.octet_count = 0

    def on_sent(self, payload_len: int) -> None:
        # §6.4.1 counts payload octets only: not header, CSRC list, extension or padding.
        self.packet_count = (self.packet_count + 1) % _U32
        self.octet_count = (self.octet_count + payload_len) % _U32

    def reset(self) -> None:
        """§6.4.1: the counts SHOULD be reset when the sender changes its SSRC."""
        self.packet_count = 0
        self.octet_count = 0
