"""MediaStream on real loopback sockets: audio both ways, RTCP, BYE, media timeout, ports released."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rtp.g711 import PCMU
from rtp.jitter import FrameStatus, JitterFrame
from rtp.session import MediaTimeout, RemoteBye, SessionConfig, SessionEvent, SourceLatched
from rtp.transport import MediaClock, MediaStream, PortPool

pytestmark = pytest.mark.aio


class Peer:
    def __init__(self, level: int) -> None:
        self.level = level
        self.frames: list[JitterFrame] = []
        self.events: list[SessionEvent] = []
        self.heard = asyncio.Event()
        self.got_event = asyncio.Event()

    def sink(self, frame: JitterFrame, now: float) -> None:
        self.frames.append(frame)
        if sum(f.status is FrameStatus.NORMAL for f in self.frames) >= 10:
            self.heard.set()

    def source(self, now: float) -> np.ndarray:
        return np.full(160, self.level, np.int16)

    def on_event(self, event: SessionEvent) -> None:
        self.events.append(event)
        self.got_event.set()


async def open_pair(pool: PortPool, clock: MediaClock, **cfg: object) -> tuple[MediaStream, Peer, MediaStream, Peer]:
    config = SessionConfig(codec=PCMU, **cfg)  # type: ignore[arg-type]
    pa, pb = Peer(1000), Peer(-2000)
    a = await MediaStream.open(pool, clock, config, sink=pa.sink, source=pa.source, on_event=pa.on_event)
    b = await MediaStream.open(pool, clock, config, sink=pb.sink, source=pb.source, on_event=pb.on_event,
                               remote_rtp=("127.0.0.1", a.transport.rtp_port),
                               remote_rtcp=("127.0.0.1", a.transport.rtcp_port))
    a.session.set_remote(("127.0.0.1", b.transport.rtp_port), ("127.0.0.1", b.transport.rtcp_port))
    return a, pa, b, pb


async def wait_for(predicate: object, event: asyncio.Event) -> None:
    async with asyncio.timeout(5):
        while not predicate():  # type: ignore[operator]
            event.clear()
            await event.wait()


async def test_audio_flows_both_ways_and_bye_on_close() -> None:
    pool = PortPool(31000, 31100)
    clock = MediaClock()
    a, pa, b, pb = await open_pair(pool, clock)
    async with asyncio.timeout(5):
        await pa.heard.wait()
        await pb.heard.wait()
    heard_by_b = [f.samples for f in pb.frames if f.status is FrameStatus.NORMAL]
    assert np.all(heard_by_b[-1] == PCMU.decode(PCMU.encode(np.full(160, 1000, np.int16))))
    assert any(isinstance(e, SourceLatched) for e in pb.events)
    await a.aclose("done")
    await wait_for(lambda: any(isinstance(e, RemoteBye) for e in pb.events), pb.got_event)
    await b.aclose()
    assert pool.in_use == frozenset()
    assert len(clock) == 0


async def test_rtcp_reports_are_exchanged() -> None:
    pool = PortPool(31200, 31300)
    clock = MediaClock()
    a, _, b, _ = await open_pair(pool, clock, rtcp_interval=0.2)
    arrived = asyncio.Event()
    receive = a.transport.on_datagram

    def hook(data: bytes, addr: tuple[str, int], now: float, is_rtcp: bool) -> None:
        receive(data, addr, now, is_rtcp)
        arrived.set()

    a.transport.on_datagram = hook
    await wait_for(lambda: a.session.stats().rtt_ms is not None, arrived)
    assert a.session.stats().rtcp_received >= 1 and b.session.stats().rtcp_received >= 1
    assert 0 <= (a.session.stats().rtt_ms or 0) < 100
    await a.aclose()
    await b.aclose()


async def test_media_timeout_when_the_peer_goes_silent() -> None:
    pool = PortPool(31400, 31500)
    clock = MediaClock()
    a, _, b, pb = await open_pair(pool, clock, media_timeout=0.3)
    async with asyncio.timeout(5):
        await pb.heard.wait()
    clock.unregister(a)  # a stops sending without a BYE (a vanished phone)
    await wait_for(lambda: any(isinstance(e, MediaTimeout) for e in pb.events), pb.got_event)
    await a.aclose()
    await b.aclose()
