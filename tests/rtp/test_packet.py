"""RTP packet parsing and serialising against the RFC 3550 §5.1 / §5.3.1 layout, built bit by bit here."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.errors import PacketError
from rtp.packet import HEADER_SIZE, HeaderExtension, RtpPacket, build_rtp, is_rtcp

pytestmark = pytest.mark.unit


def _first_octet(padding: bool = False, extension: bool = False, cc: int = 0, version: int = 2) -> int:
    # §5.1: V (2 bits) | P | X | CC (4 bits)
    return (version << 6) | (int(padding) << 5) | (int(extension) << 4) | cc


def _second_octet(marker: bool, pt: int) -> int:
    return (int(marker) << 7) | pt


def test_minimal_header_fields_from_rfc_layout() -> None:
    data = bytes([_first_octet(), _second_octet(True, 8)]) + bytes.fromhex("1234 deadbeef 01020304") + b"\xd5" * 160
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence_number) == (8, True, 0x1234)
    assert (p.timestamp, p.ssrc) == (0xDEADBEEF, 0x01020304)
    assert p.payload == b"\xd5" * 160
    assert p.csrc == () and p.extension is None and p.padding_size == 0
    assert p.wire_size == len(data) == HEADER_SIZE + 160
    assert p.serialize() == data
    assert build_rtp(8, 0x1234, 0xDEADBEEF, 0x01020304, b"\xd5" * 160, marker=True) == data


def test_full_header_with_csrc_extension_and_padding() -> None:
    csrcs = (0x11111111, 0x22222222)
    ext_body = b"\x10\xaa\x00\x00" + b"\x21\xbb\xcc\x00"  # two words of RFC 8285 one-byte elements
    padding = 4
    data = (
        bytes([_first_octet(padding=True, extension=True, cc=2), _second_octet(False, 0)])
        + struct.pack("!HII", 65535, 4294967295, 7)
        + struct.pack("!II", *csrcs)
        + struct.pack("!HH", 0xBEDE, len(ext_body) // 4)
        + ext_body
        + b"payload"
        + b"\x00\x00\x00" + bytes([padding])
    )
    p = RtpPacket.parse(data)
    assert p.csrc == csrcs
    assert p.extension == HeaderExtension(0xBEDE, ext_body)
    assert p.payload == b"payload"
    assert p.padding_size == padding
    assert (p.sequence_number, p.timestamp, p.ssrc, p.marker) == (65535, 4294967295, 7, False)
    # The padding we wrote is zeros, which is what serialize writes too.
    assert p.serialize() == data


def test_empty_extension_body_and_empty_payload() -> None:
    data = bytes([_first_octet(extension=True), 0]) + bytes(10) + struct.pack("!HH", 0x1000, 0)
    p = RtpPacket.parse(data)
    assert p.extension == HeaderExtension(0x1000, b"")
    assert p.payload == b""
    assert p.serialize() == data


def test_padding_may_consume_the_whole_payload() -> None:
    data = bytes([_first_octet(padding=True), 0]) + bytes(10) + b"\x00\x00\x03"
    p = RtpPacket.parse(data)
    assert p.payload == b"" and p.padding_size == 3


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "header truncated"),
        (bytes([0x80, 0]) + bytes(9), "header truncated"),
        (bytes([_first_octet(version=1), 0]) + bytes(10), "version is 1"),
        (bytes([_first_octet(version=0), 0]) + bytes(10), "version is 0"),
        (bytes([_first_octet(version=3), 0]) + bytes(10), "version is 3"),
        (bytes([_first_octet(cc=2), 0]) + bytes(10) + bytes(7), "CSRC list truncated"),
        (bytes([_first_octet(cc=15), 0]) + bytes(10), "CSRC list truncated"),
        (bytes([_first_octet(extension=True), 0]) + bytes(10) + b"\xbe\xde\x00", "extension truncated"),
        (bytes([_first_octet(extension=True), 0]) + bytes(10) + b"\xbe\xde\x00\x02" + bytes(7), "extension length"),
        (bytes([_first_octet(extension=True), 0]) + bytes(10) + b"\xbe\xde\xff\xff", "extension length"),
        (bytes([_first_octet(padding=True), 0]) + bytes(10) + b"abc\x00", "padding count 0"),
        (bytes([_first_octet(padding=True), 0]) + bytes(10) + b"abc\x05", "padding count 5"),
        (bytes([_first_octet(padding=True), 0]) + bytes(10), "padding count"),
        (bytes([_first_octet(padding=True, cc=1), 0]) + bytes(10) + b"\x00\x00\x00\x04", "padding count 4"),
    ],
)
def test_malformed_packets_raise_packet_error_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(PacketError, match=field):
        RtpPacket.parse(data)


@pytest.mark.parametrize(
    ("packet", "field"),
    [
        (RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))), "15 CSRCs"),
        (RtpPacket(128, 0, 0, 0), "payload type 128"),
        (RtpPacket(-1, 0, 0, 0), "payload type -1"),
        (RtpPacket(0, 0, 0, 0, padding_size=256), "padding 256"),
        (RtpPacket(0, 0, 0, 0, padding_size=-1), "padding -1"),
        (RtpPacket(0, 0, 0, 0, extension=HeaderExtension(1, b"abc")), "whole words"),
        (RtpPacket(0, 65536, 0, 0), "sequence_number 65536"),
        (RtpPacket(0, 0, 1 << 32, 0), "timestamp"),
        (RtpPacket(0, 0, 0, -1), "ssrc -1"),
        (RtpPacket(0, 0, 0, 0, csrc=(1 << 32,)), "csrc"),
        (RtpPacket(0, 0, 0, 0, extension=HeaderExtension(1 << 16)), "extension profile"),
        (RtpPacket(0, 0, 1.5, 0), "out of range"),  # type: ignore[arg-type]
    ],
)
def test_serialize_rejects_fields_out_of_range(packet: RtpPacket, field: str) -> None:
    with pytest.raises(PacketError, match=field):
        packet.serialize()


_u32 = st.integers(0, 2**32 - 1)
_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 65535),
    timestamp=_u32,
    ssrc=_u32,
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrc=st.lists(_u32, max_size=15).map(tuple),
    extension=st.none() | st.builds(HeaderExtension, st.integers(0, 65535),
                                    st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4])),
    padding_size=st.integers(0, 255),
)


@given(_packets)
def test_parse_of_serialize_is_identity(packet: RtpPacket) -> None:
    data = packet.serialize()
    parsed = RtpPacket.parse(data)
    assert parsed == packet
    assert parsed.wire_size == len(data)
    # Padding is written as zeros, so serialising again reproduces the same bytes.
    assert parsed.serialize() == data


@given(st.binary(max_size=120))
def test_any_bytes_parse_or_raise_packet_error(data: bytes) -> None:
    try:
        RtpPacket.parse(data)
    except PacketError:
        pass


@given(st.integers(0x80, 0xBF), st.binary(max_size=120))
def test_version_2_prefixed_bytes_parse_or_raise_packet_error(first: int, rest: bytes) -> None:
    # Most random bytes fail the version check; fixing V=2 drives the fuzz into CSRC/extension/padding.
    data = bytes([first]) + rest
    try:
        p = RtpPacket.parse(data)
    except PacketError:
        return
    assert p.wire_size == len(data)
    assert len(p.payload) + p.padding_size + HEADER_SIZE + 4 * len(p.csrc) <= len(data)


@pytest.mark.parametrize(
    ("second_octet", "expected"),
    [
        (200, True),  # SR
        (201, True),  # RR
        (192, True),  # lower end of RFC 5761 §4's 192-223 range
        (223, True),
        (191, False),  # PT 63 with marker
        (224, False),  # PT 96 with marker
        (0, False),  # PCMU without marker
        (128, False),  # PCMU with marker
        (8, False),
    ],
)
def test_is_rtcp_uses_rfc5761_second_octet_range(second_octet: int, expected: bool) -> None:
    assert is_rtcp(bytes([0x80, second_octet, 0, 1])) is expected


def test_is_rtcp_false_for_too_short() -> None:
    assert not is_rtcp(b"")
    assert not is_rtcp(b"\x80")


@given(st.integers(0, 127), st.booleans())
def test_is_rtcp_false_for_every_rtp_payload_type_outside_64_95(pt: int, marker: bool) -> None:
    data = build_rtp(pt, 1, 2, 3, b"x", marker=marker)
    assert is_rtcp(data) is (marker and 64 <= pt <= 95)
