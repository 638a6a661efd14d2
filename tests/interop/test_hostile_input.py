"""Hostile input against the running endpoint, inside a network namespace that has nothing but loopback.

The RFC 4475 / RFC 5118 torture messages (read in place from the shared data) and seeded junk go to a real
``sipagent serve`` process. Which messages must parse is the message layer's decision, taken from the table in
``tests/sip/test_torture.py``; what a user agent then answers is RFC 3261 §8.2, judged here by a small reader
that shares no code with sipagent. The namespace is what makes this safe: answers to the addresses the
messages name (192.0.2.x, example.com, 2001:db8::) fail locally instead of leaving the machine.

The hostile peer is this module run as a script inside the namespace
(``python -m tests.interop.test_hostile_input MODE PORT ...``); it prints what it saw as JSON. It behaves like
a UA: it ACKs every final answer to an INVITE and hangs up (BYE) every call the endpoint accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import secrets
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sipagent.config import SipSettings
from tests.conftest import REPO, require_root, require_tool
from tests.interop.procs import PeerProcess
from tests.sip.test_torture import CASES, MSGS, Case

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
# The torture messages name 5060, 5050, 5070, 6050 and 19823 in their Vias and the peer listens there (RFC 3261
# §18.2.2 sends UDP answers to the Via's port), so the endpoints take ports no message names.
UDP_PASS_PORT, TCP_PASS_PORT, JUNK_PORT = 15060, 15070, 15080
RTP_PORTS = {UDP_PASS_PORT: "20000-20998", TCP_PASS_PORT: "21000-21998", JUNK_PORT: "22000-22998"}
WINDOW = 4.0  # seconds for one message's answers (a call: 100, 200, then the BYE's 200)
JUNK_COUNT = 500
JUNK_SEED = 4475
T1, T2 = 0.5, 4.0  # §17.1.1.1
OPTIONS_WITHIN = 2.0  # "promptly": before a UAC's third retransmission (3.5 s), far inside its Timer F (32 s)

# ---- just enough SIP to judge answers, independent of sipagent ------------------------------------------------

_COMPACT = {"i": "call-id", "v": "via", "f": "from", "t": "to", "m": "contact", "l": "content-length",
            "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding"}


def read_sip(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Start line, header rows (lower-case long names, folds joined) and body."""
    text = data.lstrip(b"\r\n")
    head, _, body = text.partition(b"\r\n\r\n")
    lines = re.sub(rb"\r\n[ \t]+", b" ", head).decode("latin-1").split("\r\n")
    rows = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip(" \t").lower()
            rows.append((_COMPACT.get(key, key), value.strip(" \t")))
    return lines[0], rows, body


def header(rows: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in rows if key == name), None)


def cseq_method(rows: list[tuple[str, str]]) -> str:
    parts = (header(rows, "cseq") or "").split()
    return parts[-1] if parts else ""


def _options(transport: str, local_port: int, target_port: int, call_id: str) -> bytes:
    tag = secrets.token_hex(4)
    return (f"OPTIONS sip:{HOST}:{target_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {HOST}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:hostile@{HOST}>;tag={tag}\r\nTo: <sip:{HOST}:{target_port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


# ---- the hostile peer (runs inside the namespace) --------------------------------------------------------------

Inbox = asyncio.Queue[tuple[int, bytes | None]]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, port: int, inbox: Inbox) -> None:
        self.port = port
        self.inbox = inbox

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.inbox.put_nowait((self.port, data))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP for a datagram of ours: nothing to learn


async def _listen_udp(port: int, inbox: Inbox) -> tuple[asyncio.DatagramTransport, int]:
    protocol = _Datagrams(port, inbox)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: protocol, local_addr=(HOST, port))
    protocol.port = transport.get_extra_info("sockname")[1]
    return transport, protocol.port


