"""``sipagent replay``: a captured call played through the media path and the offline agent on a virtual clock.

Media: the caller stream's packets are pushed into the same :class:`~rtp.jitter.JitterBuffer` the live call uses,
each at its capture time, and popped every 20 ms of a virtual clock that starts at the stream's first packet, so
loss, reordering and jitter of the capture shape the audio exactly as they would have live; nothing waits.

Agent: the :class:`~sipagent.agent.assistant.AssistantAgent` paces itself by the loop's clock and the speech
buffer, so it cannot run faster than real time. The replay drives its parts directly instead: the offline
recognizer (VAD + pocketsphinx with the script's phrases) gets every frame at once, its turn boundaries are on
its own frame clock, and the script's ``reply`` answers each final transcript. An agent reply starts at the VAD's
end-of-turn decision plus ``processing_ms`` (a fixed model of the reply latency, so the same capture always gives
the same report; measured wall-clock costs stay out of the report). The greeting is not replayed: the report is
about how the agent answers the caller.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtp.errors import CaptureError
from rtp.g711 import CODECS_BY_NAME
from rtp.jitter import JitterBuffer
from rtp.pcap import CaptureAnalysis, CaptureCounters, CapturedDatagram, RtpStreamInfo, find_rtp_streams, read_capture
from rtp.resample import StreamResampler
from sipagent.agent.script import Script
from sipagent.agent.vad import VadEventKind, VoiceActivityDetector
from sipagent.providers.base import SttEventKind
from sipagent.providers.offline.stt import OfflineSpeechToText, SphinxSttConfig
from sipagent.providers.offline.tts import OfflineTextToSpeech, OfflineTtsConfig
from sipagent.providers.offline.worker import WorkerPool
from sipagent.replay.streams import AUDIO_RATE, DtmfDigit, StreamReport, analyze_stream, audio_codec, dtmf_digits

__all__ = ["AGENT_RATE", "AgentResult", "CallerAudio", "ReplayConfig", "ReplayInput", "Turn", "decode_stream",
           "load_input", "load_wav", "run_agent"]

AGENT_RATE = 16000
FRAME_S = 0.02
TAIL_S = 1.0  # silence played after the last packet: the jitter buffer drains and the last turn can end
_WORDS_PER_S = 165 / 60  # length of a reply that was not synthesized (espeak's default speaking rate)


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    stream: str | None = None
    """Caller stream: index or SSRC; None picks the first stream to start."""
    script: Path | None = None
    agent: bool = True
    """False: decode only (streams, digits, caller audio), no recognizer or replies."""
    synthesize: bool = True
    """Speak the replies with the offline TTS into the WAV's right channel."""
    processing_ms: int = 300
    """Modelled time from the end-of-turn decision to the first agent audio."""


@dataclass(frozen=True, slots=True)
class Turn:
    speaker: str
    start_s: float
    end_s: float
    text: str
    intent: str | None = None


@dataclass(slots=True)
class CallerAudio:
    pcm: np.ndarray
    """16 kHz int16, frame ``k`` starting at ``start_s + k * FRAME_S`` on the report's timeline."""
    start_s: float
    concealed_frames: int = 0
    late: int = 0


@dataclass(slots=True)
class ReplayInput:
    streams: list[StreamReport] = field(default_factory=list)
    infos: list[RtpStreamInfo] = field(default_factory=list)
    dtmf: list[DtmfDigit] = field(default_factory=list)
    flows: list[dict[str, object]] = field(default_factory=list)
    error: CaptureError | None = None
    datagrams: int = 0
    origin: float = 0.0
    wav: CallerAudio | None = None


