"""The asyncio edge of SIP: UDP and TCP sockets for the sans-I/O UA core (RFC 3261 §18).

It makes no protocol decisions. Bytes that arrive go to ``core.receive`` with the loop time, unchanged;
bytes the core built go exactly where the core said. After every input :meth:`SipTransport.flush` sends the
core's output, hands its events to ``on_event`` and re-arms the one ``loop.call_at`` timer from
``core.get_timer()`` (the aioquic ``transmit()`` shape).

What is decided here is only what a byte mover must decide:

- TCP framing (§18.3): a :class:`~sipagent.sip.parser.StreamFramer` per connection. A framing error loses the
  next message boundary, so that connection (and only that one) is closed.
- RFC 5626 §4.4.1 keep-alives: a CRLFCRLF ping on a connection is answered with a CRLF pong here, without the
  core. CRLF-only UDP datagrams (NAT keep-alives) are dropped: RFC 5626 §3.5.1 keeps flows over UDP with STUN,
  and RFC 3261 §7.5 has receivers ignore CRLFs before a start-line.
- Connection reuse (§18.2.2: a response goes back over the connection the request came on): one table keyed by
  the remote (host, port), holding connections we opened and connections the peer opened to us.
- Resource bounds: idle connections are closed, and a peer that stops reading is cut off once its write buffer
  passes a limit, so it never holds up the loop or the other connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from sipagent.log import get_logger
from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.parser import is_keepalive
from sipagent.transport_protocols import TcpConnection, UdpProtocol

__all__ = ["Address", "SendFailed", "SipCore", "SipOutgoing", "SipTransport", "TransportConfig", "TransportStats"]

Address = tuple[str, int]
"""(host, port) as the core sees it; IPv6 hosts without brackets."""

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)

_TRANSPORTS = ("udp", "tcp")
# Largest UDP payload: 65535 minus the 8-byte UDP header, minus the 20-byte header for IPv4 (IPv6 counts its
# 40-byte header outside the payload length).
_MAX_UDP_PAYLOAD = {socket.AF_INET: 65_507, socket.AF_INET6: 65_527}
_BIND_ATTEMPTS = 8


class SipOutgoing(Protocol):
    """What the core hands over to send: its ``Outgoing`` matches this."""

    @property
    def data(self) -> bytes: ...
    @property
    def destination(self) -> tuple[str, int]: ...
    @property
    def transport(self) -> str: ...


class SipCore(Protocol[E_co]):
    """The sans-I/O UA core as the transport drives it; ``E_co`` is its event type."""

    def receive(self, data: bytes, source: tuple[str, int], transport: str, now: float) -> object: ...
    def datagrams_to_send(self) -> Iterable[SipOutgoing]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> object: ...
    def next_event(self) -> E_co | None: ...


@dataclass(frozen=True, slots=True)
class TransportConfig:
    idle_timeout: float | None = 300.0
    """Seconds without traffic either way before a TCP connection is closed; ``None`` keeps it open. Must be
    well above the RFC 5626 keep-alive interval of the clients, whose pings count as traffic."""
    connect_timeout: float = 10.0
    """Seconds to open an outbound TCP connection before its queued messages fail."""
    max_write_buffer: int = 256 * 1024
    """Bytes queued for one TCP connection beyond which it is cut off."""
    max_header_size: int = 16_384
    """TCP framing: largest header block."""
    max_body_size: int = 49_152
    """TCP framing: largest Content-Length."""
    close_timeout: float = 2.0
    """Seconds :meth:`SipTransport.close` lets connections flush before aborting them."""


@dataclass(slots=True)
class TransportStats:
    """Counters. ``datagrams_*`` are UDP, ``messages_*`` framed TCP messages; ``keepalives_in`` counts CRLF-only
    datagrams and CRLF/CRLFCRLF on connections; ``send_errors`` counts messages not sent (each also reported as
    :class:`SendFailed`) plus ICMP errors on the UDP socket; ``write_overflows`` counts connections cut off
    because their peer stopped reading."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    keepalives_in: int = 0
    pongs_out: int = 0
    tcp_accepted: int = 0
    tcp_opened: int = 0
    tcp_closed: int = 0
    idle_closed: int = 0
    framing_errors: int = 0
    send_errors: int = 0
    write_overflows: int = 0


@dataclass(frozen=True, slots=True)
class SendFailed:
    """A message the transport could not send: RFC 3261 §17.1.4 / §17.2.4 want the transaction told."""

    destination: tuple[str, int]
    transport: str
    reason: str