async def _read_stream(reader: asyncio.StreamReader, port: int, inbox: Inbox) -> None:
    """Cut the endpoint's TCP output into messages by Content-Length (§18.3); None marks the end."""
    buffer = b""
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            buffer += chunk
            while (end := (buffer := buffer.lstrip(b"\r\n")).find(b"\r\n\r\n")) >= 0:
                length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", buffer[:end])
                size = end + 4 + (int(length[1]) if length else 0)
                if len(buffer) < size:
                    break
                inbox.put_nowait((port, buffer[:size]))
                buffer = buffer[size:]
    inbox.put_nowait((port, None))


def _via_ports(data: bytes) -> set[int]:
    """Ports in the sent-by of every Via: where §18.2.2 may send the answer."""
    ports = set()
    for name, value in read_sip(data)[1]:
        if name != "via":
            continue
        for via in value.split(","):
            protocol_and_sent_by = re.sub(r"\s*/\s*", "/", via.strip()).split(None, 1)
            sent_by = re.sub(r"\s+", "", (protocol_and_sent_by + ["", ""])[1].split(";")[0])
            port = sent_by.rpartition("]:")[2] if sent_by.startswith("[") else sent_by.partition(":")[2]
            if port.isdigit() and 0 < int(port) < 65536:
                ports.add(int(port))
    return ports


class _Peer:
    """Sends one message at a time, then an OPTIONS marker; the marker's answer closes the message's window
    (the endpoint handles its input in order), unless an INVITE or BYE of ours still waits for its final."""

    def __init__(self, transport: str, local_port: int, target_port: int, send: Callable[[bytes], None],
                 inbox: Inbox) -> None:
        self.transport, self.local_port, self.target_port = transport, local_port, target_port
        self.send, self.inbox = send, inbox
        self.request_uris: dict[str, str] = {}
        self.hung_up: set[tuple[str, str]] = set()
        self.markers: set[str] = set()

    async def exchange(self, data: bytes, within: float = WINDOW) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start, rows, _ = read_sip(data)
        own_call_id = header(rows, "call-id")
        if own_call_id is not None and start.split()[:1] != ["SIP/2.0"]:
            self.request_uris[own_call_id] = (start.split() + ["", ""])[1]
        is_invite = start.split()[:1] == ["INVITE"]
        replies: list[dict[str, Any]] = []
        pending: set[tuple[str, str]] = set()
        waiting_for_marker, asked_again, answered = True, False, False
        self.send(data)
        marker = self._marker()
        end = "deadline"
        deadline = loop.time() + within
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    port, raw = await self.inbox.get()
            except TimeoutError:
                break
            if raw is None:
                end = "eof"
                break
            first, reply_rows, _ = read_sip(raw)
            status = re.match(r"SIP/2\.0 (\d{3})(?: (.*))?$", first)
            call_id = header(reply_rows, "call-id")
            if status is None:
                replies.append({"request": first[:80], "port": port})
                continue
            code = int(status[1])
            if call_id in self.markers and call_id != marker:
                continue  # an earlier window's marker, answered after that window was closed by its answer
            if call_id == marker:
                if code < 200:
                    continue
                seen_invite = any(r.get("cseq") == "INVITE" and r.get("own") for r in replies)
                if is_invite and not seen_invite and not asked_again:
                    # The 100 (Trying) comes from a timer that may run just after the marker: ask once more.
                    asked_again = True
                    marker = self._marker()
                    continue
                waiting_for_marker = False
            else:
                method = cseq_method(reply_rows)
                replies.append({"status": code, "reason": status[2] or "", "cseq": method, "port": port,
                                "cseq_row": header(reply_rows, "cseq"),
                                "own": call_id is not None and call_id == own_call_id})
                self._react(code, method, reply_rows, pending)
                # Our message's final answer, with nothing of ours pending, closes the window as well; the marker
                # is for messages that get no answer, and may be lost behind a body longer than its
                # Content-Length on a stream.
                answered = answered or (call_id == own_call_id and method == cseq_method(rows) and code >= 200)
                if answered and not pending:
                    end = "answered"
                    break
            if not waiting_for_marker and not pending:
                end = "marker"
                break
        return {"replies": replies, "end": end}

    def _marker(self) -> str:
        call_id = f"marker-{len(self.markers)}-{secrets.token_hex(4)}"
        self.markers.add(call_id)
        self.send(_options(self.transport, self.local_port, self.target_port, call_id))
        return call_id

    def _react(self, code: int, method: str, rows: list[tuple[str, str]], pending: set[tuple[str, str]]) -> None:
        call_id = header(rows, "call-id") or ""
        if method == "INVITE":
            if code < 200:
                pending.add((call_id, "INVITE"))
                return
            pending.discard((call_id, "INVITE"))
            seq = (header(rows, "cseq") or "0").split()[0]
            to = header(rows, "to") or ""
            if code >= 300:
                # §17.1.1.3: the ACK of a non-2xx final is part of the INVITE transaction: same top Via.
                via = (header(rows, "via") or "").split(",")[0]
                self.send(self._request("ACK", self.request_uris.get(call_id, f"sip:{HOST}"), rows, seq, via))
                return
            # §13.2.2.4: a 2xx is acknowledged end to end, to the Contact; then we hang up (§15.1.1).
            contact = re.search(r"<([^>]*)>", header(rows, "contact") or "")
            target = contact[1] if contact else f"sip:{HOST}:{self.target_port}"
            self.send(self._request("ACK", target, rows, seq))
            if (call_id, to) not in self.hung_up:
                self.hung_up.add((call_id, to))
                self.send(self._request("BYE", target, rows, str(int(seq) + 1)))
                pending.add((call_id, "BYE"))
        elif method == "BYE" and code >= 200:
            pending.discard((call_id, "BYE"))

    def _request(self, method: str, uri: str, rows: list[tuple[str, str]], seq: str, via: str | None = None) -> bytes:
        if via is None:
            via = f"SIP/2.0/{self.transport} {HOST}:{self.local_port};branch=z9hG4bK{secrets.token_hex(8)};rport"
        return (f"{method} {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
                f"From: {header(rows, 'from')}\r\nTo: {header(rows, 'to')}\r\nCall-ID: {header(rows, 'call-id')}\r\n"
                f"CSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n").encode("latin-1")


