"""The endpoint: owns the transports, the UA core, the RTP port pool and the calls.

Until the SIP user agent lands this only opens the media port pool and reports readiness.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from sipagent.config import Settings
from sipagent.log import get_logger


class Endpoint:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready = asyncio.Event()
        self._log = get_logger()

    async def __aenter__(self) -> Endpoint:
        s = self._settings
        self._log.info(
            "endpoint starting",
            sip=f"{s.sip.bind}:{s.sip.port}",
            rtp_ports=f"{s.rtp.port_min}-{s.rtp.port_max}",
            agent=s.agent.name,
        )
        self._ready.set()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._log.info("endpoint stopped")

    async def ready(self) -> None:
        await self._ready.wait()
