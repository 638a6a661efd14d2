"""Test audio for the peers: signals, WAV files, G.711 mu-law, an RTP capture for sipp, and a similarity measure.

The mu-law coder follows ITU-T G.711 (bias 0x84, eight segments, bits inverted); it is checked in the tests
against the standard library's ``audioop`` as an independent oracle.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.rtp.capture_writer import pcap_bytes, rtp_payloads, udp_frame

__all__ = [
    "FRAME",
    "RATE",
    "read_wav",
    "similarity",
    "speech_like",
    "tone_bursts",
    "ulaw_decode",
    "ulaw_encode",
    "write_rtp_pcap",
    "write_wav",
]

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
Pcm = npt.NDArray[np.int16]

_BIAS = 0x84


def ulaw_encode(pcm: Pcm) -> npt.NDArray[np.uint8]:
    # G.711 mu-law takes 14-bit samples: drop the two low bits (arithmetic shift, as 16-bit coders do), add the
    # bias 33 and clip into the top segment; the segment is the leading one's position, the mantissa the next
    # four bits.
    x = pcm.astype(np.int32) >> 2
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.where(x < 0, -x, x), 8158) + (_BIAS >> 2)
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 5  # magnitude in [33, 8191]: segments 0..7
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    codes: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes


def ulaw_decode(codes: npt.NDArray[np.uint8]) -> Pcm:
    u = ~codes.astype(np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def tone_bursts(seconds: float, *, frequencies: tuple[float, ...] = (440.0, 660.0, 880.0), on_ms: int = 200,
                off_ms: int = 100, amplitude: float = 0.4) -> Pcm:
    """Bursts cycling through ``frequencies`` separated by silence; 5 ms ramps avoid clicks."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    period = (on_ms + off_ms) / 1000
    index = (t // period).astype(np.int64)
    freq = np.asarray(frequencies)[index % len(frequencies)]
    phase_in_period = t - index * period
    on = phase_in_period < on_ms / 1000
    ramp = np.clip(np.minimum(phase_in_period, on_ms / 1000 - phase_in_period) / 0.005, 0, 1)
    signal = np.sin(2 * np.pi * freq * t) * on * ramp * amplitude
    return np.round(signal * 32767).astype(np.int16)


def speech_like(seconds: float, *, seed: int = 1, amplitude: float = 0.3) -> Pcm:
    """Noise shaped like speech: energy mostly in 300-3400 Hz, loudness varying at a syllable rate (~4 Hz) with
    pauses. Aperiodic, so a cross-correlation has a single sharp peak at the true delay."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    voiced = np.fft.irfft(spectrum, n)
    syllables = np.repeat(rng.uniform(0, 1, n // 2000 + 1), 2000)[:n]  # 250 ms steps
    envelope = np.convolve(np.where(syllables > 0.25, syllables, 0), np.hanning(400) / 200, mode="same")
    shaped = voiced * envelope
    shaped *= amplitude / max(float(np.max(np.abs(shaped))), 1e-9)
    pcm: Pcm = np.round(shaped * 32767).astype(np.int16)
    return pcm


def write_wav(path: Path, pcm: Pcm, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[int, Pcm]:
    """Rate and samples of a 16-bit WAV; several channels are averaged."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: sample width {wav.getsampwidth()} bytes, expected 2")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels, rate = wav.getnchannels(), wav.getframerate()
    if channels > 1:
        frames = frames.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return rate, frames.astype(np.int16)


def write_rtp_pcap(path: Path, pcm: Pcm, *, ssrc: int = 0x5EED0001, src: tuple[str, int] = ("127.0.0.1", 6000),
                   dst: tuple[str, int] = ("127.0.0.1", 6002)) -> Path:
    """A classic pcap (Ethernet/IPv4/UDP) of one PCMU stream, 20 ms per packet (RFC 3551 §4.5.14: 160 samples,
    payload type 0), marker on the first packet (RFC 3550 §5.1), for sipp's play_pcap_audio, which keeps the
    capture's timing and rewrites addresses and ports. The last partial frame is padded with silence."""
    padded = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, dtype=np.int16)])
    codes = ulaw_encode(padded).reshape(-1, FRAME)
    packets = []
    for i, frame in enumerate(codes):
        [packet] = rtp_payloads(ssrc, 1, payload_type=0, first_seq=1 + i, first_ts=i * FRAME, payload=frame.tobytes())
        if i:  # rtp_payloads marks the first packet of each talkspurt it builds; only the stream's first is one
            packet = packet[:1] + bytes([packet[1] & 0x7F]) + packet[2:]
        packets.append((i * FRAME / RATE, udp_frame(src, dst, packet)))
    data, _ = pcap_bytes(packets)
    path.write_bytes(data)
    return path


def similarity(reference: Pcm, heard: Pcm, max_lag: int = RATE) -> tuple[float, int]:
    """Peak normalised cross-correlation of ``heard`` against ``reference`` over lags 0..max_lag samples (heard
    later than reference) and that lag. 1.0 means ``heard`` holds the reference intact, delayed by the lag; the
    normalisation uses the whole of both signals, so missing or extra audio lowers the value."""
    a = reference.astype(np.float64)
    b = heard.astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0:
        return 0.0, 0
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xcorr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: max_lag + 1]
    lag = int(np.argmax(np.abs(xcorr)))
    return float(abs(xcorr[lag]) / norm), lag
