"""The call recorder: WAV layout (RIFF/WAVE PCM, read back with the standard library's ``wave`` as the oracle),
both channels on the call clock with silent gaps, the JSONL timeline, and the figures derived from it."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.media import AGENT_RATE, FRAME_SAMPLES, CallAudio, Pcm
from sipagent.recording import CHUNK_FRAMES, FRAME_S, CallRecorder, safe_name

pytestmark = pytest.mark.unit

T0 = 1000.0


def frame(value: int) -> Pcm:
    return np.full(FRAME_SAMPLES, value, np.int16)


def read_stereo(path: Path) -> tuple[wave._wave_params, np.ndarray[Any, Any]]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        data = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, params.nchannels)
    return params, data


def slot_values(data: np.ndarray[Any, Any], channel: int) -> list[int]:
    """The value of each 20 ms slot of one channel (the tests write constant frames)."""
    frames = data[: len(data) - len(data) % FRAME_SAMPLES, channel].reshape(-1, FRAME_SAMPLES)
    assert (frames == frames[:, :1]).all(), "a frame was split across slots"
    return [int(v) for v in frames[:, 0]]


def test_directory_name_and_files(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path, "a1b2@host/../x y", T0, wall_time=0.0)
    assert rec.path is not None and rec.path.parent == tmp_path
    assert rec.path.name.endswith("-a1b2_host_.._x_y")  # no separator survives: one path component
    rec.close(T0 + 1)
    assert sorted(p.name for p in rec.path.iterdir()) == ["call.wav", "timeline.jsonl"]
    params, data = read_stereo(rec.path / "call.wav")
    assert (params.nchannels, params.sampwidth, params.framerate, len(data)) == (2, 2, AGENT_RATE, 0)


def test_safe_name_never_empty_or_dotted() -> None:
    assert safe_name("..") == "call"
    assert safe_name("") == "call"
    assert "/" not in safe_name("a/b") and "\\" not in safe_name("a\\b")


def test_channels_line_up_on_the_call_clock_with_gaps(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path, "gaps", T0)
    # Caller talks in slots 0..9 and 200..209 (a gap of almost 4 s: several chunks of silence are written);
    # the agent answers in slots 5..7 and 150..151. Each frame carries its slot number as its value.
    caller = [*range(10), *range(200, 210)]
    agent = [5, 6, 7, 150, 151]
    for slot in sorted({*caller, *agent}):
        now = T0 + slot * FRAME_S + 0.003  # the tick runs a little after its deadline
        if slot in caller:
            rec.on_caller(frame(slot + 1), now)
        rec.on_agent(frame(-(slot + 1)) if slot in agent else None, now)
    rec.close(T0 + 5)
    assert rec.path is not None
    params, data = read_stereo(rec.path / "call.wav")
    assert len(data) == 210 * FRAME_SAMPLES  # up to the last frame, nothing after
    left, right = slot_values(data, 0), slot_values(data, 1)
    assert left == [s + 1 if s in caller else 0 for s in range(210)]
    assert right == [-(s + 1) if s in agent else 0 for s in range(210)]
    assert rec.dropped_frames == 0
    with wave.open(str(rec.path / "call.wav"), "rb") as wav:  # the header's sizes were patched on close
        assert wav.getnframes() == len(data)
    assert (rec.path / "call.wav").stat().st_size == 44 + len(data) * 4


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=5, max_size=300), st.floats(0.0, 0.008))
def test_a_stalled_tick_keeps_every_frame_in_order(batches: list[int], late: float) -> None:
    # The stream pops the jitter buffer once per elapsed slot, several at the same `now` after a stall: each
    # frame of the stream must land in its own slot, in order, and the file must hold exactly those frames.
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        rec = CallRecorder(Path(directory), "stall", T0)
        slot = sent = 0
        for batch in batches:
            slot += max(batch, 1)
            for _ in range(batch):
                sent += 1
                rec.on_caller(frame(sent), T0 + slot * FRAME_S + late)
        rec.close(T0 + 100)
        assert rec.path is not None
        _, data = read_stereo(rec.path / "call.wav")
        values = [v for v in slot_values(data, 0) if v]
        assert values == list(range(1, sent + 1))


def test_writes_happen_in_one_second_chunks(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path, "chunks", T0)
    assert rec.path is not None
    wav_path = rec.path / "call.wav"
    sizes = []
    for slot in range(4 * CHUNK_FRAMES):
        rec.on_caller(frame(1), T0 + slot * FRAME_S)
        sizes.append(wav_path.stat().st_size)
    # Nothing is written per frame: the file holds the header plus whole seconds (64 KB of stereo) only, and
    # at most two seconds are held in memory.
    second = CHUNK_FRAMES * FRAME_SAMPLES * 4
    assert {(size - 44) % second for size in sizes if size} == {0}
    assert sizes[-1] >= 44 + 2 * second
    rec.close(T0 + 4)
    assert wav_path.stat().st_size == 44 + 4 * CHUNK_FRAMES * FRAME_SAMPLES * 4


def test_timeline_lines_and_figures(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path, "timeline", T0)
    rec.event("established", T0, codec="PCMU")
    slot = 0

    def tick(pcm: Pcm | None) -> float:
        nonlocal slot
        now = T0 + slot * FRAME_S
        rec.on_agent(pcm, now)
        slot += 1
        return now

    tick(None)
    rec.event("end_of_turn", T0 + 0.02, text="hello")
    rec.event("reply_start", T0 + 0.03, turn_id=1, text="hi")
    tick(np.zeros(FRAME_SAMPLES, np.int16))  # a silent lead-in frame is not the first audible one
    first = tick(frame(1000))
    for _ in range(3):
        tick(frame(1000))
    last = tick(frame(1000))
    tick(None)  # the buffer ran empty: the utterance ended with the previous frame
    # A second reply, cut by a barge-in whose voice onset was at `onset`.
    rec.event("end_of_turn", T0 + slot * FRAME_S, text="and")
    ended2 = T0 + slot * FRAME_S
    rec.event("reply_start", ended2, turn_id=2)
    first2 = tick(frame(500))
    onset = tick(frame(500))
    rec.event("barge_in", onset + 0.01, turn_id=2, voice_since=onset, decided_at=onset + 0.01)
    last2 = tick(frame(500))
    tick(None)
    rec.event("dtmf", T0 + 9, digit="5")
    figures = rec.close(T0 + 10)
    assert rec.path is not None
    lines = [json.loads(line) for line in (rec.path / "timeline.jsonl").read_text().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds == ["established", "end_of_turn", "reply_start", "first_agent_rtp", "last_agent_packet",
                     "end_of_turn", "reply_start", "first_agent_rtp", "barge_in", "last_agent_packet", "dtmf"]
    assert lines[0] == {"t": 0.0, "kind": "established", "codec": "PCMU"}
    assert lines[3]["t"] == pytest.approx(first - T0) and lines[4]["t"] == pytest.approx(last - T0)
    assert lines[8]["voice_since"] == pytest.approx(onset - T0)  # loop times are written on the call clock
    assert lines[9]["t"] == pytest.approx(last2 - T0)
    assert all(a["t"] <= b["t"] for a, b in zip(lines, lines[1:], strict=False))
    assert figures.duration_s == pytest.approx(10.0)
    assert (figures.turns, figures.barge_ins) == (2, 1)
    assert figures.turn_latencies_s == pytest.approx((first - (T0 + 0.02), first2 - ended2))
    # Voice onset to the end of the last agent frame on the wire.
    assert figures.barge_in_latencies_s == pytest.approx((last2 + FRAME_S - onset,))
    assert figures.response_ms_p50 == pytest.approx(np.median(figures.turn_latencies_s) * 1000, abs=0.05)


def test_without_a_directory_only_the_figures_are_kept(tmp_path: Path) -> None:
    rec = CallRecorder(None, "figures", T0)
    rec.event("end_of_turn", T0 + 1)
    rec.event("reply_start", T0 + 1.1)
    rec.on_agent(frame(2000), T0 + 1.5)
    rec.on_caller(frame(1), T0 + 1.5)
    figures = rec.close(T0 + 2)
    assert rec.path is None and not list(tmp_path.iterdir())
    assert figures.turn_latencies_s == pytest.approx((0.5,))
    assert figures.response_ms_p50 == pytest.approx(500.0)


def test_call_audio_reports_every_tick_to_on_sent() -> None:
    sent: list[tuple[Pcm | None, float]] = []
    audio = CallAudio(lambda pcm, now, status: None, 8000, on_sent=lambda pcm, now: sent.append((pcm, now)))
    audio.speech.push(np.concatenate([frame(7), frame(8)]))
    outs = [audio.source(float(k)) for k in range(3)]
    assert [None if p is None else int(p[0]) for p, _ in sent] == [7, 8, None]
    assert [now for _, now in sent] == [0.0, 1.0, 2.0]
    assert outs[2] is None and outs[0] is not None and len(outs[0]) == FRAME_SAMPLES // 2  # 8 kHz on the line
