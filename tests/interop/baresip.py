"""baresip as a peer (the stand-in for a desktop softphone): headless, microphone from a WAV, recordings out.

No sound card is involved: the ``aufile`` module reads the microphone from an 8 kHz mono WAV and the ``sndfile``
filter writes what was sent (``dump-*-enc.wav``) and what was heard (``dump-*-dec.wav``) per call. The call
ends when the microphone WAV ends, so pad it to the call's length. Commands (``/dial``, ``/hangup``) go to the
``cons`` UDP console.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from tests.interop.audio import RATE, write_wav
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

__all__ = ["Baresip", "Recordings"]

MODULE_PATH = "/usr/lib/baresip/modules"


@dataclass(frozen=True, slots=True)
class Recordings:
    decoded: tuple[Path, ...]  # what baresip heard, one file per call, oldest first
    encoded: tuple[Path, ...]  # what it sent


class Baresip:
    """One baresip process. ``account`` is a whole accounts line; by default a local account
    ``<sip:user@127.0.0.1:port>`` that never registers (regint=0) and answers by itself (answermode=auto,
    unless ``auto_answer`` is False). ``dial`` calls a URI at start (-e), ``quit_after`` ends the process
    (hanging up, -t) that many seconds after it starts. ``wav_in`` is the microphone; without it,
    ``silence_seconds`` of silence."""

    def __init__(self, config_dir: Path | None = None, *, account: str | None = None, user: str = "baresip",
                 sip_port: int | None = None, wav_in: Path | None = None, record_dir: Path | None = None,
                 auto_answer: bool = True, dial: str | None = None, quit_after: float | None = None,
                 silence_seconds: float = 30.0, extra_config: Mapping[str, str] | None = None,
                 startup_timeout: float = 5.0) -> None:
        # baresip also listens for SIP over TLS (TCP) on sip_port + 1: keep that port for it too.
        self.sip_port = sip_port if sip_port is not None else free_ports(2)
        self.console_port = free_port()
        self.rtp_first = free_ports(20)
        self.user = user
        self.account = account or (f"<sip:{user}@{LOOPBACK}:{self.sip_port}>;regint=0;"
                                   f"answermode={'auto' if auto_answer else 'manual'}")
        self.wav_in, self.record_dir, self.quit_after = wav_in, record_dir, quit_after
        self.dial = dial if dial is None else require_loopback(dial)
        self.silence_seconds = silence_seconds
        self.extra_config = dict(extra_config or {})
        self.startup_timeout = startup_timeout
        self._config_dir = config_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: PeerProcess | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.address}"

    @property
    def process(self) -> PeerProcess:
        if self._process is None:
            raise PeerError("baresip is not running")
        return self._process

    @property
    def log(self) -> str:
        return self._process.output if self._process is not None else ""

    @property
    def config_dir(self) -> Path:
        if self._config_dir is None:
            raise PeerError("baresip has no configuration directory before it starts")
        return self._config_dir

    def _write_config(self, directory: Path) -> None:
        microphone = self.wav_in
        if microphone is None:
            microphone = write_wav(directory / "silence.wav", np.zeros(round(self.silence_seconds * RATE), np.int16))
        record_dir = self.record_dir or directory / "recordings"
        record_dir.mkdir(parents=True, exist_ok=True)
        self.record_dir = record_dir
        settings = {
            "poll_method": "epoll",
            "sip_listen": self.address,
            "net_interface": LOOPBACK,  # an address: the interface name "lo" does not start in 1.0.0
            "rtp_ports": f"{self.rtp_first}-{self.rtp_first + 19}",
            "audio_source": f"aufile,{microphone}",
            "audio_srate": str(RATE),
            "audio_channels": "1",
            "module_path": MODULE_PATH,
            "cons_listen": f"{LOOPBACK}:{self.console_port}",
            "snd_path": str(record_dir),
            "statmode_default": "off",
            **self.extra_config,
        }
        lines = [f"{key}\t{value}" for key, value in settings.items()]
        # No audio_player: nothing needs a sound card; sndfile records in the filter chain.
        lines += [f"module\t{name}.so" for name in ("cons", "g711", "aufile", "sndfile")]
        lines += [f"module_app\t{name}.so" for name in ("account", "menu")]
        (directory / "config").write_text("\n".join(lines) + "\n")
        (directory / "accounts").write_text(self.account + "\n")

    async def __aenter__(self) -> Baresip:
        if self._config_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="baresip-")
            self._config_dir = Path(self._tmp.name)
        directory = self._config_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._write_config(directory)
            argv = ["baresip", "-f", str(directory)]
            if self.dial is not None:
                argv += ["-e", f"/dial {self.dial}"]
            if self.quit_after is not None:
                argv += ["-t", f"{round(self.quit_after)}"]
            self._process = PeerProcess("baresip", argv, directory)
            await self._process.start()
            await self._process.wait_for_output(r"baresip is ready\.", self.startup_timeout)
            await wait_until(lambda: udp_port_bound(self.sip_port) and udp_port_bound(self.console_port),
                             f"baresip to bind {self.address}", self.startup_timeout, self._process)
        except BaseException:
            await self._close()
            raise
        return self

    async def command(self, text: str) -> None:
        """Type a console command (e.g. "/dial sip:...", "/hangup") into the cons UDP console."""
        if text.startswith("/dial "):
            require_loopback(text.split(None, 1)[1])
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(LOOPBACK, 0))
        try:
            transport.sendto((text + "\n").encode(), (LOOPBACK, self.console_port))
        finally:
            transport.close()

    async def wait_for_log(self, pattern: str, within: float = 5.0) -> str:
        return (await self.process.wait_for_output(pattern, within))[0]

    async def wait(self, within: float) -> int:
        """Exit status once baresip quits by itself (after ``quit_after``)."""
        return await self.process.wait(within)

    def recordings(self) -> Recordings:
        directory = self.record_dir or self.config_dir / "recordings"
        return Recordings(decoded=tuple(sorted(directory.glob("dump-*-dec.wav"))),
                          encoded=tuple(sorted(directory.glob("dump-*-enc.wav"))))

    async def _close(self) -> None:
        try:
            if self._process is not None:
                # SIGTERM makes baresip hang up its calls (BYE) and flush the recordings before it exits.
                with contextlib.suppress(PeerError):
                    await self._process.stop(signal.SIGTERM, grace=5.0)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self._close()
