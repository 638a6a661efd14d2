"""The asyncio protocol objects behind :class:`sipagent.transport.SipTransport`: its UDP socket and TCP connections.

They only move bytes: received data goes to the owning transport (and from there to the sans-I/O core), and the
owner decides everything else. TCP framing follows RFC 3261 §18.3 and keep-alives RFC 5626 §4.4.1.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.parser import PING, PONG, StreamFramer

if TYPE_CHECKING:
    from sipagent.transport import Address, SipTransport

__all__ = ["TcpConnection", "UdpProtocol"]


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport[Any]) -> None:
        self._owner = owner
        self.closed: asyncio.Future[None] = owner._loop.create_future()
        self.paused = False

    def pause_writing(self) -> None:  # the socket buffer passed asyncio's high-water mark: drop until it drains
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._owner._udp_received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier sendto (port unreachable, ...): nothing to retry here, the core's
        # transaction timers decide what happens to the request.
        self._owner.stats.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted (``key`` learnt from the peer name) or opened by us (``key`` given)."""

    def __init__(self, owner: SipTransport[Any], key: Address | None) -> None:
        self._owner = owner
        self.accepted = key is None
        self.key: Address = ("", 0) if key is None else key
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = owner._loop.create_future()
        self._config = owner.config
        self._framer = StreamFramer(max_header_size=self._config.max_header_size,
                                    max_body_size=self._config.max_body_size)
        self._pending: list[bytes] = []  # written before the connection is up
        self._pending_size = 0
        self._last_active = owner._loop.time()
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        owner = self._owner
        if owner._closing:
            transport.abort()
            return
        if self.accepted:
            peer = transport.get_extra_info("peername")
            self.key = (peer[0], peer[1])
            owner.stats.tcp_accepted += 1
        else:
            owner.stats.tcp_opened += 1
        owner._register(self)
        self._last_active = owner._loop.time()
        self._arm_idle()
        pending, self._pending, self._pending_size = self._pending, [], 0
        for data in pending:
            owner._write(self, data)

    def data_received(self, data: bytes) -> None:
        owner = self._owner
        if owner._closing:
            return
        now = self._last_active = owner._loop.time()
        try:
            items = self._framer.feed(data)
        except RemoteProtocolError as exc:
            owner._framing_error(self, exc)
            return
        got_message = False
        for item in items:
            if item == PING:
                owner.stats.keepalives_in += 1
                owner.stats.pongs_out += 1
                # RFC 5626 §4.4.1: the pong goes out at once, the core never sees the ping
                owner._write(self, PONG, message=False)
            elif item == PONG:
                owner.stats.keepalives_in += 1  # a lone CRLF: a pong to a ping of ours, or padding
            else:
                owner.stats.messages_in += 1
                owner._core.receive(item, self.key, "tcp", now)
                got_message = True
        if got_message:
            owner.flush()
        if self._framer.broken:
            try:  # the framer raises the error it stored, which names what was wrong
                self._framer.feed(b"")
            except RemoteProtocolError as exc:
                owner._framing_error(self, exc)

    def eof_received(self) -> bool:
        return False  # SIP has no use for a half-open connection: let asyncio close it once writes are flushed

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._owner._unregister(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def queue(self, data: bytes) -> bool:
        """Hold ``data`` until the connection is up; False when that would pass the write buffer bound."""
        if self._pending_size + len(data) > self._config.max_write_buffer:
            return False
        self._pending.append(data)
        self._pending_size += len(data)
        return True

    def fail_pending(self, reason: str) -> None:
        pending, self._pending, self._pending_size = self._pending, [], 0
        for _ in pending:
            self._owner._fail(self.key, "tcp", reason)

    def touch(self) -> None:
        self._last_active = self._owner._loop.time()

    def _arm_idle(self) -> None:
        timeout = self._config.idle_timeout
        if timeout is not None:
            self._idle = self._owner._loop.call_at(self._last_active + timeout, self._check_idle)

    def _check_idle(self) -> None:
        # Traffic does not move the timer (that would cost a cancel and a call_at per message); the timer
        # re-arms itself from the last activity instead.
        self._idle = None
        timeout = self._config.idle_timeout
        if timeout is None or self.transport is None or self.transport.is_closing():
            return
        if self._owner._loop.time() >= self._last_active + timeout:
            self._owner.stats.idle_closed += 1
            self.transport.close()
        else:
            self._arm_idle()
