"""The outbound pacer on virtual time: drift-free deadlines, bounded bursts after stalls, RTP header fields."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.pacer import OutboundStream, PacerSchedule
from rtp.packet import RtpPacket

pytestmark = pytest.mark.unit

INTERVAL = 0.020


def grid_points_through(start: float, now: float, interval: float = INTERVAL) -> int:
    """Independent count of the deadlines start + n*interval that are <= now (n >= 0), by stepping n."""
    if now < start:
        return 0
    n = int((now - start) / interval) + 2
    while start + (n - 1) * interval > now + 1e-9:
        n -= 1
    return n


def test_drift_free_over_ten_thousand_jittered_wakeups() -> None:
    rng = random.Random(3550)
    start = 12345.678
    schedule = PacerSchedule(start)
    sent = 0
    for _ in range(10_000):
        # A timer that always wakes late, by up to 19 ms: a relative "sleep 20 ms" pacer would lose ~0.5 frame
        # per wake-up on average; an absolute grid loses nothing.
        now = schedule.next_deadline() + rng.uniform(0.0, 0.019)
        due = schedule.poll(now)
        assert (due.send, due.skipped) == (1, 0)
        sent += due.send
    assert sent == 10_000
    assert schedule.slot == 10_000
    assert abs(schedule.next_deadline() - (start + 10_000 * INTERVAL)) < 1e-9


def test_nothing_is_due_before_the_deadline() -> None:
    schedule = PacerSchedule(50.0)
    assert schedule.due(49.999) == 0
    assert schedule.due(50.0) == 1
    assert schedule.due(50.0) == 0
    assert schedule.due(50.0199) == 0
    assert schedule.next_deadline() == pytest.approx(50.02)


def test_after_a_200_ms_stall_at_most_two_frames_then_back_on_the_grid() -> None:
    start = 100.0
    schedule = PacerSchedule(start, max_burst=2)
    for _ in range(10):
        assert schedule.due(schedule.next_deadline() + 0.0003) == 1
    last_deadline = start + 9 * INTERVAL
    stall_end = last_deadline + 0.200 + 0.0003
    missed = grid_points_through(start, stall_end) - 10  # deadlines passed during the stall
    assert missed == 10
    due = schedule.poll(stall_end)
    assert due.send == 2
    assert due.skipped == missed - 2
    # Back on the original grid: the next deadline is the first grid point after the stall.
    following = schedule.next_deadline()
    n = round((following - start) / INTERVAL)
    assert following == pytest.approx(start + n * INTERVAL, abs=1e-9)
    assert following - INTERVAL <= stall_end < following
    for _ in range(5):
        assert schedule.poll(schedule.next_deadline() + 0.001).send == 1
    assert (schedule.sent, schedule.skipped) == (17, 8)


def test_timestamps_follow_the_grid_through_a_stall() -> None:
    # RFC 3550 §5.1: the timestamp is the sampling instant, so every sent packet's timestamp must equal
    # initial_ts + 160 * (its grid slot), skipped slots included; sequence numbers count packets only.
    start, initial_ts, initial_seq = 7.0, 4_294_960_000, 65_530  # both wrap during the test
    schedule = PacerSchedule(start)
    stream = OutboundStream(0x1234, 0, initial_seq, initial_ts, silence_payload=b"\xff" * 160)
    wakeups = [start + 0.001 + i * INTERVAL for i in range(5)] + [start + 0.5, start + 0.52, start + 0.9]
    packets: list[RtpPacket] = []
    slots: list[int] = []
    for now in wakeups:
        due = schedule.poll(now)
        stream.skip(due.skipped)
        first_sent_slot = schedule.slot - due.send
        for i in range(due.send):
            packets.append(RtpPacket.parse(stream.next_packet(b"\x55" * 160)))
            slots.append(first_sent_slot + i)
    assert [p.timestamp for p in packets] == [(initial_ts + 160 * s) % 2**32 for s in slots]
    assert [p.sequence_number for p in packets] == [(initial_seq + i) % 2**16 for i in range(len(packets))]
    assert slots == [0, 1, 2, 3, 4, 24, 25, 26, 44, 45]


def test_skip_advances_timestamp_only() -> None:
    stream = OutboundStream(1, 8, 100, 1000, silence_payload=b"\xd5" * 160)
    first = RtpPacket.parse(stream.next_packet(b"a" * 160))
    stream.skip(3)
    second = RtpPacket.parse(stream.next_packet(b"b" * 160))
    assert second.sequence_number == first.sequence_number + 1
    assert second.timestamp == first.timestamp + 4 * 160
    assert (second.payload_type, second.ssrc) == (8, 1)
    assert stream.packets_sent == 2
    assert stream.octets_sent == 320  # RFC 3550 §6.4.1: payload octets only


def test_dtx_marks_the_first_packet_of_each_talkspurt() -> None:
    # RFC 3551 §4.1: with silence suppression, the first packet after a period with nothing sent carries M=1.
    stream = OutboundStream(9, 0, 0, 0, send_silence=False)
    speech = b"\x11" * 160
    script = [speech, speech, None, None, speech, speech, None, speech]
    out = [stream.next_frame(frame) for frame in script]
    assert [p is None for p in out] == [frame is None for frame in script]
    packets = [RtpPacket.parse(p) for p in out if p is not None]
    assert [p.marker for p in packets] == [True, False, True, False, True]
    assert [p.sequence_number for p in packets] == [0, 1, 2, 3, 4]
    assert [p.timestamp for p in packets] == [0, 160, 640, 800, 1120]


def test_continuous_mode_sends_silence_and_leaves_the_marker_clear() -> None:
    # RFC 3551 §4.1: "Applications without silence suppression MUST set the marker bit to zero."
    silence = b"\xff" * 160
    stream = OutboundStream(9, 0, 0, 0, silence_payload=silence)
    script = [None, b"\x22" * 160, b"\x22" * 160, None, b"\x22" * 160]
    packets = [RtpPacket.parse(stream.next_frame(frame) or b"") for frame in script]
    assert [p.payload for p in packets] == [frame or silence for frame in script]
    assert not any(p.marker for p in packets)
    assert [p.timestamp for p in packets] == [160 * i for i in range(5)]


def test_continuous_mode_can_mark_speech_starts_when_asked() -> None:
    stream = OutboundStream(9, 0, 0, 0, silence_payload=b"\xff" * 160, mark_talkspurts=True)
    script = [None, b"s" * 160, b"s" * 160, None, b"s" * 160]
    packets = [RtpPacket.parse(stream.next_frame(frame) or b"") for frame in script]
    assert [p.marker for p in packets] == [False, True, False, False, True]
    stream.end_talkspurt()
    assert RtpPacket.parse(stream.next_frame(b"s" * 160) or b"").marker


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        PacerSchedule(0.0, interval=0.0)
    with pytest.raises(ValueError, match="max_burst"):
        PacerSchedule(0.0, max_burst=0)
    with pytest.raises(ValueError, match="silence_payload"):
        OutboundStream(1, 0, 0, 0)
    with pytest.raises(ValueError, match="payload type"):
        OutboundStream(1, 128, 0, 0, silence_payload=b"")
    with pytest.raises(ValueError, match="SSRC"):
        OutboundStream(2**32, 0, 0, 0, silence_payload=b"")
    with pytest.raises(ValueError, match="negative"):
        OutboundStream(1, 0, 0, 0, silence_payload=b"").skip(-1)
    with pytest.raises(ValueError, match="samples_per_frame"):
        OutboundStream(1, 0, 0, 0, 0, silence_payload=b"")
    switched = OutboundStream(1, 0, 0, 0, send_silence=False)
    switched.send_silence = True  # switched to continuous mode without saying what silence is
    with pytest.raises(ValueError, match="silence_payload"):
        switched.next_frame(None)


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    max_burst=st.integers(min_value=1, max_value=4),
    delays=st.lists(st.floats(min_value=0.0, max_value=0.5, allow_nan=False), min_size=1, max_size=60),
)
def test_late_wakeups_never_burst_and_stay_on_the_grid(start: float, max_burst: int, delays: list[float]) -> None:
    schedule = PacerSchedule(start, INTERVAL, max_burst)
    now = start
    accounted = 0
    for delay in delays:
        now += delay
        due = schedule.poll(now)
        assert 0 <= due.send <= max_burst
        assert due.skipped >= 0
        accounted += due.send + due.skipped
        # Every slot whose deadline has passed is accounted for, exactly once.
        assert accounted == schedule.slot
        assert abs(accounted - grid_points_through(start, now)) <= 1  # 1 us slack at an exact grid point
        deadline = schedule.next_deadline()
        assert deadline == start + schedule.slot * INTERVAL
        assert deadline > now - 1e-6
        assert deadline - INTERVAL <= now + 1e-6
        if due.send:
            assert math.isclose((deadline - start) / INTERVAL, schedule.slot, abs_tol=1e-6)
    assert schedule.sent + schedule.skipped == accounted
