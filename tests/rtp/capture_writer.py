"""A small pcap/pcapng writer for tests, built from the format specifications rather than from our reader.

Frames: :func:`ipv4_udp` / :func:`ipv6_udp` build IP packets (RFC 791, RFC 8200, RFC 768 with checksums), and
the link helpers wrap them (Ethernet with 802.1Q/QinQ tags, Linux SLL/SLL2, BSD NULL/LOOP, raw IP).
Files: :func:`pcap_bytes` (draft-ietf-opsawg-pcap, micro- or nanosecond magic, either byte order) and
:func:`pcapng_bytes` (draft-ietf-opsawg-pcapng: SHB, IDB with if_tsresol/if_tsoffset, EPB, SPB or legacy PB).
Both return the bytes and the file offset of every packet record, so tests can cut files at known places.
SIP/SDP/RTP builders at the end make whole calls for the replay tests.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

Address = tuple[str, int]

ETHERNET, NULL, RAW, LOOP, SLL, IPV4, IPV6, SLL2 = 1, 0, 101, 108, 113, 228, 229, 276


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp(src: Address, dst: Address, payload: bytes, pseudo: bytes) -> bytes:
    header = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF  # RFC 768: 0 means "none", so send all ones
    return header[:6] + struct.pack("!H", checksum) + payload


def ipv4_udp(src: Address, dst: Address, payload: bytes, *, ident: int = 1, ttl: int = 64, options: bytes = b"",
             fragment_offset: int = 0, more_fragments: bool = False, protocol: int = 17,
             total_length: int | None = None) -> bytes:
    """An IPv4 packet carrying UDP (or ``protocol``'s raw ``payload``); ``options`` must be whole words."""
    s, d = ipaddress.IPv4Address(src[0]).packed, ipaddress.IPv4Address(dst[0]).packed
    body = _udp(src, dst, payload, s + d + struct.pack("!xBH", 17, 8 + len(payload))) if protocol == 17 else payload
    ihl = 5 + len(options) // 4
    length = total_length if total_length is not None else ihl * 4 + len(body)
    flags = (0x2000 if more_fragments else 0) | (fragment_offset // 8)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length, ident, flags, ttl, protocol, 0, s, d) + options
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + body


def ipv6_udp(src: Address, dst: Address, payload: bytes, *, hop_by_hop: bool = False,
             fragment: tuple[int, bool] | None = None, next_header: int = 17) -> bytes:
    """An IPv6 packet carrying UDP, optionally behind a Hop-by-Hop header and a Fragment header
    (``fragment`` = (offset in bytes, more-fragments flag); (0, False) is an RFC 6946 atomic fragment)."""
    s, d = ipaddress.IPv6Address(src[0]).packed, ipaddress.IPv6Address(dst[0]).packed
    if next_header == 17:
        body = _udp(src, dst, payload, s + d + struct.pack("!I3xB", 8 + len(payload), 17))
    else:
        body = payload
    chain = [next_header]
    headers: list[bytes] = []
    if fragment is not None:
        offset, more = fragment
        headers.insert(0, struct.pack("!BxHI", chain[0], offset | (1 if more else 0), 0x1234))
        chain.insert(0, 44)
    if hop_by_hop:  # 8 bytes: next header, length 0, and a PadN option filling the rest (RFC 8200 §4.2)
        headers.insert(0, struct.pack("!BBBB4x", chain[0], 0, 1, 4))
        chain.insert(0, 0)
    rest = b"".join(headers) + body
    return struct.pack("!IHBB16s16s", 6 << 28, len(rest), chain[0], 64, s, d) + rest


def _ethertype(ip_packet: bytes) -> int:
    return 0x86DD if ip_packet[0] >> 4 == 6 else 0x0800


def ethernet(ip_packet: bytes, vlans: Sequence[int] = (), *, ethertype: int | None = None,
             outer_tpid: int = 0x88A8) -> bytes:
    """Ethernet II; with two or more VLAN ids the outer tags use ``outer_tpid`` (802.1ad), the inner 0x8100."""
    tags = b"".join(struct.pack("!HH", outer_tpid if i < len(vlans) - 1 else 0x8100, vid)
                    for i, vid in enumerate(vlans))
    kind = ethertype if ethertype is not None else _ethertype(ip_packet)
    return b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb" + tags + struct.pack("!H", kind) + ip_packet


def sll(ip_packet: bytes) -> bytes:
    """Linux cooked capture v1: packet type, ARPHRD, address length, 8-byte address, protocol."""
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x66\x77\x88\x99\xaa\xbb", _ethertype(ip_packet)) + ip_packet


def sll2(ip_packet: bytes) -> bytes:
    """Linux cooked capture v2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address."""
    return struct.pack("!HHIHBB8s", _ethertype(ip_packet), 0, 2, 1, 0, 6, b"\x66\x77\x88\x99\xaa\xbb") + ip_packet


def null(ip_packet: bytes, big_endian: bool = False, family: int | None = None) -> bytes:
    """BSD loopback: the address family as a 32-bit word in the capturing host's byte order."""
    if family is None:
        family = 30 if ip_packet[0] >> 4 == 6 else 2  # AF_INET6 of macOS, AF_INET
    return struct.pack(">I" if big_endian else "<I", family) + ip_packet


def loop(ip_packet: bytes) -> bytes:
    """OpenBSD loopback: the same header as NULL, always in network byte order."""
    return null(ip_packet, big_endian=True)


def udp_frame(src: Address, dst: Address, payload: bytes, link: int = ETHERNET, vlans: Sequence[int] = ()) -> bytes:
    """A UDP datagram framed for ``link``; IPv6 when the source address contains a colon."""
    packet = ipv6_udp(src, dst, payload) if ":" in src[0] else ipv4_udp(src, dst, payload)
    if link == ETHERNET:
        return ethernet(packet, vlans)
    wrap = {SLL: sll, SLL2: sll2, NULL: null, LOOP: loop}.get(link)
    return wrap(packet) if wrap is not None else packet


# --- files ---------------------------------------------------------------------------------------------------

def _split(time: float, units: int) -> int:
    whole = math.floor(time)
    return whole * units + round((time - whole) * units)


def pcap_bytes(records: Iterable[tuple[float, bytes]], *, link: int = ETHERNET, nanoseconds: bool = False,
               big_endian: bool = False, snaplen: int = 65535) -> tuple[bytes, list[int]]:
    order = ">" if big_endian else "<"
    units = 1_000_000_000 if nanoseconds else 1_000_000
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    parts = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link)]
    offsets, pos = [], 24
    for time, frame in records:
        seconds, fraction = divmod(_split(time, units), units)
        caplen = min(len(frame), snaplen)
        parts.append(struct.pack(order + "IIII", seconds, fraction, caplen, len(frame)) + frame[:caplen])
        offsets.append(pos)
        pos += 16 + caplen
    return b"".join(parts), offsets


