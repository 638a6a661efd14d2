"""VoiceActivityDetector: hysteresis timing on synthetic tone bursts, robustness to clicks and pauses, cost."""

from __future__ import annotations

import time

import numpy as np
import pytest
import webrtcvad
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.agent.vad import VadConfig, VadEvent, VadEventKind, VoiceActivityDetector

pytestmark = pytest.mark.unit

RATE = 16000
FRAME = 320
FRAME_S = FRAME / RATE


def tone(seconds: float, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    # A voice-band tone with harmonics; the sample count is exact so segment boundaries are known to the sample.
    t = np.arange(round(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * k * freq * t) / k for k in (1, 2, 3))
    return (wave / 1.84 * level * 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def run(signal: np.ndarray, vad: VoiceActivityDetector | None = None) -> list[VadEvent]:
    vad = vad or VoiceActivityDetector()
    events = []
    for i, frame in enumerate(signal[: len(signal) // FRAME * FRAME].reshape(-1, FRAME)):
        event = vad.update(frame, (i + 1) * FRAME_S)  # now = arrival of the frame's last sample
        if event is not None:
            events.append(event)
    return events


class Scripted:
    """A classifier replaying a voiced/unvoiced pattern, to test the hysteresis exactly."""

    def __init__(self, pattern: str) -> None:
        self.decisions = iter(pattern)

    def __call__(self, frame: bytes, rate: int) -> bool:
        return next(self.decisions) == "1"


def scripted(pattern: str, config: VadConfig | None = None) -> list[VadEvent]:
    config = config or VadConfig(warmup_ms=0)
    vad = VoiceActivityDetector(config, Scripted(pattern))
    return run(np.zeros(len(pattern) * FRAME, dtype=np.int16), vad)


def test_onset_needs_onset_ms_within_the_window_and_is_dated_at_the_first_voiced_frame() -> None:
    # 60 ms = 3 voiced frames within 100 ms = 5 frames; frame k (1-based) spans [(k-1)*20 ms, k*20 ms].
    events = scripted("00000" "1011" "0000000000")
    start = events[0]
    assert start.kind is VadEventKind.SPEECH_START
    assert start.detected_at == pytest.approx(9 * FRAME_S)  # the third voiced frame is frame 9
    assert start.at == pytest.approx(5 * FRAME_S)  # the first voiced frame of the window, frame 6, starts at 100 ms


@pytest.mark.parametrize("pattern", ["10000", "1100000", "1010000000", "110000"])
def test_sparse_voiced_frames_never_start_speech(pattern: str) -> None:
    # At most two voiced frames in any five: below the three needed.
    assert scripted(pattern * 6) == []


def test_end_needs_end_ms_of_unvoiced_frames_and_is_dated_at_the_last_voiced_frame() -> None:
    config = VadConfig(end_ms=100, warmup_ms=0)
    events = scripted("111" "1111" "0000" "1" "00000" "000", config)  # a 4-frame gap does not end speech
    assert [e.kind for e in events] == [VadEventKind.SPEECH_START, VadEventKind.SPEECH_END]
    end = events[1]
    assert end.at == pytest.approx(12 * FRAME_S)  # the last voiced frame is frame 12
    assert end.detected_at == pytest.approx(17 * FRAME_S)  # five unvoiced frames (100 ms) later


def test_warmup_frames_cannot_start_speech() -> None:
    config = VadConfig(warmup_ms=100)
    assert scripted("11111" "00000", config) == []
    assert [e.kind for e in scripted("11111" "111", config)] == [VadEventKind.SPEECH_START]


def test_burst_gives_one_start_and_one_end_at_the_burst_edges() -> None:
    config = VadConfig(onset_ms=60, onset_window_ms=100, end_ms=400)
    events = run(np.concatenate([silence(1.0), tone(1.0), silence(1.0)]), VoiceActivityDetector(config))
    assert [e.kind for e in events] == [VadEventKind.SPEECH_START, VadEventKind.SPEECH_END]
    start, end = events
    # Onset is dated at the burst start and confirmed onset_ms later; one frame of slack for webrtcvad itself.
    assert start.at == pytest.approx(1.0, abs=FRAME_S)
    assert start.detected_at - start.at == pytest.approx(config.onset_ms / 1000, abs=FRAME_S)
    # End is dated at the burst end plus webrtcvad's own hangover (up to 7 frames at mode 3) and confirmed
    # end_ms after that.
    assert 2.0 - FRAME_S <= end.at <= 2.0 + 8 * FRAME_S
    assert end.detected_at - end.at == pytest.approx(config.end_ms / 1000, abs=1e-9)


@pytest.mark.parametrize("end_ms", [300, 600])
def test_end_delay_follows_the_configuration(end_ms: int) -> None:
    events = run(np.concatenate([silence(0.5), tone(0.6), silence(1.0)]),
                 VoiceActivityDetector(VadConfig(end_ms=end_ms)))
    end = events[-1]
    assert end.kind is VadEventKind.SPEECH_END
    assert end.detected_at - end.at == pytest.approx(end_ms / 1000, abs=1e-9)
    assert 1.1 - FRAME_S <= end.at <= 1.1 + 8 * FRAME_S


def test_pause_shorter_than_end_keeps_one_segment() -> None:
    signal = np.concatenate([silence(0.5), tone(0.5), silence(0.2), tone(0.5), silence(1.0)])
    events = run(signal, VoiceActivityDetector(VadConfig(end_ms=400)))
    assert [e.kind for e in events] == [VadEventKind.SPEECH_START, VadEventKind.SPEECH_END]
    assert events[1].at >= 1.7 - FRAME_S


def test_pause_longer_than_end_splits_segments() -> None:
    signal = np.concatenate([silence(0.5), tone(0.5), silence(0.8), tone(0.5), silence(1.0)])
    kinds = [e.kind for e in run(signal, VoiceActivityDetector(VadConfig(end_ms=400)))]
    assert kinds == [VadEventKind.SPEECH_START, VadEventKind.SPEECH_END] * 2


@pytest.mark.parametrize("seed", range(3))
def test_line_noise_from_the_first_frame_is_not_speech(seed: int) -> None:
    # About -55 dBFS: a fresh webrtcvad flags the first few frames of it as voiced; the warm-up absorbs them.
    noise = (np.random.default_rng(seed).standard_normal(RATE * 2) * 60).astype(np.int16)
    fresh = webrtcvad.Vad(3)
    assert any(fresh.is_speech(f.tobytes(), RATE) for f in noise.reshape(-1, FRAME)[:5])  # the trap is real
    assert run(noise) == []


def test_state_properties_track_the_segment() -> None:
    vad = VoiceActivityDetector(VadConfig(end_ms=600))
    frames = np.concatenate([tone(0.3), silence(0.3)]).reshape(-1, FRAME)
    for i, frame in enumerate(frames):
        vad.update(frame, (i + 1) * FRAME_S)
    assert vad.speaking and not vad.voiced
    assert 0.0 < vad.silence <= 0.3 + 1e-9
    vad.reset()
    assert not vad.speaking and vad.silence == 0.0


def test_wrong_frame_size_names_the_expected_size() -> None:
    vad = VoiceActivityDetector()
    with pytest.raises(ValueError, match="320 int16 samples"):
        vad.update(np.zeros(160, dtype=np.int16), 0.02)
    with pytest.raises(ValueError, match="int16"):
        vad.update(np.zeros(320, dtype=np.float32), 0.02)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": 4}, {"sample_rate": 22050}, {"frame_ms": 25}, {"onset_ms": 200, "onset_window_ms": 100}, {"end_ms": 0},
     {"warmup_ms": -1}],
)
def test_config_rejects_values_webrtcvad_or_the_hysteresis_cannot_use(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="VadConfig"):
        VadConfig(**kwargs)


def test_8khz_frames_are_supported() -> None:
    vad = VoiceActivityDetector(VadConfig(sample_rate=8000))
    signal = np.concatenate([silence(0.5), tone(0.5), silence(1.0)])[::2]  # 8 kHz: 160-sample frames
    events = [vad.update(f, (i + 1) * FRAME_S) for i, f in enumerate(signal.reshape(-1, 160))]
    assert [e.kind for e in events if e is not None] == [VadEventKind.SPEECH_START, VadEventKind.SPEECH_END]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=12))
