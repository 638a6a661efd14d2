"""Captures: classic pcap and pcapng files -> UDP datagrams -> RTP streams (with SIP/SDP hints when present).

The reader is our own (struct over an mmap) so every :class:`CaptureError` carries the exact byte offset of the
record at fault, and it is a generator: every good datagram before a damaged record reaches the caller first.
Formats follow draft-ietf-opsawg-pcap (classic) and draft-ietf-opsawg-pcapng; link-layer numbers are the
tcpdump.org LINKTYPE_ registry. This module reads files synchronously: it serves offline replay, not the loop.
"""

from __future__ import annotations

import ipaddress
import mmap
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike

from rtp.errors import CaptureError, PacketError
from rtp.packet import RtpPacket, is_rtcp
from rtp.seqnum import seq_diff

Address = tuple[str, int]

_PCAP_MAGICS = {  # magic bytes as stored -> (struct byte order, fraction units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_SHB = b"\x0a\x0d\x0d\x0a"  # pcapng Section Header Block type: a palindrome, readable before the byte order is known
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}

ETHERNET, NULL, RAW, LOOP, SLL, IPV4, IPV6, SLL2 = 1, 0, 101, 108, 113, 228, 229, 276
_SUPPORTED = {ETHERNET, NULL, RAW, LOOP, SLL, IPV4, IPV6, SLL2}
_LINK_NAMES = {6: "IEEE 802.5", 9: "PPP", 50: "PPP in HDLC", 104: "Cisco HDLC", 105: "IEEE 802.11",
               127: "802.11 radiotap", 147: "user-defined", 189: "USB Linux", 192: "PPI", 220: "USB Linux mmapped"}
# Where the EtherType sits and where the network header starts: Ethernet II, SLL (16-byte header), SLL2 (20).
_ETHERTYPE_AT = {ETHERNET: (12, 14), SLL: (14, 16), SLL2: (0, 20)}
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad (QinQ) and the pre-standard QinQ tag
_MAX_RECORD = 1 << 28  # no real link layer carries a 256 MiB frame: larger lengths are corruption
_IPV4 = struct.Struct("!BxH2xHxB2x4s4s")  # version+IHL, total length, flags+fragment offset, protocol, addresses
_UDP = struct.Struct("!HHH")


@dataclass(frozen=True, slots=True)
class CapturedDatagram:
    time: float
    """Capture time in seconds since the epoch (the file's clock, not ours)."""
    src: Address
    dst: Address
    payload: bytes
    frame_number: int
    """1-based, counting every packet record as Wireshark does, UDP or not."""
    offset: int
    """File offset of the packet record (pcap record header or pcapng block)."""


@dataclass(slots=True)
class CaptureCounters:
    """Filled in while :func:`read_capture` runs: what the file held besides the UDP datagrams it yielded."""

    frames: int = 0
    udp: int = 0
    not_udp: int = 0
    """Frames of other protocols (ARP, TCP, ICMP, ...)."""
    fragments: int = 0
    """IP fragments, skipped: reassembly is not done, so a fragmented SIP message is lost."""
    cut_short: int = 0
    """IP/UDP lengths running past the captured bytes (snapshot length too small, or damage)."""
    malformed: int = 0


