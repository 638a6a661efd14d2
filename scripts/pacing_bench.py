"""Outbound pacing measured on the wire: N paced PCMU senders in one event loop, a receiver in another process.

The senders are what a loaded endpoint runs: one socket per stream from a PortPool on 127.0.0.1, one
MediaClock tick for all of them, a PacerSchedule and an OutboundStream each, 172-byte PCMU packets. The
receiver is a separate Python process with one socket for all streams; it takes kernel arrival timestamps
(SO_TIMESTAMPNS) when the kernel offers them, demultiplexes by SSRC and reports the inter-arrival intervals.

    .venv/bin/python scripts/pacing_bench.py --streams 200 --seconds 20 --json

Output: ``pacing_p99_ms`` (p99 over every stream of |interval - 20 ms|), ``pacing_max_burst`` (most packets of
one stream arriving within less than 5 ms), ``pacing_cpu_pct`` (sender process CPU over the measured window,
% of one core), and ``timer_only_*``, the same senders paced naively by ``asyncio.sleep(0.02)`` per stream.
Only the window between the sender's MARK and STOP control datagrams is measured (after a short warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import struct
import sys
import time
from typing import Any

import numpy as np

from rtp.pacer import OutboundStream, PacerSchedule
from rtp.transport import Address, MediaClock, PortPool, RtpTransport

INTERVAL = 0.020
BURST_WINDOW = 0.005
PCMU = 0
PAYLOAD = bytes(range(96, 256))  # 160 mu-law octets: a 20 ms frame at 8 kHz (RFC 3551 §4.5.14)
MARK = b"MARK"
STOP = b"STOP"
# Linux values (asm-generic/socket.h); Python 3.11's socket module does not name them.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SCRIPT = os.path.abspath(__file__)


# --- receiver (runs in its own process) -------------------------------------------------------------------

def _receiver_socket(host: str) -> tuple[socket.socket, bool]:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    # One tick delivers every stream's packet at once: make room for several ticks of all streams.
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 16 << 20)
            break
        except OSError:
            continue
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        kernel = True
    except OSError:
        kernel = False
    sock.bind((host, 0))
    return sock, kernel


def receive(host: str, idle: float) -> dict[str, Any]:
    sock, kernel = _receiver_socket(host)
    print(sock.getsockname()[1], flush=True)
    # With kernel timestamps the receiver polls every few milliseconds instead of blocking in recvmsg: a
    # sleeping reader makes every loopback sendto wake it (an inter-processor interrupt, ~30 us in a VM),
    # a cost a real remote peer never puts on the sender. The arrival times come from the kernel anyway.
    sock.setblocking(not kernel)
    if kernel:
        # For the same reason the receiver yields the CPU to the sender: its own latency no longer matters.
        with contextlib.suppress(OSError):
            os.nice(10)
    else:
        sock.settimeout(idle)
    ancillary = socket.CMSG_SPACE(16)
    ssrcs: list[int] = []
    seqs: list[int] = []
    times: list[int] = []
    measuring = False
    last = time.monotonic()
    while True:
        try:
            data, cmsgs, _flags, _addr = sock.recvmsg(2048, ancillary)
        except BlockingIOError:
            if time.monotonic() - last > idle:
                break
            time.sleep(0.004)
            continue
        except TimeoutError:
            break
        now_ns = time.monotonic_ns()
        last = now_ns / 1e9
        if data == STOP:
            break
        if data == MARK:
            measuring = True
            continue
        if not measuring or len(data) < 12:
            continue
        stamp = now_ns
        for level, kind, payload in cmsgs:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack_from("@qq", payload)
                stamp = sec * 1_000_000_000 + nsec
        seq, _ts, ssrc = struct.unpack_from("!HII", data, 2)
        ssrcs.append(ssrc)
        seqs.append(seq)
        times.append(stamp)
    sock.close()
    return {"timestamps": "kernel" if kernel else "monotonic", **analyse(ssrcs, seqs, times)}


def analyse(ssrcs: list[int], seqs: list[int], times_ns: list[int]) -> dict[str, Any]:
    if not times_ns:
        return {"packets": 0, "lost": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "max_burst": 0}
    ssrc = np.asarray(ssrcs, dtype=np.int64)
    t = np.asarray(times_ns, dtype=np.int64)
    order = np.lexsort((t, ssrc))
    ssrc, t = ssrc[order], t[order]
    seq = np.asarray(seqs, dtype=np.int64)[order]
    same = ssrc[1:] == ssrc[:-1]
    gaps = np.diff(t)[same] / 1e9
    dev_ms = np.abs(gaps - INTERVAL) * 1e3
    # Sequence numbers step by one per packet (RFC 3550 §5.1); a larger step modulo 2**16 is loss.
    lost = int(np.sum(((seq[1:] - seq[:-1]) % 65536 - 1)[same]))
    # Bursts: per stream, the most packets in any window shorter than BURST_WINDOW. Offsetting each stream
    # by a large constant lets one searchsorted cover every stream.
    stream_index = np.concatenate(([0], np.cumsum(~same)))
    key = t - t.min() + stream_index * (10**15)
    ends = np.searchsorted(key, key + int(BURST_WINDOW * 1e9), side="left")
    max_burst = int((ends - np.arange(len(key))).max())
    return {
        "packets": int(len(t)),
        "lost": lost,
        "p50_ms": float(np.percentile(dev_ms, 50)) if len(dev_ms) else None,
        "p99_ms": float(np.percentile(dev_ms, 99)) if len(dev_ms) else None,
        "max_ms": float(dev_ms.max()) if len(dev_ms) else None,
        "max_burst": max_burst,
    }


# --- senders ----------------------------------------------------------------------------------------------

class _PacedSender:
    """What an RTP session does on each clock tick, minus the audio: poll the schedule, skip, send."""

    __slots__ = ("dest", "schedule", "send", "stream")

    def __init__(self, transport: RtpTransport, dest: Address, ssrc: int, start: float) -> None:
        self.schedule = PacerSchedule(start, INTERVAL)
        self.stream = OutboundStream(ssrc, PCMU, random.getrandbits(16), random.getrandbits(32),
                                     silence_payload=b"\xff" * 160)
        self.send = transport.send_rtp
        self.dest = dest

    def on_tick(self, now: float) -> None:
        due = self.schedule.poll(now)
        if due.skipped:
            self.stream.skip(due.skipped)
        for _ in range(due.send):
            self.send(self.stream.next_packet(PAYLOAD), self.dest)


async def _naive_sender(stream: OutboundStream, transport: RtpTransport, dest: Address) -> None:
    while True:
        await asyncio.sleep(INTERVAL)
        transport.send_rtp(stream.next_packet(PAYLOAD), dest)


def _ignore(data: bytes, addr: Address, now: float, is_rtcp: bool) -> None:
    pass


def _cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq steal ...), or []."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return [int(field) for field in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


def _machine_load(before: list[int], after: list[int]) -> dict[str, float | None]:
    """Context for the numbers: the whole machine's busy and steal time over the window (% of all CPUs)."""
    if len(before) < 8 or len(after) < 8:
        return {"machine_busy_pct": None, "machine_steal_pct": None}
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta) or 1
    return {
        "machine_busy_pct": 100.0 * (total - delta[3] - delta[4]) / total,
        "machine_steal_pct": 100.0 * delta[7] / total,
    }


