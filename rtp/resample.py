"""Stateful streaming resampler: a polyphase FIR with carried history, one steady output frame per input frame.

The filter is a Kaiser-windowed sinc designed once per ratio. Its taps are rounded to multiples of 2**-28, so every
product of an int16 sample with a tap, and every partial sum, is exact in float64: the output does not depend on
summation order, BLAS kernel or how the stream was cut into chunks. Frame-by-frame output is therefore identical to
whole-signal output, and the fast block path and the general path can be mixed freely.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided, sliding_window_view

__all__ = ["StreamResampler"]

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]

_INT16 = np.dtype(np.int16)
# 70 dB leaves 10 dB of margin over the 60 dB image/alias target once taps are quantised.
_ATTENUATION_DB = 70.0
# Passband edge as a fraction of the lower rate: 3.4 kHz at 8 kHz, the top of the G.711 telephone band. The stopband
# starts at the mirror image (4.6 kHz at 8 kHz), so nothing aliases into the passband.
_PASSBAND = 0.425
_TAP_BITS = 28
_MAX_TABLE = 1 << 20
# The block path may multiply up to this many times more taps than needed (the zeros of its block-Toeplitz matrix)
# before the gather path, which multiplies only the needed ones but has more overhead, is preferred.
_MAX_WASTE = 4
_MAX_PLANS = 8


class _Filter:
    """Polyphase taps: ``taps[p]`` dotted with ``x[q-T+1 .. q]`` gives an output of phase ``p``."""

    __slots__ = ("delay", "down", "offset", "taps", "up", "width")

    def __init__(self, up: int, down: int, taps: Float64Array, offset: int, delay: int) -> None:
        self.up = up
        self.down = down
        self.taps = taps
        self.width = int(taps.shape[1])
        self.offset = offset
        self.delay = delay


@lru_cache(maxsize=16)
def _design(up: int, down: int) -> _Filter:
    # Prototype low-pass at the virtual rate in_rate*up, cut-off at half the lower of the two rates.
    lower = min(1.0 / up, 1.0 / down)  # the lower rate in units of the virtual rate
    transition = (1.0 - 2.0 * _PASSBAND) * lower
    # Kaiser's length and beta formulas (Kaiser 1974; Oppenheim & Schafer, Discrete-Time Signal Processing, 7.6).
    length = math.ceil((_ATTENUATION_DB - 7.95) / (2.285 * 2.0 * math.pi * transition)) + 1
    length += 1 - length % 2  # odd: the group delay is a whole number of virtual samples
    beta = 0.1102 * (_ATTENUATION_DB - 8.7)
    centre = (length - 1) // 2
    k = np.arange(length, dtype=np.float64) - centre
    proto = lower * np.sinc(lower * k) * np.kaiser(length, beta)
    proto = 0.5 * (proto + proto[::-1])  # exactly symmetric: linear phase survives the rounding below
    width = -(-length // up)
    if up * width > _MAX_TABLE:
        raise ValueError(f"resampling ratio {up}/{down} needs too large a filter table ({up} x {width})")
    padded = np.zeros(up * width)
    padded[:length] = proto
    phases = padded.reshape(width, up).T  # phases[p, t] = proto[p + t*up]
    # Every phase gets a DC gain of 1, so a constant input gives a constant output rather than a tone at the input
    # rate from phases of unequal gain; then the taps are rounded to multiples of 2**-28 (see the module comment).
    scale = float(1 << _TAP_BITS)
    ints = np.rint(phases / phases.sum(axis=1, keepdims=True) * scale)
    taps = np.ascontiguousarray(ints[:, ::-1]) / scale  # reversed: taps[p, -1] weighs the newest sample
    # Exactness needs every partial sum below 2**(53-28) in magnitude; with int16 input (below 2**15) that bounds
    # the tap mass of a phase by 2**10. Real filters have about 2.
    if np.abs(taps).sum(axis=1).max() >= 2.0 ** (53 - _TAP_BITS - 15):
        raise ValueError(f"resampling ratio {up}/{down}: filter gain too large for exact arithmetic")
    taps.setflags(write=False)
    # Output n is the filtered virtual-rate signal at n*down + offset; choosing offset = centre mod down makes the
    # delay a whole number of output samples, and offset < down keeps every frame the same size.
    offset = centre % down
    return _Filter(up, down, taps, offset, (centre - offset) // down)


# Rounding and saturation in three cheap ufunc calls, no per-sample Python. Adding 1.5 * 2**52 rounds a float of
# magnitude below 2**51 to an integer (ties to even, like np.rint), because floats in [2**52, 2**53) are spaced
# exactly 1 apart; the bit pattern is then _MAGIC_BITS + round(y). Subtracting _MAGIC_BITS - 32768 leaves an index
# into _SATURATE (the int16 range in order), and take(mode="clip") saturates whatever lies outside it.
_MAGIC = 1.5 * 2.0**52
_MAGIC_BITS = int(np.array([_MAGIC]).view(np.int64)[0])
_SATURATE = np.arange(-32768, 32768, dtype=np.int16)
_SATURATE.setflags(write=False)
# Each plan's ring holds about this many bytes of frames before its history has to be copied back to the front.
_RING_BYTES = 1 << 13
_MAX_SLOTS = 8
# Longer inputs (a whole TTS sentence at once) go through in pieces of about this many samples, so the work arrays
# stay small; the output is the same.
_MAX_CHUNK = 4096


class _Plan:
    """Precomputed work for one input length and one starting phase.

    Owns a float64 ring ``[history (width-1) | frame 0 | frame 1 | ...]``: each run writes the next frame slot, so
    the width-1 inputs before slot i are simply the end of slot i-1, and history is copied back to the front only
    when the ring wraps. Also owns the float64 accumulator of one run's outputs.
    """

    __slots__ = ("acc", "bias", "bits", "buf", "frame", "histories", "inputs", "magic", "next_start", "slot", "slots",
                 "start")

    buf: Float64Array
    frame: int
    start: int
    next_start: int
    slot: int
    slots: int
    inputs: list[Float64Array]
    histories: list[Float64Array]
    acc: Float64Array
    bits: npt.NDArray[np.int64]
    magic: Float64Array
    bias: npt.NDArray[np.int64]

    def _setup(self, filt: _Filter, frame: int, start: int, next_start: int, slots: int, outputs: int) -> None:
        keep = filt.width - 1
        self.frame = frame
        self.start = start
        self.next_start = next_start
        self.slots = slots
        self.slot = 0
        self.buf = np.zeros(keep + slots * frame)
        # Precomputed views: assigning to a view is cheaper than slicing on every frame.
        self.inputs = [self.buf[keep + i * frame : keep + (i + 1) * frame] for i in range(slots)]
        self.histories = [self.buf[i * frame : i * frame + keep] for i in range(slots + 1)]
        self.acc = np.empty(outputs)
        self.bits = self.acc.view(np.int64)
        # Full-size operands: numpy scalars cost more per call than these small arrays.
        self.magic = np.full(outputs, _MAGIC)
        self.bias = np.full(outputs, _MAGIC_BITS - 32768, dtype=np.int64)

    @property
    def history(self) -> Float64Array:
        """The newest width-1 inputs, just before the slot the next run will write."""
        return self.histories[self.slot]

    def _finish(self, slot: int) -> Int16Array:
        slot += 1
        if slot == self.slots:
            self.histories[0][...] = self.histories[slot]
            slot = 0
        self.slot = slot
        # Positional arguments: keyword parsing is a measurable share of a call this small.
        np.add(self.acc, self.magic, self.acc)
        np.subtract(self.bits, self.bias, self.bits)
        return _SATURATE.take(self.bits, None, None, "clip")

    def run(self, samples: Int16Array) -> Int16Array:
        raise NotImplementedError


class _BlockPlan(_Plan):
    """The frame in blocks of ``size`` inputs: row b of a matrix holds block b and the width-1 inputs before it
    (one strided copy), and one BLAS product with a block-Toeplitz matrix of taps gives every output in order."""

    __slots__ = ("matrix", "out", "rows", "windows")

    def __init__(self, filt: _Filter, frame: int, start: int, size: int) -> None:
        up, down, width = filt.up, filt.down, filt.width
        keep = width - 1
        per_block = size * up // down
        nblocks = frame // size
        slots = max(1, min(_MAX_SLOTS, _RING_BYTES // (8 * frame)))
        self._setup(filt, frame, start, start, slots, nblocks * per_block)
        item = self.buf.itemsize
        self.windows = [as_strided(self.buf[i * frame :], shape=(nblocks, keep + size), strides=(size * item, item),
                                   writeable=False) for i in range(slots)]
        self.rows = np.empty((nblocks, keep + size))
        matrix = np.zeros((keep + size, per_block))
        for r in range(per_block):
            q, p = divmod(start + r * down, up)
            matrix[q : q + width, r] = filt.taps[p]
        self.matrix = matrix
        self.out = self.acc.reshape(nblocks, per_block)

    def run(self, samples: Int16Array) -> Int16Array:
        slot = self.slot
        self.inputs[slot][...] = samples
        self.rows[...] = self.windows[slot]
        np.dot(self.rows, self.matrix, self.out)
        return self._finish(slot)


class _GatherPlan(_Plan):
    """Any length and phase: gather one window per output and dot it with that output's phase."""

    __slots__ = ("coefs", "positions", "windows")

    def __init__(self, filt: _Filter, frame: int, start: int) -> None:
        up, down, width = filt.up, filt.down, filt.width
        last = frame * up - 1
        count = (last - start) // down + 1 if last >= start else 0
        positions = start + down * np.arange(count)
        self._setup(filt, frame, start, start + count * down - frame * up, 1, count)
        self.positions = positions // up
        self.coefs = filt.taps[positions % up]
        self.windows = sliding_window_view(self.buf, width)

    def run(self, samples: Int16Array) -> Int16Array:
        self.inputs[0][...] = samples
        gathered = self.windows[self.positions]
        gathered *= self.coefs
        np.sum(gathered, 1, None, self.acc)
        return self._finish(0)


