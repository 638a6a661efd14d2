"""RTCP compound packets (RFC 3550 §6): SR, RR, SDES and BYE, with other types kept opaque.

Parsing applies the validity checks of RFC 3550 A.2 (version, length fields that add up, padding only on the
last packet) and raises :class:`~rtp.errors.PacketError` naming what is wrong. The first packet is not required
to be a report unless asked, because RFC 5506 allows reduced-size RTCP (a lone feedback packet).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from rtp.errors import PacketError

__all__ = [
    "NTP_UNIX_OFFSET", "RTCP_APP", "RTCP_BYE", "RTCP_RR", "RTCP_SDES", "RTCP_SR", "SDES_CNAME", "Bye", "ReceiverReport",
    "ReportBlock", "RtcpPacket", "SenderReport", "SourceDescription", "UnknownRtcp", "ntp_from_unix",
    "ntp_middle32", "parse_compound", "rtt_from_report", "serialize_compound",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_CNAME = 1

_VERSION = 2
_MAX_COUNT = 31  # the 5-bit RC/SC field
_U32 = 1 << 32
_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC of sender + the 20-byte sender info of §6.4.1
_SSRC = struct.Struct("!I")
# Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01), RFC 868 / RFC 5905.
NTP_UNIX_OFFSET = 2_208_988_800


def _fit(what: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise PacketError(f"RTCP {what} {value} does not fit in {bits} bits")


def _header(packet_type: int, count: int, body: bytes) -> bytes:
    if not 0 <= count <= _MAX_COUNT:
        raise PacketError(f"RTCP count {count} does not fit in the 5-bit count field (max {_MAX_COUNT})")
    if len(body) % 4:
        raise PacketError(f"RTCP packet type {packet_type} body must be whole 32-bit words, got {len(body)} bytes")
    words = len(body) // 4
    _fit("length", words, 16)
    return _HEADER.pack((_VERSION << 6) | count, packet_type, words) + body


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (§6.4.1) about the source ``ssrc``."""

    ssrc: int
    fraction_lost: int
    """Fixed point, lost/expected * 256 since the previous report (0-255)."""
    cumulative_lost: int
    """Signed 24-bit; negative when duplicates outnumber losses (A.3)."""
    highest_seq: int
    """Extended highest sequence number received (cycles << 16 | seq)."""
    jitter: int
    """Interarrival jitter in RTP timestamp units (A.8)."""
    lsr: int
    """Middle 32 bits of the NTP timestamp of the last SR from that source; 0 if none."""
    dlsr: int
    """Delay since that SR in units of 1/65536 s."""

    SIZE: ClassVar[int] = 24

    def serialize(self) -> bytes:
        _fit("report block ssrc", self.ssrc, 32)
        _fit("fraction_lost", self.fraction_lost, 8)
        if not -(1 << 23) <= self.cumulative_lost < 1 << 23:
            raise PacketError(f"RTCP cumulative_lost {self.cumulative_lost} does not fit in signed 24 bits")
        for name in ("highest_seq", "jitter", "lsr", "dlsr"):
            _fit(name, getattr(self, name), 32)
        lost_word = (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF)
        return _BLOCK.pack(self.ssrc, lost_word, self.highest_seq, self.jitter, self.lsr, self.dlsr)

    @classmethod
    def _parse(cls, body: bytes, pos: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(body, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:  # two's complement sign of the 24-bit field
            lost -= 1 << 24
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


def _parse_blocks(body: bytes, pos: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(ReportBlock._parse(body, pos + i * ReportBlock.SIZE) for i in range(count))


def _serialize_blocks(reports: tuple[ReportBlock, ...], extension: bytes) -> bytes:
    if len(extension) % 4:
        raise PacketError(f"RTCP profile-specific extension must be whole words, got {len(extension)} bytes")
    return b"".join(block.serialize() for block in reports) + extension


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    """64-bit NTP timestamp (seconds since 1900 in the high word, fraction in the low word)."""
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    """Profile-specific extension after the report blocks (§6.4.1), kept opaque."""

    packet_type: ClassVar[int] = RTCP_SR

    def serialize(self) -> bytes:
        _fit("SR ssrc", self.ssrc, 32)
        _fit("ntp_timestamp", self.ntp_timestamp, 64)
        for name in ("rtp_timestamp", "packet_count", "octet_count"):
            _fit(name, getattr(self, name), 32)
        body = _SENDER_INFO.pack(self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count,
                                 self.octet_count)
        return _header(RTCP_SR, len(self.reports), body + _serialize_blocks(self.reports, self.extension))

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SenderReport:
        need = _SENDER_INFO.size + count * ReportBlock.SIZE
        if len(body) < need:
            raise PacketError(f"RTCP SR with {count} report blocks needs {need} body bytes, has {len(body)}")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        return cls(ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(body, _SENDER_INFO.size, count), body[need:])


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    """Profile-specific extension after the report blocks (§6.4.2), kept opaque."""

    packet_type: ClassVar[int] = RTCP_RR

    def serialize(self) -> bytes:
        _fit("RR ssrc", self.ssrc, 32)
        return _header(RTCP_RR, len(self.reports),
                       _SSRC.pack(self.ssrc) + _serialize_blocks(self.reports, self.extension))

    @classmethod
    def _parse(cls, count: int, body: bytes) -> ReceiverReport:
        need = 4 + count * ReportBlock.SIZE
        if len(body) < need:
            raise PacketError(f"RTCP RR with {count} report blocks needs {need} body bytes, has {len(body)}")
        return cls(_SSRC.unpack_from(body)[0], _parse_blocks(body, 4, count), body[need:])


SdesChunk: TypeAlias = tuple[int, tuple[tuple[int, bytes], ...]]


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (§6.5): per source, a tuple of ``(item_type, value)``; type 1 is CNAME."""

    chunks: tuple[SdesChunk, ...] = ()

    packet_type: ClassVar[int] = RTCP_SDES

    @classmethod
    def for_cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls(((ssrc, ((SDES_CNAME, cname.encode()),)),))

    def cname(self, ssrc: int) -> str | None:
        for chunk_ssrc, items in self.chunks:
            if chunk_ssrc == ssrc:
                for item_type, value in items:
                    if item_type == SDES_CNAME:
                        return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        parts = []
        for ssrc, items in self.chunks:
            _fit("SDES ssrc", ssrc, 32)
            chunk = [_SSRC.pack(ssrc)]
            for item_type, value in items:
                if not 1 <= item_type <= 255:
                    raise PacketError(f"RTCP SDES item type {item_type} out of range 1-255 (0 ends the list)")
                if len(value) > 255:
                    raise PacketError(f"RTCP SDES item type {item_type} value is {len(value)} bytes, max 255")
                chunk.append(bytes((item_type, len(value))) + value)
            # §6.5: one null octet ends the item list, then nulls up to the next 32-bit boundary.
            parts.append(_pad4(b"".join(chunk) + b"\0"))
        return _header(RTCP_SDES, len(self.chunks), b"".join(parts))

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SourceDescription:
        size = len(body)
        pos = 0
        chunks: list[SdesChunk] = []
        for index in range(count):
            if pos + 4 > size:
                raise PacketError(f"RTCP SDES chunk {index} truncated: no room for its SSRC")
            ssrc = _SSRC.unpack_from(body, pos)[0]
            pos += 4
            items = []
            while True:
                if pos >= size:
                    raise PacketError(f"RTCP SDES chunk {index} has no null octet ending its item list")
                item_type = body[pos]
                if item_type == 0:
                    pos = (pos + 4) & ~3  # skip the null octet and the padding to the next word (§6.5)
                    break
                if pos + 2 > size:
                    raise PacketError(f"RTCP SDES chunk {index} item type {item_type} has no length octet")
                end = pos + 2 + body[pos + 1]
                if end > size:
                    raise PacketError(f"RTCP SDES chunk {index} item type {item_type} length runs past the end")
                items.append((item_type, body[pos + 2 : end]))
                pos = end
            chunks.append((ssrc, tuple(items)))
        # Some stacks end a chunk with more null words than needed; anything else here is garbage.
        if any(body[pos:]):
            raise PacketError(f"RTCP SDES has {size - pos} non-null bytes after its {count} chunks")
        return cls(tuple(chunks))


@dataclass(frozen=True, slots=True)
class Bye:
    sources: tuple[int, ...] = ()
    reason: str | None = None

    packet_type: ClassVar[int] = RTCP_BYE

    def serialize(self) -> bytes:
        for ssrc in self.sources:
            _fit("BYE ssrc", ssrc, 32)
        body = b"".join(_SSRC.pack(ssrc) for ssrc in self.sources)
        if self.reason is not None:
            text = self.reason.encode()
            if len(text) > 255:
                raise PacketError(f"RTCP BYE reason is {len(text)} bytes in UTF-8, max 255")
            body += _pad4(bytes((len(text),)) + text)  # §6.6: length octet, text, nulls to a word
        return _header(RTCP_BYE, len(self.sources), body)

    @classmethod
    def _parse(cls, count: int, body: bytes) -> Bye:
        need = 4 * count
        if len(body) < need:
            raise PacketError(f"RTCP BYE with {count} sources needs {need} body bytes, has {len(body)}")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = None
        if len(body) > need:
            end = need + 1 + body[need]
            if end > len(body):
                raise PacketError(f"RTCP BYE reason length {body[need]} runs past the end of the packet")
            # Lenient decoding: a peer's mis-encoded reason must not cost us the BYE itself.
            reason = body[need + 1 : end].decode("utf-8", "replace")
        return cls(sources, reason)


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any other packet type (APP, RTPFB, PSFB, XR...): the header's count field and the raw body."""

    packet_type: int
    count: int
    body: bytes

    def serialize(self) -> bytes:
        _fit("packet type", self.packet_type, 8)
        return _header(self.packet_type, self.count, self.body)


RtcpPacket: TypeAlias = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp

_PARSERS: dict[int, Callable[[int, bytes], RtcpPacket]] = {
    RTCP_SR: SenderReport._parse,
    RTCP_RR: ReceiverReport._parse,
    RTCP_SDES: SourceDescription._parse,
    RTCP_BYE: Bye._parse,
}


def parse_compound(data: bytes, *, require_report_first: bool = False) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; ``require_report_first`` adds the A.2 check that it starts with SR/RR."""
    size = len(data)
    if size == 0:
        raise PacketError("RTCP compound packet is empty")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < size:
        if size - pos < 4:
            raise PacketError(f"RTCP header truncated at byte {pos}: {size - pos} bytes left, need 4")
        b0, packet_type, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != _VERSION:
            raise PacketError(f"RTCP version is {b0 >> 6} in the packet at byte {pos}, expected 2")
        end = pos + 4 + 4 * words
        # A.2: the length fields must add up to the length of the compound packet as received.
        if end > size:
            raise PacketError(f"RTCP length field {words} words at byte {pos} runs past the end ({end} > {size})")
        body_end = end
        if b0 & 0x20:
            # §6.4.1 / A.2: padding is only allowed on the last packet of a compound.
            if end != size:
                raise PacketError(f"RTCP padding bit set on the packet at byte {pos}, which is not the last")
            padding = data[end - 1] if words else 0
            # The count includes itself and keeps the packet a whole number of words.
            if padding == 0 or padding % 4 or padding > 4 * words:
                raise PacketError(f"RTCP padding count {padding} is impossible for a {4 * words}-byte body")
            body_end -= padding
        body = bytes(data[pos + 4 : body_end])
        count = b0 & 0x1F
        parser = _PARSERS.get(packet_type)
        packets.append(parser(count, body) if parser else UnknownRtcp(packet_type, count, body))
        pos = end
    if require_report_first and not isinstance(packets[0], SenderReport | ReceiverReport):
        raise PacketError(f"RTCP compound starts with packet type {packets[0].packet_type}, expected SR or RR")
    return packets


def serialize_compound(packets: Iterable[RtcpPacket], padding: int = 0) -> bytes:
    """Concatenate packets; ``padding`` octets (a multiple of 4, at most 252) go on the last one (§6.4.1)."""
    parts = [packet.serialize() for packet in packets]
    if not parts:
        raise PacketError("RTCP compound packet needs at least one packet")
    if padding:
        if padding < 0 or padding % 4 or padding > 252:
            raise PacketError(f"RTCP padding {padding} must be a multiple of 4 in 4-252")
        last = parts[-1]
        b0, packet_type, words = _HEADER.unpack_from(last)
        _fit("length", words + padding // 4, 16)
        parts[-1] = (_HEADER.pack(b0 | 0x20, packet_type, words + padding // 4) + last[4:]
                     + bytes(padding - 1) + bytes((padding,)))
    return b"".join(parts)


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp for a Unix time; the seconds wrap at the 2036 era boundary (§4)."""
    whole = math.floor(seconds)
    fraction = int((seconds - whole) * _U32)
    return (((whole + NTP_UNIX_OFFSET) % _U32) << 32) | fraction


def ntp_middle32(ntp: int) -> int:
    """The compact NTP form used by LSR and DLSR (§6.4.1): 16.16 fixed-point seconds."""
    return (ntp >> 16) % _U32


def rtt_from_report(block: ReportBlock, arrival_ntp_middle32: int) -> float | None:
    """Round-trip time in seconds per §6.4.1 (A - LSR - DLSR), or None when the peer has seen no SR yet."""
    if block.lsr == 0:
        return None
    delta = (arrival_ntp_middle32 - block.lsr - block.dlsr) % _U32
    # A "negative" result can only come from rounding of the 16.16 values or clock steps: an RTT of zero.
    if delta >= _U32 // 2:
        return 0.0
    return delta / 65536
