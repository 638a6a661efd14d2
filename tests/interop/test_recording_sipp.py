"""A real call recorded: sipp plays a speech-like capture to the endpoint's echo agent, with recording and the
metrics server on. The echo agent sends back what it heard 200 ms later (its delay line) plus one media tick
(the frame it pushes is sent on the next tick), so the recording's right channel must be its left channel
delayed by about that much, and the left channel must be sipp's capture. The timeline must open with the
establishment and close with the end of the call, and ``GET /metrics`` must count the call.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from sipagent.media import AGENT_RATE
from sipagent.sip.events import CallEnded
from tests.interop.endpoint import endpoint_settings, running_endpoint
from tests.interop.peers import (
    Sipp,
    require_peer,
    require_root,
    similarity,
    speech_like,
    ulaw_decode,
    ulaw_encode,
    wait_until,
    write_rtp_pcap,
)

pytestmark = pytest.mark.interop

ECHO_DELAY_S = 0.200 + 0.020


async def test_sipp_call_to_echo_is_recorded_and_counted(tmp_path: Path) -> None:
    require_peer("sipp")
    require_root("sipp play_pcap_audio (raw socket)")
    voice = speech_like(1.5, seed=11)
    pcap = write_rtp_pcap(tmp_path / "voice.pcap", voice)
    record_dir = tmp_path / "recordings"
    settings = endpoint_settings(agent={"name": "echo", "record_dir": str(record_dir)}, log={"metrics_port": 0})
    async with running_endpoint(settings=settings) as ep:
        caller = await Sipp("uac_basic", f"127.0.0.1:{ep.sip_port}", service="agent", pcap=pcap, duration_ms=2500,
                            workdir=tmp_path / "uac").run()
        await ep.settled()
        await wait_until(lambda: ep.metrics.calls_total.values.get("answered") == 1, "the call to be counted", 5)
        assert ep.metrics_server is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", ep.metrics_server.port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        exposition = (await reader.read()).decode()
        writer.close()
        await writer.wait_closed()
    assert caller.returncode == 0, caller.explain()
    [ended] = ep.seen(CallEnded)

    [call_dir] = list(record_dir.iterdir())
    with wave.open(str(call_dir / "call.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, AGENT_RATE)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    left, right = stereo[:, 0].copy(), stereo[:, 1].copy()

    # Left: sipp's capture as it went on the wire (G.711), upsampled to 16 kHz by zero-padding its spectrum (a
    # resampler of our own would not be an independent check); the lag search is then fine enough for any
    # fractional delay of the endpoint's resampler.
    sent = ulaw_decode(ulaw_encode(voice)).astype(np.float64)
    reference = np.fft.irfft(np.fft.rfft(sent), 2 * len(sent)) * 2
    heard, _ = similarity(np.round(reference).astype(np.int16), left, max_lag=len(left))
    assert heard > 0.9, heard
    # Right: the left channel again, ECHO_DELAY_S later, on the same clock.
    echoed, lag = similarity(left, right, max_lag=AGENT_RATE)
    assert echoed > 0.8, echoed
    assert lag / AGENT_RATE == pytest.approx(ECHO_DELAY_S, abs=0.021), lag

    lines = [json.loads(line) for line in (call_dir / "timeline.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "established" and lines[0]["t"] == 0
    [end] = [line for line in lines if line["kind"] == "ended"]
    assert (end["reason"], end["local"]) == (ended.reason, False) == ("bye", False)
    # The BYE came once sipp's pause was over; the WAV holds audio up to about then.
    assert end["t"] == pytest.approx(len(stereo) / AGENT_RATE, abs=0.3)
    assert all(line["t"] <= end["t"] + 0.1 for line in lines)

    assert 'calls_total{result="answered"} 1' in exposition.splitlines()
