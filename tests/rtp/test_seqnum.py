"""Serial-number arithmetic (RFC 3550 §5.1) and the A.1 sequence extender, tested right at the wraps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.seqnum import (
    SEQ_MOD,
    TS_MOD,
    SequenceExtender,
    seq_add,
    seq_diff,
    seq_gt,
    ts_add,
    ts_diff,
    ts_gt,
)

pytestmark = pytest.mark.unit


def test_seq_arithmetic_wraps_at_65535() -> None:
    assert seq_add(65535, 1) == 0
    assert seq_add(0, -1) == 65535
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(5, 5) == 0
    assert seq_gt(0, 65535)
    assert not seq_gt(65535, 0)
    assert not seq_gt(7, 7)


def test_seq_diff_half_range_is_positive() -> None:
    # The documented range is (-32768, 32768]: exactly half-way counts as ahead.
    assert seq_diff(32768, 0) == 32768
    assert seq_diff(0, 32768) == 32768
    assert seq_diff(32769, 0) == -32767


def test_timestamp_arithmetic_wraps_at_2_pow_32() -> None:
    assert ts_add(TS_MOD - 1, 1) == 0
    assert ts_add(TS_MOD - 160, 320) == 160
    assert ts_diff(160, TS_MOD - 160) == 320
    assert ts_diff(TS_MOD - 160, 160) == -320
    assert ts_gt(0, TS_MOD - 1)
    assert not ts_gt(TS_MOD - 1, 0)
    assert ts_diff(TS_MOD // 2, 0) == TS_MOD // 2


@given(st.integers(0, SEQ_MOD - 1), st.integers(-32767, 32768))
def test_seq_diff_inverts_seq_add(a: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), a) == n


@given(st.integers(0, TS_MOD - 1), st.integers(-(2**31) + 1, 2**31))
def test_ts_diff_inverts_ts_add(a: int, n: int) -> None:
    assert ts_diff(ts_add(a, n), a) == n


def _feed(ext: SequenceExtender, seqs: list[int]) -> list[int | None]:
    return [ext.update(s) for s in seqs]


def test_extender_counts_a_cycle_at_the_wrap() -> None:
    ext = SequenceExtender(min_sequential=1)
    assert _feed(ext, [65534, 65535, 0, 1]) == [65534, 65535, 65536, 65537]
    assert ext.cycles == SEQ_MOD
    assert ext.extended_max == 65537
    assert ext.received == 4


def test_extender_reorder_across_the_wrap_keeps_the_old_cycle() -> None:
    ext = SequenceExtender(min_sequential=1)
    assert _feed(ext, [65533, 65535, 0, 1, 65534]) == [65533, 65535, 65536, 65537, 65534]
    assert ext.extended_max == 65537  # the late packet does not move the maximum
    assert ext.received == 5


def test_extender_reorder_without_wrap() -> None:
    ext = SequenceExtender(min_sequential=1)
    assert _feed(ext, [100, 102, 101]) == [100, 102, 101]
    assert ext.extended_max == 102


def test_extender_duplicate_returns_same_number_and_counts_as_received() -> None:
    ext = SequenceExtender(min_sequential=1)
    assert _feed(ext, [10, 11, 11, 10]) == [10, 11, 11, 10]
    assert ext.received == 4  # A.3 counts duplicates in received


def test_extender_restart_after_large_jump_confirmed_by_next_packet() -> None:
    ext = SequenceExtender(min_sequential=1)
    assert _feed(ext, [100, 101]) == [100, 101]
    assert ext.update(20000) is None  # more than MAX_DROPOUT ahead: held back
    assert ext.update(20001) == 20001  # the next one confirms: A.1 re-syncs on it
    assert ext.base_seq == 20001
    assert ext.received == 1
    assert ext.update(20002) == 20002


def test_extender_large_jump_backwards_is_also_a_restart_when_confirmed() -> None:
    ext = SequenceExtender(min_sequential=1)
    _feed(ext, [5000, 5001])
    assert ext.update(1000) is None  # 4001 behind: more than MAX_MISORDER
    assert ext.update(1001) == 1001


def test_extender_unconfirmed_jump_is_dropped_and_stream_continues() -> None:
    ext = SequenceExtender(min_sequential=1)
    _feed(ext, [100, 101])
    assert ext.update(40000) is None
    assert ext.update(102) == 102
    assert ext.received == 3
    assert ext.update(50000) is None  # another wild one, not following the first
    assert ext.update(103) == 103
    assert ext.extended_max == 103


def test_extender_default_probation_needs_two_sequential_packets() -> None:
    # A.1 with MIN_SEQUENTIAL = 2: the second in-order packet validates the source.
    ext = SequenceExtender()
    assert _feed(ext, [10, 11, 12]) == [None, 11, 12]
    assert ext.received == 2  # init_seq resets received, then counts the validating packet


def test_extender_probation_restarts_on_out_of_order_packet() -> None:
    ext = SequenceExtender(min_sequential=3)
    # 20 breaks the run and counts as the first of a new one: 21, 22 complete it.
    assert _feed(ext, [10, 11, 20, 21, 22, 23]) == [None, None, None, None, 22, 23]


def test_extender_probation_across_the_wrap() -> None:
    ext = SequenceExtender()
    assert _feed(ext, [65535, 0, 1]) == [None, 0, 1]


def test_extender_min_sequential_below_one_behaves_as_one() -> None:
    ext = SequenceExtender(min_sequential=0)
    assert _feed(ext, [0, 1, 2]) == [0, 1, 2]
    assert ext.cycles == 0


@given(
    st.integers(0, SEQ_MOD - 1),
    st.lists(st.integers(1, SequenceExtender.MAX_DROPOUT - 1), min_size=1, max_size=200),
)
def test_extended_numbers_increase_by_exactly_the_gap(start: int, gaps: list[int]) -> None:
    ext = SequenceExtender(min_sequential=1)
    previous = ext.update(start)
    assert previous == start
    seq = start
    for gap in gaps:
        seq = seq_add(seq, gap)
        current = ext.update(seq)
        assert current is not None
        assert current - previous == gap
        previous = current
    assert ext.extended_max == start + sum(gaps)
