"""The asyncio edge of the media plane: RTP port allocation, one call's UDP sockets, and the shared media clock.

This is the only module of ``rtp`` that imports asyncio. It makes no protocol decisions: datagrams go to the
session core with the loop time at which they arrived, and packets the core built go out unchanged.

- :class:`PortPool` hands out an even RTP port and, without rtcp-mux, the odd port above it for RTCP
  (RFC 3550 §11: "RTP SHOULD use an even destination port number and the corresponding RTCP stream SHOULD use
  the next higher (odd) destination port number").
- :class:`RtpTransport` is one call's symmetric RTP socket (send from the port we receive on, so NATs and
  latching peers see one address) plus the RTCP socket or the RFC 5761 §4 demultiplexer on a muxed port.
- :class:`MediaStream` is one call's media: an :class:`rtp.session.RtpSession` on an :class:`RtpTransport`,
  ticked by the clock, with its RTCP and media-timeout timer.
- :class:`MediaClock` is one 20 ms tick for every stream of the loop: one timer, one precise wait, then every
  stream sends. asyncio timers wake late (epoll rounds its timeout up to whole milliseconds, then the scheduler
  adds noise), so the clock wakes ``early`` before the deadline and spins on the clock for the rest, once per
  tick for all streams rather than once per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from rtp.errors import RtpError
from rtp.jitter import JitterFrame
from rtp.pacer import PacerSchedule
from rtp.packet import is_rtcp
from rtp.session import RtpSession, SessionConfig, SessionEvent

Address = tuple[Any, ...]
"""A socket address as asyncio reports it: (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6."""

OnDatagram = Callable[[bytes, Address, float, bool], None]
"""``on_datagram(data, addr, now, is_rtcp)``: ``now`` is ``loop.time()`` when the datagram was read."""

# RFC 4594 §4.1 / RFC 3246: telephony media goes in the Expedited Forwarding class.
DSCP_EF = 46
_GRID_EPSILON = 1e-6


class PortsExhaustedError(RtpError):
    """No even port of the pool's range could be bound."""


@dataclass(frozen=True, slots=True)
class PortAllocation:
    """Bound, non-blocking sockets for one stream; ``rtcp_sock`` is ``None`` with rtcp-mux."""

    host: str
    port: int
    rtp_sock: socket.socket
    rtcp_sock: socket.socket | None

    @property
    def rtcp_port(self) -> int:
        return self.port if self.rtcp_sock is None else self.port + 1


class PortPool:
    """Even RTP ports from ``port_min..port_max`` on one local address, handed out round-robin.

    Round-robin rather than lowest-first so a port just released is the last to be reused: late packets of
    the previous call then do not land in the next one. A port that fails to bind (used by another program)
    is skipped.
    """

    def __init__(self, port_min: int, port_max: int, host: str = "127.0.0.1", *, dscp: int | None = DSCP_EF) -> None:
        if not 1 <= port_min <= port_max <= 65535:
            raise ValueError(f"RTP port range {port_min}-{port_max} is not within 1-65535")
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            raise ValueError(f"RTP host must be a literal IP address, got {host!r}") from None
        first = port_min + (port_min & 1)
        if first > port_max:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even port")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.family = socket.AF_INET6 if version == 6 else socket.AF_INET
        self.dscp = dscp
        self._first = first
        self._count = (port_max - first) // 2 + 1
        self._cursor = 0
        self._in_use: dict[int, PortAllocation] = {}

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    async def allocate(self, rtcp_mux: bool = False) -> PortAllocation:
        for _ in range(self._count):
            port = self._first + 2 * self._cursor
            self._cursor = (self._cursor + 1) % self._count
            if port in self._in_use or (not rtcp_mux and port + 1 > self.port_max):
                continue
            rtp_sock = self._bind(port)
            if rtp_sock is None:
                continue
            rtcp_sock = None
            if not rtcp_mux:
                rtcp_sock = self._bind(port + 1)
                if rtcp_sock is None:
                    rtp_sock.close()
                    continue
            allocation = PortAllocation(self.host, port, rtp_sock, rtcp_sock)
            self._in_use[port] = allocation
            return allocation
        raise PortsExhaustedError(
            f"no free even RTP port in {self.port_min}-{self.port_max} on {self.host} "
            f"({len(self._in_use)} held by this pool, rtcp_mux={rtcp_mux})"
        )

    def release(self, allocation: PortAllocation) -> None:
        """Close the sockets (if still open) and return the port; releasing twice is harmless."""
        allocation.rtp_sock.close()
        if allocation.rtcp_sock is not None:
            allocation.rtcp_sock.close()
        # Only this allocation's own hold: a late second release must not free the port's next owner.
        if self._in_use.get(allocation.port) is allocation:
            del self._in_use[allocation.port]

    def _bind(self, port: int) -> socket.socket | None:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # No SO_REUSEADDR: on Linux it would let two calls bind the same UDP port.
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            return None
        if self.dscp is not None:
            level, option = ((socket.IPPROTO_IPV6, socket.IPV6_TCLASS) if self.family == socket.AF_INET6
                             else (socket.IPPROTO_IP, socket.IP_TOS))
            with contextlib.suppress(OSError):  # marking is best effort: some sandboxes refuse it
                sock.setsockopt(level, option, self.dscp << 2)
        return sock


class _Endpoint(asyncio.DatagramProtocol):
    __slots__ = ("_clock", "_demux", "_is_rtcp", "_owner")

    def __init__(self, owner: RtpTransport, is_rtcp_port: bool, demux: bool) -> None:
        self._owner = owner
        self._is_rtcp = is_rtcp_port
        self._demux = demux
        self._clock = owner.loop.time

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        rtcp = is_rtcp(data) if self._demux else self._is_rtcp
        self._owner.on_datagram(data, addr, self._clock(), rtcp)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable while the peer is not up yet) must not end the call.
        self._owner.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._endpoint_lost()