async def _torture_udp(port: int, paths: list[Path]) -> dict[str, Any]:
    inbox: Inbox = asyncio.Queue()
    main, local = await _listen_udp(0, inbox)
    listeners = [main]
    for extra in sorted({5060, 5061}.union(*(_via_ports(p.read_bytes()) for p in paths)) - {port, local}):
        with contextlib.suppress(OSError):
            listeners.append((await _listen_udp(extra, inbox))[0])
    peer = _Peer("UDP", local, port, lambda data: main.sendto(data, (HOST, port)), inbox)
    try:
        return {path.stem: await peer.exchange(path.read_bytes()) for path in paths}
    finally:
        for listener in listeners:
            listener.close()


async def _torture_tcp(port: int, paths: list[Path]) -> dict[str, Any]:
    results = {}
    for path in paths:
        inbox: Inbox = asyncio.Queue()
        reader, writer = await asyncio.open_connection(HOST, port)
        local = writer.get_extra_info("sockname")[1]
        task = asyncio.create_task(_read_stream(reader, local, inbox))
        peer = _Peer("TCP", local, port, writer.write, inbox)
        try:
            results[path.stem] = await peer.exchange(path.read_bytes())
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            task.cancel()
    return results


# ---- junk ------------------------------------------------------------------------------------------------------

