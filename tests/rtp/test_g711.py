"""G.711 against two oracles: CPython's audioop (when present) and a scalar coder written here from the decision
tables of ITU-T G.711 (Table 1a for A-law, Table 2a for mu-law)."""

from __future__ import annotations

import dataclasses
import warnings
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.g711 import (
    CODECS_BY_NAME,
    CODECS_BY_PT,
    PCMA,
    PCMU,
    SILENCE_ALAW,
    SILENCE_ULAW,
    Codec,
    alaw_decode,
    alaw_decode_array,
    alaw_encode,
    alaw_encode_array,
    ulaw_decode,
    ulaw_decode_array,
    ulaw_encode,
    ulaw_encode_array,
)

pytestmark = pytest.mark.unit


def _load_audioop() -> ModuleType | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop  # removed from the stdlib in 3.13; the audioop-lts wheel provides it there
    except ImportError:
        return None
    return audioop


audioop = _load_audioop()
needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop (or audioop-lts) is not installed")

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))

# --- the scalar reference -------------------------------------------------------------------------------------
# G.711 works on 14-bit (mu-law) and 13-bit (A-law) uniform PCM; a 16-bit sample is reduced by dropping its low bits
# (floor), the convention audioop uses. Each segment is 16 equal intervals; the decoder outputs the middle of the
# interval.
#
# Table 2a, mu-law, 14-bit magnitudes: segment s spans 16 intervals of 2**(s+1) from the decision value below.
# Segment 0's first interval holds only 0 (decision values 0 | 1, 3, 5, ...), which a start of -1 expresses.
ULAW_STARTS = (-1, 31, 95, 223, 479, 991, 2015, 4063)
ULAW_TOP = 8159
# Table 1a, A-law, 13-bit magnitudes: segments 0 and 1 both have intervals of 2, then they double.
ALAW_STARTS = (0, 32, 64, 128, 256, 512, 1024, 2048)
ALAW_STEPS = (2, 2, 4, 8, 16, 32, 64, 128)


def ref_ulaw_encode(sample: int) -> int:
    value = sample >> 2
    magnitude = min(abs(value), ULAW_TOP)
    segment = max(s for s in range(8) if magnitude >= max(ULAW_STARTS[s], 0))
    step = 2 << segment
    interval = min((magnitude - ULAW_STARTS[segment]) // step, 15)
    number = segment * 16 + interval
    # mu-law sends the complement: 0xFF - n for positive samples, 0x7F - n for negative ones.
    return (0x7F if value < 0 else 0xFF) - number


def ref_ulaw_decode(code: int) -> int:
    number = 0x7F - (code & 0x7F)
    segment, interval = divmod(number, 16)
    step = 2 << segment
    magnitude = ULAW_STARTS[segment] + step * interval + step // 2
    return (magnitude if code & 0x80 else -magnitude) * 4


def ref_alaw_encode(sample: int) -> int:
    value = sample >> 3
    magnitude = value if value >= 0 else -value - 1
    segment = max(s for s in range(8) if magnitude >= ALAW_STARTS[s])
    interval = (magnitude - ALAW_STARTS[segment]) // ALAW_STEPS[segment]
    number = segment * 16 + interval
    # A-law sets the sign bit for positive samples and inverts the even bits of the character.
    return ((0x80 if value >= 0 else 0) | number) ^ 0x55


def ref_alaw_decode(code: int) -> int:
    number = (code ^ 0x55) & 0x7F
    segment, interval = divmod(number, 16)
    step = ALAW_STEPS[segment]
    magnitude = ALAW_STARTS[segment] + step * interval + step // 2
    return (magnitude if (code ^ 0x55) & 0x80 else -magnitude) * 8


LAWS = {
    "ulaw": (ulaw_encode, ulaw_decode, ref_ulaw_encode, ref_ulaw_decode),
    "alaw": (alaw_encode, alaw_decode, ref_alaw_encode, ref_alaw_decode),
}


# --- bit exactness ----------------------------------------------------------------------------------------------
@needs_audioop
def test_ulaw_matches_audioop_for_every_sample_and_code() -> None:
    assert audioop is not None
    assert ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)
    assert ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


@needs_audioop
def test_alaw_matches_audioop_for_every_sample_and_code() -> None:
    assert audioop is not None
    assert alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)
    assert alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


@pytest.mark.parametrize("law", sorted(LAWS))
def test_encode_matches_the_table_reference_for_every_sample(law: str) -> None:
    encode, _, ref_encode, _ = LAWS[law]
    expected = bytes(ref_encode(int(sample)) for sample in ALL_SAMPLES)
    assert encode(ALL_SAMPLES) == expected


@pytest.mark.parametrize("law", sorted(LAWS))
def test_decode_matches_the_table_reference_for_every_code(law: str) -> None:
    _, decode, _, ref_decode = LAWS[law]
    assert decode(ALL_CODES).tolist() == [ref_decode(code) for code in ALL_CODES]