def test_events_alternate_and_respect_the_hysteresis(segments: list[tuple[bool, int]]) -> None:
    config = VadConfig(end_ms=300)
    signal = np.concatenate([tone(n * FRAME_S) if on else silence(n * FRAME_S) for on, n in segments])
    events = run(signal, VoiceActivityDetector(config))
    kinds = [e.kind for e in events]
    assert kinds == [VadEventKind.SPEECH_START, VadEventKind.SPEECH_END] * (len(kinds) // 2) + (
        [VadEventKind.SPEECH_START] if len(kinds) % 2 else [])
    for event in events:
        if event.kind is VadEventKind.SPEECH_START:
            assert event.detected_at - event.at >= config.onset_ms / 1000 - 1e-9
        else:
            assert event.detected_at - event.at == pytest.approx(config.end_ms / 1000, abs=1e-9)
    for earlier, later in zip(events, events[1:], strict=False):
        assert earlier.at <= later.at


def test_cost_per_frame_is_a_few_microseconds() -> None:
    vad = VoiceActivityDetector()
    frames = np.concatenate([tone(1.0), silence(1.0)] * 5).reshape(-1, FRAME)
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        vad.update(frame, i * FRAME_S)
    per_frame = (time.perf_counter() - start) / len(frames)
    assert per_frame < 30e-6  # measured about 4 us; generous for a loaded CI machine