class _Decoder:
    """Link layer -> IPv4/IPv6 -> UDP on offsets into the file buffer (no copy until the payload)."""

    __slots__ = ("counters", "names")

    def __init__(self, counters: CaptureCounters) -> None:
        self.counters = counters
        self.names: dict[bytes, str] = {}

    def decode(self, buf: bytes | mmap.mmap, pos: int, end: int, link: int) -> tuple[Address, Address, bytes] | None:
        c = self.counters
        c.frames += 1
        layout = _ETHERTYPE_AT.get(link)
        if layout is not None:
            at, ip = pos + layout[0], pos + layout[1]
            if ip > end:
                c.malformed += 1
                return None
            etype = (buf[at] << 8) | buf[at + 1]
            while etype in _VLAN_TPIDS:  # each tag is TPID(2) TCI(2): the real EtherType follows the TCI
                if ip + 4 > end:
                    c.malformed += 1
                    return None
                etype = (buf[ip + 2] << 8) | buf[ip + 3]
                ip += 4
            if etype != 0x0800 and etype != 0x86DD:
                c.not_udp += 1
                return None
        else:
            # NULL's 4-byte family is in the writer's host order and its values differ per OS, so the IP
            # version nibble decides instead; LOOP is the same header in network order.
            ip = pos + 4 if link == NULL or link == LOOP else pos
        if ip >= end:
            c.malformed += 1
            return None
        version = buf[ip] >> 4
        if version == 6:
            return self._ipv6(buf, ip, end)
        if version != 4:
            c.not_udp += 1
            return None
        if ip + 20 > end:
            c.malformed += 1
            return None
        vihl, total, fragment, protocol, src, dst = _IPV4.unpack_from(buf, ip)
        ihl = (vihl & 0x0F) * 4  # RFC 791 §3.1: IHL counts 32-bit words, options included
        if protocol != 17:
            c.not_udp += 1
            return None
        if fragment & 0x3FFF:  # More Fragments set, or a non-zero fragment offset
            c.fragments += 1
            return None
        if ihl < 20 or total < ihl:
            c.malformed += 1
            return None
        if ip + total > end:
            c.cut_short += 1
            return None
        return self._udp(buf, ip + ihl, ip + total, src, dst)

    def _ipv6(self, buf: bytes | mmap.mmap, ip: int, end: int) -> tuple[Address, Address, bytes] | None:
        c = self.counters
        if ip + 40 > end:
            c.malformed += 1
            return None
        ip_end = ip + 40 + ((buf[ip + 4] << 8) | buf[ip + 5])
        if ip_end > end:
            c.cut_short += 1
            return None
        nh, p = buf[ip + 6], ip + 40
        # RFC 8200 §4: walk Hop-by-Hop (0), Routing (43), Fragment (44), Destination Options (60) and AH (51,
        # RFC 4302 §2.2, whose length counts 32-bit words minus 2); ESP hides the rest, so it ends the walk.
        while nh in (0, 43, 44, 51, 60):
            if p + 8 > ip_end:
                c.malformed += 1
                return None
            if nh == 44 and ((buf[p + 2] << 8) | buf[p + 3]) & 0xFFF9:  # offset or M flag: a real fragment
                c.fragments += 1
                return None
            step = 8 if nh == 44 else (buf[p + 1] + 2) * 4 if nh == 51 else (buf[p + 1] + 1) * 8
            nh, p = buf[p], p + step
        if nh != 17:
            c.not_udp += 1
            return None
        return self._udp(buf, p, ip_end, buf[ip + 8 : ip + 24], buf[ip + 24 : ip + 40])

    def _udp(self, buf: bytes | mmap.mmap, u: int, ip_end: int, src: bytes, dst: bytes,
             ) -> tuple[Address, Address, bytes] | None:
        if u + 8 > ip_end:
            self.counters.malformed += 1
            return None
        sport, dport, length = _UDP.unpack_from(buf, u)  # RFC 768: the length includes the header
        if length < 8 or u + length > ip_end:
            self.counters.malformed += 1
            return None
        self.counters.udp += 1
        names = self.names
        src_name = names.get(src) or names.setdefault(src, str(ipaddress.ip_address(src)))
        dst_name = names.get(dst) or names.setdefault(dst, str(ipaddress.ip_address(dst)))
        return (src_name, sport), (dst_name, dport), buf[u + 8 : u + length]


def read_capture(path: str | PathLike[str], counters: CaptureCounters | None = None) -> Iterator[CapturedDatagram]:
    """Yield the UDP datagrams of a pcap or pcapng file in file order.

    Raise :class:`CaptureError` (file, problem, byte offset) for a file that is not a capture or that is damaged,
    only after yielding every datagram before the damage. Pass ``counters`` to learn what was skipped.
    """
    name = str(path)
    decoder = _Decoder(counters if counters is not None else CaptureCounters())
    try:
        with open(path, "rb") as f:
            try:
                buf: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # empty file, pipe, or a file system without mmap
                buf = f.read()
    except OSError as exc:
        raise CaptureError(name, f"cannot open: {exc.strerror or exc}") from exc
    try:
        if len(buf) == 0:
            raise CaptureError(name, "empty file (0 bytes), not a pcap or pcapng capture")
        if len(buf) < 4:
            raise CaptureError(name, f"file of {len(buf)} bytes is too short to be a capture", 0)
        magic = bytes(buf[:4])
        if magic == _SHB:
            yield from _read_pcapng(name, buf, decoder)
        elif magic in _PCAP_MAGICS:
            yield from _read_pcap(name, buf, decoder, *_PCAP_MAGICS[magic])
        else:
            raise CaptureError(name, f"not a pcap or pcapng file (magic 0x{magic.hex()})", 0)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _link_problem(link: int) -> str:
    return f"unsupported link type {link} ({_LINK_NAMES.get(link, 'not Ethernet, SLL, raw IP or loopback')})"


