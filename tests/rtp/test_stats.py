"""Receiver statistics (RFC 3550 A.3 loss, A.8 jitter) with expectations worked out from the RFC formulas."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.rtcp import ReportBlock
from rtp.seqnum import SEQ_MOD, TS_MOD
from rtp.stats import ReceiverStats, SenderStats

pytestmark = pytest.mark.unit

RATE = 8000
PTIME = 0.02
SAMPLES = 160  # 20 ms at 8 kHz


def _feed(stats: ReceiverStats, seqs: list[int], *, start_seq: int = 0, ts0: int = 0, t0: float = 100.0) -> None:
    """Send packet ``i`` (offset from ``start_seq``) with its nominal timestamp and arrival time."""
    for i in seqs:
        stats.update((start_seq + i) % SEQ_MOD, (ts0 + i * SAMPLES) % TS_MOD, t0 + i * PTIME)


def test_no_packets_yet() -> None:
    stats = ReceiverStats(RATE)
    assert (stats.received, stats.expected, stats.lost, stats.jitter) == (0, 0, 0, 0.0)
    block = stats.report_block(1, 0, 0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 0)


def test_first_packet_counts() -> None:
    stats = ReceiverStats(RATE)
    stats.update(500, 0, 1.0)
    assert (stats.received, stats.expected, stats.lost) == (1, 1, 0)


def test_loss_counting_with_known_drops() -> None:
    stats = ReceiverStats(RATE)
    dropped = {10, 20, 21, 57}
    _feed(stats, [i for i in range(100) if i not in dropped])
    assert stats.expected == 100
    assert stats.received == 96
    assert stats.lost == 4
    assert stats.duplicates == stats.reordered == 0


def test_loss_counting_across_the_sequence_wrap() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, [i for i in range(40) if i != 25], start_seq=65520)  # 65520..65535, 0..23
    assert stats.expected == 40
    assert stats.lost == 1
    assert stats.highest_seq == 65520 + 39  # extended: one cycle counted


def test_duplicates_make_lost_negative() -> None:
    # A.3: duplicates count as received, so cumulative loss can go below zero.
    stats = ReceiverStats(RATE)
    _feed(stats, [0, 1, 2, 2, 3, 1])
    assert stats.expected == 4
    assert stats.received == 6
    assert stats.lost == -2
    assert stats.duplicates == 2
    assert stats.reordered == 0
    assert stats.report_block(1, 0, 0).cumulative_lost == -2


def test_reordered_packets_are_counted_once() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, [0, 2, 1, 5, 3, 4, 4])
    assert stats.reordered == 3  # 1, 3 and 4 each arrived after a higher number
    assert stats.duplicates == 1  # the second 4
    assert stats.lost == -1


def test_late_packet_after_a_large_gap_is_reordered() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, [0, 2000])  # a gap under MAX_DROPOUT advances the maximum
    stats.update(1950, 1950 * SAMPLES, 200.0)  # 50 behind: within A.1's MAX_MISORDER
    assert stats.reordered == 1


def test_packet_from_before_the_first_one_counts_as_reordered() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, [0, 1], start_seq=5)
    stats.update(65534, 0, 101.0)  # older than the stream start: A.1 treats it as misordered
    assert stats.reordered == 1
    assert stats.expected == 2


def test_fraction_lost_per_interval() -> None:
    stats = ReceiverStats(RATE)
    # Interval 1: 0..99 with 4 lost. A.3: fraction = (lost_interval << 8) / expected_interval.
    _feed(stats, [i for i in range(100) if i not in {3, 4, 50, 99}] + [100])
    first = stats.report_block(0xABC, lsr=0x1234, dlsr=0x10)
    assert first == ReportBlock(0xABC, (4 * 256) // 101, 4, 100, int(stats.jitter), 0x1234, 0x10)
    # Interval 2: 101..200, nothing lost: fraction 0 even though the cumulative count stays at 4.
    _feed(stats, list(range(101, 201)))
    second = stats.report_block(0xABC, 0, 0)
    assert (second.fraction_lost, second.cumulative_lost, second.highest_seq) == (0, 4, 200)
    # Interval 3: 201..300 with every other packet lost: 50 of 100 -> 128/256.
    _feed(stats, list(range(202, 301, 2)))
    third = stats.report_block(0xABC, 0, 0)
    assert (third.fraction_lost, third.cumulative_lost) == (50 * 256 // 100, 54)
    # Interval 4: nothing arrived: expected_interval 0, fraction 0.
    assert stats.report_block(0xABC, 0, 0).fraction_lost == 0


def test_duplicates_in_an_interval_give_fraction_zero() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, [0, 1, 2])
    stats.report_block(1, 0, 0)
    _feed(stats, [3, 3, 3, 5])  # one lost, two duplicates: lost_interval = 3 - 4 < 0
    assert stats.report_block(1, 0, 0).fraction_lost == 0


def test_cumulative_lost_clamps_to_24_bits() -> None:
    stats = ReceiverStats(RATE)
    seq = 0
    stats.update(seq, 0, 0.0)
    # A.3: clamp at 0x7fffff. Each gap of 2999 (< MAX_DROPOUT) loses 2998 packets.
    for _ in range(2800):
        seq = (seq + 2999) % SEQ_MOD
        stats.update(seq, 0, 0.0)
    assert stats.lost == 2800 * 2998 > (1 << 23) - 1
    assert stats.report_block(1, 0, 0).cumulative_lost == (1 << 23) - 1


def test_restart_resets_the_counters_like_init_seq() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, [0, 1, 2, 4])
    stats.report_block(1, 0, 0)
    stats.update(30000, 0, 200.0)  # wild jump: held back until confirmed
    assert stats.received == 4
    stats.update(30001, 160, 200.02)  # confirmed: A.1 init_seq, received_prior = expected_prior = 0
    stats.update(30003, 480, 200.06)
    assert (stats.received, stats.expected, stats.lost) == (2, 3, 1)
    assert stats.report_block(1, 0, 0).fraction_lost == 256 // 3
    assert stats.highest_seq == 30003


def test_jitter_zero_for_constant_delay() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, list(range(200)), t0=1234.5)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_converges_for_alternating_offsets() -> None:
    # Arrivals alternate d early / d late around the nominal 20 ms grid, so every A.8 difference D has
    # |D| = 2 d * rate. J_n = J_{n-1} + (|D| - J_{n-1}) / 16 with J_1 = 0 gives J_n = |D| (1 - (15/16)^(n-1)).
    d = 0.004
    stats = ReceiverStats(RATE)
    n = 300
    for i in range(n):
        offset = d if i % 2 else -d
        stats.update(i, 1000 + i * SAMPLES, 50.0 + i * PTIME + offset)
    target = 2 * d * RATE  # 64 timestamp units, 8 ms
    assert stats.jitter == pytest.approx(target * (1 - (15 / 16) ** (n - 1)), rel=1e-9)
    assert stats.jitter == pytest.approx(target, rel=1e-6)
    assert stats.jitter_ms == pytest.approx(2 * d * 1000, rel=1e-6)
    assert stats.report_block(1, 0, 0).jitter == int(stats.jitter)


def test_jitter_after_ten_packets_matches_the_recurrence() -> None:
    d = 0.001
    stats = ReceiverStats(16000)
    for i in range(10):
        stats.update(i, i * 320, i * PTIME + (d if i % 2 else -d))
    assert stats.jitter == pytest.approx(2 * d * 16000 * (1 - (15 / 16) ** 9), rel=1e-9)


def test_jitter_ignores_the_timestamp_wrap() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, list(range(50)), ts0=TS_MOD - 10 * SAMPLES)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_not_polluted_by_a_restart() -> None:
    stats = ReceiverStats(RATE)
    _feed(stats, list(range(10)))
    stats.update(40000, 123456789, 200.0)
    stats.update(40001, 123456789 + SAMPLES, 200.0 + PTIME)
    stats.update(40002, 123456789 + 2 * SAMPLES, 200.0 + 2 * PTIME)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_clock_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="clock_rate"):
        ReceiverStats(0)


def test_sender_stats_count_payload_octets_modulo_2_pow_32() -> None:
    sender = SenderStats()
    for _ in range(3):
        sender.on_sent(160)
    assert (sender.packet_count, sender.octet_count) == (3, 480)
    sender.octet_count = TS_MOD - 100
    sender.packet_count = TS_MOD - 1
    sender.on_sent(160)
    assert (sender.packet_count, sender.octet_count) == (0, 60)
    sender.reset()
    assert (sender.packet_count, sender.octet_count) == (0, 0)


@given(
    st.integers(0, SEQ_MOD - 1),
    st.integers(2, 300),
    st.lists(st.tuples(st.integers(1, 299), st.integers(1, 20)), max_size=20),
    st.sets(st.integers(1, 299), max_size=30),
)
def test_counters_against_a_brute_force_model(
    start: int, n: int, swaps: list[tuple[int, int]], drops: set[int]
) -> None:
    # Sequence 0 arrives first; later packets are dropped and locally displaced (less than MAX_MISORDER).
    order = [i for i in range(n) if i not in drops or i == n - 1]
    for pos, dist in swaps:
        if pos < len(order) and pos + dist < len(order):
            order[pos], order[pos + dist] = order[pos + dist], order[pos]
    stats = ReceiverStats(RATE)
    for i in order:
        stats.update((start + i) % SEQ_MOD, i * SAMPLES, i * PTIME)
    highest = max(order)
    assert stats.expected == highest + 1
    assert stats.received == len(order)
    assert stats.lost == highest + 1 - len(order)
    assert stats.highest_seq == start + highest
    assert stats.duplicates == 0
    assert stats.reordered == sum(1 for k, i in enumerate(order) if any(j > i for j in order[:k]))
