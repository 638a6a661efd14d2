"""aiortc as an independent oracle: what we write it reads the same, and what it writes we read the same.

Known limits of the oracle, so the tests stay within what it implements per RFC 3550:
- aiortc exposes RTP header extensions only through an extension map (RFC 8285 ids -> known URIs), so the
  extension is compared through mid / audio level / transport-wide sequence number elements.
- aiortc's SDES parser does not realign to a 32-bit boundary between chunks (§6.5), so only one chunk is used.
- aiortc's BYE ignores the reason text; the sources are compared, the reason only on our side.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.packet import HeaderExtension, RtpPacket
from rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    parse_compound,
    serialize_compound,
)

aiortc_rtp = pytest.importorskip("aiortc.rtp")
aiortc_params = pytest.importorskip("aiortc.rtcrtpparameters")

pytestmark = pytest.mark.unit

MID_ID, LEVEL_ID, TWCC_ID = 1, 2, 3


def _extension_map() -> object:
    ext = aiortc_params.RTCRtpHeaderExtensionParameters
    params = aiortc_params.RTCRtpParameters(headerExtensions=[
        ext(id=MID_ID, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        ext(id=LEVEL_ID, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
        ext(id=TWCC_ID, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
    ])
    mapping = aiortc_rtp.HeaderExtensionsMap()
    mapping.configure(params)
    return mapping


def _one_byte_elements(mid: bytes, voice: bool, level: int, twcc: int) -> bytes:
    # RFC 8285 §4.2: profile 0xBEDE; each element is ID (4 bits) | L = length - 1 (4 bits), then the data.
    data = bytes([(MID_ID << 4) | (len(mid) - 1)]) + mid
    data += bytes([(LEVEL_ID << 4) | 0, (0x80 if voice else 0) | level])
    data += bytes([(TWCC_ID << 4) | 1]) + struct.pack("!H", twcc)
    return data + bytes(-len(data) % 4)


_u32 = st.integers(0, 2**32 - 1)
_mid = st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=16).map(str.encode)


@settings(max_examples=60)
@given(
    pt=st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
    seq=st.integers(0, 65535),
    ts=_u32,
    ssrc=_u32,
    marker=st.booleans(),
    csrc=st.lists(_u32, max_size=15).map(tuple),
    payload=st.binary(max_size=80),
    padding=st.integers(0, 255),
    mid=_mid,
    voice=st.booleans(),
    level=st.integers(0, 127),
    twcc=st.integers(0, 65535),
)
def test_our_rtp_parses_the_same_in_aiortc(pt: int, seq: int, ts: int, ssrc: int, marker: bool,
                                           csrc: tuple[int, ...], payload: bytes, padding: int, mid: bytes,
                                           voice: bool, level: int, twcc: int) -> None:
    ext = HeaderExtension(0xBEDE, _one_byte_elements(mid, voice, level, twcc))
    ours = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, ext, padding)
    theirs = aiortc_rtp.RtpPacket.parse(ours.serialize(), _extension_map())
    assert (theirs.payload_type, bool(theirs.marker), theirs.sequence_number) == (pt, marker, seq)
    assert (theirs.timestamp, theirs.ssrc, tuple(theirs.csrc)) == (ts, ssrc, csrc)
    assert (theirs.payload, theirs.padding_size) == (payload, padding)
    assert theirs.extensions.mid == mid.decode()
    assert theirs.extensions.audio_level == (voice, level)
    assert theirs.extensions.transport_sequence_number == twcc


@settings(max_examples=60)
@given(
    pt=st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
    seq=st.integers(0, 65535),
    ts=_u32,
    ssrc=_u32,
    marker=st.booleans(),
    csrc=st.lists(_u32, max_size=15),
    payload=st.binary(max_size=80),
    padding=st.integers(0, 255),
    mid=st.none() | _mid.map(bytes.decode),
    twcc=st.none() | st.integers(0, 65535),
)
def test_aiortc_rtp_parses_the_same_with_ours(pt: int, seq: int, ts: int, ssrc: int, marker: bool,
                                              csrc: list[int], payload: bytes, padding: int, mid: str | None,
                                              twcc: int | None) -> None:
    theirs = aiortc_rtp.RtpPacket(payload_type=pt, marker=int(marker), sequence_number=seq, timestamp=ts,
                                  ssrc=ssrc, payload=payload)
    theirs.csrc = csrc
    theirs.padding_size = padding
    theirs.extensions.mid = mid
    theirs.extensions.transport_sequence_number = twcc
    mapping = _extension_map()
    data = theirs.serialize(mapping)
    ours = RtpPacket.parse(data)
    assert (ours.payload_type, ours.marker, ours.sequence_number) == (pt, marker, seq)
    assert (ours.timestamp, ours.ssrc, ours.csrc) == (ts, ssrc, tuple(csrc))
    assert (ours.payload, ours.padding_size, ours.wire_size) == (payload, padding, len(data))
    if mid is None and twcc is None:
        assert ours.extension is None
    else:
        assert ours.extension is not None
        # Re-serialised by us (padding content aside), aiortc still finds the same extension values.
        again = aiortc_rtp.RtpPacket.parse(ours.serialize(), mapping)
        assert (again.extensions.mid, again.extensions.transport_sequence_number) == (mid, twcc)


_blocks = st.builds(ReportBlock, _u32, st.integers(0, 255), st.integers(-(2**23), 2**23 - 1), _u32, _u32, _u32,
                    _u32)
_block_lists = st.lists(_blocks, max_size=5).map(tuple)


def _assert_same_block(theirs: object, ours: ReportBlock) -> None:
    assert (
        theirs.ssrc, theirs.fraction_lost, theirs.packets_lost,  # type: ignore[attr-defined]
        theirs.highest_sequence, theirs.jitter, theirs.lsr, theirs.dlsr,  # type: ignore[attr-defined]
    ) == (ours.ssrc, ours.fraction_lost, ours.cumulative_lost, ours.highest_seq, ours.jitter, ours.lsr, ours.dlsr)


@settings(max_examples=60)
@given(
    sr=st.builds(SenderReport, _u32, st.integers(0, 2**64 - 1), _u32, _u32, _u32, _block_lists),
    rr=st.builds(ReceiverReport, _u32, _block_lists),
    cname=st.text(max_size=60),
    bye_sources=st.lists(_u32, max_size=5).map(tuple),
    reason=st.none() | st.text(max_size=40),
)
def test_our_rtcp_compound_parses_the_same_in_aiortc(sr: SenderReport, rr: ReceiverReport, cname: str,
                                                     bye_sources: tuple[int, ...], reason: str | None) -> None:
    sdes = SourceDescription.for_cname(sr.ssrc, cname)
    bye = Bye(bye_sources, reason)
    theirs = aiortc_rtp.RtcpPacket.parse(serialize_compound([sr, rr, sdes, bye]))
    assert [type(p).__name__ for p in theirs] == ["RtcpSrPacket", "RtcpRrPacket", "RtcpSdesPacket", "RtcpByePacket"]
    t_sr, t_rr, t_sdes, t_bye = theirs
    info = t_sr.sender_info
    assert (t_sr.ssrc, info.ntp_timestamp, info.rtp_timestamp, info.packet_count, info.octet_count) == (
        sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp, sr.packet_count, sr.octet_count)
    assert len(t_sr.reports) == len(sr.reports)
    for t_block, block in zip(t_sr.reports, sr.reports, strict=True):
        _assert_same_block(t_block, block)
    assert t_rr.ssrc == rr.ssrc and len(t_rr.reports) == len(rr.reports)
    for t_block, block in zip(t_rr.reports, rr.reports, strict=True):
        _assert_same_block(t_block, block)
    [chunk] = t_sdes.chunks
    assert chunk.ssrc == sr.ssrc and [(t, bytes(v)) for t, v in chunk.items] == [(1, cname.encode())]
    assert tuple(t_bye.sources) == bye_sources


def _their_block(block: ReportBlock) -> object:
    return aiortc_rtp.RtcpReceiverInfo(ssrc=block.ssrc, fraction_lost=block.fraction_lost,
                                       packets_lost=block.cumulative_lost, highest_sequence=block.highest_seq,
                                       jitter=block.jitter, lsr=block.lsr, dlsr=block.dlsr)


@settings(max_examples=60)
@given(
    sr=st.builds(SenderReport, _u32, st.integers(0, 2**64 - 1), _u32, _u32, _u32, _block_lists),
    rr=st.builds(ReceiverReport, _u32, _block_lists),
    items=st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=40)), max_size=4),
    bye_sources=st.lists(_u32, max_size=5),
)
def test_aiortc_rtcp_compound_parses_the_same_with_ours(sr: SenderReport, rr: ReceiverReport,
                                                        items: list[tuple[int, bytes]], bye_sources: list[int]) -> None:
    their_sr = aiortc_rtp.RtcpSrPacket(
        ssrc=sr.ssrc,
        sender_info=aiortc_rtp.RtcpSenderInfo(ntp_timestamp=sr.ntp_timestamp, rtp_timestamp=sr.rtp_timestamp,
                                              packet_count=sr.packet_count, octet_count=sr.octet_count),
        reports=[_their_block(b) for b in sr.reports],
    )
    their_rr = aiortc_rtp.RtcpRrPacket(ssrc=rr.ssrc, reports=[_their_block(b) for b in rr.reports])
    their_sdes = aiortc_rtp.RtcpSdesPacket(chunks=[aiortc_rtp.RtcpSourceInfo(ssrc=sr.ssrc, items=items)])
    their_bye = aiortc_rtp.RtcpByePacket(sources=bye_sources)
    data = b"".join(bytes(p) for p in (their_sr, their_rr, their_sdes, their_bye))
    assert parse_compound(data, require_report_first=True) == [
        sr, rr, SourceDescription(((sr.ssrc, tuple(items)),)), Bye(tuple(bye_sources)),
    ]