def _read_pcap(name: str, buf: bytes | mmap.mmap, decoder: _Decoder, order: str, units: int,
               ) -> Iterator[CapturedDatagram]:
    size = len(buf)
    if size < 24:
        raise CaptureError(name, f"pcap file header truncated: {size} of 24 bytes", 0)
    # The upper bits of the link-type word carry the FCS length (draft-ietf-opsawg-pcap §4); the trailing
    # FCS needs no handling because IP and UDP lengths bound the payload.
    link = struct.unpack_from(order + "I", buf, 20)[0] & 0xFFFF
    if link not in _SUPPORTED:
        raise CaptureError(name, _link_problem(link), 20)
    record = struct.Struct(order + "IIII")
    decode, pos, frame = decoder.decode, 24, 0
    while pos < size:
        if pos + 16 > size:
            raise CaptureError(name, f"record header truncated: {size - pos} of 16 bytes", pos)
        seconds, fraction, caplen, _ = record.unpack_from(buf, pos)
        if caplen > _MAX_RECORD:
            raise CaptureError(name, f"corrupt record: captured length {caplen} is impossible", pos)
        end = pos + 16 + caplen
        if end > size:
            raise CaptureError(name, f"record truncated: captured length {caplen}, {size - pos - 16} bytes left", pos)
        frame += 1
        hit = decode(buf, pos + 16, end, link)
        if hit is not None:
            yield CapturedDatagram(seconds + fraction / units, hit[0], hit[1], hit[2], frame, pos)
        pos = end


def _read_pcapng(name: str, buf: bytes | mmap.mmap, decoder: _Decoder) -> Iterator[CapturedDatagram]:
    size, pos, frame, order = len(buf), 0, 0, "<"
    interfaces: list[tuple[int, int, int, int]] = []  # link type, timestamp units/s, offset s, snaplen
    last_time = 0.0
    while pos < size:
        if pos + 12 > size:
            raise CaptureError(name, f"block header truncated: {size - pos} of 12 bytes", pos)
        if buf[pos : pos + 4] == _SHB:
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom not in _BOM:
                raise CaptureError(name, f"corrupt section header: byte-order magic 0x{bom.hex()}", pos + 8)
            order = _BOM[bom]  # §4.1: each section has its own byte order, and its own interfaces
            interfaces = []
        kind, length = struct.unpack_from(order + "II", buf, pos)
        if length < 12 or length % 4:
            raise CaptureError(name, f"corrupt block: length {length} is not a multiple of 4 of at least 12", pos)
        if pos + length > size:
            raise CaptureError(name, f"block truncated: type {kind} of {length} bytes, {size - pos} left", pos)
        trailer = struct.unpack_from(order + "I", buf, pos + length - 4)[0]
        if trailer != length:
            raise CaptureError(name, f"corrupt block: trailing length {trailer} differs from {length}", pos)
        body, body_end = pos + 8, pos + length - 4
        if kind == 1:
            interfaces.append(_interface(name, buf, body, body_end, order, pos))
        elif kind in (2, 3, 6):
            frame += 1
            if kind == 3:  # Simple Packet Block (§4.4): interface 0, original length, no timestamp
                iface_id, ts, data = 0, -1, body + 4
                if data > body_end:
                    raise CaptureError(name, "corrupt simple packet block: shorter than its header", pos)
                caplen = min(struct.unpack_from(order + "I", buf, body)[0], body_end - data)
            else:  # Enhanced (§4.3) and the obsolete Packet Block (Appendix A) share this layout
                if body + 20 > body_end:
                    raise CaptureError(name, "corrupt packet block: shorter than its header", pos)
                fmt = order + ("I" if kind == 6 else "H2x") + "III"
                iface_id, high, low, caplen = struct.unpack_from(fmt, buf, body)
                ts, data = (high << 32) | low, body + 20
                if caplen > body_end - data:
                    raise CaptureError(name, f"corrupt packet block: captured length {caplen} overruns it", pos)
            if iface_id >= len(interfaces):
                raise CaptureError(name, f"packet on interface {iface_id}, but {len(interfaces)} defined", pos)
            link, units, ts_offset, snaplen = interfaces[iface_id]
            if link not in _SUPPORTED:
                raise CaptureError(name, _link_problem(link) + f" on interface {iface_id}", pos)
            if kind == 3:
                caplen = min(caplen, snaplen) if snaplen else caplen
                time = last_time  # an SPB has no timestamp: keep captures ordered by reusing the previous one
            else:
                whole, part = divmod(ts, units)
                time = last_time = ts_offset + whole + part / units
            hit = decoder.decode(buf, data, data + caplen, link)
            if hit is not None:
                yield CapturedDatagram(time, hit[0], hit[1], hit[2], frame, pos)
        pos += length


