"""RtpSession: two sessions joined by an in-memory link, time advanced by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.dtmf import DigitEnded, DigitStarted
from rtp.g711 import PCMA, PCMU
from rtp.jitter import FrameStatus
from rtp.packet import RtpPacket, build_rtp
from rtp.rtcp import Bye, ReceiverReport, SenderReport, SourceDescription, parse_compound, serialize_compound
from rtp.session import MediaTimeout, RemoteBye, RtpSession, SessionConfig, SourceLatched

pytestmark = pytest.mark.unit

A = ("127.0.0.1", 20000)
B = ("127.0.0.1", 20002)
STRANGER = ("127.0.0.9", 40000)
TICK = 0.020


def pair(**kw: object) -> tuple[RtpSession, RtpSession]:
    cfg = SessionConfig(codec=PCMU, telephone_event_pt=101, **kw)  # type: ignore[arg-type]
    a = RtpSession(cfg, B, (B[0], B[1] + 1), 0.0, random.Random(1))
    b = RtpSession(cfg, A, (A[0], A[1] + 1), 0.0, random.Random(2))
    return a, b


def events(session: RtpSession) -> list[object]:
    out = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def tone(n: int, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + n)
    return (8000 * np.sin(2 * np.pi * 440 * t / 8000)).astype(np.int16)


def test_audio_crosses_and_is_delayed_by_the_jitter_buffer() -> None:
    a, b = pair()
    sent = tone(160 * 50)
    got = []
    for i in range(50):
        now = i * TICK
        packet = a.next_packet(sent[i * 160:(i + 1) * 160], now)
        assert packet is not None
        b.receive(packet, A, now + 0.001)
        got.append(b.pop_frame(now + 0.002))
    normal = [f.samples for f in got if f.status is FrameStatus.NORMAL]
    assert len(normal) >= 45
    played = np.concatenate(normal)
    # G.711 is lossy: compare with the codec's own round trip, which must match exactly once aligned.
    reference = PCMU.decode(PCMU.encode(sent))
    start = int(np.flatnonzero(reference == played[0])[0])
    assert np.array_equal(played, reference[start:start + len(played)])
    assert isinstance(events(b)[0], SourceLatched)


def test_latches_first_source_and_ignores_others() -> None:
    a, b = pair()
    b.receive(a.next_packet(tone(160), 0.0) or b"", STRANGER, 0.0)
    assert b.remote_rtp == STRANGER  # symmetric RTP: we now answer where the media comes from
    b.receive(a.next_packet(tone(160), 0.02) or b"", A, 0.02)
    assert b.stats().foreign == 1
    assert b.stats().received == 1
    b.set_remote(("127.0.0.1", 20010), None)  # a re-INVITE moved the media: the latch is released
    b.receive(a.next_packet(tone(160), 0.04) or b"", A, 0.04)
    assert b.remote_rtp == A


def test_bad_input_is_counted_never_raised() -> None:
    a, b = pair()
    b.receive(b"\x80", A, 0.0)  # truncated
    b.receive(b"\x40" + bytes(20), A, 0.0)  # version 1
    b.receive(build_rtp(96, 1, 1, 5, b"x"), A, 0.0)  # payload type nobody negotiated
    b.receive(b"\x81\xc8\x00\xff", A, 0.0)  # RTCP with a lying length
    s = b.stats()
    assert (s.malformed, s.unknown_payload, s.received) == (3, 1, 0)


@given(st.binary(max_size=300))
def test_any_datagram_is_absorbed(data: bytes) -> None:
    _, b = pair()
    b.receive(data, A, 0.0)
    b.receive(data, A, 0.0, rtcp_port=True)
    assert len(b.pop_frame(0.02).samples) == 160


def test_dtmf_is_sent_in_place_of_audio_and_decoded() -> None:
    a, b = pair()
    a.queue_dtmf("7", duration_ms=100)
    seen = []
    for i in range(12):
        packet = a.next_packet(tone(160), i * TICK)
        assert packet is not None
        seen.append(RtpPacket.parse(packet))
        b.receive(packet, A, i * TICK)
    dtmf = [p for p in seen if p.payload_type == 101]
    assert dtmf[0].marker and len({p.timestamp for p in dtmf}) == 1
    # Audio resumes after the digit with consecutive sequence numbers.
    assert [p.sequence_number for p in seen] == [(seen[0].sequence_number + i) % 65536 for i in range(12)]
    got = [e for e in events(b) if isinstance(e, DigitStarted | DigitEnded)]
    assert [type(e) for e in got] == [DigitStarted, DigitEnded]
    end = got[1]
    assert isinstance(end, DigitEnded) and end.digit == "7" and end.duration_ms == pytest.approx(100, abs=20)


def test_rtcp_reports_and_round_trip_time() -> None:
    a, b = pair(rtcp_interval=5.0)
    now = 0.0
    for i in range(400):
        now = i * TICK
        b.receive(a.next_packet(tone(160), now) or b"", A, now)
        b.next_packet(None, now)
    sr = a.rtcp_due(now + 10, wallclock=1_700_000_000.0)
    assert sr is not None
    first, sdes = parse_compound(sr)[:2]
    assert isinstance(first, SenderReport) and first.packet_count == 400
    assert isinstance(sdes, SourceDescription) and sdes.cname(a.ssrc) == "sipagent"
    b.receive(sr, A, now + 10.05, rtcp_port=True)
    rr = b.rtcp_due(now + 20, wallclock=1_700_000_010.0)
    assert rr is not None
    report = parse_compound(rr)[0]
    assert isinstance(report, SenderReport | ReceiverReport)
    assert report.reports[0].ssrc == a.ssrc and report.reports[0].fraction_lost == 0
    # Link delay 50 ms each way: RTT = arrival - SR send time - DLSR.
    a.receive(rr, B, now + 20.05, rtcp_port=True)
    assert a.stats().rtt_ms == pytest.approx(100, abs=1)


def test_rtcp_interval_is_randomised_around_the_setting() -> None:
    a, _ = pair(rtcp_interval=5.0)
    times = []
    now = 0.0
    while len(times) < 40:
        now += 0.1
        if a.rtcp_due(now, now) is not None:
            times.append(now)
    gaps = np.diff(times)
    assert 2.5 - 0.1 <= gaps.min() and gaps.max() <= 7.5 + 0.1  # RFC 3550 §6.3.1: [0.5, 1.5] x interval


def test_media_timeout_fires_once_and_pauses_on_hold() -> None:
    a, b = pair(media_timeout=10.0)
    b.receive(a.next_packet(tone(160), 0.0) or b"", A, 0.0)
    events(b)
    assert b.get_timer() <= 10.0
    b.handle_timer(9.9)
    assert events(b) == []
    b.handle_timer(10.0)
    assert [type(e) for e in events(b)] == [MediaTimeout]
    b.handle_timer(11.0)
    assert events(b) == []
    b.set_hold(True, 12.0)
    b.handle_timer(100.0)
    assert events(b) == []
    b.set_hold(False, 100.0)
    b.handle_timer(110.0)
    assert [type(e) for e in events(b)] == [MediaTimeout]


def test_rtcp_bye_from_the_latched_source() -> None:
    a, b = pair()
    b.receive(a.next_packet(tone(160), 0.0) or b"", A, 0.0)
    events(b)
    b.receive(a.bye(0.1, 1.0, "hangup"), A, 0.1, rtcp_port=True)
    assert events(b) == [RemoteBye(a.ssrc, "hangup")]
    # A BYE for some other SSRC says nothing about our peer.
    other = serialize_compound([ReceiverReport(7), Bye((7,), None)])
    b.receive(other, A, 0.2, rtcp_port=True)
    assert events(b) == []


def test_dtx_mode_sends_nothing_between_utterances_and_marks_talkspurts() -> None:
    a, _ = pair(send_silence=False)
    assert a.next_packet(None, 0.0) is None
    first = a.next_packet(tone(160), 0.02)
    second = a.next_packet(tone(160), 0.04)
    assert first and second
    p1, p2 = RtpPacket.parse(first), RtpPacket.parse(second)
    assert p1.marker and not p2.marker and p2.timestamp - p1.timestamp == 160


def test_pcma_and_dynamic_payload_number() -> None:
    cfg = SessionConfig(codec=PCMA, payload_type=8)
    a = RtpSession(cfg, B, None, 0.0, random.Random(3))
    packet = RtpPacket.parse(a.next_packet(tone(160), 0.0) or b"")
    assert packet.payload_type == 8 and packet.payload == PCMA.encode(tone(160))
