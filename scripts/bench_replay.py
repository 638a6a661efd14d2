"""Replay throughput in times real time: ``sipagent replay`` on synthetic captures, no output files.

    .venv/bin/python scripts/bench_replay.py [--seconds 120] [--agent-seconds 30]

Output (JSON on stdout):
  decode_x     capture seconds per wall second for read + stream analysis + jitter buffer + G.711 decode +
               8 -> 16 kHz on a PCMU capture with 1% loss and some reordering (target >= 500)
  agent_x      the same plus VAD, the offline recognizer (pocketsphinx worker, script grammar), the script's
               replies and the offline TTS, on a capture of synthesized questions with pauses (target >= 5);
               includes starting the worker process
The machine may be shared: figures move with other load (load_avg_1min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtp.g711 import ulaw_encode  # noqa: E402
from rtp.packet import build_rtp  # noqa: E402
from rtp.resample import StreamResampler  # noqa: E402
from sipagent.replay.report import replay  # noqa: E402
from sipagent.replay.runner import ReplayConfig  # noqa: E402
from tests.rtp import capture_writer as cw  # noqa: E402

CALLER, CALLEE = ("192.0.2.10", 40000), ("198.51.100.20", 30000)
QUESTIONS = ("what are your opening hours", "where are you located", "what time do you close")


def write_capture(path: Path, pcm8: np.ndarray, *, loss_every: int = 0, swap_every: int = 0) -> float:
    frames = pcm8[: len(pcm8) // 160 * 160].reshape(-1, 160)
    packets = [build_rtp(0, i & 0xFFFF, 160 * i, 0x4242, ulaw_encode(f), marker=i == 0) for i, f in enumerate(frames)]
    order = list(range(len(packets)))
    if swap_every:
        for i in range(5, len(order) - 1, swap_every):
            order[i], order[i + 1] = order[i + 1], order[i]
    records = [(1000.0 + 0.02 * slot + 0.003 * (i % 3), cw.udp_frame(CALLER, CALLEE, packets[i]))
               for slot, i in enumerate(order) if not (loss_every and i % loss_every == 7)]
    cw.write_pcap(path, records)
    return len(frames) * 0.02


async def synthesize(text: str) -> np.ndarray:
    from sipagent.providers.offline.tts import OfflineTextToSpeech

    tts = OfflineTextToSpeech()
    try:
        pcm = np.concatenate([chunk.pcm async for chunk in tts.synthesize(text)]).astype(np.int16)
    finally:
        await tts.aclose()
    return StreamResampler(16000, 8000).process(pcm)


def timed(path: Path, config: ReplayConfig) -> float:
    start = time.perf_counter()
    asyncio.run(replay(path, None, config))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--agent-seconds", type=float, default=30.0)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "media.pcap"
        noise = (rng.standard_normal(int(args.seconds * 8000)) * 3000).astype(np.int16)
        media_s = write_capture(media, noise, loss_every=100, swap_every=50)
        timed(media, ReplayConfig(agent=False))  # warm imports and resampler plans
        decode_s = min(timed(media, ReplayConfig(agent=False)) for _ in range(3))

        speech = Path(tmp) / "speech.pcap"
        pieces, total, k = [], 0, 0
        while total < args.agent_seconds * 8000:
            said = asyncio.run(synthesize(QUESTIONS[k % len(QUESTIONS)]))
            pause = np.zeros(8000 * 9, np.int16)  # room for the reply, so no barge-in cancels a turn
            pieces += [np.zeros(8000, np.int16), said, pause]
            total += 8000 + len(said) + len(pause)
            k += 1
        speech_s = write_capture(speech, np.concatenate(pieces))
        agent_s = timed(speech, ReplayConfig())
    print(json.dumps({
        "decode_capture_s": round(media_s, 1), "decode_wall_s": round(decode_s, 4),
        "decode_x": round(media_s / decode_s, 1), "decode_target_x": 500,
        "agent_capture_s": round(speech_s, 1), "agent_wall_s": round(agent_s, 3),
        "agent_x": round(speech_s / agent_s, 1), "agent_target_x": 5, "questions": k,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