# rport (RFC 3581): whatever junk still parses is answered back to the junk socket, where it is counted.
_SIP_OPTIONS = (b"OPTIONS sip:junk@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKjunk;rport\r\n"
                b"Max-Forwards: 70\r\nFrom: <sip:junk@127.0.0.1>;tag=j1\r\nTo: <sip:junk@127.0.0.1>\r\n"
                b"Call-ID: junk@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
# A re-INVITE (To tag) names a dialog that does not exist, so a junk copy that still parses gets 481, never a call.
_JUNK_SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
_SIP_REINVITE = (b"INVITE sip:junk@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKjunk2;rport\r\n"
                 b"Max-Forwards: 70\r\nFrom: <sip:junk@127.0.0.1>;tag=j2\r\nTo: <sip:junk@127.0.0.1>;tag=j3\r\n"
                 b"Call-ID: junk2@127.0.0.1\r\nCSeq: 2 INVITE\r\nContent-Type: application/sdp\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(_JUNK_SDP), _JUNK_SDP))


def junk_datagrams(seed: int = JUNK_SEED, count: int = JUNK_COUNT) -> list[bytes]:
    """A fixed mix: empty, largest-possible, binary, truncated and bit-flipped SIP, header floods, CRLF runs,
    responses, oversized Content-Length and NUL-laden headers."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = i % 10
        template = _SIP_OPTIONS if rng.random() < 0.5 else _SIP_REINVITE
        if kind == 0:
            data = b"" if rng.random() < 0.5 else b"\x00" * rng.randint(1, 64)
        elif kind == 1:
            data = template + rng.randbytes(65_507 - len(template))  # the largest IPv4 UDP payload
        elif kind == 2:
            data = rng.randbytes(rng.randint(1, 1500))
        elif kind == 3:
            data = template[: rng.randint(1, len(template) - 1)]
        elif kind == 4:
            flipped = bytearray(template)
            for _ in range(rng.randint(1, 6)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            data = bytes(flipped)
        elif kind == 5:
            head, _, rest = template.partition(b"\r\n")
            data = head + b"\r\n" + b"X-Flood: y\r\n" * rng.randint(100, 5000) + rest
        elif kind == 6:
            data = rng.choice([b"\r\n", b"\r\n\r\n", b"\n", b"\r"]) * rng.randint(1, 2000)
        elif kind == 7:
            data = b"SIP/2.0 " + str(rng.randint(0, 999_999)).encode() + b" Junk\r\n" + template.partition(b"\r\n")[2]
        elif kind == 8:
            data = template.replace(b"Content-Length: ", b"Content-Length: 99999999999999999999")
        else:
            name = bytes(rng.choice(b"ab\x00\x7f:;<>\"\\% ") for _ in range(rng.randint(1, 40)))
            data = template.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n" + name + b": " + name)
        out.append(data)
    return out


class _Probe:
    """OPTIONS (§11) over one UDP socket or one TCP connection, kept for many questions."""

    def __init__(self, port: int, transport: str, local: int, send: Callable[[bytes], None], inbox: Inbox,
                 close: list[Callable[[], object]]) -> None:
        self.port, self.transport, self.local, self.send, self.inbox = port, transport, local, send, inbox
        self._close = close

    @classmethod
    async def open(cls, port: int, transport: str) -> _Probe:
        inbox: Inbox = asyncio.Queue()
        if transport == "UDP":
            sock, local = await _listen_udp(0, inbox)
            return cls(port, transport, local, lambda data: sock.sendto(data, (HOST, port)), inbox, [sock.close])
        reader, writer = await asyncio.open_connection(HOST, port)
        local = writer.get_extra_info("sockname")[1]
        task = asyncio.create_task(_read_stream(reader, local, inbox))
        return cls(port, transport, local, writer.write, inbox, [task.cancel, writer.close])

    def close(self) -> None:
        for step in self._close:
            step()

    async def ask(self) -> float | None:
        """Seconds until the 200 came, or None after OPTIONS_WITHIN."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        call_id = f"probe-{secrets.token_hex(6)}"
        request = _options(self.transport, self.local, self.port, call_id)

        async def transmit() -> None:
            # §17.1.2.2 Timer E over UDP: a datagram the kernel dropped is sent again, as any UAC would.
            interval = T1
            while True:
                self.send(request)
                if self.transport != "UDP":
                    return
                await asyncio.sleep(interval)
                interval = min(2 * interval, T2)

        sender = asyncio.create_task(transmit())
        try:
            async with asyncio.timeout(OPTIONS_WITHIN):
                while True:
                    _, raw = await self.inbox.get()
                    if raw is None:
                        return None
                    first, rows, _ = read_sip(raw)
                    if header(rows, "call-id") == call_id and first.startswith("SIP/2.0 200"):
                        return loop.time() - started
        except TimeoutError:
            return None
        finally:
            sender.cancel()


def _udp_receive_buffer_errors() -> int:
    """Datagrams the namespace's kernel dropped because a socket's receive buffer was full."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(dict(zip(rows[0], rows[1], strict=True)).get("RcvbufErrors", 0))


async def _sync(port: int, sock: asyncio.DatagramTransport, local: int, inbox: Inbox) -> int:
    """Wait until the endpoint has read everything sent before (it handles its UDP input in order); the number
    of other answers that came meanwhile."""
    call_id = f"sync-{secrets.token_hex(6)}"
    sock.sendto(_options("UDP", local, port, call_id), (HOST, port))
    others = 0
    async with asyncio.timeout(WINDOW):
        while True:
            _, raw = await inbox.get()
            if raw is not None and header(read_sip(raw)[1], "call-id") == call_id:
                return others
            others += 1


async def _junk(port: int) -> dict[str, Any]:
    inbox: Inbox = asyncio.Queue()
    blaster, local = await _listen_udp(0, inbox)
    # A connection that sends a header block that never ends (but stays under any sane header limit), then idles.
    stuck_reader, stuck = await asyncio.open_connection(HOST, port)
    stuck.write(b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKstuck\r\n"
                + random.Random(JUNK_SEED).randbytes(4000).replace(b"\r\n\r\n", b"--"))
    # And one whose header block passes every limit: the endpoint may cut it.
    flood_reader, flood = await asyncio.open_connection(HOST, port)
    flood.write(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n" + b"X-Flood: y\r\n" * 20_000)
    await stuck.drain()
    probes = {transport: await _Probe.open(port, transport) for transport in ("UDP", "TCP")}
    datagrams = junk_datagrams()
    dropped_before = _udp_receive_buffer_errors()

    async def blast() -> int:
        # Paced by the endpoint itself (a sync OPTIONS after every ~64 KiB), so the socket buffer never
        # overflows and every junk datagram reaches the endpoint rather than the kernel's drop counter.
        outstanding = answers = 0
        for data in datagrams:
            if outstanding and outstanding + len(data) > 70_000:
                answers += await _sync(port, blaster, local, inbox)
                outstanding = 0
            blaster.sendto(data, (HOST, port))
            outstanding += len(data)
        return answers + await _sync(port, blaster, local, inbox)

    blasting = asyncio.create_task(blast())
    during: dict[str, list[float | None]] = {"UDP": [], "TCP": []}
    while True:  # OPTIONS over UDP and over a second connection, again and again while the junk flows
        udp, tcp = await asyncio.gather(probes["UDP"].ask(), probes["TCP"].ask())
        during["UDP"].append(udp)
        during["TCP"].append(tcp)
        if blasting.done():
            break
    answers = await blasting
    after = await asyncio.gather(probes["UDP"].ask(), probes["TCP"].ask())
    try:
        async with asyncio.timeout(OPTIONS_WITHIN):
            flood_closed = not await flood_reader.read(65536)
    except OSError:
        flood_closed = True  # reset: the endpoint closed with our flood still unread
    except TimeoutError:
        flood_closed = False
    result = {"options_during": {t: {"asked": len(v), "unanswered": v.count(None),
                                     "slowest_s": max((x for x in v if x is not None), default=None)}
                                 for t, v in during.items()},
              "options_after": dict(zip(("UDP", "TCP"), after, strict=True)),
              "stuck_closed_by_endpoint": stuck_reader.at_eof(), "flood_closed": flood_closed,
              "datagrams": len(datagrams), "answers_to_junk": answers,
              "dropped_by_kernel": _udp_receive_buffer_errors() - dropped_before}
    for writer in (stuck, flood):
        writer.close()
    for probe in probes.values():
        probe.close()
    blaster.close()
    return result


async def _ping(port: int) -> dict[str, Any]:
    probes = [await _Probe.open(port, transport) for transport in ("UDP", "TCP")]
    udp, tcp = await asyncio.gather(*(probe.ask() for probe in probes))
    for probe in probes:
        probe.close()
    return {"udp_options_s": udp, "tcp_options_s": tcp}


def _main(argv: list[str]) -> None:
    mode, port = argv[0], int(argv[1])
    if mode == "torture-udp":
        result = asyncio.run(_torture_udp(port, [Path(p) for p in argv[2:]]))
    elif mode == "torture-tcp":
        result = asyncio.run(_torture_tcp(port, [Path(p) for p in argv[2:]]))
    elif mode == "junk":
        result = asyncio.run(_junk(port))
    else:
        result = asyncio.run(_ping(port))
    print(json.dumps(result))


# ---- running things inside the namespace (the test side) ---------------------------------------------------


async def _run(*argv: str, within: float = 30.0, cwd: Path = REPO) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@contextlib.asynccontextmanager
async def namespace() -> AsyncIterator[str]:
    name = f"sipagent-test-{secrets.token_hex(4)}"
    code, _, err = await _run("ip", "netns", "add", name)
    assert code == 0, err
    try:
        code, _, err = await _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        assert code == 0, err
        yield name
    finally:
        await _run("ip", "netns", "del", name)


@contextlib.asynccontextmanager
async def endpoint(ns: str, port: int) -> AsyncIterator[PeerProcess]:
    proc = PeerProcess(f"sipagent:{port}", ["ip", "netns", "exec", ns, sys.executable, "-m", "sipagent.cli", "serve",
                                            "--bind", HOST, "--sip-port", str(port), "--agent", "echo",
                                            "--rtp-ports", RTP_PORTS[port]], cwd=REPO)
    await proc.start()
    try:
        await proc.wait_for_output(r"endpoint ready", within=20)
        yield proc
    finally:
        await proc.stop()


async def hostile(ns: str, *args: str, within: float = 60.0) -> Any:
    code, out, err = await _run("ip", "netns", "exec", ns, sys.executable, "-m", "tests.interop.test_hostile_input",
                                *args, within=within)
    assert code == 0, err
    return json.loads(out)


async def sipp_call(ns: str, port: int, workdir: Path) -> tuple[int, str]:
    code, out, err = await _run("ip", "netns", "exec", ns, "sipp", "-sn", "uac", f"{HOST}:{port}", "-m", "1",
                                "-nostdin", "-timeout", "15s", "-timeout_error", within=20, cwd=workdir)
    return code, out[-2000:] + err[-2000:]


def _clean_log(proc: PeerProcess) -> None:
    for sign in ("Traceback", "could not be processed", "internal error"):
        assert sign not in proc.output, proc.tail(80)


async def _still_serving(ns: str, port: int, workdir: Path) -> None:
    ping = await hostile(ns, "ping", str(port))
    assert ping["udp_options_s"] is not None and ping["tcp_options_s"] is not None, ping
    code, log = await sipp_call(ns, port, workdir)
    assert code == 0, log


# ---- what RFC 3261 §8.2 says a UA answers ------------------------------------------------------------------------

# §27.4 / IANA "Methods": known to SIP. A UA that does not implement one answers 405 (recognised) or 501 (not).
_SIP_METHODS = {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "PRACK", "SUBSCRIBE", "NOTIFY",
                "UPDATE", "MESSAGE", "REFER", "PUBLISH"}
_UA_SERVES = {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY"}
_CODECS = {{"PCMU": "0", "PCMA": "8"}[name] for name in SipSettings().codecs}  # RFC 3551 static payload types


def is_response(data: bytes) -> bool:
    return data.lstrip(b"\r\n").startswith(b"SIP/")


def answerable(data: bytes) -> bool:
    """§8.2.6.2: a response copies Via, From, To, Call-ID and CSeq; without them there is nothing to answer,
    and an ACK is never answered (§17.2.1)."""
    _, rows, _ = read_sip(data)
    names = {name for name, _ in rows}
    return {"via", "from", "to", "call-id", "cseq"} <= names and cseq_method(rows) != "ACK"


def ua_answers(data: bytes) -> set[int]:
    """The final statuses RFC 3261 lets a UA like ours (no registrar, audio with PCMU/PCMA) give a valid request."""
    start, rows, body = read_sip(data)
    method = start.split()[0]
    if method == "ACK":
        return set()  # §17.1.1.3, §13.2.2.4: never answered
    if method not in _SIP_METHODS:
        return {501}  # §8.2.1, §21.5.2
    if method not in _UA_SERVES:
        return {405, 501}  # §8.2.1: a UA may or may not recognise REGISTER, MESSAGE...
    if method not in ("ACK", "CANCEL") and header(rows, "require"):
        return {420}  # §8.2.2.3 (RFC 4475 §3.3.5: nobody supports these option tags)
    if method == "OPTIONS":
        return {200}  # §11.2; RFC 4475 §3.3.11: a UA ignores Max-Forwards: 0
    to_tag = re.search(r";\s*tag\s*=", header(rows, "to") or "")
    if method == "INVITE" and to_tag is None:
        content_type = (header(rows, "content-type") or "application/sdp").split(";")[0].strip().lower()
        if body.strip() and content_type != "application/sdp":
            return {415}  # §8.2.3 (RFC 4475 §3.3.6)
        accept = [a.split(";")[0].strip().lower() for a in (header(rows, "accept") or "application/sdp").split(",")]
        if not {"application/sdp", "application/*", "*/*"} & set(accept):
            return {406, 400}  # RFC 4475 §3.3.15: an answer cannot carry SDP
        audio = re.search(rb"(?m)^m=audio [0-9]+ RTP/AVP ([0-9 ]+)", body)
        if audio is not None and not _CODECS & set(audio[1].decode().split()):
            return {488}  # §13.3.1.4: nothing in the offer is acceptable
        return {200, 488}  # a call from loopback is accepted; an IPv6-only offer may be refused by an IPv4 UA
    return {481}  # §12.2.2 / §15.1.2: in-dialog requests (and a re-INVITE) for a dialog that does not exist


def transaction_key(data: bytes) -> tuple[str, str]:
    """Top Via row and CSeq method: two files that share them are one transaction to the endpoint (§17.2.3)."""
    _, rows, _ = read_sip(data)
    return (header(rows, "via") or "").split(",")[0], cseq_method(rows)


# ---- the tests ---------------------------------------------------------------------------------------------------


def _judge(case: Case, result: dict[str, Any], transport: str, seen: dict[tuple[str, str], set[int]],
           tally: Counter[str]) -> list[str]:
    """Problems with the endpoint's answers to one torture message; ``tally`` counts the outcomes."""
    data = (MSGS / f"{case.file}.dat").read_bytes()
    _, rows, _ = read_sip(data)
    name = f"{case.file}/{transport}"
    replies = result["replies"]
    requests = [r for r in replies if "status" not in r]
    problems = [f"{name}: the endpoint sent requests {requests}"] if requests else []
    # Answers carry the request's Call-ID (§8.2.6.2); without one, its CSeq row is all that can tie them to it.
    no_call_id = header(rows, "call-id") is None
    own = [r for r in replies if "status" in r and (r["own"] or no_call_id and r["cseq_row"] == header(rows, "cseq"))]
    answers = [r for r in own if r["cseq"] == cseq_method(rows)]
    finals = [r for r in answers if r["status"] >= 200]
    if is_response(data):
        tally["absorbed"] += 1  # §18.1.2: a response that matches no transaction of ours is dropped
        return problems + ([f"{name}: a response was answered: {own}"] if own else [])
    if case.status is not None:
        expected = {case.status} if answerable(data) else set()
    elif transport == "TCP" and header(rows, "content-length") is None:
        expected = set()  # §18.3: on a stream a message without Content-Length cannot be framed
    else:
        expected = ua_answers(data)
    if not expected:
        tally["dropped"] += 1
        return problems + ([f"{name}: expected no answer, got {own}"] if own else [])
    tally["accepted" if case.status is None else "rejected"] += 1
    key = transaction_key(data)
    if not finals and key in seen:
        tally["same transaction as an earlier file"] += 1  # §17.2.3: same branch, sent-by and method
        return problems
    statuses = {r["status"] for r in finals}
    if len(statuses) != 1 or not statuses <= expected:
        return problems + [f"{name}: expected one of {sorted(expected)}, got {replies} (window: {result['end']})"]
    status = statuses.pop()
    tally[f"{status}"] += 1
    seen.setdefault(key, set()).add(status)
    if case.status is not None and not finals[0]["reason"].strip():
        problems.append(f"{name}: {status} without a reason phrase")
    if status < 300 and cseq_method(rows) == "INVITE":
        byes = {r["status"] for r in own if r["cseq"] == "BYE" and r["status"] >= 200}
        if byes != {200}:
            problems.append(f"{name}: the call could not be hung up: {replies}")
        tally["calls set up and hung up"] += byes == {200}
    return problems


async def test_torture_messages_against_the_running_endpoint(tmp_path: Path) -> None:
    if not MSGS.is_dir():
        pytest.skip("shared SIP torture messages are absent")  # missing data, not a missing peer
    require_root("a network namespace for hostile input")
    require_tool("ip")
    require_tool("sipp")
    valid = [case for case in CASES if case.status is None]
    async with namespace() as ns, endpoint(ns, UDP_PASS_PORT) as udp_ep, endpoint(ns, TCP_PASS_PORT) as tcp_ep:
        # Two endpoints, so the TCP copies are not taken for retransmissions of the UDP ones (§17.2.3).
        udp, tcp = await asyncio.gather(
            hostile(ns, "torture-udp", str(UDP_PASS_PORT), *(str(MSGS / f"{c.file}.dat") for c in CASES)),
            hostile(ns, "torture-tcp", str(TCP_PASS_PORT), *(str(MSGS / f"{c.file}.dat") for c in valid)),
        )
        await _still_serving(ns, UDP_PASS_PORT, tmp_path)
        await _still_serving(ns, TCP_PASS_PORT, tmp_path)
        problems: list[str] = []
        tallies: dict[str, Counter[str]] = {}
        for transport, results, cases in (("UDP", udp, CASES), ("TCP", tcp, valid)):
            tally = tallies[transport] = Counter()
            seen: dict[tuple[str, str], set[int]] = {}
            for case in cases:
                problems += _judge(case, results[case.file], transport, seen, tally)
        print(json.dumps(tallies, indent=1, sort_keys=True))
        assert not problems, "\n".join(problems)
    _clean_log(udp_ep)
    _clean_log(tcp_ep)


async def test_junk_does_not_block_the_endpoint(tmp_path: Path) -> None:
    require_root("a network namespace for hostile input")
    require_tool("ip")
    require_tool("sipp")
    async with namespace() as ns, endpoint(ns, JUNK_PORT) as ep:
        result = await hostile(ns, "junk", str(JUNK_PORT))
        print(json.dumps(result, indent=1))
        # Every junk datagram reached the endpoint (paced, not dropped by the kernel), and no OPTIONS waited
        # for more than OPTIONS_WITHIN while junk flowed over UDP and a TCP connection hung on a half header.
        assert result["dropped_by_kernel"] == 0, result
        for transport in ("UDP", "TCP"):
            during = result["options_during"][transport]
            assert during["asked"] and not during["unanswered"], (transport, result, ep.tail(60))
            assert result["options_after"][transport] is not None, (transport, result, ep.tail(60))
        # The header block that never ends cannot be buffered for ever (§18.3 frames by a header block first).
        assert result["flood_closed"], result
        await _still_serving(ns, JUNK_PORT, tmp_path)
    _clean_log(ep)


def test_junk_is_fixed_and_mixed() -> None:
    first, again = junk_datagrams(), junk_datagrams()
    assert first == again and len(first) == JUNK_COUNT
    sizes = sorted(len(d) for d in first)
    assert sizes[0] == 0 and sizes[-1] == 65_507
    assert any(d.startswith(b"SIP/2.0 ") for d in first) and any(d.startswith(b"OPTIONS") for d in first)


if __name__ == "__main__":
    _main(sys.argv[1:])
