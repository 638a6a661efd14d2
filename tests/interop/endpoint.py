"""Our endpoint as the interop tests run it, and the small agents they put on the line.

:func:`running_endpoint` starts a :class:`WatchedEndpoint` on 127.0.0.1 (SIP on a port the kernel picks, its
own block of RTP ports from the harness pool) and waits until it is ready. The watched endpoint keeps every
user-agent event it handled and the peak number of calls and, when asked, every SIP message it received or sent,
so a test can check what the endpoint made of a call next to what the peer saw on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

from rtp.jitter import FrameStatus
from sipagent.agent.base import Agent, AgentFactory, CallContext
from sipagent.config import Settings, load_settings
from sipagent.endpoint import Endpoint
from sipagent.media import Pcm
from sipagent.sip.events import Outgoing, UaEvent
from sipagent.sip.message import SipMessage
from sipagent.sip.parser import parse_message
from tests.interop.peers import free_ports, wait_until

__all__ = [
    "FRAMES_PER_SECOND",
    "FrameCounter",
    "HangUpAfter",
    "WatchedEndpoint",
    "endpoint_settings",
    "keep_agents",
    "running_endpoint",
]

FRAMES_PER_SECOND = 50  # on_audio is called once per 20 ms frame
RTP_PORTS = 100  # 50 RTP/RTCP pairs (RFC 3550 §11): room for the 20 calls at once of the load test

A = TypeVar("A", bound=Agent)


class WatchedEndpoint(Endpoint):
    """The endpoint, with every user-agent event it handled kept for the test and the peak number of calls;
    with ``record_messages`` also every SIP message it received or sent, in order."""

    def __init__(self, settings: Settings, agent_factory: AgentFactory | None = None, *,
                 record_messages: bool = False) -> None:
        super().__init__(settings, agent_factory=agent_factory)
        self.events: list[UaEvent] = []
        self.peak_calls = 0
        self.record_messages = record_messages
        self.wire: list[tuple[str, bytes]] = []

    def _on_event(self, event: UaEvent) -> None:
        super()._on_event(event)
        self.events.append(event)
        self.peak_calls = max(self.peak_calls, len(self.calls))

    def receive(self, data: bytes, source: tuple[str, int], transport: str, now: float) -> None:
        if self.record_messages:
            self.wire.append(("received", data))
        super().receive(data, source, transport, now)

    def datagrams_to_send(self) -> Iterable[Outgoing]:
        if not self.record_messages:
            return super().datagrams_to_send()
        out = list(super().datagrams_to_send())
        self.wire += [("sent", item.data) for item in out]
        return out

    def messages(self, direction: str, start: str) -> list[SipMessage]:
        """The SIP messages ``direction`` ("received" or "sent") whose first line starts with ``start``."""
        assert self.record_messages, "messages are kept only with record_messages=True"
        found = [parse_message(data) for way, data in self.wire if way == direction and data.startswith(start.encode())]
        return [m for m in found if isinstance(m, SipMessage)]

    def seen(self, kind: type[UaEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def settled(self, within: float = 5.0) -> None:
        """Every call task has finished: no call in the table, no RTP port held, no call in the SIP core."""
        assert self.pool is not None and self.ua is not None
        pool, ua = self.pool, self.ua
        await wait_until(lambda: not self.calls and not pool.in_use and ua.active_calls == 0,
                         "the endpoint to release every call", within)


def endpoint_settings(**overrides: dict[str, Any]) -> Settings:
    """Settings for one endpoint on 127.0.0.1 (UDP, echo agent); each keyword names a section of the settings
    file (``sip``, ``registration``, ...) whose keys replace or add to the defaults."""
    rtp = free_ports(RTP_PORTS)
    sections: dict[str, dict[str, Any]] = {
        "sip": {"bind": "127.0.0.1", "port": 0, "transports": ("udp",)},
        "rtp": {"port_min": rtp, "port_max": rtp + RTP_PORTS - 2},
        "agent": {"name": "echo"},
    }
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values}
    return load_settings(None, sections)


@contextlib.asynccontextmanager
async def running_endpoint(agent_factory: AgentFactory | None = None, settings: Settings | None = None, *,
                           record_messages: bool = False, **sip: Any) -> AsyncIterator[WatchedEndpoint]:
    """A ready :class:`WatchedEndpoint`, stopped on the way out; ``sip`` overrides the ``[sip]`` section of the
    default settings, for when ``settings`` is not given."""
    if settings is not None and sip:
        raise ValueError("give either settings or sip overrides, not both")
    settings = settings if settings is not None else endpoint_settings(sip=sip)
    async with WatchedEndpoint(settings, agent_factory, record_messages=record_messages) as ep:
        await ep.ready()
        yield ep


def keep_agents(make: Callable[[CallContext], A]) -> tuple[list[A], AgentFactory]:
    """An agent factory that builds with ``make`` and keeps every agent it built, in order, for the test."""
    agents: list[A] = []

    def factory(context: CallContext) -> A:
        agents.append(make(context))
        return agents[-1]

    return agents, factory


class FrameCounter:
    """Counts the frames the endpoint delivers, by status; sits on the line until the call ends."""

    def __init__(self, context: CallContext) -> None:
        self.context = context
        self.frames = {status: 0 for status in FrameStatus}

    def on_audio(self, pcm: Pcm, now: float, status: FrameStatus) -> None:
        self.frames[status] += 1

    def on_dtmf(self, digit: str, now: float) -> None:
        pass

    async def run(self) -> None:
        await asyncio.get_running_loop().create_future()


class HangUpAfter(FrameCounter):
    """Asks the endpoint to hang up once it has been given ``frames`` frames of audio."""

    def __init__(self, context: CallContext, frames: int) -> None:
        super().__init__(context)
        self.limit = frames
        self.calls = 0

    def on_audio(self, pcm: Pcm, now: float, status: FrameStatus) -> None:
        super().on_audio(pcm, now, status)
        self.calls += 1
        if self.calls == self.limit:
            self.context.hangup()
