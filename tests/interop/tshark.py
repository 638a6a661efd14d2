"""tshark as a witness on the wire: capture loopback UDP to a file, then summarise the RTP streams in it.

Capturing on ``lo`` needs root (or dumpcap's capabilities). RTP is not recognised on arbitrary ports, so the
summary decodes the given ports as RTP (``-d udp.port==N,rtp``).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.interop.procs import PeerError, PeerProcess

__all__ = ["RtpStream", "Tshark", "parse_rtp_streams", "rtp_streams"]

# One row of "-z rtp,streams" (tshark 4.0): start and end time, source, destination, SSRC, payload name,
# packets, lost (percent), min/mean/max delta ms, min/mean/max jitter ms, and "X" when tshark saw problems.
_NUMBER = r"-?[\d.]+"
_STREAM = re.compile(
    rf"^\s*{_NUMBER}\s+{_NUMBER}\s+(?P<src>\S+)\s+(?P<sport>\d+)\s+(?P<dst>\S+)\s+(?P<dport>\d+)\s+"
    rf"(?P<ssrc>0x[0-9A-Fa-f]+)\s+(?P<payload>.+?)\s+(?P<packets>\d+)\s+(?P<lost>-?\d+)\s+\({_NUMBER}%\)\s+"
    rf"{_NUMBER}\s+(?P<mean_delta>{_NUMBER})\s+(?P<max_delta>{_NUMBER})\s+"
    rf"{_NUMBER}\s+(?P<mean_jitter>{_NUMBER})\s+(?P<max_jitter>{_NUMBER})\s*(?P<problem>X?)\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class RtpStream:
    source: tuple[str, int]
    destination: tuple[str, int]
    ssrc: int
    payload: str  # tshark's name, e.g. "g711U"
    packets: int
    lost: int
    mean_delta_ms: float
    max_delta_ms: float
    mean_jitter_ms: float
    max_jitter_ms: float
    problem: bool


def parse_rtp_streams(text: str) -> list[RtpStream]:
    """Rows of ``tshark -q -z rtp,streams``."""
    return [RtpStream(source=(m["src"], int(m["sport"])), destination=(m["dst"], int(m["dport"])),
                      ssrc=int(m["ssrc"], 16), payload=m["payload"].strip(), packets=int(m["packets"]),
                      lost=int(m["lost"]), mean_delta_ms=float(m["mean_delta"]), max_delta_ms=float(m["max_delta"]),
                      mean_jitter_ms=float(m["mean_jitter"]), max_jitter_ms=float(m["max_jitter"]),
                      problem=m["problem"] == "X") for m in _STREAM.finditer(text)]


async def rtp_streams(capture: Path, rtp_ports: Sequence[int]) -> list[RtpStream]:
    """The RTP streams tshark finds in ``capture`` when UDP ``rtp_ports`` are decoded as RTP."""
    argv = ["tshark", "-n", "-r", str(capture), "-q", "-z", "rtp,streams"]
    for port in rtp_ports:
        argv += ["-d", f"udp.port=={port},rtp"]
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        output, errors = await asyncio.wait_for(process.communicate(), 20.0)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise PeerError(f"tshark -r {capture} exited with {process.returncode}: {errors.decode(errors='replace')}")
    return parse_rtp_streams(output.decode(errors="replace"))


class Tshark:
    """``async with Tshark(path, ports=[...], port_ranges=[(a, b)]):`` captures UDP on those ports on ``lo``
    from the moment tshark reports it is capturing until the block ends; the file is complete afterwards."""

    def __init__(self, output: Path, *, ports: Sequence[int] = (),
                 port_ranges: Sequence[tuple[int, int]] = (), interface: str = "lo",
                 startup_timeout: float = 10.0) -> None:
        terms = [f"udp port {port}" for port in ports] + [f"udp portrange {a}-{b}" for a, b in port_ranges]
        if not terms:
            raise ValueError("give ports or port ranges: a capture of all of lo is never needed")
        self.filter = " or ".join(terms)
        self.interface = interface
        self.startup_timeout = startup_timeout
        self.output = output
        self._process: PeerProcess | None = None

    @property
    def log(self) -> str:
        return self._process.output if self._process is not None else ""

    async def __aenter__(self) -> Tshark:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        argv = ["tshark", "-n", "-q", "-i", self.interface, "-f", self.filter, "-w", str(self.output)]
        self._process = PeerProcess("tshark", argv, self.output.parent)
        try:
            await self._process.start()
            # dumpcap has opened the interface and installed the filter when this line appears.
            await self._process.wait_for_output(r"^Capturing on ", self.startup_timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """End the capture: on SIGINT tshark writes out what it has, closes the file and exits."""
        if self._process is None:
            return
        code = await self._process.stop(signal.SIGINT, grace=10.0)
        if code != 0 or not self.output.exists():
            raise PeerError(f"tshark ended with {code} and {'a' if self.output.exists() else 'no'} capture file\n"
                            f"{self._process.tail()}")

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        if kind is None:
            await self.stop()
        elif self._process is not None:
            await self._process.stop(signal.SIGINT, grace=10.0)
