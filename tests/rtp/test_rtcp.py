"""RTCP compound packets against the RFC 3550 §6 layouts, built field by field here."""

from __future__ import annotations

import calendar
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.errors import PacketError
from rtp.rtcp import (
    NTP_UNIX_OFFSET,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    rtt_from_report,
    serialize_compound,
)

pytestmark = pytest.mark.unit


def _hdr(count: int, packet_type: int, body: bytes, padding: bool = False, version: int = 2) -> bytes:
    # §6.4.1: V (2) | P | RC (5), PT (8), length in 32-bit words minus one (the header word).
    assert len(body) % 4 == 0
    return bytes([(version << 6) | (int(padding) << 5) | count, packet_type]) + struct.pack("!H", len(body) // 4) + body


_BLOCK_BYTES = (
    struct.pack("!I", 0x11223344)
    + bytes([64])  # fraction lost: 64/256 = 25 %
    + b"\xff\xff\xfe"  # cumulative lost: -2 in 24-bit two's complement
    + struct.pack("!IIII", 0x00010005, 12, 0xB3C48000, 0x00018000)
)
_BLOCK = ReportBlock(0x11223344, 64, -2, 0x00010005, 12, 0xB3C48000, 0x00018000)


def test_sender_report_from_rfc_layout() -> None:
    body = struct.pack("!IQIII", 0xAABBCCDD, 0xE1A2B3C4_80000000, 160000, 1000, 160000) + _BLOCK_BYTES
    data = _hdr(1, 200, body)
    assert len(data) == 52  # 4 header + 24 sender info + 24 report block
    [sr] = parse_compound(data)
    assert sr == SenderReport(0xAABBCCDD, 0xE1A2B3C4_80000000, 160000, 1000, 160000, (_BLOCK,))
    assert sr.serialize() == data


def test_receiver_report_from_rfc_layout() -> None:
    data = _hdr(1, 201, struct.pack("!I", 0xCAFEBABE) + _BLOCK_BYTES)
    [rr] = parse_compound(data)
    assert rr == ReceiverReport(0xCAFEBABE, (_BLOCK,))
    assert rr.serialize() == data


def test_empty_receiver_report() -> None:
    data = _hdr(0, 201, struct.pack("!I", 5))
    assert parse_compound(data) == [ReceiverReport(5)]
    assert ReceiverReport(5).serialize() == data


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"\x7f\xff\xff", (1 << 23) - 1), (b"\x80\x00\x00", -(1 << 23)), (b"\xff\xff\xff", -1), (b"\x00\x00\x00", 0)],
)
def test_cumulative_lost_is_signed_24_bit(raw: bytes, value: int) -> None:
    block = struct.pack("!IB", 1, 0) + raw + bytes(16)
    [rr] = parse_compound(_hdr(1, 201, bytes(4) + block))
    assert isinstance(rr, ReceiverReport)
    assert rr.reports[0].cumulative_lost == value
    assert rr.reports[0].serialize() == block


def test_report_profile_extension_is_kept() -> None:
    ext = b"\x01\x02\x03\x04" * 2
    data = _hdr(0, 201, struct.pack("!I", 9) + ext)
    [rr] = parse_compound(data)
    assert rr == ReceiverReport(9, (), ext)
    assert rr.serialize() == data


def test_sdes_cname_from_rfc_layout() -> None:
    # §6.5: SSRC, then items (type, length, text), then a null octet and nulls to the next word.
    chunk = struct.pack("!I", 0x01020304) + b"\x01\x09user@host" + b"\x00"  # 4 + 11 + 1 = 16 bytes
    chunk2 = struct.pack("!I", 0x05060708) + b"\x01\x02ab" + b"\x02\x00" + b"\x00" + b"\x00"  # 10 + 1 + 1
    data = _hdr(2, 202, chunk + chunk2)
    [sdes] = parse_compound(data)
    assert sdes == SourceDescription(((0x01020304, ((1, b"user@host"),)), (0x05060708, ((1, b"ab"), (2, b"")))))
    assert sdes.serialize() == data
    assert isinstance(sdes, SourceDescription)
    assert sdes.cname(0x01020304) == "user@host"
    assert sdes.cname(0x05060708) == "ab"
    assert sdes.cname(0x99) is None


def test_sdes_for_cname_and_chunk_without_cname() -> None:
    assert SourceDescription.for_cname(7, "agent@127.0.0.1").cname(7) == "agent@127.0.0.1"
    assert SourceDescription(((7, ((2, b"name"),)),)).cname(7) is None


def test_sdes_chunk_with_no_items_is_ssrc_plus_a_null_word() -> None:
    data = _hdr(1, 202, struct.pack("!I", 3) + bytes(4))
    assert parse_compound(data) == [SourceDescription(((3, ()),))]
    assert SourceDescription(((3, ()),)).serialize() == data