def _interface(name: str, buf: bytes | mmap.mmap, body: int, end: int, order: str, block: int,
               ) -> tuple[int, int, int, int]:
    if body + 8 > end:
        raise CaptureError(name, "corrupt interface description block: shorter than its header", block)
    link, snaplen = struct.unpack_from(order + "H2xI", buf, body)
    units, offset, pos = 1_000_000, 0, body + 8
    while pos + 4 <= end:  # options (§3.5): code, length, value padded to 32 bits
        code, size = struct.unpack_from(order + "HH", buf, pos)
        if code == 0:
            break
        if pos + 4 + size > end:
            raise CaptureError(name, f"corrupt interface option {code}: length {size} runs past the block", pos)
        if code == 9 and size >= 1:  # if_tsresol (§4.2): 10^-n, or 2^-n when the top bit is set
            res = buf[pos + 4]
            units = 1 << (res & 0x7F) if res & 0x80 else 10 ** res
        elif code == 14 and size >= 8:  # if_tsoffset: seconds added to every timestamp
            offset = struct.unpack_from(order + "q", buf, pos + 4)[0]
        pos += 4 + (size + 3) // 4 * 4
    return link, units, offset, snaplen


# --- RTP streams -----------------------------------------------------------------------------------------------

# RFC 3551 §6, Table 4: the static audio payload types.
_STATIC = {0: "PCMU", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4", 7: "LPC", 8: "PCMA", 9: "G722", 10: "L16",
           11: "L16", 12: "QCELP", 13: "CN", 14: "MPA", 15: "G728", 16: "DVI4", 17: "DVI4", 18: "G729"}
# SDP encoding names are case-insensitive (RFC 4566 §6); report the spelling of the registering RFC.
_CANONICAL = {n.lower(): n for n in _STATIC.values()} | {"telephone-event": "telephone-event", "opus": "opus"}
_COMPACT = {"i": "call-id", "c": "content-type"}  # RFC 3261 §7.3.3 compact header names
_SIP_REQUEST = re.compile(r"[A-Z]+ \S+ SIP/2\.0")
_MAX_SEQ_STEP = 100  # a forward sequence step this large still counts as "increasing" (loss tolerated)


@dataclass(frozen=True, slots=True)
class SdpMedia:
    """An audio m= line seen in a SIP message: where the SIP message's sender wants to receive RTP."""

    address: Address
    codecs: dict[int, str]
    """Payload type -> encoding name, from a=rtpmap or the static table."""
    role: str
    """"offer" or "answer" (RFC 3264)."""
    call_id: str
    sender: Address
    frame_number: int