@dataclass(frozen=True)
class Interface:
    link: int = ETHERNET
    tsresol: int | None = None
    """The if_tsresol byte: 10^-n seconds, or 2^-(n & 0x7f) with the top bit set; None writes no option."""
    tsoffset: int = 0
    snaplen: int = 0

    @property
    def units(self) -> int:
        res = 6 if self.tsresol is None else self.tsresol
        return 1 << (res & 0x7F) if res & 0x80 else 10**res


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def block(kind: int, body: bytes, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    length = 12 + len(_pad(body))
    return struct.pack(order + "II", kind, length) + _pad(body) + struct.pack(order + "I", length)


def shb(big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), big_endian)


def idb(interface: Interface, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    options = b""
    if interface.tsresol is not None:
        options += struct.pack(order + "HHB3x", 9, 1, interface.tsresol)
    if interface.tsoffset:
        options += struct.pack(order + "HHq", 14, 8, interface.tsoffset)
    if options:
        options += struct.pack(order + "HH", 0, 0)
    return block(1, struct.pack(order + "HHI", interface.link, 0, interface.snaplen) + options, big_endian)


def pcapng_bytes(records: Iterable[tuple[float, bytes] | tuple[float, bytes, int]], *,
                 interfaces: Sequence[Interface] = (Interface(),), big_endian: bool = False, packet_block: str = "epb",
                 start: int = 0, extra_blocks: Sequence[bytes] = ()) -> tuple[bytes, list[int]]:
    """One section: SHB, IDBs, ``extra_blocks`` (e.g. name resolution), then one packet block per record.
    ``start`` is where the section will sit in the file, for the returned offsets."""
    order = ">" if big_endian else "<"
    parts = [shb(big_endian), *(idb(i, big_endian) for i in interfaces), *extra_blocks]
    pos = start + sum(map(len, parts))
    offsets = []
    for record in records:
        time, frame = record[0], record[1]
        iface = record[2] if len(record) == 3 else 0
        ts = _split(time - interfaces[iface].tsoffset, interfaces[iface].units)
        if packet_block == "epb":
            blk = block(6, struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
                        + frame, big_endian)
        elif packet_block == "pb":
            blk = block(2, struct.pack(order + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame),
                                       len(frame)) + frame, big_endian)
        else:
            blk = block(3, struct.pack(order + "I", len(frame)) + frame, big_endian)
        parts.append(blk)
        offsets.append(pos)
        pos += len(blk)
    return b"".join(parts), offsets


