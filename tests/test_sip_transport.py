"""sipagent.transport over real loopback sockets, driven by a fake core.

Every wait is on an event (a datagram, bytes on a stream, EOF, a future the fake core resolves), bounded by
``asyncio.timeout`` so that a failure cannot hang the run. Expected bytes come from the RFCs (a CRLFCRLF ping is
answered by exactly one CRLF, RFC 5626 §4.4.1; a response carries the request's Via, Call-ID and CSeq, RFC 3261
§8.2.6.2) or from what the test itself sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.message import SipRequest, SipResponse, make_response
from sipagent.sip.parser import StreamFramer, parse_message
from sipagent.transport import SendFailed, SipTransport, TransportConfig

pytestmark = pytest.mark.aio

LOOP4 = "127.0.0.1"
WAIT = 5.0  # upper bound of any single wait; the tests finish in milliseconds


def request(call_id: str, host: str = LOOP4, port: int = 5060, transport: str = "UDP", body: bytes = b"") -> bytes:
    via_host = f"[{host}]" if ":" in host else host
    return (
        f"OPTIONS sip:agent@{via_host} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via_host}:{port};branch=z9hG4bK{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:caller@example.com>;tag=1928301774\r\n"
        "To: <sip:agent@example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 63104 OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body


@dataclass(frozen=True, slots=True)
class Out:
    data: bytes
    destination: tuple[str, int]
    transport: str


@dataclass(frozen=True, slots=True)
class Received:
    call_id: str | None  # None: the core could not parse the bytes
    source: tuple[str, int]
    transport: str


class FakeCore:
    """Answers each request with a 200 to where it came from (or to ``reply_to``) and reports it as an event."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int], str, float]] = []
        self.outbox: list[Out] = []
        self.events: list[Received] = []
        self.reply_to: tuple[str, int] | None = None
        self.timer: float | None = None
        self.timer_delay: float | None = None  # set a timer this far after each receive
        self.timer_fired: asyncio.Future[float] | None = None
        self.on_timer: list[Out] = []
        self.flood: tuple[int, bytes] | None = None  # (count, chunk) sent back instead of a 200

    def receive(self, data: bytes, source: tuple[str, int], transport: str, now: float) -> None:
        self.received.append((data, source, transport, now))
        if self.timer_delay is not None and self.timer is None:
            self.timer = now + self.timer_delay
        try:
            message = parse_message(data)
        except RemoteProtocolError:
            self.events.append(Received(None, source, transport))
            return  # junk: this core drops it
        self.events.append(Received(message.call_id, source, transport))
        if isinstance(message, SipRequest):
            if self.flood is not None:
                count, chunk = self.flood
                self.outbox.extend(Out(chunk, source, transport) for _ in range(count))
                return
            response = make_response(message, 200).serialize()
            self.outbox.append(Out(response, self.reply_to or source, transport))

    def datagrams_to_send(self) -> list[Out]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.timer = None
        self.outbox.extend(self.on_timer)
        if self.timer_fired is not None and not self.timer_fired.done():
            self.timer_fired.set_result(now)

    def next_event(self) -> Received | None:
        return self.events.pop(0) if self.events else None


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[Any, ...]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((data, addr))

    async def recv(self) -> bytes:
        async with asyncio.timeout(WAIT):
            data, _ = await self.queue.get()
        return data


