"""The replay's outputs: ``report.json``, ``call.wav`` (caller left, agent right), ``transcript.txt``, ``summary.md``;
and the CI checks (``--expect``, ``--max-response-ms``) evaluated on the report.

Every figure in ``report.json`` derives from the capture and the configuration only (virtual clock, rounded to
the millisecond), so two runs over the same capture write byte-identical reports.
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtp.errors import CaptureError
from sipagent.agent.script import normalize
from sipagent.replay.runner import (
    AGENT_RATE,
    AgentResult,
    CallerAudio,
    ReplayConfig,
    ReplayInput,
    Turn,
    decode_stream,
    load_input,
    run_agent,
)
from sipagent.replay.streams import pick_caller

__all__ = ["ReplayOutcome", "check", "replay", "timings", "write_outputs"]


@dataclass(slots=True)
class ReplayOutcome:
    report: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    """Input problems (damaged capture, no RTP): the report is still written, the exit status is 2."""


async def replay(path: Path, out_dir: Path | None, config: ReplayConfig) -> ReplayOutcome:
    data = load_input(path)
    errors: list[str] = []
    warnings: list[str] = []
    if data.error is not None:
        errors.append(str(data.error))
    caller_index: int | None = None
    audio: CallerAudio | None = data.wav
    if audio is None:
        if not data.streams:
            flows = ", ".join(f"{f['src']} -> {f['dst']} ({f['kind']}, {f['datagrams']} datagrams)"
                              for f in data.flows) or "none"
            errors.append(f"{path}: no RTP stream found; UDP flows: {flows}")
        else:
            try:
                caller_index = pick_caller(data.streams, config.stream)
            except ValueError as exc:
                errors.append(str(exc))
            else:
                audio = decode_stream(data.infos[caller_index], data.origin)
        for s in data.streams:
            if s.skipped_payload_types:
                warnings.append(f"stream {s.index} (SSRC 0x{s.ssrc:08x}): payload type(s) "
                                f"{', '.join(map(str, s.skipped_payload_types))} not decodable, skipped")
    result = AgentResult()
    if audio is not None and config.agent:
        result = await run_agent(audio, config)
    report = _report(path, data, caller_index, audio, result, warnings, errors)
    if out_dir is not None:
        write_outputs(out_dir, report, audio, result)
    return ReplayOutcome(report, errors)


def timings(turns: list[Turn], barge_in_ms: list[float]) -> dict[str, Any]:
    caller = [t for t in turns if t.speaker == "caller"]
    agent = [t for t in turns if t.speaker == "agent"]
    response = []
    for a in agent:  # the caller turn it answers: the last one that ended before the reply began
        before = [c for c in caller if c.end_s <= a.start_s]
        if before:
            response.append(round(1000 * (a.start_s - before[-1].end_s), 1))
    talk_over = sum(max(0.0, min(a.end_s, c.end_s) - max(a.start_s, c.start_s)) for a in agent for c in caller)
    # Dead air: time between the first and the last turn when nobody speaks (the union of all turns subtracted).
    dead = 0.0
    reach = None
    for t in sorted(turns, key=lambda t: t.start_s):
        if reach is not None and t.start_s > reach:
            dead += t.start_s - reach
        reach = t.end_s if reach is None else max(reach, t.end_s)
    return {"response_ms": response, "barge_in_ms": list(barge_in_ms), "talk_over_s": round(talk_over, 3),
            "dead_air_s": round(dead, 3)}


def _report(path: Path, data: ReplayInput, caller_index: int | None, audio: CallerAudio | None,
            result: AgentResult, warnings: list[str], errors: list[str]) -> dict[str, Any]:
    return {
        "input": path.name,
        "kind": "wav" if data.wav is not None else "capture",
        "datagrams": data.datagrams,
        "streams": [s.as_dict() for s in data.streams],
        "caller_stream": caller_index,
        "flows": data.flows,
        "turns": [{"speaker": t.speaker, "start_s": t.start_s, "end_s": t.end_s, "text": t.text}
                  | ({"intent": t.intent} if t.intent else {}) for t in result.turns],
        "dtmf": [{"digit": d.digit, "start_s": round(d.start_s, 3), "duration_ms": round(d.duration_ms, 1),
                  "ssrc": d.ssrc} for d in data.dtmf],
        "timings": timings(result.turns, result.barge_in_ms),
        "media": None if audio is None else {
            "caller_start_s": round(audio.start_s, 3), "duration_s": round(len(audio.pcm) / AGENT_RATE, 3),
            "concealed_frames": audio.concealed_frames, "late_packets": audio.late},
        "warnings": warnings,
        "errors": errors,
    }


def check(report: dict[str, Any], expect: list[str], max_response_ms: float | None) -> list[str]:
    """Failed CI checks, one line each. ``--expect`` text matches when its words appear, in order and adjacent,
    in one turn's text (case and punctuation ignored)."""
    failures = []
    texts = [f" {normalize(t['text'])} " for t in report["turns"]]
    for wanted in expect:
        needle = f" {normalize(wanted)} "
        if not any(needle in text for text in texts):
            failures.append(f"expected text not found in any turn: {wanted!r}")
    if max_response_ms is not None:
        slow = [ms for ms in report["timings"]["response_ms"] if ms > max_response_ms]
        if slow:
            failures.append(f"{len(slow)} response(s) slower than {max_response_ms:g} ms: "
                            + ", ".join(f"{ms:g} ms" for ms in slow))
    return failures


