"""The adaptive jitter buffer: placement by timestamp, loss concealment, adaptation, and its invariant.

Streams are built so that every sample encodes its own index (``BASE + index``): the output can be
decoded back into indices to check order, uniqueness and exact reproduction. Concealment is at least
6 dB down, so concealed samples (< BASE) and silence (0) are never mistaken for received audio.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.jitter import FrameStatus, JitterBuffer, JitterFrame, PushResult
from rtp.packet import RtpPacket

pytestmark = pytest.mark.unit

RATE = 8000
FRAME = 160
TICK = 0.02
BASE = 16384
T0 = 100.0


@dataclass(frozen=True)
class Sent:
    packet: RtpPacket
    samples: np.ndarray
    index: int  # media index of the first sample

    @property
    def indices(self) -> range:
        return range(self.index, self.index + len(self.samples))


def stream(sizes: list[int], *, ts0: int = 1000, seq0: int = 100, ssrc: int = 0x1234, index0: int = 0,
           marker_first: bool = True) -> list[Sent]:
    out, index = [], index0
    for i, n in enumerate(sizes):
        pkt = RtpPacket(0, (seq0 + i) % 65536, (ts0 + index - index0) % (1 << 32), ssrc,
                        marker=marker_first and i == 0)
        out.append(Sent(pkt, (BASE + np.arange(index, index + n)).astype(np.int16), index))
        index += n
    return out


def on_time(sent: list[Sent], start: float = T0, index0: int = 0) -> list[tuple[float, Sent]]:
    """A packet arrives when its last sample has been captured: no network jitter."""
    return [(start + (s.index - index0 + len(s.samples)) / RATE, s) for s in sent]


def play(jb: JitterBuffer, arrivals: list[tuple[float, Sent]], *, start: float = T0 + 0.005,
         ticks: int | None = None) -> tuple[list[tuple[float, JitterFrame]], list[PushResult]]:
    arrivals = sorted(arrivals, key=lambda a: a[0])
    if ticks is None:
        ticks = int((arrivals[-1][0] - start) / TICK) + 30 if arrivals else 10
    frames, results, k = [], [], 0
    for n in range(ticks):
        now = start + n * TICK
        while k < len(arrivals) and arrivals[k][0] <= now:
            results.append(jb.push(arrivals[k][1].packet, arrivals[k][1].samples, arrivals[k][0]))
            k += 1
        frame = jb.pop(now)
        assert frame.samples.shape == (FRAME,) and frame.samples.dtype == np.int16
        frames.append((now, frame))
    return frames, results


def real(frame: JitterFrame) -> np.ndarray:
    v = frame.samples.astype(np.int64)
    return v[v >= BASE] - BASE


def played(frames: list[tuple[float, JitterFrame]]) -> list[int]:
    return [int(i) for _, f in frames for i in real(f)]


def rms(frame: JitterFrame) -> float:
    return float(np.sqrt(np.mean(frame.samples.astype(np.float64) ** 2)))


def test_silence_before_the_first_packet() -> None:
    frame = JitterBuffer().pop(T0)
    assert frame.status is FrameStatus.SILENCE
    assert frame.samples.shape == (FRAME,) and not frame.samples.any()


@pytest.mark.parametrize("kwargs", [{"clock_rate": 22050, "frame_ms": 7}, {"min_delay_ms": 50, "start_delay_ms": 40},
                                    {"start_delay_ms": 300}, {"clock_rate": 0}])
def test_rejects_inconsistent_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        JitterBuffer(**kwargs)


def test_in_order_stream_plays_every_sample_once_after_the_start_delay() -> None:
    sent = stream([FRAME] * 50)
    jb = JitterBuffer(min_delay_ms=40, start_delay_ms=40)
    frames, results = play(jb, on_time(sent))
    assert set(results) == {PushResult.ACCEPTED}
    first = next(i for i, (_, f) in enumerate(frames) if f.status is FrameStatus.NORMAL)
    assert all(f.status is FrameStatus.SILENCE for _, f in frames[:first])
    body = np.concatenate([f.samples for _, f in frames[first:first + 50]])
    assert np.array_equal(body, np.concatenate([s.samples for s in sent]))
    # The cursor starts start_delay after the first arrival, on the next tick.
    wait = frames[first][0] - on_time(sent)[0][0]
    assert 0.040 <= wait < 0.040 + TICK
    stats = jb.stats()
    assert (stats.lost, stats.late, stats.duplicate, stats.reordered, stats.resets) == (0, 0, 0, 0, 0)
    assert stats.received == 50


@pytest.mark.parametrize("size", [30, 80, 100, 120, 160, 240, 320, 400])
def test_any_packet_size_gives_whole_frames_of_the_original_audio(size: int) -> None:
    total = 9600
    sent = stream([size] * (total // size))
    jb = JitterBuffer(min_delay_ms=60, start_delay_ms=60)
    frames, _ = play(jb, on_time(sent))
    first = next(i for i, (_, f) in enumerate(frames) if f.status is not FrameStatus.SILENCE)
    body = frames[first:first + total // FRAME]
    assert all(f.status is FrameStatus.NORMAL for _, f in body)
    assert played(body) == list(range(total))
    assert jb.stats().lost == 0


def test_reordered_packets_are_put_back_in_order() -> None:
    sent = stream([FRAME] * 40)
    arrivals = on_time(sent)
    swapped = [5, 12, 20, 31]
    for i in swapped:  # packet i overtaken by i + 1, within the buffer's delay
        a, (tb, b) = arrivals[i][1], arrivals[i + 1]
        arrivals[i], arrivals[i + 1] = (tb + 0.01, a), (tb, b)
    jb = JitterBuffer()
    frames, _ = play(jb, arrivals)
    assert played(frames) == list(range(40 * FRAME))
    stats = jb.stats()
    assert stats.reordered == len(swapped)
    assert (stats.lost, stats.late) == (0, 0)


def test_duplicates_are_counted_and_played_once() -> None:
    sent = stream([FRAME] * 40)
    arrivals = on_time(sent)
    arrivals.append((arrivals[5][0] + 0.001, sent[5]))  # while still buffered
    arrivals.append((arrivals[10][0] + 0.5, sent[10]))  # long after it played
    arrivals.append((arrivals[10][0] + 0.6, sent[10]))
    jb = JitterBuffer()
    frames, results = play(jb, arrivals)
    assert results.count(PushResult.DUPLICATE) == 3
    assert played(frames) == list(range(40 * FRAME))
    assert jb.stats().duplicate == 3 and jb.stats().late == 0


def test_a_packet_arriving_after_its_playout_is_late_and_dropped() -> None:
    sent = stream([FRAME] * 40)
    arrivals = on_time(sent)
    arrivals[20] = (arrivals[20][0] + 0.5, sent[20])
    jb = JitterBuffer()
    frames, results = play(jb, arrivals)
    assert results.count(PushResult.LATE) == 1
    indices = played(frames)
    assert indices == [i for i in range(40 * FRAME) if i not in sent[20].indices]
    stats = jb.stats()
    assert (stats.late, stats.lost) == (1, 1)
    assert stats.target_delay_ms == 200  # the late packet needed more than max_delay: clamped


def test_loss_is_concealed_with_fading_repeats_then_silence() -> None:
    sent = stream([FRAME] * 60)
    lost = range(20, 30)
    jb = JitterBuffer()
    frames, _ = play(jb, [a for i, a in enumerate(on_time(sent)) if i not in lost])
    last = next(i for i, (_, f) in enumerate(frames) if sent[19].index + FRAME - 1 in real(f))
    resume = next(i for i, (_, f) in enumerate(frames) if sent[30].index in real(f))
    gap = [f for _, f in frames[last + 1:resume]]
    assert len(gap) == len(lost)  # the timeline is kept: one frame per lost packet
    statuses = [f.status for f in gap]
    concealed = statuses.count(FrameStatus.CONCEALED)
    assert 1 <= concealed <= 5
    assert statuses == [FrameStatus.CONCEALED] * concealed + [FrameStatus.SILENCE] * (len(gap) - concealed)
    levels = [rms(frames[last][1])] + [rms(f) for f in gap[:concealed]]
    for before, after in zip(levels, levels[1:], strict=False):
        assert 0.45 <= after / before <= 0.55  # -6 dB per concealed frame
    assert all(not f.samples.any() for f in gap[concealed:])
    assert all(len(real(f)) == 0 for f in gap)
    assert jb.stats().lost == len(lost)
    assert jb.stats().concealed_frames == sum(f.status is FrameStatus.CONCEALED for _, f in frames)


def test_partial_loss_inside_stitched_frames_is_concealed_in_place() -> None:
    sent = stream([240] * 40)
    jb = JitterBuffer()
    frames, _ = play(jb, [a for i, a in enumerate(on_time(sent)) if i != 11])
    assert played(frames) == [i for i in range(40 * 240) if i not in sent[11].indices]
    # Samples 2640-2879 are missing: frame 16 (2560-2719) is half real, frame 17 (2720-2879) all concealed.
    by_first = {f.samples[0] - BASE: f for _, f in frames if f.status is FrameStatus.NORMAL}
    assert 2400 in by_first and 2880 in by_first
    gap = [f for _, f in frames if f.status is FrameStatus.CONCEALED][:2]
    assert list(real(gap[0])) == list(range(2560, 2640)) and len(real(gap[1])) == 0
    assert jb.stats().lost == 1


def test_ssrc_change_restarts_and_plays_the_new_source() -> None:
    a = stream([FRAME] * 25, ssrc=1)
    b = stream([FRAME] * 25, ssrc=2, ts0=987654321, seq0=40000, index0=8000)
    t_switch = T0 + 25 * FRAME / RATE
    arrivals = on_time(a) + on_time(b, start=t_switch, index0=8000)
    arrivals.append((t_switch + 0.1, a[-1]))  # a straggler from the old source
    jb = JitterBuffer()
    frames, results = play(jb, arrivals)
    assert results.count(PushResult.RESET) == 1 and jb.stats().resets == 1
    indices = played(frames)
    assert [i for i in indices if i >= 8000] == list(range(8000, 8000 + 25 * FRAME))
    assert indices == sorted(indices)


@pytest.mark.parametrize("jump_s", [10.0, -10.0, 3600.0])
def test_timestamp_jump_reanchors_the_timeline(jump_s: float) -> None:
    before = stream([FRAME] * 25, ts0=50_000)
    after = stream([FRAME] * 25, ts0=50_000 + 25 * FRAME + int(jump_s * RATE), seq0=125, index0=8000,
                   marker_first=False)
    t_jump = T0 + 25 * FRAME / RATE
    jb = JitterBuffer()
    frames, results = play(jb, on_time(before) + on_time(after, start=t_jump, index0=8000))
    assert results.count(PushResult.RESET) == 1
    indices = played(frames)
    assert [i for i in indices if i >= 8000] == list(range(8000, 8000 + 25 * FRAME))
    assert jb.stats().late == 0


@pytest.mark.parametrize(("pause", "ts_advance_s", "marker"), [
    (2.0, 2.0, True), (2.0, 2.0, False), (2.0, 10.0, False), (2.0, 0.0, True), (2.0, -1.0, True), (6.0, 6.0, True),
])
def test_talkspurt_after_silence_is_neither_loss_nor_late(pause: float, ts_advance_s: float, marker: bool) -> None:
    # DTX: nothing is sent for a while. Senders differ in what the timestamp does meanwhile: it follows
    # the clock (normal), or it freezes or even steps back (seen on gateways); none of it is loss.
    first = stream([FRAME] * 25, ts0=1000)
    second = stream([FRAME] * 25, ts0=1000 + 25 * FRAME + int(ts_advance_s * RATE), seq0=125, index0=4000,
                    marker_first=marker)
    t_second = T0 + 25 * FRAME / RATE + pause
    jb = JitterBuffer()
    frames, results = play(jb, on_time(first) + on_time(second, start=t_second, index0=4000))
    assert PushResult.LATE not in results and PushResult.RESET not in results
    assert played(frames) == list(range(25 * FRAME)) + list(range(4000, 4000 + 25 * FRAME))
    resumed = next(t for t, f in frames if 4000 in real(f))
    arrived = t_second + FRAME / RATE
    assert resumed - arrived < 0.040 + TICK  # plays after the target delay, not after the pause
    assert jb.stats().lost == 0 and jb.stats().resets == 0


def test_stragglers_from_before_a_jump_do_not_jump_back() -> None:
    before = stream([FRAME] * 10, ts0=50_000)
    after = stream([FRAME] * 1100, ts0=50_000 + int(60 * RATE), seq0=110, index0=0, marker_first=False)
    t_jump = T0 + 10 * FRAME / RATE
    arrivals = on_time(before) + [(t, s) for t, s in on_time(after, start=t_jump)]
    arrivals.append((t_jump + 0.05, before[-2]))  # delayed across the jump
    jb = JitterBuffer()
    _, results = play(jb, arrivals)
    assert results.count(PushResult.RESET) == 1 and results.count(PushResult.LATE) == 1
    # Long after the jump, the same old sequence number is no longer refused as "before the restart".
    old = before[-2]
    late_again = RtpPacket(0, old.packet.sequence_number, old.packet.timestamp + 1100 * FRAME + int(60 * RATE), 0x1234)
    assert jb.push(late_again, old.samples, T0 + 30) is not PushResult.RESET


def test_overlapping_packets_keep_only_new_audio() -> None:
    # Re-packetised copies under other sequence numbers, each arriving just after packet ``after``.
    sent = stream([FRAME] * 30)
    arrivals = on_time(sent)
    arrivals[16] = (arrivals[17][0] + 0.002, sent[16])  # 16 comes after 17 and after the copy at 16.5

    def copy(seq: int, first: int, n: int, after: int) -> tuple[float, Sent]:
        pkt = RtpPacket(0, seq, 1000 + first, 0x1234)
        return arrivals[after][0] + 0.001, Sent(pkt, (BASE + np.arange(first, first + n)).astype(np.int16), first)

    arrivals += [
        copy(10, 10 * FRAME + 80, FRAME, after=11),  # within 10 and 11: nothing new
        copy(11, 12 * FRAME, FRAME + 40, after=12),  # 12 and the head of 13, which arrives later
        copy(12, 15 * FRAME + 10, 20, after=15),  # inside 15: nothing new
        copy(13, 16 * FRAME + 80, 120, after=17),  # the tail of 16, which arrives later, and the head of 17
    ]
    jb = JitterBuffer(min_delay_ms=60, start_delay_ms=60)
    frames, results = play(jb, arrivals)
    assert played(frames) == list(range(30 * FRAME))
    assert results.count(PushResult.DUPLICATE) == 2
    assert jb.stats().lost == 0


def test_an_empty_packet_changes_nothing() -> None:
    sent = stream([FRAME] * 10)
    arrivals = on_time(sent)
    empty = RtpPacket(0, 500, sent[3].packet.timestamp, 0x1234)
    arrivals.append((arrivals[3][0], Sent(empty, np.zeros(0, np.int16), sent[3].index)))
    jb = JitterBuffer()
    frames, results = play(jb, arrivals)
    assert set(results) == {PushResult.ACCEPTED}
    assert played(frames) == list(range(10 * FRAME)) and jb.stats().lost == 0


@pytest.mark.parametrize("dtype", [np.int32, np.float64])
def test_other_sample_types_are_converted(dtype: type) -> None:
    sent = stream([FRAME] * 10)
    jb = JitterBuffer()
    frames, _ = play(jb, [(t, Sent(s.packet, s.samples.astype(dtype), s.index)) for t, s in on_time(sent)])
    assert played(frames) == list(range(10 * FRAME))


def test_positions_are_rebased_on_long_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rtp.jitter.REBASE_AT", 1000)  # instead of 2**30 samples (37 h at 8 kHz)
    sent = stream([240] * 60, ts0=(1 << 32) - 3000)
    jb = JitterBuffer()
    frames, _ = play(jb, on_time(sent))
    assert played(frames) == list(range(60 * 240))
    normal = [i for i, (_, f) in enumerate(frames) if f.status is FrameStatus.NORMAL]
    assert normal == list(range(normal[0], normal[0] + 90))
    assert jb.stats().lost == 0


def test_delay_grows_under_jitter_and_shrinks_back_within_bounds() -> None:
    rng = random.Random(7)
    n = 20 * 50
    sent = [Sent(RtpPacket(0, i % 65536, i * FRAME, 9), np.full(FRAME, 3000, np.int16), i * FRAME)
            for i in range(n)]

    def jitter(i: int) -> float:
        return rng.uniform(0.0, 0.120) if 3.0 <= i * TICK < 8.0 else 0.0

    arrivals = [(T0 + (s.index + FRAME) / RATE + jitter(i), s) for i, s in enumerate(sent)]
    jb = JitterBuffer()
    arrivals.sort(key=lambda a: a[0])
    timeline, k = [], 0
    for tick in range(n + 10):
        now = T0 + 0.005 + tick * TICK
        while k < len(arrivals) and arrivals[k][0] <= now:
            jb.push(arrivals[k][1].packet, arrivals[k][1].samples, arrivals[k][0])
            k += 1
        frame = jb.pop(now)
        timeline.append((now - T0, frame.status, jb.stats()))
    assert all(20 <= s.target_delay_ms <= 200 for _, _, s in timeline)
    calm = [s for t, _, s in timeline if 2.0 < t < 3.0]
    jittery = [s for t, _, s in timeline if 5.0 < t < 8.0]
    after = [s for t, _, s in timeline if 19.0 < t < 19.9]
    assert max(s.delay_ms for s in calm) <= 40 + 20
    assert min(s.target_delay_ms for s in jittery) >= 100  # covers the 120 ms spread
    assert min(s.delay_ms for s in jittery) >= 100
    assert max(s.delay_ms for s in jittery) <= 200 + 20
    assert jittery[-1].late - jittery[0].late <= 3  # adapted: hardly anything late any more
    assert max(s.delay_ms for s in after) <= 20 + 20  # back down to min_delay (+ tick phase)
    assert after[-1].dropped_ms > 0 and after[-1].lost == after[-1].late


def test_excess_delay_is_shed_sooner_in_silence_than_in_speech() -> None:
    def settle_time(level: int, lossy: bool) -> float:
        n = 10 * 50
        sent = [Sent(RtpPacket(0, i, i * FRAME, 9), np.full(FRAME, level, np.int16), i * FRAME) for i in range(n)]
        arrivals = [a for i, a in enumerate(on_time(sent)) if not (lossy and i % 4 == 3)]
        jb = JitterBuffer(min_delay_ms=20, start_delay_ms=140)
        arrivals.sort(key=lambda a: a[0])
        k = 0
        for tick in range(n):
            now = T0 + 0.005 + tick * TICK
            while k < len(arrivals) and arrivals[k][0] <= now:
                jb.push(arrivals[k][1].packet, arrivals[k][1].samples, arrivals[k][0])
                k += 1
            jb.pop(now)
            if now - T0 > 4.0 and jb.stats().delay_ms <= 45:
                return now - T0
        raise AssertionError("delay never came down")

    quiet, loud = settle_time(0, lossy=True), settle_time(8000, lossy=False)
    assert quiet < loud  # silence (or a lost frame) is where audio is dropped first
    assert loud < 4.0 + 8.0  # speech does not hold latency up forever either


def test_memory_is_bounded_when_nobody_pops() -> None:
    sent = stream([FRAME] * 100)
    jb = JitterBuffer()
    for s in sent:
        jb.push(s.packet, s.samples, T0)  # a 2 s burst, all at once
        assert jb.stats().buffered_ms <= 200 + 2 * 20
    assert jb.stats().dropped_ms > 0
    frames, _ = play(jb, [], start=T0, ticks=20)
    indices = played(frames)
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    assert indices[-1] == 100 * FRAME - 1  # the newest audio is what was kept


def test_sequence_and_timestamp_wrap_around() -> None:
    sent = stream([FRAME] * 60, ts0=(1 << 32) - 20 * FRAME, seq0=65530)
    jb = JitterBuffer()
    frames, _ = play(jb, on_time(sent))
    assert played(frames) == list(range(60 * FRAME))
    assert jb.stats().lost == 0 and jb.stats().resets == 0


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[float, Sent]], dict[str, int], float]:
    sizes, total = [], 0
    for n in draw(st.lists(st.sampled_from([80, 160, 240, 320]) | st.integers(1, 400), min_size=1, max_size=80)):
        if total + n > BASE - 1:
            break
        sizes.append(n)
        total += n
    sent = stream(sizes, ts0=draw(st.integers(0, (1 << 32) - 1)), seq0=draw(st.integers(0, 65535)))
    spread = draw(st.sampled_from([0.0, 0.03, 0.1, 0.4]))
    arrivals = []
    for s in sent:
        if draw(st.integers(0, 19)) == 0:
            continue  # lost
        t = T0 + (s.index + len(s.samples)) / RATE + draw(st.floats(0.0, 1.0)) * spread
        arrivals.append((t, s))
        arrivals += [(t + draw(st.floats(0.0, 0.3)), s) for _ in range(draw(st.integers(0, 5)) // 2)]
    if draw(st.booleans()):  # arbitrary order: keep the arrival instants, permute who arrives when
        order = draw(st.permutations(range(len(arrivals))))
        times = sorted(t for t, _ in arrivals)
        arrivals = [(times[k], arrivals[j][1]) for k, j in enumerate(order)]
    delays = draw(st.sampled_from([(0, 20, 100), (20, 40, 200), (40, 100, 200)]))
    config = dict(zip(("min_delay_ms", "start_delay_ms", "max_delay_ms"), delays, strict=True))
    return arrivals, config, draw(st.floats(0.0, TICK))


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_invariant_every_received_sample_at_most_once_in_order(
        scenario: tuple[list[tuple[float, Sent]], dict[str, int], float]) -> None:
    arrivals, config, phase = scenario
    jb = JitterBuffer(**config)
    frames, _ = play(jb, arrivals, start=T0 + phase)
    received = {i for _, s in arrivals for i in s.indices}
    indices = played(frames)
    assert all(a < b for a, b in zip(indices, indices[1:], strict=False))  # ordered, hence unique
    assert set(indices) <= received
    for _, f in frames:
        if f.status is FrameStatus.NORMAL:
            assert len(real(f)) == FRAME
        elif f.status is FrameStatus.SILENCE:
            assert not f.samples.any()
    stats = jb.stats()
    assert stats.received == len(arrivals)
    assert config["min_delay_ms"] <= stats.target_delay_ms <= config["max_delay_ms"]