@dataclass(frozen=True, slots=True)
class RtpStreamInfo:
    src: Address
    dst: Address
    ssrc: int
    payload_types: tuple[int, ...]
    """In order of first appearance."""
    codecs: dict[int, str | None]
    """Payload type -> encoding name: the receiver's SDP, else the static table; None when unknown."""
    packets: tuple[tuple[float, RtpPacket], ...]
    """(capture time, packet) in capture order, duplicates and reordering kept for the statistics."""
    from_sdp: bool
    sdp: SdpMedia | None = None
    """The SDP that announced ``dst`` (or ``src``, for symmetric RTP)."""

    @property
    def packet_count(self) -> int:
        return len(self.packets)

    @property
    def first_time(self) -> float:
        return self.packets[0][0]

    @property
    def last_time(self) -> float:
        return self.packets[-1][0]


@dataclass(frozen=True, slots=True)
class UdpFlow:
    """UDP datagrams of one direction that are not in any RTP stream."""

    src: Address
    dst: Address
    datagrams: int
    kind: str
    """"sip", "rtcp" or "other", whichever most of the datagrams are."""


@dataclass(frozen=True, slots=True)
class CaptureAnalysis:
    streams: tuple[RtpStreamInfo, ...]
    """Ordered by first packet."""
    flows: tuple[UdpFlow, ...]
    sdp: tuple[SdpMedia, ...]
    datagrams: int


@dataclass(slots=True)
class _Media:
    port: int
    codecs: dict[int, str]
    address: str | None = None


def find_rtp_streams(datagrams: Iterable[CapturedDatagram], min_packets: int = 5) -> CaptureAnalysis:
    """Split UDP datagrams into RTP streams keyed by (src, dst, SSRC) and the other flows.

    A flow announced by SDP is RTP whenever its datagrams parse as RTP; any other needs ``min_packets`` packets of
    one SSRC with mostly increasing sequence numbers, so that DNS or random binary traffic is not taken for RTP.
    """
    candidates: dict[tuple[Address, Address, int], list[tuple[float, RtpPacket]]] = {}
    leftovers: dict[tuple[Address, Address], list[int]] = {}  # counts of sip, rtcp, other
    found: dict[tuple[str, str, Address], SdpMedia] = {}
    offers: set[tuple[str, str]] = set()
    total = 0
    parse = RtpPacket.parse
    for d in datagrams:
        total += 1
        payload = d.payload
        first = payload[0] if payload else 0
        if 0x41 <= first <= 0x5A:  # RTP/RTCP start with 0x80-0xBF; a SIP start line with a capital letter
            kind = 0 if _scan_sip(d, found, offers) else 2
        elif first >> 6 == 2 and is_rtcp(payload):
            kind = 1
        else:
            try:
                packet = parse(payload)
            except PacketError:
                kind = 2
            else:
                key = (d.src, d.dst, packet.ssrc)
                group = candidates.get(key)
                if group is None:
                    group = candidates[key] = []
                group.append((d.time, packet))
                continue
        leftovers.setdefault((d.src, d.dst), [0, 0, 0])[kind] += 1
    announced: dict[Address, SdpMedia] = {}
    names: dict[Address, dict[int, str]] = {}
    for media in found.values():  # later SDP (a re-INVITE) overrides earlier mappings of the same address
        announced[media.address] = media
        names.setdefault(media.address, {}).update(media.codecs)
    streams = []
    for (src, dst, ssrc), packets in candidates.items():
        # RFC 3264 §5.1: payload type numbers are those the receiver's SDP listed; symmetric RTP (RFC 4961)
        # lets the sender's own SDP stand in when the receiver's was not captured.
        sdp = announced.get(dst) or announced.get(src)
        if sdp is None and not _increasing(packets, min_packets):
            leftovers.setdefault((src, dst), [0, 0, 0])[2] += len(packets)
            continue
        mapping = names.get(dst) or names.get(src) or {}
        pts = tuple(dict.fromkeys(p.payload_type for _, p in packets))
        codecs = {pt: mapping.get(pt, _STATIC.get(pt)) for pt in pts}
        streams.append(RtpStreamInfo(src, dst, ssrc, pts, codecs, tuple(packets), sdp is not None, sdp))
    streams.sort(key=lambda s: s.first_time)
    flows = tuple(UdpFlow(src, dst, sum(c), ("sip", "rtcp", "other")[c.index(max(c))])
                  for (src, dst), c in leftovers.items())
    return CaptureAnalysis(tuple(streams), flows, tuple(found.values()), total)


