"""RFC 4733 telephone-events: payload format, sender packet train, and the de-duplicating receiver."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.dtmf import (
    DigitEnded,
    DigitStarted,
    DtmfEvent,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    char_to_event,
    event_to_char,
)
from rtp.errors import PacketError
from rtp.packet import RtpPacket

pytestmark = pytest.mark.unit

PT = 101
SSRC = 0x5EED
DIGITS = "0123456789*#ABCD"


def rtp(block: TelephoneEvent | bytes, seq: int, ts: int, marker: bool = False, ssrc: int = SSRC) -> RtpPacket:
    payload = block if isinstance(block, bytes) else block.serialize()
    return RtpPacket(PT, seq % 65536, ts, ssrc, payload, marker)


def send(digit: str, ts: int, seq: int, now: float, **kwargs: int) -> list[tuple[float, RtpPacket]]:
    """The sender's packets for one key press, one every 20 ms from ``now``."""
    train = DtmfSender().packets(digit, ts, **kwargs)
    return [(now + 0.02 * i, rtp(block, seq + i, ts, marker)) for i, (block, marker) in enumerate(train)]


def feed_all(rx: DtmfReceiver, packets: list[tuple[float, RtpPacket]]) -> list[DtmfEvent]:
    out: list[DtmfEvent] = []
    for now, pkt in packets:
        out += rx.feed(pkt, now)
    return out


def test_payload_layout_follows_section_2_3() -> None:
    # event 5, E=1, R=0, volume 10, duration 800: 05 | 1 0 001010 | 0x0320
    raw = bytes([5, 0x80 | 10, 0x03, 0x20])
    block = TelephoneEvent.parse(raw)
    assert block == TelephoneEvent(event=5, end=True, volume=10, duration=800, reserved=False)
    assert block.serialize() == raw
    assert TelephoneEvent.parse(bytes([11, 0x40 | 63, 0xFF, 0xFF])) == TelephoneEvent(11, False, 63, 0xFFFF, True)


@pytest.mark.parametrize("size", [0, 1, 2, 3])
def test_short_payload_is_a_packet_error(size: int) -> None:
    with pytest.raises(PacketError, match="telephone-event"):
        TelephoneEvent.parse(bytes(size))


@pytest.mark.parametrize("block", [TelephoneEvent(256), TelephoneEvent(1, volume=64), TelephoneEvent(1, duration=-1),
                                   TelephoneEvent(1, duration=0x10000)])
def test_serialize_rejects_fields_out_of_range(block: TelephoneEvent) -> None:
    with pytest.raises(PacketError):
        block.serialize()


@given(st.binary(max_size=12))
def test_any_bytes_parse_or_raise_packet_error(data: bytes) -> None:
    try:
        block = TelephoneEvent.parse(data)
    except PacketError:
        assert len(data) < 4
        return
    assert block.serialize() == data[:4]


@given(st.builds(TelephoneEvent, st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF),
                 st.booleans()))
def test_parse_of_serialize_is_identity(block: TelephoneEvent) -> None:
    assert TelephoneEvent.parse(block.serialize()) == block


def test_event_codes_of_section_3_2() -> None:
    assert [event_to_char(e) for e in range(17)] == list("0123456789*#ABCD!")
    assert all(char_to_event(c) == i for i, c in enumerate(DIGITS))
    assert char_to_event("a") == 12
    for bad in ("E", "", "12"):
        with pytest.raises(ValueError):
            char_to_event(bad)
    with pytest.raises(ValueError):
        event_to_char(17)


def test_sender_packet_train() -> None:
    train = DtmfSender().packets("7", 1234, duration_ms=100)
    blocks = [b for b, _ in train]
    assert [m for _, m in train] == [True] + [False] * (len(train) - 1)
    assert {b.event for b in blocks} == {7} and {b.volume for b in blocks} == {10}
    # Every 20 ms (160 samples) the duration so far; the final one, with E, three times (§2.5.1.4).
    assert [b.duration for b in blocks] == [160, 320, 480, 640, 800, 800, 800]
    assert [b.end for b in blocks] == [False] * 4 + [True] * 3
    assert not any(b.reserved for b in blocks)


def test_sender_short_and_refused_events() -> None:
    train = DtmfSender().packets("#", 0, duration_ms=10)
    assert [(b.duration, b.end, m) for b, m in train] == [(80, True, True), (80, True, False), (80, True, False)]
    with pytest.raises(ValueError):
        DtmfSender().packets("1", 0, duration_ms=9000)  # needs a second §2.5.1.3 segment
    with pytest.raises(ValueError):
        DtmfSender().packets("X", 0)
    with pytest.raises(ValueError):
        DtmfSender().packets("1", 1 << 32)
    with pytest.raises(ValueError):
        DtmfSender().packets("1", 0, volume=64)
    with pytest.raises(ValueError):
        DtmfSender().packets("1", 0, ptime_ms=0)


@pytest.mark.parametrize("digit", DIGITS)
def test_round_trip_every_digit(digit: str) -> None:
    rx = DtmfReceiver()
    events = feed_all(rx, send(digit, 48_000, 10, now=5.0, duration_ms=120, volume=7))
    assert events == [DigitStarted(digit, 48_000, 5.0), DigitEnded(digit, 48_000, 960, 120.0, 7)]
    assert rx.poll(100.0) == [] and rx.get_timer() is None


