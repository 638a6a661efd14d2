"""Media-plane cost per 20 ms frame: the inbound and outbound paths of one call, G.711 against audioop, resampling.

    .venv/bin/python scripts/bench_media.py --json
    .venv/bin/python scripts/bench_media.py --json --streams 200 --seconds 10    # adds wire pacing figures

Output fields (microseconds are medians over batches of consecutive calls, timed with perf_counter_ns):
  inbound_us        one 20 ms PCMU packet: RtpPacket.parse, jitter buffer push + pop, mu-law decode, 8 -> 16 kHz
  outbound_us       one 20 ms 16 kHz frame: 16 -> 8 kHz, mu-law encode, build_rtp
  codec_vs_audioop  our mu-law decode + encode of a frame over audioop's (null without audioop);
                    g711_batched_us / codec_batched_vs_audioop: the same per frame when 200 frames go in one call
  resample_us       our 8 -> 16 kHz on one frame (resample_down_us: 16 -> 8 kHz)
  seed_resample_us  scipy.signal.resample_poly on one frame, stateless, for comparison
  jitter_included   false when rtp.jitter is missing or fails, and inbound_us then leaves it out
  pacing_p99_ms, pacing_max_burst, pacing_cpu_pct   from scripts/pacing_bench.py with --streams (else null)
The machine may be shared: figures move with other load (load_avg_1min), so compare figures from one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtp.g711 import ulaw_decode, ulaw_decode_array, ulaw_encode, ulaw_encode_array  # noqa: E402
from rtp.packet import RtpPacket, build_rtp  # noqa: E402
from rtp.resample import StreamResampler  # noqa: E402

FRAME_8K = 160
FRAME_16K = 320
SSRC = 0x5EED1234
BATCH_FRAMES = 200


def _load_audioop() -> ModuleType | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:
        return None
    return audioop


def _speech_like(rate: int, seconds: float, seed: int = 1) -> np.ndarray:
    """Noise shaped like voiced speech (a few harmonics with a slow envelope), int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    voice = sum(np.sin(2 * math.pi * 140.0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * math.pi * 3.0 * t)
    pcm = 5000.0 * envelope * voice + rng.normal(0.0, 300.0, t.size)
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16)