def write_pcap(path: Path, records: Iterable[tuple[float, bytes]], **options: object) -> list[int]:
    data, offsets = pcap_bytes(records, **options)  # type: ignore[arg-type]
    path.write_bytes(data)
    return offsets


def write_pcapng(path: Path, records: Iterable[tuple[float, bytes] | tuple[float, bytes, int]],
                 **options: object) -> list[int]:
    data, offsets = pcapng_bytes(records, **options)  # type: ignore[arg-type]
    path.write_bytes(data)
    return offsets


# --- calls ---------------------------------------------------------------------------------------------------

def rtp_payloads(ssrc: int, count: int, *, payload_type: int = 0, first_seq: int = 1000, first_ts: int = 5000,
                 samples: int = 160, payload: bytes | None = None) -> list[bytes]:
    """RTP packets (RFC 3550 §5.1 fixed header, marker on the first) of one talkspurt."""
    body = payload if payload is not None else bytes([0xD5 if payload_type == 8 else 0xFF]) * samples
    return [struct.pack("!BBHII", 0x80, payload_type | (0x80 if i == 0 else 0), (first_seq + i) & 0xFFFF,
                        (first_ts + i * samples) & 0xFFFFFFFF, ssrc) + body for i in range(count)]


def sdp(address: str, port: int, formats: Sequence[tuple[int, str]], session_id: int = 1) -> str:
    """An RFC 4566 audio session; ``formats`` are (payload type, "NAME/RATE") pairs."""
    family = "IP6" if ":" in address else "IP4"
    lines = ["v=0", f"o=- {session_id} 1 IN {family} {address}", "s=-", f"c=IN {family} {address}", "t=0 0",
             f"m=audio {port} RTP/AVP " + " ".join(str(pt) for pt, _ in formats)]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in formats]
    return "\r\n".join(lines) + "\r\n"


def sip_message(start_line: str, call_id: str, cseq: str, body: str = "", extra: Sequence[str] = ()) -> bytes:
    headers = [start_line, "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", "From: <sip:a@example.com>;tag=1",
               "To: <sip:b@example.com>", f"Call-ID: {call_id}", f"CSeq: {cseq}", *extra]
    if body:
        headers.append("Content-Type: application/sdp")
    headers.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()