def test_sdes_tolerates_extra_null_words() -> None:
    data = _hdr(1, 202, struct.pack("!I", 3) + b"\x01\x01x\x00" + bytes(4))
    assert parse_compound(data) == [SourceDescription(((3, ((1, b"x"),)),))]


def test_bye_with_reason_from_rfc_layout() -> None:
    # §6.6: SSRCs, then an optional length octet and UTF-8 text padded with nulls to a word.
    body = struct.pack("!II", 1, 2) + b"\x07timeout"
    data = _hdr(2, 203, body)
    assert parse_compound(data) == [Bye((1, 2), "timeout")]
    assert Bye((1, 2), "timeout").serialize() == data
    padded = _hdr(1, 203, struct.pack("!I", 1) + b"\x02ok\x00")
    assert parse_compound(padded) == [Bye((1,), "ok")]
    assert Bye((1,), "ok").serialize() == padded


def test_bye_without_reason_and_with_empty_reason() -> None:
    assert parse_compound(_hdr(1, 203, struct.pack("!I", 9))) == [Bye((9,))]
    assert Bye((9,)).serialize() == _hdr(1, 203, struct.pack("!I", 9))
    assert Bye((9,), "").serialize() == _hdr(1, 203, struct.pack("!I", 9) + bytes(4))
    assert parse_compound(Bye((9,), "").serialize()) == [Bye((9,), "")]


def test_bye_reason_that_is_not_utf8_still_yields_the_bye() -> None:
    [bye] = parse_compound(_hdr(1, 203, struct.pack("!I", 9) + b"\x03\xff\xfeA"))
    assert isinstance(bye, Bye)
    assert bye.sources == (9,)
    assert bye.reason is not None and bye.reason.endswith("A")


def test_unknown_types_are_opaque() -> None:
    app = _hdr(3, 204, struct.pack("!I", 1) + b"NAME" + b"data")
    nack = _hdr(1, 205, struct.pack("!IIHH", 1, 2, 100, 0))
    packets = parse_compound(app + nack)
    assert packets == [
        UnknownRtcp(204, 3, struct.pack("!I", 1) + b"NAMEdata"),
        UnknownRtcp(205, 1, struct.pack("!IIHH", 1, 2, 100, 0)),
    ]
    assert serialize_compound(packets) == app + nack


def test_compound_sr_sdes_bye() -> None:
    sr = SenderReport(1, ntp_from_unix(1_700_000_000.25), 8000, 50, 8000, (_BLOCK,))
    sdes = SourceDescription.for_cname(1, "sipagent@127.0.0.1")
    bye = Bye((1,), "hangup")
    data = serialize_compound([sr, sdes, bye])
    assert data == sr.serialize() + sdes.serialize() + bye.serialize()
    assert parse_compound(data, require_report_first=True) == [sr, sdes, bye]


def test_padding_on_the_last_packet() -> None:
    rr = ReceiverReport(1)
    bye = Bye((1,))
    data = serialize_compound([rr, bye], padding=8)
    # The P bit and 8 octets (count included) belong to the last packet only; its length covers them.
    last = data[len(rr.serialize()) :]
    assert last[0] & 0x20
    assert struct.unpack_from("!H", last, 2)[0] == 1 + 2
    assert last[-1] == 8
    assert parse_compound(data) == [rr, bye]