def per_call_us(step: Callable[[int], object], calls: int, batch: int, warmup: int = 50) -> float:
    """Median over batches of the mean cost of ``batch`` consecutive calls ``step(i)``, i running on."""
    for i in range(warmup):
        step(i)
    perf = time.perf_counter_ns
    results = []
    i = warmup
    for _ in range(max(1, calls // batch)):
        start = perf()
        for j in range(i, i + batch):
            step(j)
        results.append((perf() - start) / batch / 1000.0)
        i += batch
    return statistics.median(results)


def _jitter_factory() -> tuple[Callable[[], Any] | None, str | None]:
    try:
        from rtp.jitter import JitterBuffer

        def make() -> Any:
            return JitterBuffer(clock_rate=8000, frame_ms=20, min_delay_ms=20, start_delay_ms=40, max_delay_ms=200)

        probe = make()
        packet = RtpPacket.parse(build_rtp(0, 1, 160, SSRC, bytes(160), marker=True))
        probe.push(packet, np.zeros(FRAME_8K, dtype=np.int16), 0.0)
        frame = probe.pop(0.02)
        if len(frame.samples) != FRAME_8K:
            return None, f"JitterBuffer.pop gave {len(frame.samples)} samples"
        return make, None
    except Exception as exc:  # the module is written in parallel: measure without it rather than fail
        return None, f"{type(exc).__name__}: {exc}"


def bench_inbound(calls: int, batch: int) -> tuple[float, bool, str | None]:
    count = calls + 100
    payloads = [ulaw_encode(frame) for frame in _speech_like(8000, count * 0.02).reshape(-1, FRAME_8K)]
    wires = [build_rtp(0, (1000 + i) & 0xFFFF, (160 * i) & 0xFFFFFFFF, SSRC, payloads[i], marker=(i == 0))
             for i in range(count)]
    up = StreamResampler(8000, 16000)
    make, problem = _jitter_factory()
    if make is not None:
        jitter = make()

        def step(i: int) -> object:
            now = 0.02 * i
            packet = RtpPacket.parse(wires[i])
            jitter.push(packet, ulaw_decode(packet.payload), now)
            return up.process(jitter.pop(now).samples)
    else:

        def step(i: int) -> object:
            return up.process(ulaw_decode(RtpPacket.parse(wires[i]).payload))

    return per_call_us(step, calls, batch), make is not None, problem


def bench_outbound(calls: int, batch: int) -> float:
    frames = list(_speech_like(16000, (calls + 100) * 0.02, seed=2).reshape(-1, FRAME_16K))
    down = StreamResampler(16000, 8000)

    def step(i: int) -> object:
        payload = ulaw_encode(down.process(frames[i]))
        return build_rtp(0, i & 0xFFFF, (160 * i) & 0xFFFFFFFF, SSRC, payload)

    return per_call_us(step, calls, batch)


def bench_codec(calls: int, batch: int, audioop: ModuleType | None) -> dict[str, float | None]:
    pcm = _speech_like(8000, 0.02)
    payload = ulaw_encode(pcm)
    pcm_bytes = pcm.tobytes()
    # One media tick for many calls codes all their frames at once (DESIGN.md, Budgets): 200 frames per call here.
    frames = np.tile(pcm, (BATCH_FRAMES, 1))
    payloads = ulaw_encode_array(frames)
    ours: list[float] = []
    batched: list[float] = []
    theirs: list[float] = []
    # Interleaved rounds so all three see the same machine load.
    for _ in range(8):
        ours.append(per_call_us(lambda _i: (ulaw_decode(payload), ulaw_encode(pcm)), calls // 8, batch))
        batched.append(per_call_us(lambda _i: (ulaw_decode_array(payloads), ulaw_encode_array(frames)),
                                   calls // 8 // BATCH_FRAMES + 1, 1, warmup=2) / BATCH_FRAMES)
        if audioop is not None:
            theirs.append(per_call_us(lambda _i: (audioop.ulaw2lin(payload, 2), audioop.lin2ulaw(pcm_bytes, 2)),
                                      calls // 8, batch))
    g711, g711_batched = statistics.median(ours), statistics.median(batched)
    reference = statistics.median(theirs) if theirs else None
    return {
        "g711_us": g711,
        "audioop_g711_us": reference,
        "codec_vs_audioop": g711 / reference if reference else None,
        "g711_batched_us": g711_batched,
        "codec_batched_vs_audioop": g711_batched / reference if reference else None,
    }


def bench_resample(calls: int, batch: int) -> dict[str, float | None]:
    narrow = list(_speech_like(8000, (calls + 100) * 0.02, seed=3).reshape(-1, FRAME_8K))
    wide = list(_speech_like(16000, (calls + 100) * 0.02, seed=4).reshape(-1, FRAME_16K))
    up, down = StreamResampler(8000, 16000), StreamResampler(16000, 8000)
    result: dict[str, float | None] = {
        "resample_us": per_call_us(lambda i: up.process(narrow[i]), calls, batch),
        "resample_down_us": per_call_us(lambda i: down.process(wide[i]), calls, batch),
    }
    try:
        from scipy.signal import resample_poly
    except ImportError:
        result["seed_resample_us"] = None
    else:
        result["seed_resample_us"] = per_call_us(lambda i: resample_poly(narrow[i], 2, 1), calls // 4, batch // 4)
    return result


def _load_pacing() -> Callable[..., dict[str, Any]] | None:
    path = ROOT / "scripts" / "pacing_bench.py"
    try:
        spec = importlib.util.spec_from_file_location("pacing_bench", path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        run: Callable[..., dict[str, Any]] = module.run_pacing_bench
        return run
    except Exception:
        return None


def run(calls: int, batch: int, streams: int | None, seconds: float) -> dict[str, Any]:
    audioop = _load_audioop()
    inbound, jitter_included, jitter_problem = bench_inbound(calls, batch)
    report: dict[str, Any] = {
        "inbound_us": inbound,
        "outbound_us": bench_outbound(calls, batch),
        **bench_codec(calls, batch, audioop),
        **bench_resample(calls, batch),
        "jitter_included": jitter_included,
    }
    if jitter_problem is not None:
        report["jitter_problem"] = jitter_problem
    report.update({"pacing_p99_ms": None, "pacing_max_burst": None, "pacing_cpu_pct": None})
    if streams is not None:
        pacing = _load_pacing()
        if pacing is not None:
            report.update(pacing(streams, seconds))
    report["python"] = platform.python_version()
    report["numpy"] = np.__version__
    report["load_avg_1min"] = os.getloadavg()[0]  # other processes on the machine inflate every figure
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per figure (default 20000)")
    parser.add_argument("--batch", type=int, default=200, help="calls per timed batch (default 200)")
    parser.add_argument("--streams", type=int, default=None, help="also run the wire pacing bench with N streams")
    parser.add_argument("--seconds", type=float, default=10.0, help="pacing bench duration (default 10)")
    args = parser.parse_args(argv)
    report = run(args.calls, args.batch, args.streams, args.seconds)
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