def load_input(path: Path) -> ReplayInput:
    """Read a capture (or a caller WAV); a damaged capture keeps everything read before the damage."""
    if path.suffix.lower() == ".wav":
        return ReplayInput(wav=load_wav(path))
    datagrams: list[CapturedDatagram] = []
    error = None
    try:
        datagrams.extend(read_capture(path, CaptureCounters()))
    except CaptureError as exc:
        error = exc
    analysis: CaptureAnalysis = find_rtp_streams(datagrams)
    origin = analysis.streams[0].first_time if analysis.streams else (datagrams[0].time if datagrams else 0.0)
    streams = [analyze_stream(info, i, origin) for i, info in enumerate(analysis.streams)]
    dtmf = sorted((d for info in analysis.streams for d in dtmf_digits(info, origin)), key=lambda d: d.start_s)
    flows = [{"src": f"{f.src[0]}:{f.src[1]}", "dst": f"{f.dst[0]}:{f.dst[1]}", "datagrams": f.datagrams,
              "kind": f.kind} for f in analysis.flows]
    return ReplayInput(streams, list(analysis.streams), dtmf, flows, error, analysis.datagrams, origin)


def load_wav(path: Path) -> CallerAudio:
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            data = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise CaptureError(str(path), f"not a readable WAV file: {exc}") from None
    if channels != 1 or width != 2 or rate not in (8000, AGENT_RATE):
        raise CaptureError(str(path), f"WAV must be 16-bit mono at 8000 or 16000 Hz, got {channels} channel(s), "
                                      f"{8 * width}-bit, {rate} Hz")
    pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
    if rate != AGENT_RATE:
        pcm = StreamResampler(rate, AGENT_RATE).process(pcm)
    tail = np.zeros(int(TAIL_S * AGENT_RATE), np.int16)
    return CallerAudio(np.concatenate([pcm, tail]), 0.0)


def decode_stream(info: RtpStreamInfo, origin: float) -> CallerAudio:
    """The stream as the agent hears it: jitter buffer on a 20 ms virtual tick, G.711 decode, 8 -> 16 kHz."""
    buffer = JitterBuffer(AUDIO_RATE)
    names = {pt: name for pt in info.payload_types if (name := audio_codec(info, pt)) is not None}
    packets = [(t, p) for t, p in info.packets if p.payload_type in names]
    # Decode every payload in one vectorised call per codec, then hand the jitter buffer views of the result:
    # per-packet numpy calls would cost more than the buffer itself.
    samples: list[np.ndarray] = [np.empty(0, np.int16)] * len(packets)
    for pt, name in names.items():
        chosen = [i for i, (_, p) in enumerate(packets) if p.payload_type == pt]
        pcm = CODECS_BY_NAME[name].decode(b"".join(packets[i][1].payload for i in chosen))
        at = 0
        for i in chosen:
            size = len(packets[i][1].payload)
            samples[i] = pcm[at:at + size]
            at += size
    first = info.first_time
    step = AUDIO_RATE // 50
    ticks = math.ceil((info.last_time - first + TAIL_S) / FRAME_S)
    out = np.empty(ticks * step, np.int16)
    push, pop = buffer.push, buffer.pop
    i, n = 0, len(packets)
    for k in range(ticks):
        now = first + k * FRAME_S
        while i < n and packets[i][0] <= now:
            push(packets[i][1], samples[i], packets[i][0])
            i += 1
        out[k * step:(k + 1) * step] = pop(now).samples
    stats = buffer.stats()
    # One resampler call for the whole call: StreamResampler's output does not depend on how the input is cut.
    return CallerAudio(StreamResampler(AUDIO_RATE, AGENT_RATE).process(out), first - origin,
                       stats.concealed_frames, stats.late)


@dataclass(frozen=True, slots=True)
class _Boundary:
    start: float
    start_detected: float
    end: float
    end_detected: float


@dataclass(slots=True)
class AgentResult:
    turns: list[Turn] = field(default_factory=list)
    """Caller and agent turns, by start time."""
    speech: list[tuple[float, np.ndarray]] = field(default_factory=list)
    """(start_s, 16 kHz samples) of each synthesized agent turn, already cut where the caller barged in."""
    barge_in_ms: list[float] = field(default_factory=list)
    """Per barge-in: caller onset to the VAD's decision, i.e. how long the agent talked over the caller."""