def test_padding_on_a_hand_built_single_packet() -> None:
    data = _hdr(0, 201, struct.pack("!I", 4) + b"\x00\x00\x00\x04", padding=True)
    assert parse_compound(data) == [ReceiverReport(4)]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (_hdr(0, 201, bytes(4)) + b"\x80\xc9", "header truncated at byte 8"),
        (_hdr(0, 201, bytes(4), version=1), "version is 1"),
        (_hdr(0, 201, bytes(4)) + _hdr(0, 203, b"", version=3), "version is 3 in the packet at byte 8"),
        (_hdr(0, 201, bytes(4))[:-1], "runs past the end"),
        (b"\x80\xc9\x00\x05" + bytes(4), "length field 5 words"),
        (_hdr(0, 201, bytes(4), padding=True) + _hdr(1, 203, bytes(4)), "not the last"),
        (_hdr(0, 201, bytes(8), padding=True), "padding count 0"),
        (_hdr(0, 203, b"", padding=True), "padding count 0"),
        (_hdr(0, 201, bytes(4) + b"\x00\x00\x00\x0c", padding=True), "padding count 12"),
        (_hdr(0, 201, bytes(4) + b"\x00\x00\x00\x03", padding=True), "padding count 3"),
        (_hdr(0, 200, bytes(20)), "SR with 0 report blocks needs 24"),
        (_hdr(1, 200, bytes(24)), "SR with 1 report blocks needs 48"),
        (_hdr(0, 201, b""), "RR with 0 report blocks needs 4"),
        (_hdr(2, 201, bytes(28)), "RR with 2 report blocks needs 52"),
        (_hdr(1, 202, b""), "SDES chunk 0 truncated"),
        (_hdr(2, 202, bytes(8)), "SDES chunk 1 truncated"),
        (_hdr(1, 202, struct.pack("!I", 1) + b"\x01\x02ab"), "no null octet"),
        (_hdr(1, 202, struct.pack("!I", 1) + b"\x01\x01a\x05"), "item type 5 has no length octet"),
        (_hdr(1, 202, struct.pack("!I", 1) + b"\x01\x09ab\x00\x00\x00\x00"), "item type 1 length runs past"),
        (_hdr(1, 202, struct.pack("!I", 1) + bytes(4) + b"junk"), "non-null bytes after its 1 chunks"),
        (_hdr(2, 203, bytes(4)), "BYE with 2 sources needs 8"),
        (_hdr(1, 203, bytes(4) + b"\x09abc"), "BYE reason length 9"),
    ],
)
def test_malformed_compounds_raise_packet_error_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(PacketError, match=problem):
        parse_compound(data)


def test_require_report_first() -> None:
    data = serialize_compound([Bye((1,))])
    assert parse_compound(data) == [Bye((1,))]  # RFC 5506 reduced-size is accepted by default
    with pytest.raises(PacketError, match="starts with packet type 203"):
        parse_compound(data, require_report_first=True)
    assert parse_compound(ReceiverReport(1).serialize(), require_report_first=True) == [ReceiverReport(1)]


@pytest.mark.parametrize(
    ("packet", "problem"),
    [
        (ReceiverReport(1, (_BLOCK,) * 32), "count 32"),
        (Bye(tuple(range(32))), "count 32"),
        (ReceiverReport(1 << 32), "RR ssrc"),
        (ReceiverReport(1, (), b"abc"), "whole words"),
        (SenderReport(1, 1 << 64, 0, 0, 0), "ntp_timestamp"),
        (SenderReport(-1, 0, 0, 0, 0), "SR ssrc"),
        (SenderReport(1, 0, 1 << 32, 0, 0), "rtp_timestamp"),
        (SenderReport(1, 0, 0, -1, 0), "packet_count"),
        (SenderReport(1, 0, 0, 0, 1 << 32), "octet_count"),
        (ReceiverReport(1, (ReportBlock(1, 256, 0, 0, 0, 0, 0),)), "fraction_lost 256"),
        (ReceiverReport(1, (ReportBlock(1, 0, 1 << 23, 0, 0, 0, 0),)), "cumulative_lost"),
        (ReceiverReport(1, (ReportBlock(1, 0, -(1 << 23) - 1, 0, 0, 0, 0),)), "cumulative_lost"),
        (ReceiverReport(1, (ReportBlock(1 << 32, 0, 0, 0, 0, 0, 0),)), "report block ssrc"),
        (ReceiverReport(1, (ReportBlock(1, 0, 0, 1 << 32, 0, 0, 0),)), "highest_seq"),
        (ReceiverReport(1, (ReportBlock(1, 0, 0, 0, 0, 0, -1),)), "dlsr"),
        (SourceDescription(((1, ((0, b"x"),)),)), "item type 0"),
        (SourceDescription(((1, ((1, bytes(256)),)),)), "256 bytes"),
        (SourceDescription(((-1, ()),)), "SDES ssrc"),
        (Bye((1,), "é" * 128), "256 bytes"),
        (Bye((1 << 32,)), "BYE ssrc"),
        (UnknownRtcp(256, 0, b""), "packet type 256"),
        (UnknownRtcp(204, 0, b"abc"), "whole 32-bit words"),
        (UnknownRtcp(204, 0, bytes(4 * 65536)), "length 65536"),
    ],
)
def test_serialize_rejects_out_of_range_fields(packet: RtcpPacket, problem: str) -> None:
    with pytest.raises(PacketError, match=problem):
        packet.serialize()


@pytest.mark.parametrize("padding", [-4, 3, 256])
def test_serialize_compound_rejects_bad_padding(padding: int) -> None:
    with pytest.raises(PacketError, match="padding"):
        serialize_compound([ReceiverReport(1)], padding=padding)


def test_serialize_compound_rejects_empty_and_overlong_padding_target() -> None:
    with pytest.raises(PacketError, match="at least one"):
        serialize_compound([])
    with pytest.raises(PacketError, match="length"):
        serialize_compound([UnknownRtcp(204, 0, bytes(4 * 65535))], padding=4)