def _block_size(filt: _Filter, frame: int) -> int | None:
    # A block of k*down inputs makes exactly k*up outputs (up and down are coprime), so all blocks share one matrix.
    # Rows of about three blocks (block >= half the history) balance the size of the copy against the zeros in
    # the matrix.
    keep = filt.width - 1
    size = filt.down
    while size <= frame:
        if 2 * size >= keep and frame % size == 0:
            return size if keep + size <= _MAX_WASTE * filt.width else None
        size += filt.down
    return None


class StreamResampler:
    """Resample a stream of int16 chunks from ``in_rate`` to ``out_rate`` (any integer rates).

    Each call returns every output sample whose inputs have arrived, so a 20 ms input frame always yields exactly
    one 20 ms output frame (e.g. 160 -> 320 for 8 kHz -> 16 kHz), from the first frame on. Chunks may have any
    length; the output is the same however the stream is cut.
    """

    __slots__ = ("_filter", "_owner", "_plans", "_start", "in_rate", "out_rate")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        common = math.gcd(in_rate, out_rate)
        up, down = out_rate // common, in_rate // common
        self._filter = None if up == down else _design(up, down)
        self._plans: dict[tuple[int, int], _Plan] = {}
        self._owner: _Plan | None = None
        self._start = 0 if self._filter is None else self._filter.offset

    @property
    def delay_samples(self) -> int:
        """Fixed group delay in output samples: an input event at time t comes out at t + delay."""
        return 0 if self._filter is None else self._filter.delay

    def reset(self) -> None:
        """Forget the history, as if freshly made (e.g. for a new stream)."""
        self._owner = None
        if self._filter is not None:
            self._start = self._filter.offset

    def process(self, samples: Int16Array) -> Int16Array:
        if samples.dtype != _INT16 or samples.ndim != 1:
            raise TypeError(f"expected a 1-D int16 array, got {samples.ndim}-D {samples.dtype}")
        plan = self._owner
        if plan is None or plan.frame != samples.shape[0] or plan.start != self._start:
            return self._process_other(samples)
        result = plan.run(samples)
        self._start = plan.next_start
        return result

    def _process_other(self, samples: Int16Array) -> Int16Array:
        # Everything but the steady stream of same-sized chunks: a new chunk size, identity, empty or long input.
        filt = self._filter
        if filt is None:
            return samples.copy()
        size = samples.shape[0]
        if size > _MAX_CHUNK:
            # Whole multiples of ``down`` keep the starting phase, so every piece but the last shares one plan.
            step = max(filt.down, _MAX_CHUNK // filt.down * filt.down)
            pieces = [self._run(filt, samples[i : i + step]) for i in range(0, size, step)]
            return np.concatenate(pieces)
        if not size:
            return np.empty(0, dtype=_INT16)
        return self._run(filt, samples)

    def _run(self, filt: _Filter, samples: Int16Array) -> Int16Array:
        key = (samples.shape[0], self._start)
        plan = self._owner
        if plan is None or (plan.frame, plan.start) != key:
            plan = self._plans.get(key)
            if plan is None:
                size = _block_size(filt, key[0])
                plan = _GatherPlan(filt, *key) if size is None else _BlockPlan(filt, *key, size)
                if len(self._plans) < _MAX_PLANS:
                    self._plans[key] = plan
            owner = self._owner
            plan.history[...] = 0.0 if owner is None else owner.history
            self._owner = plan
        result = plan.run(samples)
        self._start = plan.next_start
        return result
