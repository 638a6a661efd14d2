"""RTP packets (RFC 3550 §5.1, header extension §5.3.1) and the RTP/RTCP demultiplexer of RFC 5761 §4."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from rtp.errors import PacketError

RTP_VERSION = 2
HEADER_SIZE = 12
_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class HeaderExtension:
    """The §5.3.1 header extension: a 16-bit profile word and a body of whole 32-bit words."""

    profile: int
    data: bytes = b""


# Not frozen on purpose: a frozen dataclass's __init__ goes through object.__setattr__ per field, which costs
# ~8 us per packet on a small VM, a quarter of the whole inbound budget (parse + jitter + decode + resample).
# Treat instances as values all the same: nothing in the project mutates a packet after building it.
@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: HeaderExtension | None = None
    padding_size: int = 0
    """Bytes of padding after the payload (including the count byte); 0 means no P bit."""
    wire_size: int = field(default=0, compare=False)
    """Size on the wire when parsed; 0 for packets built locally."""

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raise :class:`PacketError` naming the field at fault."""
        size = len(data)
        if size < HEADER_SIZE:
            raise PacketError(f"RTP header truncated: {size} bytes, need {HEADER_SIZE}")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 == 0x80:
            # The common packet (no CSRC, extension or padding): one positional construction, no checks left.
            return cls(b1 & 0x7F, seq, ts, ssrc, data[HEADER_SIZE:], b1 > 0x7F, (), None, 0, size)
        version = b0 >> 6
        if version != RTP_VERSION:
            raise PacketError(f"RTP version is {version}, expected 2")
        cc = b0 & 0x0F
        pos = HEADER_SIZE + 4 * cc
        if size < pos:
            raise PacketError(f"RTP CSRC list truncated: {cc} CSRCs need {pos} bytes, have {size}")
        csrc = struct.unpack_from(f"!{cc}I", data, HEADER_SIZE) if cc else ()
        extension = None
        if b0 & 0x10:
            if size < pos + 4:
                raise PacketError("RTP header extension truncated: no room for its 4-byte header")
            profile, words = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + 4 * words
            if size < end:
                raise PacketError(
                    f"RTP header extension length {words} words runs past the end ({end} > {size} bytes)"
                )
            extension = HeaderExtension(profile, bytes(data[pos + 4 : end]))
            pos = end
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            # §5.1: the last octet counts itself, so zero padding with P set is malformed.
            if padding == 0 or pos + padding > size:
                raise PacketError(f"RTP padding count {padding} is impossible for a {size}-byte packet")
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos : size - padding]),
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding_size=padding,
            wire_size=size,
        )

    def serialize(self) -> bytes:
        """Build the wire bytes; raise :class:`PacketError` for fields out of range."""
        cc = len(self.csrc)
        if cc > 15:
            raise PacketError(f"RTP carries at most 15 CSRCs, got {cc}")
        if not 0 <= self.payload_type <= 127:
            raise PacketError(f"RTP payload type {self.payload_type} out of range 0-127")
        if not 0 <= self.padding_size <= 255:
            raise PacketError(f"RTP padding {self.padding_size} out of range 0-255")
        b0 = (RTP_VERSION << 6) | cc
        if self.padding_size:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = self.payload_type | (0x80 if self.marker else 0)
        try:
            parts = [_HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc)]
            if cc:
                parts.append(struct.pack(f"!{cc}I", *self.csrc))
            if self.extension is not None:
                body = self.extension.data
                if len(body) % 4:
                    raise PacketError(f"RTP header extension body must be whole words, got {len(body)} bytes")
                parts.append(struct.pack("!HH", self.extension.profile, len(body) // 4))
                parts.append(body)
        except struct.error:
            # Checked only on failure so the send path pays nothing for naming the culprit.
            raise PacketError(self._out_of_range()) from None
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(parts)

    def _out_of_range(self) -> str:
        fields = [("sequence_number", self.sequence_number, 16), ("timestamp", self.timestamp, 32),
                  ("ssrc", self.ssrc, 32)]
        fields += [("csrc", c, 32) for c in self.csrc]
        if self.extension is not None:
            fields.append(("extension profile", self.extension.profile, 16))
        for name, value, bits in fields:
            if not 0 <= value < 1 << bits:
                return f"RTP {name} {value} does not fit in {bits} bits"
        return "RTP header field out of range"


def build_rtp(payload_type: int, sequence_number: int, timestamp: int, ssrc: int, payload: bytes,
              marker: bool = False) -> bytes:
    """Fast path for the common packet (no CSRC, extension or padding): header + payload."""
    return _HEADER.pack(0x80, payload_type | (0x80 if marker else 0), sequence_number, timestamp,
                        ssrc) + payload


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: on a muxed port, a second octet of 192-223 (RTCP packet types 64-95 as seen by an
    RTP parser with the marker bit set) marks RTCP; RTP payload types avoid that range."""
    return len(data) >= 2 and 192 <= data[1] <= 223


__all__ = ["HEADER_SIZE", "HeaderExtension", "RtpPacket", "build_rtp", "is_rtcp"]