def write_outputs(out_dir: Path, report: dict[str, Any], audio: CallerAudio | None, result: AgentResult) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _write_wav(out_dir / "call.wav", audio, result)
        (out_dir / "transcript.txt").write_text(_transcript(report), encoding="utf-8")
        (out_dir / "summary.md").write_text(_summary(report), encoding="utf-8")
    except OSError as exc:
        raise CaptureError(str(out_dir), f"cannot write the replay output: {exc.strerror or exc}") from None


def _write_wav(path: Path, audio: CallerAudio | None, result: AgentResult) -> None:
    lead = 0 if audio is None else round(audio.start_s * AGENT_RATE)
    caller = np.zeros(0, np.int16) if audio is None else audio.pcm
    ends = [lead + len(caller)] + [round(s * AGENT_RATE) + len(p) for s, p in result.speech]
    stereo = np.zeros((max(ends), 2), np.int16)
    stereo[lead:lead + len(caller), 0] = caller
    for start, pcm in result.speech:
        at = round(start * AGENT_RATE)
        stereo[at:at + len(pcm), 1] = pcm
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(AGENT_RATE)
        w.writeframes(stereo.astype("<i2").tobytes())


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{rest:06.3f}"


def _transcript(report: dict[str, Any]) -> str:
    rows = [(t["start_s"], f"[{_clock(t['start_s'])} - {_clock(t['end_s'])}] {t['speaker'].upper()}: "
             f"{t['text'] or '(unrecognised)'}") for t in report["turns"]]
    rows += [(d["start_s"], f"[{_clock(d['start_s'])}] DTMF {d['digit']} ({d['duration_ms']:g} ms)")
             for d in report["dtmf"]]
    return "".join(line + "\n" for _, line in sorted(rows, key=lambda r: r[0]))


def _summary(report: dict[str, Any]) -> str:
    lines = [f"# Replay of {report['input']}", ""]
    if report["errors"]:
        lines += ["## Errors", "", *(f"- {e}" for e in report["errors"]), ""]
    lines += ["## Streams", "", "| # | SSRC | from | to | codecs | packets | lost | dup | reord | jitter ms | "
              "duration s | ptime ms |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in report["streams"]:
        codecs = ", ".join(f"{pt} {name or '?'}" for pt, name in s["codecs"].items())
        mark = " (caller)" if s["index"] == report["caller_stream"] else ""
        lines.append(f"| {s['index']}{mark} | {s['ssrc_hex']} | {s['src']} | {s['dst']} | {codecs} | {s['packets']} "
                     f"| {s['lost']} | {s['duplicated']} | {s['reordered']} | {s['jitter_ms']:.2f} "
                     f"| {s['duration_s']:.2f} | {s['ptime_ms'] if s['ptime_ms'] is not None else '-'} |")
    t = report["timings"]
    lines += ["", "## Timings", "", f"- responses (ms): {', '.join(f'{v:g}' for v in t['response_ms']) or 'none'}",
              f"- barge-ins (ms): {', '.join(f'{v:g}' for v in t['barge_in_ms']) or 'none'}",
              f"- talk-over: {t['talk_over_s']:.3f} s", f"- dead air: {t['dead_air_s']:.3f} s", ""]
    if report["warnings"]:
        lines += ["## Warnings", "", *(f"- {w}" for w in report["warnings"]), ""]
    lines += ["## Transcript", "", "```", _transcript(report).rstrip("\n"), "```", ""]
    return "\n".join(lines)