def test_reference_spot_values_from_the_standard() -> None:
    # Anchors straight from the tables, independent of both coders: the extreme mu-law level is 8031 (14-bit),
    # the extreme A-law level 4032 (13-bit); mu-law has two zeros, A-law none.
    assert ulaw_decode(bytes([0x80, 0x00])).tolist() == [8031 * 4, -8031 * 4]
    assert alaw_decode(bytes([0xAA, 0x2A])).tolist() == [4032 * 8, -4032 * 8]
    assert ulaw_decode(bytes([0xFF, 0x7F])).tolist() == [0, 0]
    assert alaw_decode(bytes([0xD5, 0x55])).tolist() == [8, -8]


# --- properties -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("law", sorted(LAWS))
def test_round_trip_is_monotone_and_bounded(law: str) -> None:
    encode, decode, _, _ = LAWS[law]
    decoded = decode(encode(ALL_SAMPLES)).astype(np.int64)
    assert np.all(np.diff(decoded) >= 0)
    # Away from the clipping level, the error is at most half an interval plus the dropped low bits: 1/32 of the
    # magnitude for the logarithmic segments, a few LSBs near zero.
    samples = ALL_SAMPLES.astype(np.int64)
    inside = np.abs(samples) <= 32000
    error = np.abs(decoded - samples)[inside]
    assert np.all(error <= np.abs(samples[inside]) / 16 + 16)


@pytest.mark.parametrize("law", sorted(LAWS))
def test_re_encoding_decoded_audio_is_idempotent(law: str) -> None:
    encode, decode, _, _ = LAWS[law]
    codes = encode(ALL_SAMPLES)
    assert encode(decode(codes)) == encode(decode(encode(decode(codes))))
    re_encoded = encode(decode(ALL_CODES))
    # Every code survives decode + encode, except mu-law's negative zero, which comes back as positive zero.
    changed = {code: new for code, new in zip(ALL_CODES, re_encoded, strict=True) if code != new}
    assert changed == ({0x7F: 0xFF} if law == "ulaw" else {})


def test_silence_bytes() -> None:
    assert ulaw_encode(np.zeros(4, dtype=np.int16)) == bytes([SILENCE_ULAW]) * 4
    assert alaw_encode(np.zeros(4, dtype=np.int16)) == bytes([SILENCE_ALAW]) * 4
    assert ulaw_decode(PCMU.silence).tolist() == [0] * 160
    assert set(alaw_decode(PCMA.silence).tolist()) == {8}


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_bytes_and_arrays_encode_alike(values: list[int]) -> None:
    pcm = np.array(values, dtype=np.int16)
    assert ulaw_encode(pcm.tobytes()) == ulaw_encode(pcm) == ulaw_encode_array(pcm).tobytes()
    assert alaw_encode(pcm.tobytes()) == alaw_encode(pcm) == alaw_encode_array(pcm).tobytes()


@given(st.binary(max_size=400))
def test_decode_any_bytes(data: bytes) -> None:
    for decode in (ulaw_decode, alaw_decode):
        out = decode(data)
        assert out.dtype == np.int16 and out.shape == (len(data),)
        out[:] = 0  # a fresh, writable array, not a view on the payload


def test_batches_of_frames() -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(-32768, 32768, size=(12, 160)).astype(np.int16)
    for encode, encode_array, decode_array in (
        (ulaw_encode, ulaw_encode_array, ulaw_decode_array),
        (alaw_encode, alaw_encode_array, alaw_decode_array),
    ):
        codes = encode_array(frames)
        assert codes.shape == frames.shape and codes.dtype == np.uint8
        assert [row.tobytes() for row in codes] == [encode(row) for row in frames]
        assert encode(frames) == codes.tobytes()
        decoded = decode_array(codes)
        assert decoded.shape == frames.shape and decoded.dtype == np.int16
        assert np.array_equal(encode_array(decoded), codes)


def test_wrong_sample_type_is_refused() -> None:
    with pytest.raises(TypeError, match="int16"):
        ulaw_encode(np.zeros(160, dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        alaw_encode_array(np.zeros(160, dtype=np.int32))
    with pytest.raises(TypeError, match="uint8"):
        ulaw_decode_array(np.full(160, 300, dtype=np.int16))


def test_codec_registry_follows_rfc_3551() -> None:
    assert CODECS_BY_PT[0] is PCMU and CODECS_BY_PT[8] is PCMA
    assert CODECS_BY_NAME["PCMU"] is PCMU and CODECS_BY_NAME["PCMA"] is PCMA
    for codec in (PCMU, PCMA):
        assert codec.clock_rate == 8000
        assert len(codec.silence) == 160
        assert codec.decode(codec.encode(np.zeros(160, dtype=np.int16))).shape == (160,)
    assert PCMU.silence_byte == SILENCE_ULAW and PCMA.silence_byte == SILENCE_ALAW
    with pytest.raises(dataclasses.FrozenInstanceError):
        PCMU.payload_type = 8  # type: ignore[misc]
    assert isinstance(PCMU, Codec)