@contextlib.asynccontextmanager
async def udp_client(host: str = LOOP4) -> AsyncIterator[tuple[asyncio.DatagramTransport, UdpClient]]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(UdpClient, local_addr=(host, 0))
    try:
        yield transport, protocol
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def tcp_client(host: str, port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_messages(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """Frame ``count`` messages from a stream with the project's framer (keep-alives left out)."""
    framer, found = StreamFramer(), list[bytes]()
    async with asyncio.timeout(WAIT):
        while len(found) < count:
            chunk = await reader.read(65536)
            assert chunk, "connection closed before the expected messages arrived"
            found += [m for m in framer.feed(chunk) if m.strip(b"\r\n")]
    return found


def response_to(data: bytes, call_id: str) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    assert (message.status, message.call_id, message.cseq.method) == (200, call_id, "OPTIONS")
    return message


async def start(core: FakeCore, host: str = LOOP4, transports: Iterable[str] = ("udp", "tcp"),
                **kwargs: Any) -> SipTransport[Received]:
    return await SipTransport.start(core, host, 0, transports, **kwargs)


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_port_zero_binds_udp_and_tcp_on_the_reported_port() -> None:
    async with await start(FakeCore()) as transport:
        assert transport.port > 0
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as probe, pytest.raises(OSError):
                probe.bind((LOOP4, transport.port))  # taken by the transport on both protocols


async def test_udp_request_is_answered_at_its_source_and_event_delivered() -> None:
    core, events = FakeCore(), list[Received]()
    async with await start(core, on_event=events.append) as transport, udp_client() as (client, proto):
        client.sendto(request("udp1"), (LOOP4, transport.port))
        response_to(await proto.recv(), "udp1")
        source = client.get_extra_info("sockname")[:2]
        assert core.received[0][1:3] == (source, "udp")
        assert events == [Received("udp1", source, "udp")]
        assert (transport.stats.datagrams_in, transport.stats.datagrams_out) == (1, 1)


async def test_udp_sends_to_exactly_the_destination_the_core_gives() -> None:
    core = FakeCore()
    async with await start(core) as transport, udp_client() as (client, _), udp_client() as (other, other_proto):
        core.reply_to = other.get_extra_info("sockname")[:2]
        client.sendto(request("redirected"), (LOOP4, transport.port))
        response_to(await other_proto.recv(), "redirected")


async def test_udp_keepalives_are_dropped_and_junk_goes_to_the_core_without_stopping_service() -> None:
    core = FakeCore()
    async with await start(core) as transport, udp_client() as (client, proto):
        junk = b"\x00\xffnot sip at all\r\n"
        for datagram in (b"\r\n\r\n", b"\r\n", junk, request("after-junk")):
            client.sendto(datagram, (LOOP4, transport.port))
        response_to(await proto.recv(), "after-junk")
        assert [data for data, *_ in core.received] == [junk, request("after-junk")]
        assert transport.stats.keepalives_in == 2


async def test_tcp_message_split_across_many_writes_is_framed_and_answered_on_the_same_connection() -> None:
    core = FakeCore()
    message = request("split", transport="TCP", body=b"v=0\r\n")
    cuts = sorted(random.Random(7).sample(range(1, len(message)), 40))
    async with await start(core) as transport, tcp_client(LOOP4, transport.port) as (reader, writer):
        for start_at, end_at in zip([0, *cuts], [*cuts, len(message)], strict=True):
            writer.write(message[start_at:end_at])
            await writer.drain()
        (answer,) = await read_messages(reader, 1)
        response_to(answer, "split")
        source = writer.get_extra_info("sockname")[:2]
        assert core.received == [(message, source, "tcp", core.received[0][3])]
        assert transport.connections == {source}
        assert (transport.stats.tcp_accepted, transport.stats.tcp_opened) == (1, 0)


async def test_tcp_several_messages_in_one_write_are_each_delivered_and_answered_in_order() -> None:
    core = FakeCore()
    sent = [request(f"batch{i}", transport="TCP", body=b"x" * i) for i in range(3)]
    async with await start(core) as transport, tcp_client(LOOP4, transport.port) as (reader, writer):
        writer.write(b"".join(sent))
        answers = await read_messages(reader, 3)
        for i, answer in enumerate(answers):
            response_to(answer, f"batch{i}")
        assert [data for data, *_ in core.received] == sent
        assert transport.stats.messages_in == transport.stats.messages_out == 3


async def test_tcp_ping_gets_one_crlf_pong_without_the_core() -> None:
    core = FakeCore()
    async with await start(core) as transport, tcp_client(LOOP4, transport.port) as (reader, writer):
        writer.write(b"\r\n\r\n")
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(2) == b"\r\n"
        # A ping split in two writes is still one ping: exactly one more CRLF, then the response's status line.
        writer.write(b"\r\n")
        await writer.drain()
        writer.write(b"\r\n")
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(2) == b"\r\n"
        writer.write(request("after-ping", transport="TCP"))
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(8) == b"SIP/2.0 "
        assert [data for data, *_ in core.received] == [request("after-ping", transport="TCP")]
        assert transport.stats.pongs_out == 2


@pytest.mark.parametrize(
    "junk",
    [
        b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n",  # no Content-Length: §18.3 makes it mandatory on streams
        b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-Pad: " + b"a" * 20_000,  # header block over the bound
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["no-content-length", "oversize-header", "negative-length"],
)
async def test_tcp_framing_error_closes_only_that_connection(junk: bytes) -> None:
    core = FakeCore()
    async with await start(core) as transport, tcp_client(LOOP4, transport.port) as (good_r, good_w):
        async with tcp_client(LOOP4, transport.port) as (bad_r, bad_w):
            bad_w.write(junk)
            async with asyncio.timeout(WAIT):
                assert await bad_r.read() == b""  # EOF: the transport closed it
        good_w.write(request("survivor", transport="TCP"))
        (answer,) = await read_messages(good_r, 1)
        response_to(answer, "survivor")
        assert transport.stats.framing_errors == 1
        assert core.received[-1][0] == request("survivor", transport="TCP")


async def test_tcp_outbound_connection_is_opened_once_and_reused_both_ways() -> None:
    core = FakeCore()
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    peer = await asyncio.start_server(on_accept, LOOP4, 0)
    peer_addr = peer.sockets[0].getsockname()[:2]
    try:
        async with await start(core) as transport:
            first, second = request("out1", transport="TCP"), request("out2", transport="TCP")
            core.outbox += [Out(first, peer_addr, "tcp"), Out(second, peer_addr, "tcp")]
            transport.flush()
            async with asyncio.timeout(WAIT):
                reader, writer = await accepted.get()
            assert await read_messages(reader, 2) == [first, second]
            # The peer's own request comes back on that connection and is answered on it (§18.2.2).
            writer.write(request("inbound", transport="TCP"))
            (answer,) = await read_messages(reader, 1)
            response_to(answer, "inbound")
            assert core.received[-1][1:3] == (peer_addr, "tcp")
            assert accepted.empty() and transport.stats.tcp_opened == 1
            writer.close()
    finally:
        peer.close()
        await peer.wait_closed()


async def test_send_failures_are_reported_not_raised() -> None:
    core, failures = FakeCore(), list[SendFailed]()
    failed = asyncio.get_running_loop().create_future()

    def on_send_error(failure: SendFailed) -> None:
        failures.append(failure)
        if len(failures) == 3 and not failed.done():
            failed.set_result(None)

    # A bound TCP socket that does not listen refuses connections.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed_port:
        closed_port.bind((LOOP4, 0))
        refused = closed_port.getsockname()[:2]
        async with await start(core, transports=("udp", "tcp"), on_send_error=on_send_error) as transport:
            core.outbox += [
                Out(b"x", refused, "tcp"),
                Out(b"x", ("::1", 5060), "udp"),  # IPv6 destination on an IPv4 socket
                Out(b"x", (LOOP4, 5060), "sctp"),
            ]
            transport.flush()
            async with asyncio.timeout(WAIT):
                await failed
            assert {(f.destination, f.transport) for f in failures} == {
                (refused, "tcp"), (("::1", 5060), "udp"), ((LOOP4, 5060), "sctp")}
            assert transport.stats.send_errors == 3 and transport.connections == frozenset()


async def test_hostname_destination_is_resolved_off_the_loop() -> None:
    core = FakeCore()
    async with await start(core) as transport, udp_client() as (client, proto):
        port = client.get_extra_info("sockname")[1]
        core.outbox += [Out(b"one", ("localhost", port), "udp"), Out(b"two", ("localhost", port), "udp")]
        transport.flush()
        assert [await proto.recv(), await proto.recv()] == [b"one", b"two"]


async def test_core_timer_is_one_call_at_rearmed_only_when_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    core = FakeCore()
    core.timer_delay = 0.02
    core.timer_fired = loop.create_future()
    ours: list[float] = []
    real_call_at = loop.call_at

    def spy(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        # UDP only, so no connection idle timers: every call_at made by the transport is the core's timer.
        if isinstance(getattr(callback, "__self__", None), SipTransport):
            ours.append(when)
        return real_call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", spy)
    async with await start(core, transports=("udp",)) as transport, udp_client() as (client, proto):
        core.on_timer = [Out(b"retransmit", client.get_extra_info("sockname")[:2], "udp")]
        for i in range(3):  # the deadline set by the first receive stays the same: one call_at
            client.sendto(request(f"t{i}"), (LOOP4, transport.port))
            response_to(await proto.recv(), f"t{i}")
        async with asyncio.timeout(WAIT):
            fired_at = await core.timer_fired
        deadline = core.received[0][3] + 0.02
        assert ours == [deadline] and fired_at >= deadline
        assert await proto.recv() == b"retransmit"  # what handle_timer queued went out


async def test_stalled_tcp_reader_is_cut_off_and_others_keep_working() -> None:
    core = FakeCore()
    flooded = asyncio.get_running_loop().create_future()

    def on_event(event: Received) -> None:
        # Events are delivered after the core's output was sent, so the flood has been written by now.
        if event.call_id == "flood" and not flooded.done():
            flooded.set_result(None)

    config = TransportConfig(max_write_buffer=64 * 1024)
    async with await start(core, config=config, on_event=on_event) as transport:
        async with tcp_client(LOOP4, transport.port) as (_, stalled_w), \
                tcp_client(LOOP4, transport.port) as (ok_r, ok_w):
            # 25 MiB at a client that never reads: more than loopback socket buffers hold.
            core.flood = (400, b"\x00" * 65536)
            stalled_w.write(request("flood", transport="TCP"))
            async with asyncio.timeout(WAIT):
                await flooded
            core.flood = None
            ok_w.write(request("still-served", transport="TCP"))
            (answer,) = await read_messages(ok_r, 1)
            response_to(answer, "still-served")
            assert transport.stats.write_overflows == 1 and transport.stats.send_errors > 0


async def test_idle_tcp_connection_is_closed() -> None:
    config = TransportConfig(idle_timeout=0.05)
    async with await start(FakeCore(), config=config) as transport, tcp_client(LOOP4, transport.port) as (r, _):
        async with asyncio.timeout(WAIT):
            assert await r.read() == b""
        assert transport.stats.idle_closed == 1


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this host")
async def test_ipv6_loopback_udp_and_tcp() -> None:
    core = FakeCore()
    async with await start(core, host="::1") as transport, udp_client("::1") as (client, proto):
        client.sendto(request("v6udp", host="::1"), ("::1", transport.port))
        response_to(await proto.recv(), "v6udp")
        async with tcp_client("::1", transport.port) as (reader, writer):
            writer.write(request("v6tcp", host="::1", transport="TCP"))
            (answer,) = await read_messages(reader, 1)
            response_to(answer, "v6tcp")
        assert {source[0] for _, source, _, _ in core.received} == {"::1"}


async def test_close_ends_connections_and_releases_the_port() -> None:
    core = FakeCore()
    transport = await start(core)
    port = transport.port
    async with tcp_client(LOOP4, port) as (reader, writer):
        writer.write(request("before-close", transport="TCP"))
        await read_messages(reader, 1)
        await transport.close()
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
    assert transport.connections == frozenset()
    async with await SipTransport.start(FakeCore(), LOOP4, port) as again:
        assert again.port == port


async def test_output_the_app_makes_while_handling_an_event_is_sent_in_the_same_flush() -> None:
    core = FakeCore()
    async with udp_client() as (client, proto):
        me = client.get_extra_info("sockname")[:2]

        def on_event(event: Received) -> None:
            if event.call_id == "trigger":
                core.outbox.append(Out(b"follow-up", me, "udp"))  # as if the app called into the core here
                transport.flush()  # nested: the running flush picks the output up

        async with await start(core, on_event=on_event) as transport:
            client.sendto(request("trigger"), (LOOP4, transport.port))
            response_to(await proto.recv(), "trigger")
            assert await proto.recv() == b"follow-up"