def test_ntp_from_unix_uses_the_1900_epoch() -> None:
    assert NTP_UNIX_OFFSET == 70 * 365 * 86400 + 17 * 86400  # 70 years with 17 leap days (1904..1968)
    assert ntp_from_unix(0) == NTP_UNIX_OFFSET << 32
    assert ntp_from_unix(0.5) == (NTP_UNIX_OFFSET << 32) | (1 << 31)
    assert ntp_from_unix(-0.25) == ((NTP_UNIX_OFFSET - 1) << 32) | (3 << 30)
    # RFC 4330 §3: NTP era 0 ends on 2036-02-07 06:28:16 UTC and the seconds field wraps to zero.
    assert ntp_from_unix(calendar.timegm((2036, 2, 7, 6, 28, 16))) >> 32 == 0


def test_rfc3550_round_trip_example() -> None:
    # §6.4.1 figure: SR(n) sent at 10 Nov 1995 11:33:25.125 UTC is ntp_sec 0xb44db705, ntp_frac 0x20000000,
    # so LSR = 0xb705:2000; the RR arrives at 11:33:36.5 UTC, A = 0xb710:8000; DLSR = 0x0005:4000.
    sent = ntp_from_unix(calendar.timegm((1995, 11, 10, 11, 33, 25)) + 0.125)
    assert sent == 0xB44DB705_20000000
    assert ntp_middle32(sent) == 0xB7052000
    a = ntp_middle32(ntp_from_unix(calendar.timegm((1995, 11, 10, 11, 33, 36)) + 0.5))
    assert a == 0xB7108000
    block = ReportBlock(1, 0, 0, 0, 0, lsr=0xB7052000, dlsr=0x00054000)
    assert rtt_from_report(block, a) == 6.125  # 0x0006:2000


def test_rtt_none_without_sr_and_clamped_at_zero() -> None:
    assert rtt_from_report(ReportBlock(1, 0, 0, 0, 0, lsr=0, dlsr=0), 12345) is None
    # DLSR longer than the time elapsed since LSR (16.16 rounding): no negative RTT.
    assert rtt_from_report(ReportBlock(1, 0, 0, 0, 0, lsr=0x10000, dlsr=2), 0x10001) == 0.0
    # 32-bit wrap of the middle word between LSR and arrival.
    assert rtt_from_report(ReportBlock(1, 0, 0, 0, 0, lsr=0xFFFF8000, dlsr=0x4000), 0x00004000) == 0.5


_u32 = st.integers(0, 2**32 - 1)
_blocks = st.builds(
    ReportBlock, _u32, st.integers(0, 255), st.integers(-(2**23), 2**23 - 1), _u32, _u32, _u32, _u32
)
_block_tuples = st.lists(_blocks, max_size=31).map(tuple)
_ext = st.binary(max_size=16).map(lambda b: b[: len(b) - len(b) % 4])
_items = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=255)), max_size=4).map(tuple)
_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(SenderReport, _u32, st.integers(0, 2**64 - 1), _u32, _u32, _u32, _block_tuples, _ext),
    st.builds(ReceiverReport, _u32, _block_tuples, _ext),
    st.builds(SourceDescription, st.lists(st.tuples(_u32, _items), max_size=31).map(tuple)),
    st.builds(Bye, st.lists(_u32, max_size=31).map(tuple),
              st.none() | st.text(max_size=60)),
    st.builds(UnknownRtcp, st.sampled_from([204, 205, 206, 207]), st.integers(0, 31), _ext),
)


@given(st.lists(_packets, min_size=1, max_size=5), st.sampled_from([0, 4, 8, 252]))
def test_parse_of_serialize_is_identity(packets: list[RtcpPacket], padding: int) -> None:
    data = serialize_compound(packets, padding=padding)
    assert len(data) % 4 == 0
    assert parse_compound(data) == packets
    if not padding:
        assert serialize_compound(parse_compound(data)) == data


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_packet_error(data: bytes) -> None:
    try:
        parse_compound(data)
    except PacketError:
        pass


@given(st.integers(0x80, 0xBF), st.sampled_from([200, 201, 202, 203, 204]), st.binary(max_size=200))
def test_version_2_headers_with_random_bodies_parse_or_raise_packet_error(b0: int, pt: int, rest: bytes) -> None:
    # A plausible header with a length that matches the random body drives the fuzz into the per-type parsers.
    body = rest[: len(rest) - len(rest) % 4]
    data = bytes([b0, pt]) + struct.pack("!H", len(body) // 4) + body
    try:
        packets = parse_compound(data)
    except PacketError:
        return
    assert len(packets) == 1