class RtpTransport:
    """One call's RTP (and RTCP) sockets. Open with ``await RtpTransport.open(pool, on_datagram)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: PortPool, allocation: PortAllocation,
                 on_datagram: OnDatagram) -> None:
        self.loop = loop
        self.pool = pool
        self.allocation = allocation
        self.on_datagram = on_datagram
        self.rtcp_mux = allocation.rtcp_sock is None
        self.errors = 0
        """ICMP errors reported on the sockets."""
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._sock_sendto: Callable[[bytes, Address], int] = allocation.rtp_sock.sendto
        self._direct: Callable[[bytes, Address], int] | None = None
        self._open_endpoints = 0
        self._closing = False
        self._closed = loop.create_future()

    @classmethod
    async def open(cls, pool: PortPool, on_datagram: OnDatagram, *, rtcp_mux: bool = False) -> RtpTransport:
        loop = asyncio.get_running_loop()
        allocation = await pool.allocate(rtcp_mux=rtcp_mux)
        transport = cls(loop, pool, allocation, on_datagram)
        try:
            transport._rtp = await transport._attach(allocation.rtp_sock, is_rtcp_port=False)
            transport._direct = transport._sock_sendto
            if allocation.rtcp_sock is not None:
                transport._rtcp = await transport._attach(allocation.rtcp_sock, is_rtcp_port=True)
        except BaseException:
            transport.close()
            # Nothing can be queued on a socket that never sent, so the ports can go back at once rather
            # than after asyncio's deferred close.
            pool.release(allocation)
            raise
        return transport

    async def _attach(self, sock: socket.socket, is_rtcp_port: bool) -> asyncio.DatagramTransport:
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Endpoint(self, is_rtcp_port, demux=self.rtcp_mux), sock=sock)
        self._open_endpoints += 1
        return transport

    @property
    def local_address(self) -> tuple[str, int]:
        return self.allocation.host, self.allocation.port

    @property
    def rtp_port(self) -> int:
        return self.allocation.port

    @property
    def rtcp_port(self) -> int:
        return self.allocation.rtcp_port

    @property
    def closed(self) -> bool:
        return self._closing

    def send_rtp(self, data: bytes, addr: Address) -> None:
        # The per-packet path goes straight to the non-blocking socket: the transport's bookkeeping costs ~3 us
        # a packet, a fifth of a send at a few hundred calls. asyncio takes over only when the kernel buffer is
        # full (it queues, then flushes in order when writable), and hands back once its queue is empty.
        direct = self._direct
        if direct is not None:
            try:
                direct(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._direct = None
            except OSError:
                self.errors += 1
                return
        transport = self._rtp
        if transport is None or self._closing:
            return
        transport.sendto(data, addr)
        # The selector transports have get_write_buffer_size (not in DatagramTransport's declared interface).
        buffered: Callable[[], int] | None = getattr(transport, "get_write_buffer_size", None)
        if buffered is not None and buffered() == 0:
            self._direct = self._sock_sendto

    def send_rtcp(self, data: bytes, addr: Address) -> None:
        # RFC 5761 §4: with rtcp-mux, RTCP leaves from the RTP port.
        transport = self._rtp if self.rtcp_mux else self._rtcp
        if transport is not None and not self._closing:
            transport.sendto(data, addr)

    def close(self) -> None:
        """Stop receiving; the ports return to the pool once asyncio has closed the sockets (``wait_closed``)."""
        if self._closing:
            return
        self._closing = True
        self._direct = None
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        if self._open_endpoints == 0:
            self._release()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def _endpoint_lost(self) -> None:
        self._open_endpoints -= 1
        self._direct = None
        if self._open_endpoints == 0:
            self._closing = True
            self._release()

    def _release(self) -> None:
        self.pool.release(self.allocation)
        self._closed.set_result(None)  # reached once: when the last endpoint closes, or at close() if none opened


class TickListener(Protocol):
    def on_tick(self, now: float) -> None: ...


class MediaClock:
    """One ``interval`` tick for every registered stream of the loop, on an absolute grid ``anchor + k*interval``.

    Each tick calls ``on_tick(now)`` of every listener in registration order, with ``now`` (loop time, at or
    just after the deadline). After a stall the clock resumes on the grid with a single tick: the listeners'
    own :class:`rtp.pacer.PacerSchedule` decides how many frames to send and which to skip. The timer runs only
    while listeners are registered. A listener that raises is reported to the loop's exception handler and
    unregistered, so one broken call cannot stop the media of the others.
    """

    def __init__(self, interval: float = 0.020, *, early: float = 0.002,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"clock interval must be positive, got {interval}")
        if not 0 <= early < interval:
            raise ValueError(f"clock early wake-up {early} must be in [0, interval)")
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.interval = interval
        self.early = early
        self.anchor = self.loop.time()
        self.ticks = 0
        self.missed_ticks = 0
        """Grid points passed without a tick (the loop was stalled)."""
        self.late_ticks = 0
        """Ticks whose timer woke after the deadline, so the early wake-up did not absorb the lateness."""
        self.max_lateness = 0.0
        self.spin_time = 0.0
        """Seconds spent in the precise wait (CPU burnt on purpose)."""
        self._listeners: dict[TickListener, None] = {}
        self._k = 0
        self._deadline = self.anchor
        self._handle: asyncio.TimerHandle | None = None
        self._firing = False

    def grid_time(self, after: float) -> float:
        """The first tick deadline at or after ``after``: a start for a stream's PacerSchedule on this grid."""
        k = math.ceil((after - self.anchor - _GRID_EPSILON) / self.interval)
        return self.anchor + k * self.interval

    @property
    def deadline(self) -> float:
        """The grid deadline of the tick being run while listeners run, else of the next tick."""
        if self._handle is None and not self._firing:
            return self.grid_time(self.loop.time() + _GRID_EPSILON)
        return self._deadline

    @property
    def running(self) -> bool:
        return self._handle is not None or self._firing

    def __len__(self) -> int:
        return len(self._listeners)

    def register(self, listener: TickListener) -> None:
        self._listeners[listener] = None
        if self._handle is None and not self._firing:
            self._arm(self.loop.time())

    def unregister(self, listener: TickListener) -> None:
        self._listeners.pop(listener, None)
        if not self._listeners and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        self._listeners.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, now: float) -> None:
        k = math.floor((now - self.anchor + _GRID_EPSILON) / self.interval) + 1
        if self.ticks and k > self._k + 1:
            self.missed_ticks += k - self._k - 1
        self._k = k
        self._deadline = self.anchor + k * self.interval
        self._handle = self.loop.call_at(self._deadline - self.early, self._fire)

    def _fire(self) -> None:
        clock = self.loop.time
        deadline = self._deadline
        woke = now = clock()
        while now < deadline:
            now = clock()
        self.spin_time += now - woke
        lateness = woke - deadline
        if lateness > 0:
            self.late_ticks += 1
            self.max_lateness = max(self.max_lateness, lateness)
        self.ticks += 1
        self._handle = None
        self._firing = True
        listeners = self._listeners
        try:
            for listener in list(listeners):
                if listener not in listeners:
                    continue  # unregistered by an earlier listener during this tick
                try:
                    listener.on_tick(now)
                except Exception as exc:
                    listeners.pop(listener, None)
                    self.loop.call_exception_handler({
                        "message": "media clock listener failed and was unregistered",
                        "exception": exc,
                        "listener": listener,
                    })
        finally:
            self._firing = False
            if listeners:
                self._arm(now)


