"""G.711 mu-law (PCMU) and A-law (PCMA) as numpy table look-ups (ITU-T G.711; RTP payload types of RFC 3551 §4.5.14).

Tables are built at import from the G.711 segment/quantisation rules, one entry per 16-bit sample for encoding and
one per code for decoding. Samples are reduced to the 14-bit (mu-law) or 13-bit (A-law) range of G.711 by an
arithmetic shift, and negative mu-law magnitudes are negated after that shift, as in CPython's audioop: the output is
bit-identical to audioop.lin2ulaw/lin2alaw/ulaw2lin/alaw2lin for every input. (The ITU-T G.191 reference software
takes the one's complement instead, which puts 508 negative 16-bit samples one interval away; both are G.711.)

Both directions accept arrays of any shape, so one call can code a whole batch of calls' frames (N x 160).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CODECS_BY_NAME",
    "CODECS_BY_PT",
    "PCMA",
    "PCMU",
    "SILENCE_ALAW",
    "SILENCE_ULAW",
    "Codec",
    "alaw_decode",
    "alaw_decode_array",
    "alaw_encode",
    "alaw_encode_array",
    "ulaw_decode",
    "ulaw_decode_array",
    "ulaw_encode",
    "ulaw_encode_array",
]

Int16Array = npt.NDArray[np.int16]
Uint8Array = npt.NDArray[np.uint8]

SILENCE_ULAW = 0xFF  # positive zero: all bits inverted (G.711 Table 2a)
SILENCE_ALAW = 0xD5  # smallest positive step: even bits inverted (G.711 Table 1a), decodes to +8

_INT16 = np.dtype(np.int16)
_UINT8 = np.dtype(np.uint8)
_INTP = np.dtype(np.intp)


def _segment_of(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    # floor(log2(v)) for v >= 1; frexp is exact on integers this small.
    return np.frexp(values.astype(np.float64))[1].astype(np.int64) - 1


def _ulaw_tables() -> tuple[Uint8Array, Int16Array]:
    # Index i of the encoding table is the int16 sample whose bit pattern, read as uint16, is i.
    samples = np.arange(65536, dtype=np.int64)
    samples[samples >= 32768] -= 65536
    reduced = samples >> 2  # 14-bit range
    negative = reduced < 0
    # The last decision value is 8159; anything at or beyond it takes the top code (segment 7, step 15).
    magnitude = np.minimum(np.where(negative, -reduced, reduced), 8158)
    # With the bias of 33 the segment boundaries 31, 95, 223, ... become powers of two: segment s covers biased
    # magnitudes [2**(s+5), 2**(s+6)), with 16 steps of 2**(s+1).
    biased = magnitude + 33
    segment = _segment_of(biased) - 5
    step = (biased >> (segment + 1)) & 0x0F
    # mu-law transmits every bit inverted; the sign bit is 1 for positive samples after inversion.
    code = ((segment << 4) | step) ^ np.where(negative, 0x7F, 0xFF)
    encode = code.astype(np.uint8)

    codes = np.arange(256, dtype=np.int64)
    raw = codes ^ 0xFF
    segment = (raw >> 4) & 0x07
    step = raw & 0x0F
    # Decoder output is the middle of the decision interval, in 16-bit units (14-bit value << 2).
    value = (((2 * step + 33) << segment) - 33) << 2
    decode = np.where(raw & 0x80, -value, value).astype(np.int16)
    return encode, decode


def _alaw_tables() -> tuple[Uint8Array, Int16Array]:
    samples = np.arange(65536, dtype=np.int64)
    samples[samples >= 32768] -= 65536
    reduced = samples >> 3  # 13-bit range
    negative = reduced < 0
    magnitude = np.where(negative, ~reduced, reduced)  # one's complement: -1 maps to magnitude 0
    # Segments 0 and 1 both have steps of 2 (0-31, 32-63); segment s >= 1 covers [2**(s+4), 2**(s+5)).
    segment = np.where(magnitude < 32, 0, _segment_of(np.maximum(magnitude, 1)) - 4)
    step = np.where(segment < 2, magnitude >> 1, magnitude >> np.maximum(segment, 1)) & 0x0F
    # A-law inverts the even bits (XOR 0x55); the sign bit is 1 for positive samples.
    code = ((segment << 4) | step) ^ np.where(negative, 0x55, 0xD5)
    encode = code.astype(np.uint8)

    codes = np.arange(256, dtype=np.int64)
    raw = codes ^ 0x55
    segment = (raw >> 4) & 0x07
    step = raw & 0x0F
    # Middle of the decision interval in 13-bit units, then << 3 for 16 bits.
    value = np.where(segment == 0, 2 * step + 1, (2 * step + 33) << np.maximum(segment - 1, 0)) << 3
    decode = np.where(raw & 0x80, value, -value).astype(np.int16)
    return encode, decode


_ULAW_ENCODE, _ULAW_DECODE = _ulaw_tables()
_ALAW_ENCODE, _ALAW_DECODE = _alaw_tables()
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.setflags(write=False)
del _table


# Hot path: positional arguments and module-level names, because at 160 samples numpy's per-call overhead (not the
# look-up itself) is most of the cost. Negative int16 values index the top half of the 65536-entry tables, which is
# exactly where their uint16 bit patterns point; converting indices to intp first keeps fancy indexing on its fast
# path.
_frombuffer = np.frombuffer
_ndarray = np.ndarray


def _as_int16(pcm: Int16Array | bytes) -> Int16Array:
    if isinstance(pcm, _ndarray):
        if pcm.dtype != _INT16:
            raise TypeError(f"PCM must be int16, got {pcm.dtype}")
        return pcm
    return _frombuffer(pcm, _INT16)


def ulaw_encode_array(pcm: Int16Array) -> Uint8Array:
    return _ULAW_ENCODE[_as_int16(pcm).astype(_INTP)]


def alaw_encode_array(pcm: Int16Array) -> Uint8Array:
    return _ALAW_ENCODE[_as_int16(pcm).astype(_INTP)]


def _as_codes(codes: Uint8Array) -> Uint8Array:
    if codes.dtype != _UINT8:
        raise TypeError(f"G.711 codes must be uint8, got {codes.dtype}")
    return codes


def ulaw_decode_array(codes: Uint8Array) -> Int16Array:
    return _ULAW_DECODE[_as_codes(codes).astype(_INTP)]


def alaw_decode_array(codes: Uint8Array) -> Int16Array:
    return _ALAW_DECODE[_as_codes(codes).astype(_INTP)]


def ulaw_encode(pcm: Int16Array | bytes) -> bytes:
    """Encode native-endian int16 PCM (an array of any shape, or bytes) to mu-law payload bytes."""
    if pcm.__class__ is _ndarray and pcm.dtype == _INT16:
        return _ULAW_ENCODE[pcm.astype(_INTP)].tobytes()
    return _ULAW_ENCODE[_as_int16(pcm).astype(_INTP)].tobytes()


def alaw_encode(pcm: Int16Array | bytes) -> bytes:
    """Encode native-endian int16 PCM (an array of any shape, or bytes) to A-law payload bytes."""
    if pcm.__class__ is _ndarray and pcm.dtype == _INT16:
        return _ALAW_ENCODE[pcm.astype(_INTP)].tobytes()
    return _ALAW_ENCODE[_as_int16(pcm).astype(_INTP)].tobytes()


def ulaw_decode(data: bytes) -> Int16Array:
    """Decode mu-law payload bytes to a new, writable int16 array."""
    return _ULAW_DECODE[_frombuffer(data, _UINT8).astype(_INTP)]


def alaw_decode(data: bytes) -> Int16Array:
    """Decode A-law payload bytes to a new, writable int16 array."""
    return _ALAW_DECODE[_frombuffer(data, _UINT8).astype(_INTP)]


@dataclass(frozen=True, slots=True)
class Codec:
    """A static RTP payload format of RFC 3551 Table 4 with its coder."""

    name: str
    payload_type: int
    clock_rate: int
    encode: Callable[[Int16Array | bytes], bytes]
    decode: Callable[[bytes], Int16Array]
    silence_byte: int

    @property
    def silence(self) -> bytes:
        """One 20 ms frame of silence (160 codes at 8 kHz)."""
        return bytes([self.silence_byte]) * (self.clock_rate // 50)


PCMU = Codec("PCMU", 0, 8000, ulaw_encode, ulaw_decode, SILENCE_ULAW)
PCMA = Codec("PCMA", 8, 8000, alaw_encode, alaw_decode, SILENCE_ALAW)
CODECS_BY_PT: dict[int, Codec] = {codec.payload_type: codec for codec in (PCMU, PCMA)}
CODECS_BY_NAME: dict[str, Codec] = {codec.name: codec for codec in (PCMU, PCMA)}
