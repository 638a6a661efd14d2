"""The streaming resampler: exact chunking, steady frame sizes, and its filter measured from the outside (tone fits,
image and alias energy, cross-correlation against scipy's zero-phase resample_poly)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from rtp.resample import StreamResampler

pytestmark = pytest.mark.unit

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

TELEPHONE = [(8000, 16000), (16000, 8000)]
# TTS engines: espeak-ng and piper at 22050 Hz, several cloud voices at 24000 Hz.
RATIOS = [*TELEPHONE, (22050, 16000), (22050, 8000), (24000, 8000), (24000, 16000), (16000, 24000), (44100, 16000)]


def tone(freq: float, rate: int, seconds: float, amplitude: float, phase: float = 0.0) -> Int16Array:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amplitude * np.sin(2 * math.pi * freq * t + phase)).astype(np.int16)


def amplitude_at(x: npt.NDArray[np.generic], freq: float, rate: int) -> float:
    """Least-squares amplitude of a sinusoid at ``freq`` (plus a constant) over the whole of ``x``."""
    t = np.arange(len(x)) / rate
    basis = np.column_stack([np.sin(2 * math.pi * freq * t), np.cos(2 * math.pi * freq * t), np.ones_like(t)])
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(math.hypot(coef[0], coef[1]))


def settled(out: Int16Array, resampler: StreamResampler, seconds: float = 1.0) -> Int16Array:
    """``seconds`` of output after the start-up transient (filter history still zero), which lasts at most twice
    the group delay."""
    skip = 2 * resampler.delay_samples + resampler.out_rate // 100
    n = round(seconds * resampler.out_rate)
    assert len(out) >= skip + n
    return out[skip : skip + n]


def in_frames(resampler: StreamResampler, x: Int16Array, frame: int) -> list[Int16Array]:
    return [resampler.process(x[i : i + frame]) for i in range(0, len(x), frame)]


def test_g711_sizes_one_frame_out_per_frame_in() -> None:
    up, down = StreamResampler(8000, 16000), StreamResampler(16000, 8000)
    rng = np.random.default_rng(1)
    for _ in range(60):
        assert up.process(rng.integers(-3000, 3000, 160).astype(np.int16)).shape == (320,)
        assert down.process(rng.integers(-3000, 3000, 320).astype(np.int16)).shape == (160,)


@pytest.mark.parametrize(("in_rate", "out_rate"), RATIOS)
def test_frames_of_20ms_are_steady_and_equal_the_whole_signal(in_rate: int, out_rate: int) -> None:
    rng = np.random.default_rng(in_rate + out_rate)
    x = (rng.normal(0, 6000, in_rate) + tone(440.0, in_rate, 1.0, 6000)).clip(-32768, 32767).astype(np.int16)
    whole = StreamResampler(in_rate, out_rate).process(x)
    assert whole.dtype == np.int16 and len(whole) == out_rate  # one second in, one second out
    frames = in_frames(StreamResampler(in_rate, out_rate), x, in_rate // 50)
    assert {len(f) for f in frames} == {out_rate // 50}  # never a burst, never an empty frame
    assert np.array_equal(np.concatenate(frames), whole)


@settings(max_examples=60, deadline=None)
@given(
    ratio=st.sampled_from(RATIOS),
    seed=st.integers(0, 2**32 - 1),
    length=st.integers(0, 3000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
)
def test_any_chunking_gives_identical_output(ratio: tuple[int, int], seed: int, length: int, cuts: list[int]) -> None:
    x = np.random.default_rng(seed).integers(-32768, 32768, length).astype(np.int16)
    whole = StreamResampler(*ratio).process(x)
    resampler = StreamResampler(*ratio)
    pieces = [resampler.process(part) for part in np.split(x, sorted(c for c in cuts if c <= length))]
    assert np.array_equal(np.concatenate(pieces), whole)


def test_mixing_frame_sizes_keeps_the_stream_exact() -> None:
    # A steady 20 ms stream interrupted by odd chunks (a late packet, a short TTS tail) and back again.
    rng = np.random.default_rng(5)
    x = rng.integers(-20000, 20000, 16000).astype(np.int16)
    for ratio, frame in (((8000, 16000), 160), ((16000, 8000), 320), ((24000, 8000), 480)):
        sizes = [frame] * 7 + [1, 37, frame - 1] + [frame] * 9 + [3, frame] * 4
        resampler, pieces, pos = StreamResampler(*ratio), [], 0
        for size in sizes:
            pieces.append(resampler.process(x[pos : pos + size]))
            pos += size
        expected = StreamResampler(*ratio).process(x[:pos])
        assert np.array_equal(np.concatenate(pieces), expected)


def test_reset_forgets_history() -> None:
    rng = np.random.default_rng(9)
    first, second = (rng.integers(-9000, 9000, 800).astype(np.int16) for _ in range(2))
    used = StreamResampler(16000, 8000)
    used.process(first)
    used.process(first[:33])
    used.reset()
    assert np.array_equal(used.process(second), StreamResampler(16000, 8000).process(second))


@pytest.mark.parametrize(("in_rate", "out_rate"), RATIOS)
def test_passband_is_flat(in_rate: int, out_rate: int) -> None:
    top = 0.425 * min(in_rate, out_rate)  # 3.4 kHz for the telephone band
    for freq in (100.0, 300.0, 1000.0, 2000.0, 3000.0, top * 0.9, top):
        x = tone(freq, in_rate, 1.2, 10000.0)
        resampler = StreamResampler(in_rate, out_rate)
        out = settled(resampler.process(x), resampler)
        gain_db = 20 * math.log10(amplitude_at(out, freq, out_rate) / amplitude_at(x, freq, in_rate))
        assert abs(gain_db) < 0.5, (freq, gain_db)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2000.0, 3000.0, 3400.0])
def test_upsampling_images_are_60db_down(freq: float) -> None:
    # Zero-stuffing 8 kHz to 16 kHz mirrors a tone at f to 8000 - f; the filter must remove the mirror.
    x = tone(freq, 8000, 1.2, 16000.0)
    resampler = StreamResampler(8000, 16000)
    out = settled(resampler.process(x), resampler)
    wanted, image = amplitude_at(out, freq, 16000), amplitude_at(out, 8000.0 - freq, 16000)
    assert 20 * math.log10(image / wanted) < -60.0


@pytest.mark.parametrize(("in_rate", "out_rate"), [r for r in RATIOS if r[1] < r[0]])
def test_downsampling_removes_what_would_alias(in_rate: int, out_rate: int) -> None:
    # Everything from the mirror of the passband edge (4.6 kHz for 8 kHz output) up to the input Nyquist frequency
    # would fold into the output band; it must come out at least 60 dB down.
    low, high = 0.575 * out_rate, 0.5 * in_rate
    for freq in np.linspace(low, high - 50.0, 6):
        x = tone(float(freq), in_rate, 1.2, 16000.0)
        resampler = StreamResampler(in_rate, out_rate)
        out = settled(resampler.process(x), resampler)
        assert np.std(out) < 10 ** (-60 / 20) * np.std(x.astype(np.float64)), freq


@pytest.mark.parametrize(("in_rate", "out_rate"), RATIOS)
def test_delay_by_cross_correlation_with_zero_phase_reference(in_rate: int, out_rate: int) -> None:
    common = math.gcd(in_rate, out_rate)
    up, down = out_rate // common, in_rate // common
    # Noise confined to the passband, so both resamplers should agree on it.
    rng = np.random.default_rng(3)
    band = signal.firwin(801, 0.4 * min(in_rate, out_rate), fs=in_rate)
    x = np.round(signal.fftconvolve(rng.normal(0, 8000, in_rate), band, mode="same")).astype(np.int16)
    reference = signal.resample_poly(x.astype(np.float64), up, down)  # zero phase: aligned with the input
    resampler = StreamResampler(in_rate, out_rate)
    out = resampler.process(x).astype(np.float64)
    span = out_rate // 10
    middle = slice(out_rate // 4, out_rate // 4 + out_rate // 2)
    scores = [float(np.dot(out[middle.start + lag : middle.stop + lag], reference[middle])) for lag in range(span)]
    lag = int(np.argmax(scores))
    assert lag == resampler.delay_samples
    assert lag / out_rate < 0.005
    aligned = out[middle.start + lag : middle.stop + lag] - reference[middle]
    snr_db = 10 * math.log10(np.mean(reference[middle] ** 2) / np.mean(aligned**2))
    assert snr_db > 40.0


@pytest.mark.parametrize(("in_rate", "out_rate"), TELEPHONE)
def test_no_clicks_at_frame_edges(in_rate: int, out_rate: int) -> None:
    # Frame by frame, a tone must match the ideal delayed tone everywhere, frame boundaries included.
    freq, amp, phase = 1234.5, 12000.0, 0.3
    x = tone(freq, in_rate, 1.0, amp, phase)
    resampler = StreamResampler(in_rate, out_rate)
    out = np.concatenate(in_frames(resampler, x, in_rate // 50)).astype(np.float64)
    t = (np.arange(len(out)) - resampler.delay_samples) / out_rate
    ideal = amp * np.sin(2 * math.pi * freq * t + phase)
    error = np.abs(out - ideal)[2 * resampler.delay_samples + out_rate // 100 :]
    assert error.max() < 0.002 * amp + 2


def test_dc_passes_unchanged() -> None:
    for ratio in RATIOS:
        resampler = StreamResampler(*ratio)
        out = resampler.process(np.full(ratio[0] // 10, -12345, dtype=np.int16))
        assert set(out[2 * resampler.delay_samples + 2 :].tolist()) == {-12345}


def test_overshoot_saturates_instead_of_wrapping() -> None:
    # A 2 kHz tone sampled at 45 degrees from its peaks: the samples are +-32767 but the waveform between them
    # reaches 46340, which the interpolated 16 kHz samples must clip to the int16 range.
    amp = 32767 / math.sin(math.pi / 4)
    x = tone(2000.0, 8000, 0.2, amp, math.pi / 4)
    assert int(np.abs(x.astype(np.int64)).max()) == 32767
    resampler = StreamResampler(8000, 16000)
    out = resampler.process(x).astype(np.float64)
    t = (np.arange(len(out)) - resampler.delay_samples) / 16000
    ideal = np.clip(amp * np.sin(2 * math.pi * 2000.0 * t + math.pi / 4), -32768, 32767)
    skip = 2 * resampler.delay_samples + 160
    assert np.abs(out - ideal)[skip:].max() < 60
    assert out.max() == 32767 and out.min() == -32768


@pytest.mark.parametrize(("in_rate", "out_rate"), RATIOS)
def test_fixed_delay_is_under_5ms(in_rate: int, out_rate: int) -> None:
    resampler = StreamResampler(in_rate, out_rate)
    assert 0 < resampler.delay_samples < 0.005 * out_rate
    # An impulse comes out centred delay_samples after its own time.
    impulse = np.zeros(in_rate // 10, dtype=np.int16)
    impulse[in_rate // 50] = 30000
    out = resampler.process(impulse)
    assert int(np.argmax(out)) == round(in_rate // 50 * out_rate / in_rate) + resampler.delay_samples


def test_edge_cases() -> None:
    resampler = StreamResampler(8000, 16000)
    assert resampler.process(np.zeros(0, dtype=np.int16)).shape == (0,)
    same = StreamResampler(8000, 8000)
    x = np.arange(-5, 5, dtype=np.int16)
    out = same.process(x)
    assert np.array_equal(out, x) and out is not x and same.delay_samples == 0
    with pytest.raises(TypeError, match="int16"):
        resampler.process(np.zeros(160, dtype=np.float32))
    with pytest.raises(TypeError, match="1-D"):
        resampler.process(np.zeros((2, 160), dtype=np.int16))
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 8000)