async def _run_once(streams: int, seconds: float, naive: bool, host: str, port_min: int, port_max: int,
                    early: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, SCRIPT, "--receiver", "--host", host,
        stdout=asyncio.subprocess.PIPE)
    assert receiver.stdout is not None
    dest = (host, int(await receiver.stdout.readline()))
    pool = PortPool(port_min, port_max, host)
    transports = [await RtpTransport.open(pool, _ignore, rtcp_mux=True) for _ in range(streams)]
    control = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    clock = MediaClock(INTERVAL, early=early)
    tasks: list[asyncio.Task[None]] = []
    senders: list[_PacedSender] = []
    try:
        if naive:
            for i, transport in enumerate(transports):
                stream = OutboundStream(i + 1, PCMU, 0, 0, silence_payload=b"\xff" * 160)
                tasks.append(asyncio.create_task(_naive_sender(stream, transport, dest)))
        else:
            start = clock.grid_time(loop.time() + INTERVAL)
            senders = [_PacedSender(transport, dest, i + 1, start) for i, transport in enumerate(transports)]
            for sender in senders:
                clock.register(sender)
        await asyncio.sleep(min(1.0, max(seconds / 2, 0.2)))  # warm-up: first ticks, caches, receiver start
        control.sendto(MARK, dest)
        cpu0, wall0, machine0 = time.process_time(), time.perf_counter(), _cpu_times()
        ticks0, late0, spin0 = clock.ticks, clock.late_ticks, clock.spin_time
        await asyncio.sleep(seconds)
        cpu1, wall1, machine1 = time.process_time(), time.perf_counter(), _cpu_times()
    finally:
        clock.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for transport in transports:
            transport.close()
        for _ in range(3):  # loopback does not lose datagrams unless the buffer is full; be safe anyway
            control.sendto(STOP, dest)
        control.close()
        out, _ = await receiver.communicate()
    for transport in transports:
        await transport.wait_closed()
    result: dict[str, Any] = json.loads(out)
    result["cpu_pct"] = 100.0 * (cpu1 - cpu0) / (wall1 - wall0)
    result.update(_machine_load(machine0, machine1))
    if not naive:
        ticks = clock.ticks - ticks0
        result["clock_ticks"] = ticks
        result["clock_late_ticks"] = clock.late_ticks - late0
        result["clock_spin_pct"] = 100.0 * (clock.spin_time - spin0) / (wall1 - wall0)
        result["skipped_frames"] = sum(sender.schedule.skipped for sender in senders)
    return result


