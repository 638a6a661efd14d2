"""Running third-party peers on the loop: loopback ports, child processes, readiness probes.

Every peer is a child of the test's event loop (``asyncio.create_subprocess_exec``) in its own process group,
with its output collected in memory so tests can wait for a log line and show the log when they fail.
Readiness is polled against a deadline (a bound socket, a log line, a SIP answer); nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

__all__ = [
    "LOOPBACK",
    "PeerError",
    "PeerProcess",
    "free_port",
    "free_ports",
    "require_loopback",
    "sip_options_ping",
    "udp_port_bound",
    "wait_until",
]

LOOPBACK = "127.0.0.1"
POLL = 0.01

# Ports are handed out below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default),
# so a socket some peer binds to port 0 can never take a port we gave to another peer.
_FIRST, _LAST = 20000, 32700


class PeerError(RuntimeError):
    """A peer did not start, did not become ready, or did not finish in time."""


class _PortPool:
    """Hands out ports (and even-aligned consecutive blocks for RTP/RTCP pairs, RFC 3550 §11) that are free now
    on 127.0.0.1 for both UDP and TCP and were not handed out before by this process. Parallel test processes
    start at different places (by pid) and probe by binding, so they rarely meet and never share a port that is
    already bound."""

    def __init__(self) -> None:
        self._next = _FIRST + (os.getpid() * 7919) % (_LAST - _FIRST)
        self._given: set[int] = set()

    def take(self, count: int, align: int) -> int:
        span = _LAST - _FIRST
        for _ in range(span // max(count, 1) + 1):
            base = self._next + (-self._next % align)
            if base + count > _LAST:
                self._next = _FIRST
                continue
            self._next = base + count
            ports = range(base, base + count)
            if not self._given.intersection(ports) and all(_is_free(p) for p in ports):
                self._given.update(ports)
                return base
        raise PeerError(f"no block of {count} free loopback ports in {_FIRST}-{_LAST}")


def _is_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


_POOL = _PortPool()


def free_port() -> int:
    return _POOL.take(1, 1)


def free_ports(count: int) -> int:
    """First port of ``count`` consecutive free ports, the first one even."""
    return _POOL.take(count, 2)


def require_loopback(target: str) -> str:
    """``target`` ("host:port", "[v6]:port" or a SIP URI) unchanged if its host is a loopback address; the
    harness never sends anything off the machine, and a host name would even need DNS."""
    host = re.sub(r"^sips?:", "", target).split(";", 1)[0].rsplit("@", 1)[-1]
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{target!r} is not on a loopback address")
    return target


def udp_port_bound(port: int) -> bool:
    """Whether any socket on this host is bound to UDP ``port`` (read from /proc: probing would disturb it)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows, None)
            if any(row.split()[1].endswith(wanted) for row in rows if len(row.split()) > 1):
                return True
    return False


Probe = Callable[[], bool | Awaitable[bool]]


async def wait_until(ready: Probe, what: str, within: float, process: PeerProcess | None = None) -> None:
    """Poll ``ready()`` (plain or async) until true; fail after ``within`` seconds or when ``process`` exits.
    The deadline lives here rather than in the caller's ``asyncio.timeout`` so the failure carries the peer's log."""
    try:
        async with asyncio.timeout(within):
            while True:
                outcome = ready()
                if not isinstance(outcome, bool):
                    outcome = await outcome
                if outcome:
                    return
                if process is not None and process.returncode is not None:
                    raise PeerError(f"{process.name} exited with {process.returncode} before {what}\n{process.tail()}")
                await asyncio.sleep(POLL)
    except TimeoutError:
        tail = process.tail() if process is not None else ""
        raise PeerError(f"timed out after {within:.1f} s waiting for {what}\n{tail}") from None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.replies.put_nowait(data)


async def sip_options_ping(port: int, host: str = LOOPBACK, within: float = 0.2) -> int | None:
    """Send one OPTIONS (RFC 3261 §11) over UDP; the status code of the first final answer within ``within``
    seconds, or None."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Datagrams, local_addr=(LOOPBACK, 0))
    try:
        local_port = transport.get_extra_info("sockname")[1]
        tag = uuid.uuid4().hex[:12]
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};rport;branch=z9hG4bK{tag}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {tag}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        transport.sendto(request.encode(), (host, port))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    match = re.match(rb"SIP/2\.0 (\d{3}) ", await protocol.replies.get())
                    if match and int(match[1]) >= 200:
                        return int(match[1])
        return None
    finally:
        transport.close()


class PeerProcess:
    """One peer program. Output (stdout and stderr merged) is collected while it runs; ``stop`` sends a signal,
    waits, and kills the whole process group if the peer does not go."""

    def __init__(self, name: str, argv: Sequence[str], cwd: Path) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.cwd = cwd
        self._proc: asyncio.subprocess.Process | None = None
        self._output = bytearray()
        self._grew = asyncio.Event()
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        assert self._proc.stdout is not None
        self._drain = asyncio.create_task(self._collect(self._proc.stdout))

    async def _collect(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._output += chunk
            self._grew.set()
        self._grew.set()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise PeerError(f"{self.name} was not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    @property
    def output(self) -> str:
        return self._output.decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} ({' '.join(self.argv)}) ---\n" + "\n".join(self.output.splitlines()[-lines:])

    async def wait_for_output(self, pattern: str, within: float) -> re.Match[str]:
        """The first match of ``pattern`` in the output, waiting up to ``within`` seconds for more output."""
        regex = re.compile(pattern, re.MULTILINE)
        try:
            async with asyncio.timeout(within):
                while (found := regex.search(self.output)) is None:
                    if self._drain is not None and self._drain.done():
                        raise PeerError(f"{self.name} closed its output before printing {pattern!r}\n{self.tail()}")
                    self._grew.clear()
                    await self._grew.wait()
        except TimeoutError:
            raise PeerError(f"{self.name} did not print {pattern!r} within {within} s\n{self.tail()}") from None
        return found

    async def wait(self, within: float) -> int:
        """Exit status, once the peer has exited by itself (within ``within`` seconds) and its output is complete."""
        if self._proc is None:
            raise PeerError(f"{self.name} was not started")
        try:
            code = await asyncio.wait_for(self._proc.wait(), within)
        except TimeoutError:
            raise PeerError(f"{self.name} still running after {within} s\n{self.tail()}") from None
        if self._drain is not None:
            # Children of the peer (forked workers) may hold the pipe; never wait on them for long.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drain), 2.0)
        return code

    async def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> int | None:
        """Signal the peer, wait ``grace`` seconds, then SIGKILL its process group; always reaps it."""
        if self._proc is None:
            return None
        try:
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(sig)
                try:
                    await asyncio.wait_for(self._proc.wait(), grace)
                except TimeoutError:
                    pass
        finally:
            # The group id is the peer's pid (start_new_session): this reaches its workers and nothing else.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            await self._proc.wait()
            if self._drain is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._drain, 2.0)
        return self._proc.returncode