def test_triple_end_packets_give_one_digit_end() -> None:
    # As captured from real phones: ten packets, the first with duration 0, the end sent three times
    # (sometimes with one sequence number for all three).
    packets = [(i * 0.02, rtp(TelephoneEvent(1, False, 10, 320 * i), 7984 + i, 13280, i == 0)) for i in range(7)]
    end = rtp(TelephoneEvent(1, True, 10, 2240), 7991, 13280)
    packets += [(0.14, end), (0.14, end), (0.14, end)]
    events = feed_all(DtmfReceiver(), packets)
    assert events == [DigitStarted("1", 13280, 0.0), DigitEnded("1", 13280, 2240, 280.0, 10)]


def test_lost_end_packets_end_the_digit_on_timeout() -> None:
    rx = DtmfReceiver(timeout=1.0)
    events = feed_all(rx, [(t, p) for t, p in send("5", 800, 1, now=0.0) if not TelephoneEvent.parse(p.payload).end])
    assert events == [DigitStarted("5", 800, 0.0)]
    assert rx.get_timer() == pytest.approx(0.06 + 1.0)
    assert rx.poll(0.9) == []
    assert rx.poll(1.07) == [DigitEnded("5", 800, 640, 80.0, 10, inferred=True)]
    assert rx.poll(5.0) == [] and rx.get_timer() is None


def test_lost_end_packets_end_the_digit_when_the_next_one_starts() -> None:
    first = [(t, p) for t, p in send("1", 1000, 1, now=0.0) if not TelephoneEvent.parse(p.payload).end]
    second = send("2", 5000, 20, now=0.5)
    events = feed_all(DtmfReceiver(), first + second)
    assert events == [DigitStarted("1", 1000, 0.0), DigitEnded("1", 1000, 640, 80.0, 10, inferred=True),
                      DigitStarted("2", 5000, 0.5), DigitEnded("2", 5000, 800, 100.0, 10)]


def test_a_long_dialled_sequence() -> None:
    number = "0123456789*#ABCD" * 3
    packets: list[tuple[float, RtpPacket]] = []
    for i, digit in enumerate(number):
        packets += send(digit, 1000 + 4000 * i, 10 * i, now=0.5 * i)
    events = feed_all(DtmfReceiver(), packets)
    assert "".join(e.digit for e in events if isinstance(e, DigitEnded)) == number
    assert len(events) == 2 * len(number)


def test_a_packet_older_than_the_current_event_is_ignored() -> None:
    rx = DtmfReceiver()
    assert len(rx.feed(rtp(TelephoneEvent(2, False, 10, 160), 50, 5000, True), 1.0)) == 1
    assert rx.feed(rtp(TelephoneEvent(1, False, 10, 480), 40, 1000), 1.01) == []
    assert rx.feed(rtp(TelephoneEvent(2, True, 10, 320), 51, 5000), 1.02) == [DigitEnded("2", 5000, 320, 40.0, 10)]


def test_same_digit_twice_is_two_presses() -> None:
    events = feed_all(DtmfReceiver(), send("9", 1000, 1, now=0.0) + send("9", 3000, 20, now=0.4))
    assert [type(e) for e in events] == [DigitStarted, DigitEnded] * 2


def test_lost_first_packet_and_reordering() -> None:
    train = send("3", 2000, 1, now=0.0)[1:]  # the marker packet is lost
    train[0], train[1] = train[1], train[0]
    straggler = train[0]
    events = feed_all(DtmfReceiver(), [*train, (1.0, straggler[1])])
    assert events == [DigitStarted("3", 2000, 0.04), DigitEnded("3", 2000, 800, 100.0, 10)]


def test_long_event_continues_in_segments() -> None:
    # §2.5.1.3: past 0xFFFF samples, a new segment starts at the old timestamp + 0xFFFF.
    rx = DtmfReceiver()
    ts = 10_000
    events = rx.feed(rtp(TelephoneEvent(0, False, 10, 160), 1, ts, True), 0.0)
    events += rx.feed(rtp(TelephoneEvent(0, False, 10, 0xFFFF), 2, ts), 8.2)
    events += rx.feed(rtp(TelephoneEvent(0, False, 10, 160), 3, (ts + 0xFFFF) % (1 << 32)), 8.22)
    events += rx.feed(rtp(TelephoneEvent(0, True, 10, 800), 4, (ts + 0xFFFF) % (1 << 32)), 8.3)
    total = 0xFFFF + 800
    assert events == [DigitStarted("0", ts, 0.0), DigitEnded("0", ts, total, 1000 * total / 8000, 10)]


def test_non_digit_events_are_ignored_and_bad_payloads_raise() -> None:
    rx = DtmfReceiver()
    assert rx.feed(rtp(TelephoneEvent(70, False, 10, 160), 1, 0, True), 0.0) == []  # RFC 4734 tone
    with pytest.raises(PacketError):
        rx.feed(rtp(struct.pack("!BB", 1, 10), 2, 0), 0.0)


def test_events_of_another_source_start_a_new_digit() -> None:
    a = send("4", 100, 1, now=0.0)[:3]
    b = [(t + 0.1, RtpPacket(PT, p.sequence_number, p.timestamp, 0xB, p.payload, p.marker))
         for t, p in send("6", 100, 500, now=0.0)]
    events = feed_all(DtmfReceiver(), a + b)
    assert [e.digit for e in events] == ["4", "4", "6", "6"]
    assert isinstance(events[1], DigitEnded) and events[1].inferred