async def pacing_bench(streams: int = 200, seconds: float = 20.0, reference_seconds: float | None = None,
                       host: str = "127.0.0.1", port_min: int = 40000, port_max: int = 49999,
                       early: float = 0.002) -> dict[str, Any]:
    paced = await _run_once(streams, seconds, False, host, port_min, port_max, early)
    report: dict[str, Any] = {
        "streams": streams,
        "seconds": seconds,
        "early_ms": early * 1e3,
        "packets": paced["packets"],
        "lost": paced["lost"],
        "timestamps": paced["timestamps"],
        "pacing_p50_ms": paced["p50_ms"],
        "pacing_p99_ms": paced["p99_ms"],
        "pacing_max_ms": paced["max_ms"],
        "pacing_max_burst": paced["max_burst"],
        "pacing_cpu_pct": paced["cpu_pct"],
        "clock_ticks": paced["clock_ticks"],
        "clock_late_ticks": paced["clock_late_ticks"],
        "clock_spin_pct": paced["clock_spin_pct"],
        "skipped_frames": paced["skipped_frames"],
        "machine_busy_pct": paced["machine_busy_pct"],
        "machine_steal_pct": paced["machine_steal_pct"],
        "cpus": os.cpu_count(),
    }
    reference_seconds = min(seconds, 5.0) if reference_seconds is None else reference_seconds
    if reference_seconds > 0:
        naive = await _run_once(streams, reference_seconds, True, host, port_min, port_max, early)
        report.update({
            "timer_only_seconds": reference_seconds,
            "timer_only_p99_ms": naive["p99_ms"],
            "timer_only_max_burst": naive["max_burst"],
            "timer_only_cpu_pct": naive["cpu_pct"],
        })
    return report


def run_pacing_bench(streams: int = 200, seconds: float = 20.0, reference_seconds: float | None = None,
                     **options: Any) -> dict[str, Any]:
    return asyncio.run(pacing_bench(streams, seconds, reference_seconds, **options))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reference-seconds", type=float, default=None,
                        help="length of the naive asyncio.sleep reference run (default min(seconds, 5); 0 skips)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address: 127.0.0.1 or ::1")
    parser.add_argument("--port-min", type=int, default=40000)
    parser.add_argument("--port-max", type=int, default=49999)
    parser.add_argument("--early", type=float, default=0.002, help="MediaClock early wake-up, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--idle", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        print(json.dumps(receive(args.host, args.idle)), flush=True)
        return 0
    report = run_pacing_bench(args.streams, args.seconds, args.reference_seconds, host=args.host,
                              port_min=args.port_min, port_max=args.port_max, early=args.early)
    if args.json:
        print(json.dumps(report))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
