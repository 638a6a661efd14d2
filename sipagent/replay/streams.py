"""Stream analysis for ``sipagent replay``: per-SSRC statistics, the caller stream choice, RFC 4733 digits.

Loss, duplicates and reordering come from :class:`rtp.stats.ReceiverStats` (RFC 3550 A.1/A.3) fed in capture
order, so the figures are the ones a receiver standing where the capture was taken would have reported. Jitter
(A.8) is computed over the audio packets only: a telephone-event repeats one timestamp for a whole key press
(RFC 4733 §2.5.1.2), which would read as tens of milliseconds of jitter that the audio never had.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rtp.dtmf import DigitEnded, DigitStarted, DtmfReceiver
from rtp.errors import PacketError
from rtp.g711 import CODECS_BY_NAME, CODECS_BY_PT
from rtp.pcap import RtpStreamInfo
from rtp.seqnum import seq_diff, ts_diff
from rtp.stats import ReceiverStats

__all__ = [
    "AUDIO_RATE", "DtmfDigit", "StreamReport", "analyze_stream", "audio_codec", "dtmf_digits", "pick_caller",
    "telephone_event_types",
]

AUDIO_RATE = 8000  # G.711 and telephone-event at 8000 Hz (RFC 3551 §4.5.14, RFC 4733 §2.3)
_COMFORT_NOISE = 13  # RFC 3389: carries no speech, skipped without a warning


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    digit: str
    start_s: float
    duration_ms: float
    ssrc: int


@dataclass(frozen=True, slots=True)
class StreamReport:
    index: int
    ssrc: int
    src: str
    dst: str
    payload_types: tuple[int, ...]
    codecs: dict[int, str | None]
    packets: int
    expected: int
    lost: int
    duplicated: int
    reordered: int
    jitter_ms: float
    start_s: float
    duration_s: float
    ptime_ms: float | None
    from_sdp: bool
    skipped_payload_types: tuple[int, ...]
    """Payload types that are neither G.711, telephone-event nor comfort noise: listed, never decoded."""

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index, "ssrc": self.ssrc, "ssrc_hex": f"0x{self.ssrc:08x}", "src": self.src,
            "dst": self.dst, "payload_types": list(self.payload_types),
            "codecs": {str(pt): name for pt, name in self.codecs.items()}, "packets": self.packets,
            "expected": self.expected, "lost": self.lost, "duplicated": self.duplicated,
            "reordered": self.reordered, "jitter_ms": round(self.jitter_ms, 3), "start_s": round(self.start_s, 3),
            "duration_s": round(self.duration_s, 3),
            "ptime_ms": None if self.ptime_ms is None else round(self.ptime_ms, 3), "from_sdp": self.from_sdp,
            "skipped_payload_types": list(self.skipped_payload_types),
        }


def _address(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def telephone_event_types(info: RtpStreamInfo) -> frozenset[int]:
    """Payload types carrying RFC 4733 events: named so by SDP, or (no SDP captured) a dynamic type whose every
    payload is a whole number of 4-byte event blocks (§2.3), as sipp's sample captures are."""
    named = {pt for pt, name in info.codecs.items() if name == "telephone-event"}
    guessed = {pt for pt, name in info.codecs.items() if name is None and 96 <= pt <= 127}
    for _, packet in info.packets:
        if packet.payload_type in guessed and (not packet.payload or len(packet.payload) % 4):
            guessed.discard(packet.payload_type)
    return frozenset(named | guessed)


def audio_codec(info: RtpStreamInfo, pt: int) -> str | None:
    """The G.711 codec name for ``pt`` in this stream, or None when it is not one we decode."""
    name = info.codecs.get(pt)
    if name in CODECS_BY_NAME:
        return name
    codec = CODECS_BY_PT.get(pt)
    return codec.name if codec is not None and name in (None, codec.name) else None