def _ip_literal(host: str) -> str | None:
    """The canonical text of an IP literal (brackets dropped, IPv6 compressed), or ``None`` for a hostname."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class SipTransport(Generic[E]):
    """UDP socket and TCP listener on one address and port, serving one :class:`SipCore`.

    Open with ``await SipTransport.start(core, bind, port)``; use as an async context manager or call
    :meth:`close`. After calling into the core from outside (placing a call, hanging up), call :meth:`flush`.
    """

    def __init__(self, core: SipCore[E], bind: str, family: socket.AddressFamily, transports: tuple[str, ...],
                 on_event: Callable[[E], None] | None, on_send_error: Callable[[SendFailed], None] | None,
                 config: TransportConfig) -> None:
        self._loop = asyncio.get_running_loop()
        self._core = core
        self._on_event = on_event
        self._on_send_error = on_send_error
        self.config = config
        self.host = bind
        self.port = 0
        self.transports = transports
        self.stats = TransportStats()
        self._family = family
        # Outbound connections leave from the bound address so the peer sees the host our Via names; a
        # wildcard bind lets the kernel choose.
        self._local_addr = None if ipaddress.ip_address(bind).is_unspecified else (bind, 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: UdpProtocol | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, TcpConnection] = {}
        self._all_connections: set[TcpConnection] = set()
        self._resolving: dict[tuple[str, int, str], list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._flushing = False
        self._closing = False
        self._log = get_logger(component="sip-transport")

    @classmethod
    async def start(cls, core: SipCore[E], bind: str, port: int, transports: Iterable[str] = _TRANSPORTS,
                    on_event: Callable[[E], None] | None = None, *, config: TransportConfig | None = None,
                    on_send_error: Callable[[SendFailed], None] | None = None) -> SipTransport[E]:
        """Bind UDP and/or TCP on ``bind`` (an IPv4 or IPv6 literal) and ``port`` (0: any free port, the
        same for both; read it back from :attr:`port`)."""
        chosen = tuple(t.lower() for t in transports)
        if not chosen or any(t not in _TRANSPORTS for t in chosen):
            raise ValueError(f"transports must be a non-empty subset of {_TRANSPORTS}, got {chosen}")
        host = _ip_literal(bind)
        if host is None:
            raise ValueError(f"SIP bind address must be an IP literal, got {bind!r}")
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        transport = cls(core, host, family, chosen, on_event, on_send_error, config or TransportConfig())
        for attempt in range(_BIND_ATTEMPTS if port == 0 else 1):
            try:
                await transport._listen(port)
                break
            except OSError:
                await transport._close_listeners()
                if port != 0 or attempt == _BIND_ATTEMPTS - 1:
                    raise
                # Port 0: UDP got a free port that TCP could not have; try another pair.
        return transport

    async def _listen(self, port: int) -> None:
        if "udp" in self.transports:
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                if self._family == socket.AF_INET6:
                    # One family per transport, like asyncio's TCP listener: no IPv4-mapped sources on "::".
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setblocking(False)
                # No SO_REUSEADDR: on Linux it would let a second process bind the same UDP port.
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                raise
            port = sock.getsockname()[1]
            protocol = self._udp_protocol = UdpProtocol(self)
            self._udp, _ = await self._loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        if "tcp" in self.transports:
            self._server = await self._loop.create_server(
                lambda: TcpConnection(self, None), self.host, port, family=self._family, reuse_address=True
            )
            port = self._server.sockets[0].getsockname()[1]
        self.port = port

    async def _close_listeners(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._udp_protocol is not None:
            await self._udp_protocol.closed
            self._udp_protocol = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def connections(self) -> frozenset[Address]:
        """Remote (host, port) of every TCP connection in the reuse table, including ones still connecting."""
        return frozenset(self._connections)

    def flush(self) -> None:
        """Send the core's output, deliver its events, re-arm its timer; safe to call from ``on_event``."""
        if self._flushing or self._closing:
            return  # the running flush loops until the core is drained, so a nested call has nothing to add
        self._flushing = True
        try:
            core = self._core
            while True:
                for outgoing in core.datagrams_to_send():
                    self.send(outgoing.data, outgoing.destination, outgoing.transport)
                delivered = False
                while (event := core.next_event()) is not None:
                    delivered = True
                    if self._on_event is not None:
                        self._on_event(event)  # may call into the core, hence the loop
                if not delivered:
                    break
        finally:
            self._flushing = False
            self._arm_timer()

    def send(self, data: bytes, destination: tuple[str, int], transport: str) -> None:
        """Send one message as the core asked; failures are counted and reported, never raised."""
        transport = transport.lower()
        host, port = destination
        literal = _ip_literal(host)
        if self._closing:
            self._fail(destination, transport, "transport is closed")
        elif transport not in self.transports:
            self._fail(destination, transport, f"transport {transport!r} is not enabled")
        elif literal is None:
            self._resolve_then_send(host, port, transport, data)
        elif transport == "udp":
            self._send_udp(data, (literal, port))
        else:
            self._send_tcp(data, (literal, port))

    def _send_udp(self, data: bytes, addr: Address) -> None:
        udp = self._udp
        if udp is None or udp.is_closing():
            self._fail(addr, "udp", "UDP socket is closed")
        elif (6 if self._family == socket.AF_INET6 else 4) != ipaddress.ip_address(addr[0]).version:
            self._fail(addr, "udp", "destination is not of the bound address family")
        elif len(data) > _MAX_UDP_PAYLOAD[self._family]:
            self._fail(addr, "udp", f"{len(data)} bytes do not fit in a UDP datagram")
        elif self._udp_protocol is not None and self._udp_protocol.paused:
            self._fail(addr, "udp", "UDP send buffer is full")
        else:
            udp.sendto(data, addr)
            self.stats.datagrams_out += 1

    def _send_tcp(self, data: bytes, key: Address) -> None:
        conn = self._connections.get(key)
        if conn is None:
            conn = TcpConnection(self, key)
            self._connections[key] = conn
            self._all_connections.add(conn)
            self._spawn(self._dial(conn, key))
        if conn.transport is None:
            if not conn.queue(data):
                self._fail(key, "tcp", "write buffer full while connecting")
        else:
            self._write(conn, data)

    def _write(self, conn: TcpConnection, data: bytes, *, message: bool = True) -> None:
        transport = conn.transport
        if transport is None or transport.is_closing():
            self._fail(conn.key, "tcp", "connection is closing")
            return
        # write() never blocks: what the kernel does not take is buffered, and the bound below is what keeps a
        # peer that stopped reading from growing that buffer without limit.
        transport.write(data)
        conn.touch()
        if message:
            self.stats.messages_out += 1
        if transport.get_write_buffer_size() > self.config.max_write_buffer:
            self.stats.write_overflows += 1
            self._log.info("sip tcp peer not reading, connection cut", peer=conn.key)
            transport.abort()

    async def _dial(self, conn: TcpConnection, key: Address) -> None:
        reason = "transport closed"
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await self._loop.create_connection(lambda: conn, key[0], key[1], local_addr=self._local_addr)
        except (OSError, TimeoutError) as exc:
            reason = f"connect failed: {str(exc) or type(exc).__name__}"
            self._log.info("sip tcp connect failed", peer=key, error=reason)
        finally:
            if conn.transport is None:  # never connected (failed, timed out or cancelled by close())
                self._unregister(conn)
                conn.fail_pending(reason)
                if not conn.closed.done():
                    conn.closed.set_result(None)

    def _resolve_then_send(self, host: str, port: int, transport: str, data: bytes) -> None:
        # Plain A/AAAA look-up off the loop; RFC 3263 NAPTR/SRV selection is the core's business. Messages for
        # a name being resolved wait in order behind the first.
        key = (host.lower(), port, transport)
        waiting = self._resolving.get(key)
        if waiting is not None:
            waiting.append(data)
            return
        self._resolving[key] = [data]
        self._spawn(self._resolve(key))

    async def _resolve(self, key: tuple[str, int, str]) -> None:
        host, port, transport = key
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        try:
            infos = await self._loop.getaddrinfo(host, port, family=self._family, type=kind)
            address: str | None = str(infos[0][4][0]) if infos else None
            error = "no address"
        except OSError as exc:
            address, error = None, str(exc)
        for data in self._resolving.pop(key, []):
            if address is None:
                self._fail((host, port), transport, f"cannot resolve {host!r}: {error}")
            else:
                self.send(data, (address, port), transport)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail(self, destination: tuple[str, int], transport: str, reason: str) -> None:
        self.stats.send_errors += 1
        if self._on_send_error is not None:
            self._on_send_error(SendFailed(destination, transport, reason))

    def _udp_received(self, data: bytes, source: Address) -> None:
        if self._closing:
            return
        if data[:1] in (b"\r", b"\n") and is_keepalive(data):
            self.stats.keepalives_in += 1
            return
        self.stats.datagrams_in += 1
        self._core.receive(data, source, "udp", self._loop.time())
        self.flush()

    def _framing_error(self, conn: TcpConnection, exc: RemoteProtocolError) -> None:
        # §18.3: without a trustworthy Content-Length the next message cannot be found, so the stream is lost.
        self.stats.framing_errors += 1
        self._log.info("sip tcp framing error, connection closed", peer=conn.key, error=str(exc))
        if conn.transport is not None:
            conn.transport.close()

    def _register(self, conn: TcpConnection) -> None:
        self._connections[conn.key] = conn  # a newer connection from the same address takes over the entry
        self._all_connections.add(conn)

    def _unregister(self, conn: TcpConnection) -> None:
        if self._connections.get(conn.key) is conn:
            del self._connections[conn.key]
        if conn in self._all_connections:
            self._all_connections.discard(conn)
            if conn.transport is not None:
                self.stats.tcp_closed += 1

    def _arm_timer(self) -> None:
        when = self._core.get_timer()
        if self._timer is not None:
            if when is not None and self._timer.when() == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None and not self._closing:
            self._timer = self._loop.call_at(when, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        self._core.handle_timer(self._loop.time())
        self.flush()

    async def close(self) -> None:
        """Stop listening and close every connection (aborting those that do not flush in time)."""
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        connections = list(self._all_connections)
        for conn in connections:
            if conn.transport is not None:
                conn.transport.close()
        waiting = [conn.closed for conn in connections]
        if self._udp is not None:
            self._udp.close()
        if self._udp_protocol is not None:
            waiting.append(self._udp_protocol.closed)
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=self.config.close_timeout)
            if late:
                for conn in connections:
                    if conn.transport is not None and not conn.closed.done():
                        conn.transport.abort()
                if self._udp is not None:
                    self._udp.abort()
                await asyncio.wait(late)
        self._udp = None
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> SipTransport[E]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
