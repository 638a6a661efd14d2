"""sipagent replay: stream statistics, digits, the offline agent on a virtual clock, outputs and CLI exit codes.

Expectations are built into the captures (which packets were dropped, duplicated, swapped; the arrival offsets)
or come from the RFCs: RFC 3550 A.8 gives the jitter of a constant |D| in closed form, J_n = d (1 - (15/16)^n);
the sip-tester samples are PCMA at a 30 ms packet time and one RFC 4733 event each (the digit in the file name);
the speech capture says a phrase of the agent script, whose answer the script states.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rtp.g711 import ulaw_encode
from rtp.packet import build_rtp
from rtp.resample import StreamResampler
from sipagent.agent.assistant import DEFAULT_SCRIPT
from sipagent.agent.script import Script
from sipagent.cli import app
from sipagent.replay.report import replay
from sipagent.replay.runner import ReplayConfig
from tests.conftest import REQUIRE_PEERS
from tests.rtp import capture_writer as cw

pytestmark = pytest.mark.unit

CALLER, CALLEE = ("192.0.2.10", 40000), ("198.51.100.20", 30000)
SIP_TESTER = Path("/usr/share/sip-tester")
PHRASE = "what are your opening hours"
T0 = 1_700_000_000.0


def sample(name: str) -> Path:
    """A sip-tester sample capture (``dpkg -L sip-tester``); require_tool semantics of tests.conftest."""
    path = SIP_TESTER / name
    if not path.is_file():
        message = f"sample capture {name!r} of the sip-tester package is not installed"
        if REQUIRE_PEERS:
            pytest.fail(message + " (SIPAGENT_REQUIRE_PEERS=1)")
        pytest.skip(message)
    return path


def run(path: Path, out: Path | None = None, **options: object) -> dict[str, object]:
    options.setdefault("agent", False)
    return asyncio.run(replay(path, out, ReplayConfig(**options))).report  # type: ignore[arg-type]


def frames(records: list[tuple[float, bytes]], src: cw.Address = CALLER, dst: cw.Address = CALLEE,
           ) -> list[tuple[float, bytes]]:
    return [(t, cw.udp_frame(src, dst, p)) for t, p in records]


def impaired(count: int = 100) -> tuple[list[tuple[float, bytes]], dict[str, int]]:
    """A 20 ms PCMU stream with 3 packets dropped, 2 duplicated and 2 adjacent pairs swapped."""
    packets = [build_rtp(0, 1000 + i, 5000 + 160 * i, 0xCAFE, b"\xff" * 160, marker=i == 0) for i in range(count)]
    order = list(range(count))
    for i in (30, 60):  # swap neighbours: the later one arrives first, the earlier then fills a hole
        order[i], order[i + 1] = order[i + 1], order[i]
    dropped = {10, 45, 80}
    arrival: list[tuple[float, bytes]] = []
    for slot, i in enumerate(order):
        if i in dropped:
            continue
        arrival.append((T0 + 0.02 * slot, packets[i]))
        if i in (20, 70):
            arrival.append((T0 + 0.02 * slot + 0.001, packets[i]))
    return arrival, {"expected": count, "lost": 3, "duplicated": 2, "reordered": 2, "packets": count - 3 + 2}


def jittery(count: int = 50, d: float = 0.005) -> list[tuple[float, bytes]]:
    """Packets every 20 ms of media, every other one arriving ``d`` late: |D| = d for every packet after the first."""
    return [(T0 + 0.5 + 0.02 * i + (d if i % 2 else 0.0),
             build_rtp(8, 7 + i, 160 * i, 0xBEEF, b"\xd5" * 160)) for i in range(count)]


@pytest.mark.parametrize("writer", [cw.write_pcap, cw.write_pcapng])
def test_stream_statistics_match_the_injected_impairments(tmp_path: Path, writer: object) -> None:
    records, want = impaired()
    d = 0.005
    path = tmp_path / "call.cap"
    writer(path, sorted(frames(records) + frames(jittery(d=d), CALLEE, CALLER)))  # type: ignore[operator]
    report = run(path)
    first, second = report["streams"]  # type: ignore[misc]
    assert first["ssrc"] == 0xCAFE and first["src"] == "192.0.2.10:40000" and first["dst"] == "198.51.100.20:30000"
    assert first["codecs"] == {"0": "PCMU"} and first["ptime_ms"] == 20.0
    for key, value in want.items():
        assert first[key] == value, key
    assert second["codecs"] == {"8": "PCMA"} and second["lost"] == second["duplicated"] == second["reordered"] == 0
    assert second["jitter_ms"] == pytest.approx(1000 * d * (1 - (15 / 16) ** 49), abs=1e-3)
    assert second["start_s"] == pytest.approx(0.5, abs=1e-6)
    assert second["duration_s"] == pytest.approx(0.02 * 49 + d, abs=1e-6)
    assert report["caller_stream"] == 0


def test_sip_tester_pcma_sample_is_listed_at_30ms() -> None:
    report = run(sample("g711a.pcap"))
    (stream,) = report["streams"]  # type: ignore[misc]
    assert stream["codecs"] == {"8": "PCMA"} and stream["ptime_ms"] == 30.0
    assert stream["lost"] == 0 and report["caller_stream"] == 0 and report["errors"] == []
    assert report["media"]["duration_s"] >= stream["duration_s"]  # type: ignore[index]


@pytest.mark.parametrize("name,digit", [("dtmf_2833_1.pcap", "1"), ("dtmf_2833_pound.pcap", "#"),
                                        ("dtmf_2833_star.pcap", "*"), ("dtmf_2833_9.pcap", "9")])
def test_sip_tester_rfc4733_digits_are_reported(name: str, digit: str) -> None:
    report = run(sample(name))
    (event,) = report["dtmf"]  # type: ignore[misc]
    assert event["digit"] == digit and event["start_s"] == 0.0
    assert 40 <= event["duration_ms"] <= 2000  # RFC 4733 §2.5.1.3 updates a 40 ms minimum press


def test_corrupt_capture_keeps_what_came_before(tmp_path: Path) -> None:
    records = [(T0 + 0.02 * i, build_rtp(0, i, 160 * i, 0xCAFE, b"\xff" * 160)) for i in range(40)]
    data, offsets = cw.pcap_bytes(frames(records))
    cut = offsets[25]
    path = tmp_path / "broken.pcap"
    path.write_bytes(data[: cut + 20])  # record 25's header promises more bytes than are left
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["replay", str(path), "--out", str(out), "--no-agent"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if str(path) in line]
    assert len(lines) == 1 and f"at byte {cut}" in lines[0]
    report = json.loads((out / "report.json").read_text())
    assert report["streams"][0]["packets"] == 25 and report["errors"]
    assert (out / "call.wav").is_file() and (out / "summary.md").is_file()


def test_no_rtp_lists_the_udp_flows(tmp_path: Path) -> None:
    invite = cw.sip_message("INVITE sip:b@example.com SIP/2.0", "c1", "1 INVITE")
    path = tmp_path / "sip.pcap"
    cw.write_pcap(path, frames([(T0, invite), (T0 + 1, b"\x00\x01hello")], ("192.0.2.1", 5060), ("192.0.2.2", 5060)))
    result = CliRunner().invoke(app, ["replay", str(path), "--no-agent"])
    assert result.exit_code == 2
    assert "no RTP stream" in result.stderr and "192.0.2.1:5060 -> 192.0.2.2:5060" in result.stderr


def test_unknown_payload_type_is_reported_and_skipped(tmp_path: Path) -> None:
    packets = [build_rtp(0 if i % 5 else 120, 100 + i, 160 * i, 0x77, b"\xff" * 161) for i in range(30)]
    path = tmp_path / "odd.pcap"
    cw.write_pcap(path, frames([(T0 + 0.02 * i, p) for i, p in enumerate(packets)]))
    report = run(path)
    assert report["streams"][0]["skipped_payload_types"] == [120]  # type: ignore[index]
    assert any("120" in w for w in report["warnings"])  # type: ignore[attr-defined]


# --- the offline agent ------------------------------------------------------------------------------------------

async def _synthesize(text: str) -> np.ndarray:
    from sipagent.providers.offline.tts import OfflineTextToSpeech

    tts = OfflineTextToSpeech()
    try:
        return np.concatenate([chunk.pcm async for chunk in tts.synthesize(text)]).astype(np.int16)
    finally:
        await tts.aclose()


@pytest.fixture(scope="module")
def speech8k() -> np.ndarray:
    pcm = StreamResampler(16000, 8000).process(asyncio.run(_synthesize(PHRASE)))
    pcm = np.concatenate([np.zeros(8000, np.int16), pcm, np.zeros(12000, np.int16)])
    return pcm[: len(pcm) // 160 * 160]


@pytest.fixture(scope="module")
def speech_capture(speech8k: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    chunks = speech8k.reshape(-1, 160)
    packets = [build_rtp(0, 2000 + i, 160 * i, 0x5151, ulaw_encode(c), marker=i == 0) for i, c in enumerate(chunks)]
    path = tmp_path_factory.mktemp("speech") / "speech.pcap"
    cw.write_pcap(path, frames([(T0 + 0.02 * i, p) for i, p in enumerate(packets)]))
    return path


def _answer(intent: str) -> str:
    return next(i.answer for i in Script.load(DEFAULT_SCRIPT).intents if i.name == intent)


@pytest.mark.e2e
def test_speech_capture_gives_caller_and_agent_turns_deterministically(speech_capture: Path, tmp_path: Path) -> None:
    first = run(speech_capture, tmp_path / "a", agent=True)
    caller = [t for t in first["turns"] if t["speaker"] == "caller"]  # type: ignore[attr-defined]
    agent = [t for t in first["turns"] if t["speaker"] == "agent"]  # type: ignore[attr-defined]
    assert [t["text"] for t in caller] == [PHRASE]
    assert [t["text"] for t in agent] == [_answer("opening_hours")]
    assert 0.8 <= caller[0]["start_s"] < caller[0]["end_s"] < agent[0]["start_s"] < agent[0]["end_s"]
    response = first["timings"]["response_ms"]  # type: ignore[index]
    assert response == [pytest.approx(1000 * (agent[0]["start_s"] - caller[0]["end_s"]), abs=1)]
    run(speech_capture, tmp_path / "b", agent=True)
    assert (tmp_path / "a" / "report.json").read_bytes() == (tmp_path / "b" / "report.json").read_bytes()
    with wave.open(str(tmp_path / "a" / "call.wav"), "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 16000)
        stereo = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    start = round(agent[0]["start_s"] * 16000)
    assert not stereo[:start, 1].any() and stereo[start:, 1].any() and stereo[:, 0].any()
    assert PHRASE in (tmp_path / "a" / "transcript.txt").read_text()


@pytest.mark.e2e
def test_cli_checks_set_the_exit_code(speech_capture: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["replay", str(speech_capture), "--out", str(tmp_path / "ok"), "--expect", "opening hours",
                             "--expect", "Monday to Friday", "--max-response-ms", "5000", "--json"])
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["turns"][0]["text"] == PHRASE
    missing = runner.invoke(app, ["replay", str(speech_capture), "--expect", "banana bread"])
    assert missing.exit_code == 1 and "banana bread" in missing.stderr
    slow = runner.invoke(app, ["replay", str(speech_capture), "--max-response-ms", "1"])
    assert slow.exit_code == 1 and "slower than 1 ms" in slow.stderr


@pytest.mark.e2e
def test_wav_input_is_the_caller_side(speech8k: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "caller.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(speech8k.astype("<i2").tobytes())
    result = CliRunner().invoke(app, ["replay", str(path), "--expect", PHRASE, "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "wav"