def analyze_stream(info: RtpStreamInfo, index: int, origin: float) -> StreamReport:
    events = telephone_event_types(info)
    audio = {pt for pt in info.payload_types if audio_codec(info, pt) is not None}
    skipped = tuple(pt for pt in info.payload_types if pt not in audio and pt not in events and pt != _COMFORT_NOISE)
    seq_stats = ReceiverStats(AUDIO_RATE)
    only_audio = audio == set(info.payload_types)
    jitter_stats = seq_stats if only_audio else ReceiverStats(AUDIO_RATE)
    steps: Counter[int] = Counter()
    prev = None
    for time, packet in info.packets:
        seq_stats.update(packet.sequence_number, packet.timestamp, time)
        if packet.payload_type in audio:
            if not only_audio:
                jitter_stats.update(packet.sequence_number, packet.timestamp, time)
            # ptime: the usual timestamp step between packets adjacent in sequence (RFC 3551 §4.5 packetization)
            if prev is not None and seq_diff(packet.sequence_number, prev.sequence_number) == 1:
                step = ts_diff(packet.timestamp, prev.timestamp)
                if step > 0:
                    steps[step] += 1
            prev = packet
    ptime = 1000.0 * steps.most_common(1)[0][0] / AUDIO_RATE if steps else None
    return StreamReport(
        index=index, ssrc=info.ssrc, src=_address(info.src), dst=_address(info.dst),
        payload_types=info.payload_types,
        codecs={pt: ("telephone-event" if pt in events else name) for pt, name in info.codecs.items()},
        packets=info.packet_count, expected=seq_stats.expected, lost=max(0, seq_stats.lost + seq_stats.duplicates),
        duplicated=seq_stats.duplicates, reordered=seq_stats.reordered, jitter_ms=jitter_stats.jitter_ms,
        start_s=info.first_time - origin, duration_s=info.last_time - info.first_time, ptime_ms=ptime,
        from_sdp=info.from_sdp, skipped_payload_types=skipped,
    )


def dtmf_digits(info: RtpStreamInfo, origin: float) -> list[DtmfDigit]:
    """Key presses of one stream, dated by the capture time of their first packet."""
    types = telephone_event_types(info)
    if not types:
        return []
    receiver = DtmfReceiver(AUDIO_RATE)
    started: dict[int, float] = {}
    out: list[DtmfDigit] = []

    def collect(events: list[DigitStarted | DigitEnded]) -> None:
        for event in events:
            if isinstance(event, DigitStarted):
                started[event.timestamp] = event.now
            else:
                at = started.pop(event.timestamp, None)
                if at is not None:
                    out.append(DtmfDigit(event.digit, at - origin, event.duration_ms, info.ssrc))

    last = info.first_time
    for time, packet in info.packets:
        if packet.payload_type not in types:
            continue
        try:
            collect(receiver.feed(packet, time))
        except PacketError:
            continue  # a short payload: §2.3 needs 4 bytes; the stream's other events still count
        last = time
    collect(receiver.poll(last + 3600.0))  # end of capture: a press with no end packet ends here
    return out


def pick_caller(streams: list[StreamReport], choice: str | None) -> int:
    """Index of the caller stream: ``choice`` is an index into the list or an SSRC (decimal or 0x hex);
    by default the first stream to start that carries audio. Raise ValueError when nothing matches."""
    if not streams:
        raise ValueError("the capture holds no RTP stream")
    if choice is None:
        return next((s.index for s in streams if not set(s.payload_types) <= set(s.skipped_payload_types)
                     and any(name in CODECS_BY_NAME for name in s.codecs.values())), streams[0].index)
    text = choice.strip().lower()
    try:
        value = int(text, 16) if text.startswith("0x") else int(text)
    except ValueError:
        raise ValueError(f"--stream {choice!r}: expected a stream index or an SSRC") from None
    if not text.startswith("0x") and 0 <= value < len(streams):
        return value
    match = next((s.index for s in streams if s.ssrc == value), None)
    if match is None:
        known = ", ".join(f"{s.index} (SSRC 0x{s.ssrc:08x})" for s in streams)
        raise ValueError(f"--stream {choice!r}: no such stream index or SSRC; streams: {known}")
    return match
