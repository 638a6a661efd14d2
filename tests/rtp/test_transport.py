"""The asyncio media edge on real loopback sockets: port pool, symmetric RTP/RTCP sockets, rtcp-mux, media clock."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rtp.pacer import PacerSchedule
from rtp.packet import build_rtp
from rtp.transport import Address, MediaClock, PortPool, PortsExhaustedError, RtpTransport, Timer
from tests.conftest import REPO

pytestmark = pytest.mark.aio


def _bindable(family: socket.AddressFamily, host: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_range(size: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """An even-based range of ``size`` ports that are all free right now (other tests may run in parallel)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000) & ~1
        if all(_bindable(family, host, port) for port in range(base, base + size)):
            return base, base + size - 1
    pytest.skip("no free loopback port range found")


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    return _bindable(socket.AF_INET6, "::1", 0)


HOSTS = ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(not ipv6_loopback(), reason="no ::1"))]


class Inbox:
    """An on_datagram callback that queues what arrives, for awaiting instead of sleeping."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Address, float, bool]] = asyncio.Queue()

    def __call__(self, data: bytes, addr: Address, now: float, is_rtcp: bool) -> None:
        self.queue.put_nowait((data, addr, now, is_rtcp))

    async def get(self) -> tuple[bytes, Address, float, bool]:
        async with asyncio.timeout(1.0):
            return await self.queue.get()


def receiver_report(ssrc: int) -> bytes:
    # RFC 3550 §6.4.2: an RR with no report blocks: V=2, RC=0, PT=201, length=1 (two 32-bit words minus one).
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


async def test_ports_are_even_within_range_with_rtcp_above() -> None:
    low, high = free_range(12)
    pool = PortPool(low + 1, high)  # an odd lower bound: the first port handed out is the next even one
    allocations = [await pool.allocate() for _ in range(3)]
    try:
        for allocation in allocations:
            assert allocation.port % 2 == 0
            assert low + 1 <= allocation.port and allocation.rtcp_port <= high
            assert allocation.rtcp_port == allocation.port + 1  # RFC 3550 §11
            assert allocation.rtp_sock.getsockname()[1] == allocation.port
            assert allocation.rtcp_sock is not None
            assert allocation.rtcp_sock.getsockname()[1] == allocation.port + 1
        assert len({a.port for a in allocations}) == 3
        assert pool.in_use == {a.port for a in allocations}
    finally:
        for allocation in allocations:
            pool.release(allocation)
    assert pool.in_use == frozenset()


async def test_ports_in_use_elsewhere_are_skipped() -> None:
    low, high = free_range(6)
    blockers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    blockers[0].bind(("127.0.0.1", low + 1))  # the RTCP port of the first pair
    blockers[1].bind(("127.0.0.1", low + 2))  # the RTP port of the second pair
    try:
        pool = PortPool(low, high)
        allocation = await pool.allocate()
        assert allocation.port == low + 4
        pool.release(allocation)
        # With rtcp-mux only the even port matters, so the first pair is usable again.
        muxed = await pool.allocate(rtcp_mux=True)
        assert muxed.rtcp_sock is None and muxed.rtcp_port == muxed.port
        assert muxed.port == low  # round-robin: the cursor wrapped past the end of the range
        pool.release(muxed)
    finally:
        for blocker in blockers:
            blocker.close()


async def test_exhaustion_raises_and_released_ports_come_back() -> None:
    low, high = free_range(4)
    pool = PortPool(low, high)
    first, second = await pool.allocate(), await pool.allocate()
    assert {first.port, second.port} == {low, low + 2}
    with pytest.raises(PortsExhaustedError, match=f"{low}-{high}"):
        await pool.allocate()
    pool.release(first)
    again = await pool.allocate()
    assert again.port == first.port
    pool.release(again)
    pool.release(second)
    pool.release(second)  # twice is harmless


async def test_an_even_port_max_has_no_room_for_its_rtcp_port() -> None:
    low, _ = free_range(4)
    pool = PortPool(low, low + 2, dscp=None)
    allocation = await pool.allocate()
    assert allocation.port == low
    with pytest.raises(PortsExhaustedError):
        await pool.allocate()  # low + 2 would need low + 3 for RTCP
    muxed = await pool.allocate(rtcp_mux=True)
    assert muxed.port == low + 2
    pool.release(allocation)
    pool.release(muxed)


def test_pool_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="even"):
        PortPool(40001, 40001)
    with pytest.raises(ValueError, match="literal IP"):
        PortPool(40000, 40010, "localhost")
    with pytest.raises(ValueError, match="1-65535"):
        PortPool(0, 10)


async def test_transport_close_releases_its_ports() -> None:
    low, high = free_range(2)
    pool = PortPool(low, high)
    transport = await RtpTransport.open(pool, Inbox())
    assert transport.local_address == ("127.0.0.1", low)
    with pytest.raises(PortsExhaustedError):
        await pool.allocate()
    transport.close()
    await transport.wait_closed()
    assert pool.in_use == frozenset()
    assert _bindable(socket.AF_INET, "127.0.0.1", low) and _bindable(socket.AF_INET, "127.0.0.1", low + 1)
    reopened = await RtpTransport.open(pool, Inbox())
    assert reopened.rtp_port == low
    reopened.close()
    await reopened.wait_closed()


@pytest.mark.parametrize("host", HOSTS)
async def test_symmetric_rtp_and_rtcp_between_two_transports(host: str) -> None:
    low, high = free_range(8, host)
    pool = PortPool(low, high, host)
    inbox_a, inbox_b = Inbox(), Inbox()
    a = await RtpTransport.open(pool, inbox_a)
    b = await RtpTransport.open(pool, inbox_b)
    try:
        rtp = build_rtp(0, 1, 160, 0xA, b"\xff" * 160)
        a.send_rtp(rtp, (host, b.rtp_port))
        data, addr, now, is_rtcp = await inbox_b.get()
        assert (data, is_rtcp) == (rtp, False)
        assert addr[:2] == (host, a.rtp_port)  # symmetric RTP: sent from the port we receive on
        assert now <= asyncio.get_running_loop().time()
        rr = receiver_report(0xB)
        b.send_rtcp(rr, (host, a.rtcp_port))
        data, addr, _, is_rtcp = await inbox_a.get()
        assert (data, is_rtcp) == (rr, True)
        assert addr[:2] == (host, b.rtcp_port)
    finally:
        a.close()
        b.close()
        await a.wait_closed()
        await b.wait_closed()
    assert pool.in_use == frozenset()


async def test_rtcp_mux_demultiplexes_on_one_port() -> None:
    low, high = free_range(4)
    pool = PortPool(low, high)
    inbox_a, inbox_b = Inbox(), Inbox()
    a = await RtpTransport.open(pool, inbox_a, rtcp_mux=True)
    b = await RtpTransport.open(pool, inbox_b, rtcp_mux=True)
    try:
        assert a.rtcp_port == a.rtp_port
        dest = ("127.0.0.1", b.rtp_port)
        rr = receiver_report(0xA)
        rtp = build_rtp(96, 7, 320, 0xA, b"x" * 20, marker=True)  # M=1 with PT 96: second octet 224, still RTP
        a.send_rtcp(rr, dest)
        a.send_rtp(rtp, dest)
        first, second = await inbox_b.get(), await inbox_b.get()
        assert (first[0], first[3]) == (rr, True)
        assert (second[0], second[3]) == (rtp, False)
        assert first[1][1] == second[1][1] == a.rtp_port  # RFC 5761 §4: RTCP leaves from the RTP port too
    finally:
        a.close()
        b.close()
        await a.wait_closed()
        await b.wait_closed()


async def test_a_full_socket_buffer_hands_sending_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    low, high = free_range(4)
    pool = PortPool(low, high)
    inbox = Inbox()
    a = await RtpTransport.open(pool, Inbox(), rtcp_mux=True)
    b = await RtpTransport.open(pool, inbox, rtcp_mux=True)
    dest = ("127.0.0.1", b.rtp_port)
    attempts: list[bytes] = []

    def full(data: bytes, addr: Address) -> int:
        attempts.append(data)
        raise BlockingIOError

    def unreachable(data: bytes, addr: Address) -> int:
        raise OSError("network unreachable")

    try:
        monkeypatch.setattr(a, "_direct", full)
        a.send_rtp(b"queued by asyncio", dest)  # EAGAIN on the direct path: asyncio's transport sends it
        assert attempts == [b"queued by asyncio"]
        assert (await inbox.get())[0] == b"queued by asyncio"
        a.send_rtp(b"direct again", dest)  # asyncio's queue was empty, so the direct path is back
        assert attempts == [b"queued by asyncio"]
        assert (await inbox.get())[0] == b"direct again"
        monkeypatch.setattr(a, "_direct", full)
        assert a._rtp is not None
        monkeypatch.setattr(a._rtp, "get_write_buffer_size", lambda: 172)  # asyncio still has a queue
        a.send_rtp(b"one", dest)
        a.send_rtp(b"two", dest)  # stays behind asyncio's queue, in order
        assert attempts == [b"queued by asyncio", b"one"]
        assert [(await inbox.get())[0] for _ in range(2)] == [b"one", b"two"]
        monkeypatch.undo()
        monkeypatch.setattr(a, "_direct", unreachable)
        a.send_rtp(b"lost", dest)
        assert a.errors == 1
    finally:
        a.close()
        b.close()
        await a.wait_closed()
        await b.wait_closed()


async def test_sending_after_close_is_dropped_quietly() -> None:
    low, high = free_range(2)
    transport = await RtpTransport.open(PortPool(low, high), Inbox())
    transport.close()
    transport.close()
    transport.send_rtp(b"late", ("127.0.0.1", 9))
    transport.send_rtcp(b"late", ("127.0.0.1", 9))
    await transport.wait_closed()
    assert transport.closed


async def test_icmp_errors_are_counted_not_fatal() -> None:
    low, high = free_range(2)
    transport = await RtpTransport.open(PortPool(low, high), Inbox(), rtcp_mux=True)
    assert transport._rtp is not None
    transport._rtp.get_protocol().error_received(ConnectionRefusedError())
    assert transport.errors == 1 and not transport.closed
    transport.close()
    await transport.wait_closed()


async def test_a_failed_open_returns_the_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    low, high = free_range(2)
    pool = PortPool(low, high)
    original = RtpTransport._attach

    async def attach_rtp_only(self: RtpTransport, sock: socket.socket, is_rtcp_port: bool) -> Any:
        if is_rtcp_port:
            raise OSError("no more file descriptors")
        return await original(self, sock, is_rtcp_port)

    async def attach_nothing(self: RtpTransport, sock: socket.socket, is_rtcp_port: bool) -> Any:
        raise OSError("no more file descriptors")

    for failing in (attach_rtp_only, attach_nothing):
        monkeypatch.setattr(RtpTransport, "_attach", failing)
        with pytest.raises(OSError, match="file descriptors"):
            await RtpTransport.open(pool, Inbox())
        assert pool.in_use == frozenset()  # the port is back at once, ready for the next call
        monkeypatch.setattr(RtpTransport, "_attach", original)
        transport = await RtpTransport.open(pool, Inbox())
        assert transport.rtp_port == low
        transport.close()
        await transport.wait_closed()


class Recorder:
    """A clock listener that records (now, the tick's grid deadline) and signals after enough ticks."""

    def __init__(self, clock: MediaClock, ticks_wanted: int) -> None:
        self.clock = clock
        self.ticks: list[tuple[float, float]] = []
        self.done = asyncio.Event()
        self.ticks_wanted = ticks_wanted

    def on_tick(self, now: float) -> None:
        self.ticks.append((now, self.clock.deadline))
        if len(self.ticks) >= self.ticks_wanted:
            self.done.set()


async def test_media_clock_ticks_every_listener_on_one_grid() -> None:
    clock = MediaClock(0.005, early=0.001)
    first, second = Recorder(clock, 8), Recorder(clock, 8)
    clock.register(first)
    clock.register(second)
    async with asyncio.timeout(2.0):
        await first.done.wait()
        await second.done.wait()
    clock.unregister(first)
    assert clock.running  # one listener left
    clock.unregister(second)
    assert not clock.running and len(clock) == 0
    # Both listeners were called in the same ticks, with the same time.
    common = min(len(first.ticks), len(second.ticks))
    assert first.ticks[:common] == second.ticks[:common]
    slots = []
    for now, deadline in first.ticks:
        assert now >= deadline  # the precise wait: never before the deadline, though the timer woke early
        slot = (deadline - clock.anchor) / 0.005
        assert slot == pytest.approx(round(slot), abs=1e-6)
        slots.append(round(slot))
    assert slots == sorted(set(slots))  # one call per grid point at most
    assert clock.ticks >= 8


async def test_media_clock_drives_pacer_schedules_on_its_grid() -> None:
    clock = MediaClock(0.005, early=0.001)
    schedule = PacerSchedule(clock.grid_time(clock.loop.time()), 0.005)
    sends: list[int] = []

    class Sender(Recorder):
        def on_tick(self, now: float) -> None:
            sends.append(schedule.poll(now).send)
            super().on_tick(now)

    sender = Sender(clock, 6)
    clock.register(sender)
    async with asyncio.timeout(2.0):
        await sender.done.wait()
    clock.close()
    assert all(send >= 1 for send in sends)  # every tick finds this stream's deadline reached
    assert schedule.sent + schedule.skipped == schedule.slot >= 6


async def test_media_clock_unregisters_a_failing_listener_and_keeps_the_others() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    class Broken:
        def on_tick(self, now: float) -> None:
            raise RuntimeError("boom")

    clock = MediaClock(0.005, early=0.001)
    broken, healthy = Broken(), Recorder(clock, 3)
    clock.register(broken)
    clock.register(healthy)
    try:
        async with asyncio.timeout(2.0):
            await healthy.done.wait()
    finally:
        clock.close()
        loop.set_exception_handler(None)
    assert len(reported) == 1 and isinstance(reported[0]["exception"], RuntimeError)
    assert reported[0]["listener"] is broken


async def test_media_clock_unregister_during_a_tick_takes_effect_at_once() -> None:
    clock = MediaClock(0.005, early=0.001)
    later = Recorder(clock, 1)

    class Remover(Recorder):
        def on_tick(self, now: float) -> None:
            clock.unregister(later)
            super().on_tick(now)

    remover = Remover(clock, 2)
    clock.register(remover)
    clock.register(later)
    async with asyncio.timeout(2.0):
        await remover.done.wait()
    clock.close()
    assert later.ticks == []


async def test_media_clock_stops_when_its_last_listener_leaves_during_a_tick() -> None:
    clock = MediaClock(0.005, early=0.001)

    class Once(Recorder):
        def on_tick(self, now: float) -> None:
            clock.unregister(self)
            super().on_tick(now)

    once = Once(clock, 1)
    clock.register(once)
    async with asyncio.timeout(2.0):
        await once.done.wait()
    assert not clock.running and len(once.ticks) == 1


async def test_after_a_stall_the_clock_resumes_on_the_grid_and_streams_burst_at_most_twice() -> None:
    interval = 0.005
    clock = MediaClock(interval, early=0.001)
    schedule = PacerSchedule(clock.grid_time(clock.loop.time()), interval, max_burst=2)
    dues: list[tuple[int, int]] = []

    class Staller(Recorder):
        def on_tick(self, now: float) -> None:
            due = schedule.poll(now)
            dues.append((due.send, due.skipped))
            if len(self.ticks) == 2:
                # Block the event loop for more than five intervals, as a long synchronous call would.
                until = time.monotonic() + 5.5 * interval
                while time.monotonic() < until:
                    pass
            super().on_tick(now)

    staller = Staller(clock, 5)
    clock.register(staller)
    async with asyncio.timeout(2.0):
        await staller.done.wait()
    clock.close()
    assert clock.missed_ticks >= 4
    after_stall = dues[3]
    assert after_stall[0] == 2 and after_stall[1] >= 3  # at most two frames; older slots skipped
    assert all(send <= 2 for send, _ in dues)
    deadlines = [deadline for _, deadline in staller.ticks]
    slots = [(d - clock.anchor) / interval for d in deadlines]
    assert all(abs(s - round(s)) < 1e-6 for s in slots)  # still on the original grid


def test_media_clock_grid_time_is_the_next_grid_point() -> None:
    loop = asyncio.new_event_loop()
    try:
        clock = MediaClock(0.020, loop=loop)
        anchor = clock.anchor
        assert clock.grid_time(anchor) == anchor
        assert clock.grid_time(anchor + 0.001) == pytest.approx(anchor + 0.020)
        assert clock.grid_time(anchor + 0.040) == pytest.approx(anchor + 0.040)
        assert clock.deadline > anchor and not clock.running  # idle: the next grid point after now
        with pytest.raises(ValueError, match="early"):
            MediaClock(0.020, early=0.020, loop=loop)
        with pytest.raises(ValueError, match="positive"):
            MediaClock(0.0, loop=loop)
    finally:
        loop.close()


async def test_timer_fires_once_and_can_be_moved_or_cancelled() -> None:
    loop = asyncio.get_running_loop()
    fired: asyncio.Queue[float] = asyncio.Queue()
    timer = Timer(fired.put_nowait)
    timer.set(loop.time() + 60.0)
    when = loop.time() + 0.002
    timer.set(when)  # moved earlier
    assert timer.when == when
    async with asyncio.timeout(1.0):
        now = await fired.get()
    assert now >= when and timer.when is None
    later = loop.time() + 60.0
    timer.set(later)
    timer.set(later)  # unchanged: stays armed
    assert timer.when == later
    timer.set(None)
    assert timer.when is None and fired.empty()


@pytest.fixture
def pacing_bench() -> Iterator[Any]:
    spec = importlib.util.spec_from_file_location("pacing_bench", REPO / "scripts" / "pacing_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def test_pacing_bench_smoke(pacing_bench: Any) -> None:
    low, high = free_range(20)
    report = pacing_bench.run_pacing_bench(streams=5, seconds=1.0, reference_seconds=0.2, port_min=low,
                                           port_max=high)
    assert report["streams"] == 5
    # 5 streams at 50 packets/s for 1 s, give or take the packets in flight at MARK and STOP.
    assert 200 <= report["packets"] <= 300
    assert report["lost"] == 0
    assert 1 <= report["pacing_max_burst"] <= 2
    for key in ("pacing_p99_ms", "pacing_cpu_pct", "timer_only_p99_ms"):
        assert report[key] >= 0