def _increasing(packets: list[tuple[float, RtpPacket]], min_packets: int) -> bool:
    # RFC 3550 A.1 validates a source by consecutive sequence numbers as packets arrive; a capture is judged
    # whole instead, tolerating loss, reordering and duplicates (RFC 4733 §2.5.1.4 repeats the end packet).
    if len(packets) < max(min_packets, 2):
        return False
    steps, prev = 0, packets[0][1].sequence_number
    for _, packet in packets:
        if 0 < seq_diff(packet.sequence_number, prev) <= _MAX_SEQ_STEP:
            steps += 1
        prev = packet.sequence_number
    return steps * 5 >= (len(packets) - 1) * 3


def _scan_sip(d: CapturedDatagram, found: dict[tuple[str, str, Address], SdpMedia],
              offers: set[tuple[str, str]]) -> bool:
    head, sep, body = d.payload.partition(b"\r\n\r\n")
    if not sep:
        head, _, body = d.payload.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").splitlines()
    start = lines[0] if lines else ""
    response = start.startswith("SIP/2.0 ")
    if not response and not _SIP_REQUEST.fullmatch(start):
        return False
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        key = key.strip().lower()
        if colon:
            fields.setdefault(_COMPACT.get(key, key), value.strip())
    ctype = fields.get("content-type", "").lower()
    if not ctype.startswith("application/sdp") and (ctype or not body.lstrip().startswith(b"v=0")):
        return True
    call_id, cseq = fields.get("call-id", ""), fields.get("cseq", "").split()
    transaction = (call_id, cseq[0] if cseq else "")
    # RFC 3264 §4 / RFC 3261 §13.2.1: an INVITE (or UPDATE) body is an offer and the response's is its answer;
    # an INVITE without SDP gets the offer in the 2xx and the answer in the ACK.
    if response:
        role = "answer" if transaction in offers else "offer"
    elif start.startswith("ACK "):
        role = "answer"
    else:
        role = "offer"
        offers.add(transaction)
    for address, codecs in _sdp_audio(body.decode("utf-8", "replace")):
        found[(call_id, role, address)] = SdpMedia(address, codecs, role, call_id, d.src, d.frame_number)
    return True


def _sdp_audio(text: str) -> list[tuple[Address, dict[int, str]]]:
    session: str | None = None
    media: list[_Media] = []
    current: _Media | None = None
    in_media = False
    for line in text.splitlines():
        kind, eq, value = line.partition("=")
        if not eq or len(kind) != 1:
            continue
        if kind == "m":  # RFC 4566 §5.14: m=<media> <port>[/<count>] <proto> <fmt> ...
            in_media, current = True, None
            parts = value.split()
            if len(parts) >= 3 and parts[0] == "audio" and parts[1].split("/")[0].isdigit() and "RTP" in parts[2]:
                codecs = {int(pt): _STATIC.get(int(pt), "") for pt in parts[3:] if pt.isdigit()}
                current = _Media(int(parts[1].split("/")[0]), codecs)
                media.append(current)
        elif kind == "c":  # §5.7: c=IN IP4 <address>[/ttl]; a media-level c= overrides the session's
            parts = value.split()
            address = _ip(parts[2].split("/")[0]) if len(parts) >= 3 else None
            if not in_media:
                session = address
            elif current is not None:
                current.address = address
        elif kind == "a" and current is not None and value.startswith("rtpmap:"):
            pt, _, encoding = value[7:].partition(" ")
            if pt.strip().isdigit():
                name = encoding.strip().split("/")[0]
                current.codecs[int(pt)] = _CANONICAL.get(name.lower(), name)
    return [((m.address or session or "", m.port), {pt: n for pt, n in m.codecs.items() if n})
            for m in media if m.port and (m.address or session)]


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:  # a host name: cannot be matched against the capture's addresses
        return None


__all__ = [
    "Address", "CaptureAnalysis", "CaptureCounters", "CapturedDatagram", "RtpStreamInfo", "SdpMedia", "UdpFlow",
    "find_rtp_streams", "read_capture",
]