class Timer:
    """One re-armable ``loop.call_at`` for a sans-I/O core's ``get_timer()`` / ``handle_timer(now)`` pair
    (RTCP report interval, media timeout): ``set(core.get_timer())`` after every interaction with the core."""

    __slots__ = ("_callback", "_handle", "_loop", "_when")

    def __init__(self, callback: Callable[[float], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._callback = callback
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None

    @property
    def when(self) -> float | None:
        return self._when

    def set(self, when: float | None) -> None:
        if when == self._when:  # _when is set exactly while a handle is armed
            return
        self.cancel()
        if when is not None:
            self._when = when
            self._handle = self._loop.call_at(when, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._when = None

    def _fire(self) -> None:
        self._handle = None
        self._when = None
        self._callback(self._loop.time())


class FrameSink(Protocol):
    def __call__(self, frame: JitterFrame, now: float) -> None: ...


class FrameSource(Protocol):
    def __call__(self, now: float) -> npt.NDArray[np.int16] | None: ...


class MediaStream:
    """One call's media on the loop: an :class:`rtp.session.RtpSession` on an :class:`RtpTransport`, paced by
    the shared :class:`MediaClock`.

    Each tick pops the caller's next frame from the jitter buffer into ``sink`` and sends ``source``'s next
    frame (codec-rate int16, or ``None`` for silence). A stalled loop is handled by the stream's own
    :class:`rtp.pacer.PacerSchedule`: at most two frames go out back to back, older slots are skipped with their
    timestamps consumed, and the jitter buffer is still popped once per elapsed slot so its timeline holds.
    Session events (latching, DTMF, RTCP BYE, media timeout) go to ``on_event``.
    """

    def __init__(self, session: RtpSession, transport: RtpTransport, clock: MediaClock, *,
                 sink: FrameSink, source: FrameSource, on_event: Callable[[SessionEvent], None],
                 wallclock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.transport = transport
        self.clock = clock
        self._sink = sink
        self._source = source
        self._on_event = on_event
        self._wallclock = wallclock
        self._schedule = PacerSchedule(clock.grid_time(clock.loop.time()), clock.interval)
        self._timer = Timer(self._on_timer, clock.loop)
        self.sending = True
        """False while our direction does not send (we were put on hold with recvonly/inactive)."""
        self._closed = False
        transport.on_datagram = self._on_datagram
        clock.register(self)
        self._timer.set(session.get_timer())

    @classmethod
    async def open(cls, pool: PortPool, clock: MediaClock, config: SessionConfig, *, sink: FrameSink,
                   source: FrameSource, on_event: Callable[[SessionEvent], None], rtcp_mux: bool = False,
                   remote_rtp: Address | None = None, remote_rtcp: Address | None = None) -> MediaStream:
        transport = await RtpTransport.open(pool, _ignore, rtcp_mux=rtcp_mux)
        session = RtpSession(config, remote_rtp, remote_rtcp, clock.loop.time())
        return cls(session, transport, clock, sink=sink, source=source, on_event=on_event)

    def _on_datagram(self, data: bytes, addr: Address, now: float, is_rtcp: bool) -> None:
        self.session.receive(data, addr, now, rtcp_port=is_rtcp)
        self._drain()

    def on_tick(self, now: float) -> None:
        due = self._schedule.poll(now)
        session = self.session
        if due.skipped:
            session.skip(due.skipped)
        remote = session.remote_rtp
        # Send first: every stream's packet of this tick goes out before anyone decodes, so the last stream
        # of a busy tick is not late by the others' jitter-buffer and resampling work.
        for _ in range(due.send):
            pcm = self._source(now)
            if not self.sending or remote is None:
                session.skip(1)
                continue
            packet = session.next_packet(pcm, now)
            if packet is not None:
                self.transport.send_rtp(packet, remote)
        for _ in range(due.send + due.skipped):
            self._sink(session.pop_frame(now), now)

    def _on_timer(self, now: float) -> None:
        session = self.session
        session.handle_timer(now)
        report = session.rtcp_due(now, self._wallclock())
        if report is not None and session.remote_rtcp is not None:
            self.transport.send_rtcp(report, session.remote_rtcp)
        self._drain()

    def _drain(self) -> None:
        session = self.session
        while (event := session.next_event()) is not None:
            self._on_event(event)
        if not self._closed:
            self._timer.set(session.get_timer())

    def close(self, reason: str | None = None) -> None:
        """Send the RTCP BYE (RFC 3550 §6.6), stop the tick and release the ports."""
        if self._closed:
            return
        self._closed = True
        self.clock.unregister(self)
        self._timer.cancel()
        if self.session.remote_rtcp is not None:
            self.transport.send_rtcp(self.session.bye(self.clock.loop.time(), self._wallclock(), reason),
                                     self.session.remote_rtcp)
        self.transport.close()

    async def aclose(self, reason: str | None = None) -> None:
        self.close(reason)
        await self.transport.wait_closed()


def _ignore(data: bytes, addr: Address, now: float, is_rtcp: bool) -> None:
    """Placeholder receiver until the stream that owns the transport takes over."""


__all__ = [
    "DSCP_EF", "Address", "FrameSink", "FrameSource", "MediaClock", "MediaStream", "OnDatagram", "PortAllocation",
    "PortPool", "PortsExhaustedError", "RtpTransport", "TickListener", "Timer",
]