async def run_agent(audio: CallerAudio, config: ReplayConfig) -> AgentResult:
    script = Script.load(config.script) if config.script is not None else _default_script()
    stt_config = SphinxSttConfig(phrases=script.phrases, fillers=script.fillers, eager_end_ms=None,
                                 max_backlog_ms=10 ** 9)
    frames = audio.pcm.reshape(-1, AGENT_RATE // 50)
    # The same VAD the recognizer runs, on the same frames: it tells how many turns to wait for and when each
    # boundary was decided (the recognizer's events carry the speech boundaries only).
    vad = VoiceActivityDetector(stt_config.vad)
    bounds: list[_Boundary] = []
    onset = confirmed = 0.0
    for k, frame in enumerate(frames):
        event = vad.update(frame, (k + 1) * FRAME_S)
        if event is None:
            continue
        if event.kind is VadEventKind.SPEECH_START:
            onset, confirmed = event.at, event.detected_at
        else:
            bounds.append(_Boundary(onset, confirmed, event.at, event.detected_at))
    base = audio.start_s
    bounds = [_Boundary(b.start + base, b.start_detected + base, b.end + base, b.end_detected + base)
              for b in bounds]
    pool = WorkerPool(1)
    texts: list[str] = []
    pcm: list[np.ndarray | None] = []
    try:
        if bounds:
            stream = await OfflineSpeechToText(stt_config, pool=pool).open("replay")
            for frame in frames:
                stream.push(frame)
            async for stt_event in stream.events():
                if stt_event.kind is SttEventKind.END_OF_TURN:
                    texts.append(stt_event.text)
                    if len(texts) == len(bounds):
                        break
            await stream.close()
        caller = [Turn("caller", round(b.start, 3), round(b.end, 3), text)
                  for b, text in zip(bounds, texts, strict=True)]
        agent = _agent_turns(script, caller, bounds, config)
        if config.synthesize and agent:
            tts = OfflineTextToSpeech(OfflineTtsConfig(sample_rate=AGENT_RATE), pool=pool)
            for turn in agent:
                chunks = [chunk.pcm async for chunk in tts.synthesize(turn.text)]
                pcm.append(np.concatenate(chunks).astype(np.int16) if chunks else None)
    finally:
        await pool.aclose()
    return _schedule(caller, agent, bounds, pcm)


def _default_script() -> Script:
    from sipagent.agent.assistant import DEFAULT_SCRIPT

    return Script.load(DEFAULT_SCRIPT)


def _agent_turns(script: Script, caller: list[Turn], bounds: list[_Boundary], config: ReplayConfig) -> list[Turn]:
    out: list[Turn] = []
    for i, turn in enumerate(caller):
        if not turn.text:
            continue  # nothing recognised: the live agent would wait (and reprompt on a timeout)
        start = bounds[i].end_detected + config.processing_ms / 1000.0
        if i + 1 < len(caller) and bounds[i + 1].start_detected < start:
            continue  # the caller spoke again before the reply began: it is cancelled, the next turn answers
        reply = script.reply(turn.text)
        out.append(Turn("agent", start, start, reply.text, reply.intent or "fallback"))
        if reply.action == "hangup":
            break
    return out


def _schedule(caller: list[Turn], agent: list[Turn], bounds: list[_Boundary], pcm: list[np.ndarray | None],
              ) -> AgentResult:
    """Give agent turns their length (synthesized audio, else a speaking-rate estimate), queue them one after
    the other, and cut one short where the caller barges in (at the VAD's speech-start decision)."""
    result = AgentResult(list(caller))
    free = -math.inf
    for j, turn in enumerate(agent):
        audio = pcm[j] if j < len(pcm) else None
        length = len(audio) / AGENT_RATE if audio is not None else len(turn.text.split()) / _WORDS_PER_S
        start = max(turn.start_s, free)
        end = start + length
        for i, c in enumerate(caller):
            if start <= c.start_s < end:
                end = max(start, bounds[i].start_detected)
                result.barge_in_ms.append(round(1000 * (end - c.start_s), 1))
                break
        free = end
        result.turns.append(Turn("agent", round(start, 3), round(end, 3), turn.text, turn.intent))
        if audio is not None:
            result.speech.append((start, audio[: round((end - start) * AGENT_RATE)]))
    result.turns.sort(key=lambda t: (t.start_s, t.speaker))
    return result
