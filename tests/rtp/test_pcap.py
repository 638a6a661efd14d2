"""rtp.pcap: reading pcap/pcapng files and finding RTP streams.

Expectations come from three places: the sip-tester sample captures with facts stated by RFC 3551/4733 (PCMA at a
30 ms packet time, one RFC 4733 event per file), the captures our writer builds from the format specifications,
and tshark as an independent reader.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtp.errors import CaptureError
from rtp.pcap import CaptureAnalysis, CaptureCounters, CapturedDatagram, find_rtp_streams, read_capture
from tests.conftest import REQUIRE_PEERS
from tests.rtp import capture_writer as cw

pytestmark = pytest.mark.unit

SIP_TESTER = Path("/usr/share/sip-tester")
CALLER, CALLEE = ("192.0.2.10", 40000), ("198.51.100.20", 30000)
CALLER_SIP, CALLEE_SIP = ("192.0.2.10", 5060), ("198.51.100.20", 5060)


def require_sample(name: str) -> Path:
    """A sip-tester sample capture; skip when absent, fail when CI requires peers (tests.conftest rule)."""
    for path in [SIP_TESTER / name, *sorted(Path("/usr/share/doc/sip-tester").rglob(name))]:
        if path.is_file():
            return path
    message = f"sample capture {name!r} of the sip-tester package is not installed"
    if REQUIRE_PEERS:
        pytest.fail(message + " (SIPAGENT_REQUIRE_PEERS=1)")
    pytest.skip(message)


def read_all(path: Path, counters: CaptureCounters | None = None) -> list[CapturedDatagram]:
    return list(read_capture(path, counters))


def alaw_reference(codes: np.ndarray) -> np.ndarray:
    """ITU-T G.711 A-law expansion (even bits inverted, sign bit 1 = positive), scaled to 16 bits."""
    a = codes.astype(np.int32) ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def alaw_decode(payload: bytes) -> np.ndarray:
    try:
        from rtp.g711 import alaw_decode as decode
    except ImportError:  # rtp.g711 is written concurrently; the spec formula above stands in meanwhile
        return alaw_reference(np.frombuffer(payload, dtype=np.uint8))
    decoded: np.ndarray = decode(payload)
    return decoded


def telephone_event(payload: bytes) -> tuple[int, bool, int, int]:
    """(event, end, volume, duration) per RFC 4733 §2.3."""
    try:
        from rtp.dtmf import TelephoneEvent
    except ImportError:  # rtp.dtmf is written concurrently: read the 4-byte §2.3 layout directly meanwhile
        event, flags, duration = struct.unpack("!BBH", payload[:4])
        return event, bool(flags & 0x80), flags & 0x3F, duration
    parsed = TelephoneEvent.parse(payload)
    return parsed.event, parsed.end, parsed.volume, parsed.duration


# --- real third-party captures ---------------------------------------------------------------------------------

def test_sip_tester_alaw_capture_is_one_pcma_stream_at_30_ms() -> None:
    analysis = find_rtp_streams(read_capture(require_sample("g711a.pcap")))
    assert len(analysis.streams) == 1 and analysis.flows == ()
    stream = analysis.streams[0]
    assert stream.from_sdp is False
    assert stream.payload_types == (8,) and stream.codecs == {8: "PCMA"}  # RFC 3551 static type 8
    assert stream.packet_count == 236
    packets = [p for _, p in stream.packets]
    # 30 ms at 8000 Hz is 240 samples, one byte each in G.711 (RFC 3551 §4.5.14).
    assert all(len(p.payload) == 240 for p in packets)
    assert all((b.timestamp - a.timestamp) % 2**32 == 240 for a, b in zip(packets, packets[1:], strict=False))
    assert all((b.sequence_number - a.sequence_number) % 2**16 == 1 for a, b in zip(packets, packets[1:],
                                                                                      strict=False))
    assert stream.last_time - stream.first_time == pytest.approx(235 * 0.030, rel=0.01)
    audio = alaw_decode(b"".join(p.payload for p in packets)).astype(np.float64)
    assert audio.size == 236 * 240
    rms_db = 20 * np.log10(np.sqrt(np.mean(audio**2)) / 32768)
    frame_db = 20 * np.log10(np.sqrt(np.mean(audio.reshape(-1, 240) ** 2, axis=1)) / 32768 + 1e-9)
    assert -45 < rms_db < -6, "speech-like level, neither silence nor clipping"
    assert frame_db.max() - np.median(frame_db) > 6, "level varies like speech, not a constant tone"


DIGITS = [(str(d), str(d), d) for d in range(10)] + [("star", "*", 10), ("pound", "#", 11)]


def test_sip_tester_rfc4733_captures_hold_each_digit_with_a_triple_end() -> None:
    found = []
    for suffix, digit, code in DIGITS:
        analysis = find_rtp_streams(read_capture(require_sample(f"dtmf_2833_{suffix}.pcap")))
        assert len(analysis.streams) == 1, digit
        stream = analysis.streams[0]
        assert stream.packet_count == 10
        packets = [p for _, p in stream.packets]
        assert len(set(stream.payload_types)) == 1 and stream.payload_types[0] >= 96  # dynamic, no SDP here
        events = [telephone_event(p.payload) for p in packets]
        assert {e[0] for e in events} == {code}, digit  # RFC 4733 §3.2: 0-9, * = 10, # = 11
        # §2.5.1.4: the end packet goes out three times, identical; §2.5.1.2: one timestamp per event.
        assert [e[1] for e in events] == [False] * 7 + [True] * 3
        assert packets[-1] == packets[-2] == packets[-3]
        assert len({p.timestamp for p in packets}) == 1
        assert packets[0].marker and not any(p.marker for p in packets[1:])
        durations = [e[3] for e in events]
        assert durations == sorted(durations) and durations[0] < durations[-1]
        found.append(digit)
    assert "".join(found) == "0123456789*#"


def tshark_udp(path: Path) -> list[tuple[int, str, int, str, int, bytes]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        if REQUIRE_PEERS:
            pytest.fail("interop peer 'tshark' is not installed (SIPAGENT_REQUIRE_PEERS=1)")
        pytest.skip("interop peer 'tshark' is not installed")
    fields = ["frame.number", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst", "udp.dstport", "udp.payload"]
    out = subprocess.run(
        [tshark, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-Y", "udp",
         "-T", "fields", "-E", "occurrence=f", *[a for f in fields for a in ("-e", f)]],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    rows = []
    for line in out.splitlines():
        frame, src4, src6, sport, dst4, dst6, dport, payload = line.split("\t")
        rows.append((int(frame), src4 or src6, int(sport), dst4 or dst6, int(dport), bytes.fromhex(payload)))
    return rows


def ours(path: Path) -> list[tuple[int, str, int, str, int, bytes]]:
    return [(d.frame_number, *d.src, *d.dst, d.payload) for d in read_capture(path)]


@pytest.mark.interop
def test_tshark_agrees_on_the_sip_tester_captures() -> None:
    for name in ["g711a.pcap", "dtmf_2833_0.pcap", "dtmf_2833_pound.pcap"]:
        path = require_sample(name)
        assert ours(path) == tshark_udp(path)


@pytest.mark.interop
def test_tshark_agrees_on_a_mixed_capture(tmp_path: Path) -> None:
    frames = [
        cw.udp_frame(CALLER, CALLEE, b"\x80\x00hello"),
        cw.ethernet(cw.ipv4_udp(CALLEE, CALLER, b"dns-ish", options=b"\x01\x01\x01\x00")),
        cw.ethernet(cw.ipv6_udp(("2001:db8::1", 5004), ("2001:db8::2", 5006), b"v6", hop_by_hop=True)),
        cw.udp_frame(CALLER, CALLEE, b"tagged", vlans=[7]),
        cw.udp_frame(CALLER, CALLEE, b"double tagged", vlans=[100, 7]),
        cw.ethernet(b"\x00" * 28, ethertype=0x0806),  # ARP
        cw.ethernet(cw.ipv4_udp(CALLER, CALLEE, b"\x45" * 20, protocol=6)),  # TCP-numbered
        cw.udp_frame(("2001:db8::2", 5006), ("2001:db8::1", 5004), b"\x80" * 40),
    ]
    for kind in ("pcap", "pcapng"):
        path = tmp_path / f"mixed.{kind}"
        records = [(1000.0 + i * 0.02, f) for i, f in enumerate(frames)]
        (cw.write_pcap if kind == "pcap" else cw.write_pcapng)(path, records)
        mine = ours(path)
        assert [row[0] for row in mine] == [1, 2, 3, 4, 5, 8]
        assert mine == tshark_udp(path)


# --- synthetic captures: formats -------------------------------------------------------------------------------

def sample_records(count: int = 6) -> list[tuple[float, bytes]]:
    payloads = cw.rtp_payloads(0x11223344, count)
    return [(1_700_000_000.0 + i * 0.02, cw.udp_frame(CALLER, CALLEE, p)) for i, p in enumerate(payloads)]


def check_sample(datagrams: list[CapturedDatagram], offsets: list[int], tolerance: float = 1e-6) -> None:
    expected = cw.rtp_payloads(0x11223344, len(offsets))
    assert [d.payload for d in datagrams] == expected
    assert [d.frame_number for d in datagrams] == list(range(1, len(expected) + 1))
    assert [d.offset for d in datagrams] == offsets
    assert all(d.src == CALLER and d.dst == CALLEE for d in datagrams)
    for i, d in enumerate(datagrams):
        assert d.time == pytest.approx(1_700_000_000.0 + i * 0.02, abs=tolerance)


@pytest.mark.parametrize("nanoseconds", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_classic_pcap_in_every_magic(tmp_path: Path, nanoseconds: bool, big_endian: bool) -> None:
    path = tmp_path / "a.pcap"
    offsets = cw.write_pcap(path, sample_records(), nanoseconds=nanoseconds, big_endian=big_endian)
    check_sample(read_all(path), offsets)


@pytest.mark.parametrize(("tsresol", "tolerance"), [(None, 1e-6), (6, 1e-6), (9, 1e-6), (3, 1e-3), (0x94, 1e-6)])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_resolutions_and_byte_orders(tmp_path: Path, tsresol: int | None, tolerance: float,
                                            big_endian: bool) -> None:
    path = tmp_path / "a.pcapng"
    offsets = cw.write_pcapng(path, sample_records(), interfaces=[cw.Interface(tsresol=tsresol)],
                              big_endian=big_endian)
    check_sample(read_all(path), offsets, tolerance)


def test_pcapng_tsoffset_legacy_packet_block_and_unknown_blocks(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    nrb = cw.block(4, struct.pack("<HH", 0, 0))  # empty Name Resolution Block
    offsets = cw.write_pcapng(path, sample_records(), packet_block="pb", extra_blocks=[nrb, cw.block(0x40000BAD, b"x")],
                              interfaces=[cw.Interface(tsresol=9, tsoffset=1_600_000_000)])
    check_sample(read_all(path), offsets)


def test_pcapng_simple_packet_blocks_have_no_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    offsets = cw.write_pcapng(path, sample_records(), packet_block="spb", interfaces=[cw.Interface(snaplen=0)])
    datagrams = read_all(path)
    assert [d.offset for d in datagrams] == offsets
    assert [d.payload for d in datagrams] == cw.rtp_payloads(0x11223344, 6)
    assert all(d.time == 0.0 for d in datagrams)


def test_pcapng_sections_with_their_own_byte_order_and_interfaces(tmp_path: Path) -> None:
    first, first_offsets = cw.pcapng_bytes(
        [(10.0, cw.udp_frame(CALLER, CALLEE, b"one")), (11.0, cw.udp_frame(CALLER, CALLEE, b"two", link=cw.SLL), 1)],
        interfaces=[cw.Interface(), cw.Interface(link=cw.SLL, tsresol=9)])
    second, second_offsets = cw.pcapng_bytes(
        [(12.0, cw.udp_frame(CALLEE, CALLER, b"three", link=cw.RAW))],
        interfaces=[cw.Interface(link=cw.RAW)], big_endian=True, start=len(first))
    path = tmp_path / "sections.pcapng"
    path.write_bytes(first + second)
    datagrams = read_all(path)
    assert [(d.payload, d.time, d.frame_number) for d in datagrams] == [(b"one", 10.0, 1), (b"two", 11.0, 2),
                                                                      (b"three", 12.0, 3)]
    assert [d.offset for d in datagrams] == first_offsets + second_offsets
    assert datagrams[2].src == CALLEE


LINKS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "ethernet": (cw.ETHERNET, cw.ethernet),
    "vlan": (cw.ETHERNET, lambda p: cw.ethernet(p, [42])),
    "qinq": (cw.ETHERNET, lambda p: cw.ethernet(p, [100, 42])),
    "qinq-9100": (cw.ETHERNET, lambda p: cw.ethernet(p, [100, 42], outer_tpid=0x9100)),
    "sll": (cw.SLL, cw.sll),
    "sll2": (cw.SLL2, cw.sll2),
    "raw": (cw.RAW, lambda p: p),
    "null-le": (cw.NULL, cw.null),
    "null-be": (cw.NULL, lambda p: cw.null(p, big_endian=True)),
    "loop": (cw.LOOP, cw.loop),
}


@pytest.mark.parametrize("name", sorted(LINKS))
@pytest.mark.parametrize("version", [4, 6])
def test_link_layers(tmp_path: Path, name: str, version: int) -> None:
    link, wrap = LINKS[name]
    src, dst = (CALLER, CALLEE) if version == 4 else (("2001:db8::a", 4000), ("2001:db8:0:1::b", 6000))
    ip = cw.ipv4_udp if version == 4 else cw.ipv6_udp
    path = tmp_path / "a.pcap"
    cw.write_pcap(path, [(1.0, wrap(ip(src, dst, b"payload"))), (2.0, wrap(ip(dst, src, b"reply")))], link=link)
    datagrams = read_all(path)
    assert [(d.src, d.dst, d.payload) for d in datagrams] == [(src, dst, b"payload"), (dst, src, b"reply")]


@pytest.mark.parametrize("link", [cw.IPV4, cw.IPV6])
def test_raw_ipv4_and_ipv6_link_types(tmp_path: Path, link: int) -> None:
    src, dst = (CALLER, CALLEE) if link == cw.IPV4 else (("::1", 1), ("::1", 2))
    path = tmp_path / "a.pcap"
    cw.write_pcap(path, [(1.0, cw.udp_frame(src, dst, b"x", link=cw.RAW))], link=link)
    assert [(d.src, d.dst) for d in read_all(path)] == [(src, dst)]


def test_options_extension_headers_fragments_and_other_protocols_are_counted(tmp_path: Path) -> None:
    v6a, v6b = ("2001:db8::1", 1000), ("2001:db8::2", 2000)
    frames = [
        cw.ethernet(cw.ipv4_udp(CALLER, CALLEE, b"options", options=b"\x94\x04\x00\x00")),  # Router Alert, IHL 6
        cw.ethernet(cw.ipv6_udp(v6a, v6b, b"atomic", hop_by_hop=True, fragment=(0, False))),
        cw.ethernet(cw.ipv4_udp(CALLER, CALLEE, b"first part", more_fragments=True)),
        cw.ethernet(cw.ipv4_udp(CALLER, CALLEE, b"later part", fragment_offset=1480)),
        cw.ethernet(cw.ipv6_udp(v6a, v6b, b"first part", fragment=(0, True))),
        cw.ethernet(cw.ipv6_udp(v6a, v6b, b"later part", fragment=(1232, False))),
        cw.ethernet(b"\x00" * 28, ethertype=0x0806),
        cw.ethernet(cw.ipv4_udp(CALLER, CALLEE, b"\x00" * 20, protocol=6)),
        cw.ethernet(cw.ipv6_udp(v6a, v6b, b"\x80\x00" * 4, next_header=58)),
        cw.ethernet(cw.ipv4_udp(CALLER, CALLEE, b"snapped", total_length=1400)),
        cw.ethernet(b"\x45\x00"),
    ]
    path = tmp_path / "a.pcap"
    cw.write_pcap(path, [(float(i), f) for i, f in enumerate(frames)])
    counters = CaptureCounters()
    datagrams = read_all(path, counters)
    assert [(d.payload, d.frame_number) for d in datagrams] == [(b"options", 1), (b"atomic", 2)]
    assert counters == CaptureCounters(frames=11, udp=2, not_udp=3, fragments=4, cut_short=1, malformed=1)


def test_ethernet_padding_and_fcs_do_not_reach_the_payload(tmp_path: Path) -> None:
    frame = cw.udp_frame(CALLER, CALLEE, b"hi") + b"\0" * 12 + b"\xde\xad\xbe\xef"
    path = tmp_path / "a.pcap"
    cw.write_pcap(path, [(1.0, frame)])
    assert [d.payload for d in read_all(path)] == [b"hi"]


# --- synthetic captures: damage --------------------------------------------------------------------------------

def collect(path: Path) -> tuple[list[CapturedDatagram], CaptureError]:
    got: list[CapturedDatagram] = []
    with pytest.raises(CaptureError) as info:
        for d in read_capture(path):
            got.append(d)
    assert info.value.path == str(path) and str(path) in str(info.value)
    return got, info.value


@pytest.mark.parametrize("cut", [5, 16, 30])
def test_truncated_pcap_yields_the_good_records_then_names_the_offset(tmp_path: Path, cut: int) -> None:
    data, offsets = cw.pcap_bytes(sample_records())
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: offsets[4] + cut])  # inside record 5: its header (5) or its data (16, 30)
    got, error = collect(path)
    check_sample(got, offsets[:4])
    assert error.offset == offsets[4]
    assert f"at byte {offsets[4]}" in str(error) and "truncated" in error.problem


def test_truncated_pcapng_block(tmp_path: Path) -> None:
    data, offsets = cw.pcapng_bytes(sample_records())
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-7])
    got, error = collect(path)
    check_sample(got, offsets[:5])
    assert error.offset == offsets[5] and "truncated" in error.problem


def test_pcapng_block_with_a_wrong_trailer(tmp_path: Path) -> None:
    data, offsets = cw.pcapng_bytes(sample_records(3))
    damaged = bytearray(data)
    end = offsets[2] + struct.unpack_from("<I", data, offsets[2] + 4)[0]
    damaged[end - 4 : end] = struct.pack("<I", 4096)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(damaged))
    got, error = collect(path)
    assert len(got) == 2 and error.offset == offsets[2] and "trailing length" in error.problem


def test_pcapng_packet_on_an_undeclared_interface(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    offsets = cw.write_pcapng(path, [(1.0, cw.udp_frame(CALLER, CALLEE, b"x"), 1)],
                              interfaces=[cw.Interface(), cw.Interface()])
    path.write_bytes(cw.shb() + cw.idb(cw.Interface()) + path.read_bytes()[offsets[0]:])
    _, error = collect(path)
    assert "interface 1" in error.problem and error.offset == len(cw.shb() + cw.idb(cw.Interface()))


def test_garbage_empty_short_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"GIF89a" + bytes(100))
    got, error = collect(garbage)
    assert got == [] and error.offset == 0 and error.problem == "not a pcap or pcapng file (magic 0x47494638)"
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert "empty" in collect(empty)[1].problem
    short = tmp_path / "short.pcap"
    short.write_bytes(b"\xd4\xc3")
    assert collect(short)[1].offset == 0
    header_only = tmp_path / "header.pcap"
    header_only.write_bytes(cw.pcap_bytes([])[0][:20])
    assert "file header" in collect(header_only)[1].problem
    assert "cannot open" in collect(tmp_path / "missing.pcap")[1].problem


def test_unsupported_link_types_are_named(tmp_path: Path) -> None:
    path = tmp_path / "wifi.pcap"
    cw.write_pcap(path, [(1.0, b"\0" * 40)], link=105)
    _, error = collect(path)
    assert "link type 105" in error.problem and "802.11" in error.problem and error.offset == 20
    ng = tmp_path / "usb.pcapng"
    offsets = cw.write_pcapng(ng, [(1.0, cw.udp_frame(CALLER, CALLEE, b"ok")), (2.0, b"\0" * 40, 1)],
                              interfaces=[cw.Interface(), cw.Interface(link=189)])
    got, error = collect(ng)
    assert [d.payload for d in got] == [b"ok"]
    assert "link type 189" in error.problem and error.offset == offsets[1]


# --- synthetic captures: streams -------------------------------------------------------------------------------

def call_records(with_sip: bool = True, late_offer: bool = False) -> list[tuple[float, bytes]]:
    caller_sdp = cw.sdp(CALLER[0], CALLER[1], [(0, "PCMU/8000"), (101, "telephone-event/8000")])
    callee_sdp = cw.sdp(CALLEE[0], CALLEE[1], [(0, "PCMU/8000"), (96, "TELEPHONE-EVENT/8000")])
    invite_body, ack_body = ("", caller_sdp) if late_offer else (caller_sdp, "")
    sip = [
        (CALLER_SIP, CALLEE_SIP, cw.sip_message("INVITE sip:b@example.com SIP/2.0", "call-1", "1 INVITE", invite_body)),
        (CALLEE_SIP, CALLER_SIP, cw.sip_message("SIP/2.0 100 Trying", "call-1", "1 INVITE")),
        (CALLEE_SIP, CALLER_SIP, cw.sip_message("SIP/2.0 200 OK", "call-1", "1 INVITE", callee_sdp)),
        (CALLER_SIP, CALLEE_SIP, cw.sip_message("ACK sip:b@example.com SIP/2.0", "call-1", "1 ACK", ack_body)),
    ]
    records = [(100.0 + i * 0.01, cw.udp_frame(s, d, m)) for i, (s, d, m) in enumerate(sip if with_sip else [])]
    # The caller sends with the callee's numbers (96 for events) and the callee with the caller's (101).
    out = cw.rtp_payloads(0xAAAA0001, 50) + cw.rtp_payloads(0xAAAA0001, 3, payload_type=96, first_seq=1050,
                                                             payload=b"\x05\x8a\x03\x20")
    back = cw.rtp_payloads(0xBBBB0002, 40, first_seq=65500) + cw.rtp_payloads(0xBBBB0002, 2, payload_type=101,
                                                                              first_seq=4, payload=b"\x01\x0a\x00\xa0")
    for i, payload in enumerate(out):
        records.append((101.0 + i * 0.02, cw.udp_frame(CALLER, CALLEE, payload)))
    for i, payload in enumerate(back):
        records.append((101.005 + i * 0.02, cw.udp_frame(CALLEE, CALLER, payload)))
    return sorted(records)


def analyse(tmp_path: Path, records: list[tuple[float, bytes]]) -> CaptureAnalysis:
    path = tmp_path / "call.pcapng"
    cw.write_pcapng(path, records)
    return find_rtp_streams(read_capture(path))


def test_sip_offer_answer_names_the_codecs_of_each_direction(tmp_path: Path) -> None:
    analysis = analyse(tmp_path, call_records())
    assert [(m.address, m.role, m.sender, m.call_id) for m in analysis.sdp] == [
        (CALLER, "offer", CALLER_SIP, "call-1"), (CALLEE, "answer", CALLEE_SIP, "call-1")]
    out, back = sorted(analysis.streams, key=lambda s: s.ssrc)
    assert (out.src, out.dst, out.ssrc, out.packet_count) == (CALLER, CALLEE, 0xAAAA0001, 53)
    assert (back.src, back.dst, back.ssrc, back.packet_count) == (CALLEE, CALLER, 0xBBBB0002, 42)
    assert out.codecs == {0: "PCMU", 96: "telephone-event"} and out.payload_types == (0, 96)
    assert back.codecs == {0: "PCMU", 101: "telephone-event"}
    assert out.from_sdp and back.from_sdp
    assert out.sdp is not None and out.sdp.role == "answer" and back.sdp is not None and back.sdp.role == "offer"
    times = [t for t, _ in back.packets]
    assert times == sorted(times) and back.first_time == pytest.approx(101.005) and back.last_time == times[-1]
    assert [(f.src, f.dst, f.datagrams, f.kind) for f in analysis.flows] == [
        (CALLER_SIP, CALLEE_SIP, 2, "sip"), (CALLEE_SIP, CALLER_SIP, 2, "sip")]
    assert analysis.datagrams == 4 + 53 + 42


def test_late_offer_in_the_200_and_answer_in_the_ack(tmp_path: Path) -> None:
    analysis = analyse(tmp_path, call_records(late_offer=True))
    assert [(m.address, m.role, m.sender) for m in analysis.sdp] == [(CALLEE, "offer", CALLEE_SIP),
                                                                    (CALLER, "answer", CALLER_SIP)]


def test_compact_headers_and_an_ipv6_sdp_in_non_canonical_spelling(tmp_path: Path) -> None:
    phone, pbx = ("2001:db8::1", 7078), ("2001:db8::99", 5060)
    body = ("v=0\r\no=- 1 1 IN IP6 2001:DB8:0::1\r\ns=-\r\nc=IN IP6 2001:DB8:0:0::1\r\nt=0 0\r\n"
            "m=audio 7078 RTP/AVP 8 97\r\nm=video 0 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n")
    invite = (f"INVITE sip:pbx SIP/2.0\r\ni: compact-1\r\nCSeq: 7 INVITE\r\nc: application/sdp\r\n"
              f"l: {len(body)}\r\n\r\n{body}").encode()
    records = [(0.0, cw.udp_frame(("2001:db8::1", 5060), pbx, invite))]
    records += [(1.0 + i * 0.02, cw.udp_frame(pbx, phone, p))
                for i, p in enumerate(cw.rtp_payloads(9, 2, payload_type=97))]
    analysis = analyse(tmp_path, records)
    assert [(m.address, m.codecs, m.call_id, m.role) for m in analysis.sdp] == [
        (phone, {8: "PCMA"}, "compact-1", "offer")]
    assert [(s.dst, s.codecs, s.from_sdp) for s in analysis.streams] == [(phone, {97: None}, True)]


def test_streams_without_sip_are_found_by_their_headers(tmp_path: Path) -> None:
    analysis = analyse(tmp_path, call_records(with_sip=False))
    out, back = sorted(analysis.streams, key=lambda s: s.ssrc)
    assert not out.from_sdp and out.sdp is None and analysis.sdp == ()
    assert out.codecs == {0: "PCMU", 96: None} and back.codecs == {0: "PCMU", 101: None}
    assert back.packet_count == 42  # across the sequence number wrap at 65535
    assert analysis.flows == ()


def test_a_short_burst_needs_sdp_to_count_as_rtp(tmp_path: Path) -> None:
    burst = [(1.0 + i * 0.02, cw.udp_frame(CALLER, CALLEE, p)) for i, p in enumerate(cw.rtp_payloads(7, 3))]
    assert analyse(tmp_path, burst).streams == ()
    invite = cw.sip_message("INVITE sip:b@example.com SIP/2.0", "c", "1 INVITE", cw.sdp(CALLEE[0], CALLEE[1],
                                                                                          [(0, "PCMU/8000")]))
    with_sdp = analyse(tmp_path, [(0.5, cw.udp_frame(CALLER_SIP, CALLEE_SIP, invite)), *burst])
    assert [s.packet_count for s in with_sdp.streams] == [3]


def test_only_non_rtp_udp_gives_no_stream_but_lists_the_flows(tmp_path: Path) -> None:
    resolver, client = ("203.0.113.53", 53), ("192.0.2.10", 33333)
    records = []
    for i in range(30):  # DNS queries and responses (RFC 1035 §4.1.1), IDs chosen so that some look like RTP v2
        query = struct.pack("!HHHHHH", 0x8000 + i * 97, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00\x00\x01\x00\x01"
        response = struct.pack("!HHHHHH", 0x8000 + i * 97, 0x8180, 1, 1, 0, 0) + query[12:] + bytes(16)
        records += [(i * 1.0, cw.udp_frame(client, resolver, query)), (i + 0.01, cw.udp_frame(resolver, client,
                                                                                              response))]
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)  # an empty receiver report (RFC 3550 §6.4.2)
    records += [(50.0 + i, cw.udp_frame(CALLER, ("198.51.100.20", 30001), rtcp)) for i in range(5)]
    analysis = analyse(tmp_path, records)
    assert analysis.streams == ()
    assert {(f.src, f.dst, f.datagrams, f.kind) for f in analysis.flows} == {
        (client, resolver, 30, "other"), (resolver, client, 30, "other"), (CALLER, ("198.51.100.20", 30001), 5,
                                                                           "rtcp")}


@given(st.lists(st.binary(max_size=60), max_size=40))
@settings(max_examples=200, deadline=None)
def test_random_datagrams_never_break_the_stream_finder(payloads: list[bytes]) -> None:
    datagrams = [CapturedDatagram(float(i), CALLER, CALLEE, p, i + 1, 0) for i, p in enumerate(payloads)]
    analysis = find_rtp_streams(datagrams, min_packets=2)
    counted = sum(s.packet_count for s in analysis.streams) + sum(f.datagrams for f in analysis.flows)
    assert counted == len(payloads) == analysis.datagrams


# --- properties and speed --------------------------------------------------------------------------------------

@given(tail=st.binary(max_size=300), kind=st.sampled_from(["pcap", "pcap-ns-be", "pcapng", "pcapng-be"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_bytes_after_a_valid_header_raise_only_capture_error(tmp_path: Path, tail: bytes, kind: str) -> None:
    if kind.startswith("pcapng"):
        header = cw.pcapng_bytes([], big_endian=kind.endswith("be"))[0]
    else:
        header = cw.pcap_bytes([], nanoseconds="ns" in kind, big_endian=kind.endswith("be"))[0]
    path = tmp_path / "fuzz"
    path.write_bytes(header + tail)
    try:
        for d in read_capture(path):
            assert isinstance(d.payload, bytes)
    except CaptureError as error:
        assert error.offset is not None and 0 <= error.offset <= len(header) + len(tail)


@given(frames=st.lists(st.binary(max_size=120), max_size=10), link=st.sampled_from(sorted({v[0] for v in
                                                                                          LINKS.values()})))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_frames_in_sound_records_never_raise(tmp_path: Path, frames: list[bytes], link: int) -> None:
    path = tmp_path / "fuzz.pcap"
    cw.write_pcap(path, [(float(i), f) for i, f in enumerate(frames)], link=link)
    counters = CaptureCounters()
    datagrams = read_all(path, counters)
    assert counters.frames == len(frames) and counters.udp == len(datagrams)
    assert counters.frames == counters.udp + counters.not_udp + counters.fragments + counters.cut_short + \
        counters.malformed
