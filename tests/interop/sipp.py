"""sipp as a peer: run a scenario on loopback, get its exit status, statistics and message trace.

A UAS is used as ``async with Sipp("uas_basic") as uas: ...; result = await uas.wait()``; a UAC that runs to
its end as ``result = await Sipp("uac_basic", uas.address, service="alice").run()``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.interop.audio import FRAME, RATE, tone_bursts, write_rtp_pcap
from tests.interop.procs import (
    LOOPBACK,
    PeerError,
    PeerProcess,
    free_port,
    free_ports,
    require_loopback,
    udp_port_bound,
    wait_until,
)

__all__ = ["SCENARIOS", "SipMessage", "Sipp", "SippResult", "parse_message_trace"]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
BUILTIN = frozenset({"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-C-A", "3pcc-C-B",
                     "3pcc-A", "3pcc-B"})
PCAP_NAME = "audio.pcap"
_TRACE_SPLIT = re.compile(r"^-{20,} (\S+ \S+)\n(?:\w+) message (sent|received)[^\n]*\n\n", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class SipMessage:
    direction: str  # "sent" or "received", as sipp saw it
    time: str
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        """Request method, or the CSeq method of a response."""
        return self.start_line.split()[0] if self.is_request else self.headers("CSeq")[0].split()[-1]

    @property
    def status(self) -> int | None:
        return None if self.is_request else int(self.start_line.split()[1])

    def headers(self, name: str) -> list[str]:
        """Values of every ``name`` header in order, comma-joined lines kept whole."""
        head = self.text.split("\n\n", 1)[0]
        prefix = name.lower() + ":"
        return [line.split(":", 1)[1].strip() for line in head.splitlines()[1:] if line.lower().startswith(prefix)]

    @property
    def body(self) -> str:
        parts = self.text.replace("\r\n", "\n").split("\n\n", 1)
        return parts[1].strip() if len(parts) > 1 else ""


def parse_message_trace(text: str) -> tuple[SipMessage, ...]:
    """Messages of a ``-trace_msg`` log: a dashed line with a time stamp, a sent/received line, a blank line, the
    message."""
    text = text.replace("\r\n", "\n")
    marks = list(_TRACE_SPLIT.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return tuple(SipMessage(m[2], m[1], text[m.end():end].strip("\n")) for m, end in zip(marks, ends, strict=True))


@dataclass(frozen=True, slots=True)
class SippResult:
    returncode: int  # 0: every call succeeded; 1: some failed; 97/99: stopped; 255/254: fatal or bind error
    stats: Mapping[str, str]
    messages: tuple[SipMessage, ...]
    errors: str
    logs: str  # the scenario's <log> actions
    output: str = field(repr=False)

    @property
    def successful_calls(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "0") or 0)

    @property
    def failed_calls(self) -> int:
        return int(self.stats.get("FailedCall(C)", "0") or 0)

    def received(self, start: str) -> list[SipMessage]:
        """Received messages whose start line begins with ``start`` ("INVITE", "SIP/2.0 200")."""
        return [m for m in self.messages if m.direction == "received" and m.start_line.startswith(start)]

    def sent(self, start: str) -> list[SipMessage]:
        return [m for m in self.messages if m.direction == "sent" and m.start_line.startswith(start)]

    def explain(self) -> str:
        """What to print when an assertion on this run fails."""
        flow = "\n".join(f"  {m.direction:8} {m.start_line}" for m in self.messages)
        tail = "\n".join(self.output.splitlines()[-25:])
        return f"sipp exit {self.returncode}\nflow:\n{flow}\nerrors:\n{self.errors[-3000:]}\noutput tail:\n{tail}"


def _read_stats(path: Path) -> dict[str, str]:
    # -trace_stat writes a ';'-separated header and one row per dump (at start, every -fd seconds, at exit).
    if not path.exists():
        return {}
    rows = [line.split(";") for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}


class Sipp:
    """One sipp process on 127.0.0.1.

    ``scenario``: a built-in name ("uas", "uac"), a file name under ``tests/interop/scenarios`` (with or without
    ``.xml``), or a path. ``remote``: "host:port" for a UAC (None for a UAS). ``service`` is the request-URI
    user (-s). ``duration_ms`` (-d) is the length of every ``<pause/>`` without its own duration. ``pcap`` is
    copied next to the scenario as ``audio.pcap`` for ``play_pcap_audio``; without it a scenario that plays
    audio gets ``duration_ms`` of tone bursts. ``auth`` sets -au/-ap for ``[authentication]``. ``keys`` become
    ``-key name value`` for ``[name]`` in messages. sipp gives up by itself after ``timeout`` seconds.
    """

    def __init__(self, scenario: str | Path, remote: str | None = None, *, local_port: int | None = None,
                 service: str = "service", calls: int = 1, rate: float = 10.0, concurrency: int | None = None,
                 duration_ms: int = 1000, rtp_echo: bool = False, media_port: int | None = None,
                 auth: tuple[str, str] | None = None, pcap: Path | None = None, keys: Mapping[str, str] | None = None,
                 extra_args: Sequence[str] = (), timeout: float = 10.0, workdir: Path | None = None) -> None:
        self.scenario = scenario
        self.remote = remote if remote is None else require_loopback(remote)
        self.port = local_port if local_port is not None else free_port()
        self.media_port = media_port if media_port is not None else free_ports(4)  # audio and video pairs
        self.control_port = free_port()
        self.service = service
        self.calls, self.rate, self.concurrency, self.duration_ms = calls, rate, concurrency, duration_ms
        self.rtp_echo, self.auth, self.pcap, self.keys = rtp_echo, auth, pcap, dict(keys or {})
        self.extra_args = tuple(extra_args)
        self.timeout = timeout
        self._workdir = workdir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: PeerProcess | None = None
        self.result: SippResult | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def uri(self, user: str | None = None) -> str:
        return f"sip:{user or self.service}@{self.address}"

    @property
    def process(self) -> PeerProcess:
        if self._process is None:
            raise PeerError("sipp is not running")
        return self._process

    @property
    def directory(self) -> Path:
        if self._workdir is None:
            raise PeerError("sipp has no working directory before it starts")
        return self._workdir

    def _scenario_args(self, directory: Path) -> list[str]:
        name = str(self.scenario)
        if name in BUILTIN:
            return ["-sn", name]
        source = Path(self.scenario)
        if not source.exists():
            source = SCENARIOS / (name if name.endswith(".xml") else f"{name}.xml")
        if not source.exists():
            raise PeerError(f"no sipp scenario {self.scenario!r} (looked in {SCENARIOS})")
        # A copy next to which the capture can sit: sipp resolves play_pcap_audio paths beside the scenario.
        copy = directory / source.name
        shutil.copyfile(source, copy)
        if self.pcap is not None:
            shutil.copyfile(self.pcap, directory / PCAP_NAME)
        elif f'play_pcap_audio="{PCAP_NAME}"' in copy.read_text():
            seconds = max(self.duration_ms - 100, FRAME * 1000 // RATE) / 1000
            write_rtp_pcap(directory / PCAP_NAME, tone_bursts(seconds))
        return ["-sf", str(copy)]

    def argv(self, directory: Path) -> list[str]:
        args = ["sipp", *self._scenario_args(directory)]
        if self.remote is not None:
            args.append(self.remote)
        args += ["-i", LOOPBACK, "-p", str(self.port), "-mi", LOOPBACK, "-mp", str(self.media_port),
                 # The remote-control socket, 8888 on every interface by default: pin it to loopback and a free port.
                 "-ci", LOOPBACK, "-cp", str(self.control_port),
                 "-s", self.service, "-m", str(self.calls), "-r", f"{self.rate:g}", "-d", str(self.duration_ms),
                 "-nostdin", "-timeout", f"{self.timeout:g}s", "-timeout_error",
                 "-trace_msg", "-message_file", str(directory / "messages.log"),
                 "-trace_err", "-error_file", str(directory / "errors.log"),
                 "-trace_stat", "-stf", str(directory / "stats.csv"),
                 "-trace_logs", "-log_file", str(directory / "logs.log")]
        if self.concurrency is not None:
            args += ["-l", str(self.concurrency)]
        if self.rtp_echo:
            args.append("-rtp_echo")
        if self.auth is not None:
            args += ["-au", self.auth[0], "-ap", self.auth[1]]
        for name, value in self.keys.items():
            args += ["-key", name, value]
        return args + list(self.extra_args)

    async def __aenter__(self) -> Sipp:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sipp-")
            self._workdir = Path(self._tmp.name)
        directory = self._workdir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._process = PeerProcess(f"sipp {self.scenario}", self.argv(directory), directory)
            await self._process.start()
            # Ready once the SIP socket is bound; a quick UAC may already have finished, which is fine too.
            await wait_until(lambda: udp_port_bound(self.port) or self.process.returncode is not None,
                             f"sipp to bind {self.address}", 5.0)
        except BaseException:
            await self._close()
            raise
        return self

    async def wait(self, within: float | None = None) -> SippResult:
        """Wait for sipp to finish its calls by itself; its result."""
        process = self.process
        code = await process.wait(within if within is not None else self.timeout + 5)
        directory = self.directory
        messages = directory / "messages.log"
        errors = directory / "errors.log"
        logs = directory / "logs.log"
        self.result = SippResult(
            returncode=code,
            stats=_read_stats(directory / "stats.csv"),
            messages=parse_message_trace(messages.read_text(errors="replace")) if messages.exists() else (),
            errors=errors.read_text(errors="replace") if errors.exists() else "",
            logs=logs.read_text(errors="replace") if logs.exists() else "",
            output=process.output,
        )
        return self.result

    async def run(self) -> SippResult:
        async with self:
            return await self.wait()

    async def _close(self) -> None:
        try:
            if self._process is not None:
                await self._process.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self._close()
