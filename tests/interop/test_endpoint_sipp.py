"""sipp as the caller, our endpoint as the callee on 127.0.0.1.

sipp is the independent judge: its exit status says every message of its scenario arrived as expected (the
scenarios check the RFC 3261 flows, and uac_hold checks the SDP directions of RFC 3264 §8.4 with regexps), and
its message trace gives the times on the wire. On our side the endpoint's own events (CallEnded and friends)
and an agent that counts what it heard show what the endpoint made of the call; the RTP port pool and the
call table show nothing is left behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rtp.jitter import FrameStatus
from sipagent.endpoint import Endpoint
from sipagent.sip.events import CallEnded, CallEstablished, IncomingCall, MediaUpdated
from tests.interop.endpoint import (
    FRAMES_PER_SECOND,
    FrameCounter,
    HangUpAfter,
    WatchedEndpoint,
    keep_agents,
    running_endpoint,
)
from tests.interop.peers import (
    FRAME,
    PeerError,
    Sipp,
    SippResult,
    require_peer,
    require_root,
    speech_like,
    write_rtp_pcap,
)

pytestmark = pytest.mark.interop


def target(ep: Endpoint) -> str:
    return f"127.0.0.1:{ep.sip_port}"


def _wire_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def _answers(result: SippResult) -> list[Any]:
    return [m for m in result.received("SIP/2.0 200") if m.method == "INVITE"]


# --- one call with media ------------------------------------------------------------------------------------

async def test_basic_call_delivers_the_captures_rtp_to_the_agent(tmp_path: Path) -> None:
    require_peer("sipp")
    require_root("sipp play_pcap_audio (raw socket)")
    voice = speech_like(1.0, seed=3)
    packets = -(-len(voice) // FRAME)
    pcap = write_rtp_pcap(tmp_path / "voice.pcap", voice)
    agents, factory = keep_agents(FrameCounter)
    async with running_endpoint(factory) as ep:
        caller = await Sipp("uac_basic", target(ep), service="agent", pcap=pcap, duration_ms=1500,
                            workdir=tmp_path / "uac").run()
        await ep.settled()
    assert caller.returncode == 0, caller.explain()
    assert (caller.successful_calls, caller.failed_calls) == (1, 0)
    # RFC 3264 §6.1: the answer picks a format of the offer (PCMU, PCMA) and accepts sendrecv.
    [answer] = _answers(caller)
    assert re.search(r"^m=audio \d+ RTP/AVP (0|8)\b", answer.body, re.MULTILINE), answer.body
    [agent] = agents
    # Every packet of the capture reached the agent as a decoded frame; a frame can come from one packet only.
    assert packets * 0.9 <= agent.frames[FrameStatus.NORMAL] <= packets, agent.frames
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local) == ("bye", False)


# --- CANCEL while ringing -------------------------------------------------------------------------------------

async def test_cancel_while_ringing(tmp_path: Path) -> None:
    require_peer("sipp")
    agents, factory = keep_agents(FrameCounter)
    async with running_endpoint(factory, ring_ms=10_000) as ep:
        caller = await Sipp("uac_cancel", target(ep), service="agent", workdir=tmp_path / "uac").run()
        await ep.settled()
    assert caller.returncode == 0, caller.explain()
    # RFC 3261 §9.2: 200 for the CANCEL, then 487 for the INVITE; the ACK for the 487 ends the transaction.
    finals = [(m.status, m.method) for m in caller.received("SIP/2.0") if (m.status or 0) >= 200]
    assert finals == [(200, "CANCEL"), (487, "INVITE")], caller.explain()
    [ringing] = caller.received("SIP/2.0 180")
    assert ringing.headers("Contact")
    assert agents == []  # never answered, so no agent ran
    [ended] = ep.seen(CallEnded)
    assert ended.reason == "cancel"
    assert not ep.seen(CallEstablished)


# --- hold and resume -----------------------------------------------------------------------------------------------

async def test_hold_and_resume_by_reinvite(tmp_path: Path) -> None:
    require_peer("sipp")
    async with running_endpoint() as ep:
        caller = await Sipp("uac_hold", target(ep), service="agent", workdir=tmp_path / "uac").run()
        await ep.settled()
    assert caller.returncode == 0, caller.explain()
    # The scenario's own regexps already failed the call on a wrong direction; check the three answers in order
    # (RFC 3264 §6.1: sendonly is answered recvonly, sendrecv with sendrecv) and that each new SDP bumps the
    # o= version (§8).
    answers = _answers(caller)
    directions = [re.findall(r"^a=(sendrecv|sendonly|recvonly|inactive)", m.body, re.MULTILINE) for m in answers]
    assert directions == [["sendrecv"], ["recvonly"], ["sendrecv"]], caller.explain()
    versions = [int(v) for m in answers for v in re.findall(r"^o=\S+ \d+ (\d+) ", m.body, re.MULTILINE)]
    assert len(versions) == 3 and versions[1] == versions[0] + 1 and versions[2] == versions[1] + 1, versions
    assert "hold answered with a=recvonly" in caller.logs
    updates = ep.seen(MediaUpdated)
    assert [u.media.on_hold for u in updates] == [True, False]
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local) == ("bye", False)


# --- the endpoint hangs up ---------------------------------------------------------------------------------------

async def test_endpoint_hangs_up_after_a_second_of_audio(tmp_path: Path) -> None:
    require_peer("sipp")
    agents, factory = keep_agents(lambda context: HangUpAfter(context, FRAMES_PER_SECOND))
    async with running_endpoint(factory) as ep:
        caller = await Sipp("uac_wait_bye", target(ep), service="agent", workdir=tmp_path / "uac").run()
        await ep.settled()
    assert caller.returncode == 0, caller.explain()
    [ack] = caller.sent("ACK")
    [bye] = caller.received("BYE")
    # The BYE is built from the dialog (RFC 3261 §12.2.1.1): to sipp's Contact, with the dialog's Call-ID and tags.
    assert bye.start_line.startswith("BYE sip:sipp@127.0.0.1:")
    [invite] = caller.sent("INVITE")
    assert bye.headers("Call-ID") == invite.headers("Call-ID")
    held = _wire_time(bye.time) - _wire_time(ack.time)
    assert 0.9 <= held <= 3.0, held  # one second of frames after the ACK, then the BYE
    [agent] = agents
    assert agent.calls >= FRAMES_PER_SECOND
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local, ended.status) == ("bye", True, 200)


# --- load: calls one after the other and at the same time -----------------------------------------------------------

async def _bulk(tmp_path: Path, name: str, *, calls: int, concurrency: int | None, rate: float,
                duration_ms: int, check: Callable[[WatchedEndpoint, SippResult], None]) -> None:
    require_peer("sipp")
    require_root("sipp play_pcap_audio (raw socket)")
    agents, factory = keep_agents(FrameCounter)
    async with running_endpoint(factory) as ep:
        caller = await Sipp("uac_basic", target(ep), service="agent", calls=calls, concurrency=concurrency,
                            rate=rate, duration_ms=duration_ms, timeout=30.0, workdir=tmp_path / name).run()
        try:
            await ep.settled()
        except PeerError as error:
            ports = sorted(ep.pool.in_use) if ep.pool is not None else []
            raise AssertionError(f"{error}: calls {list(ep.calls)}, ports {ports}") from None
        check(ep, caller)
    assert caller.returncode == 0, caller.explain()
    assert (caller.successful_calls, caller.failed_calls) == (calls, 0), caller.explain()
    assert len(ep.seen(IncomingCall)) == len(ep.seen(CallEnded)) == len(agents) == calls
    assert all(e.reason == "bye" and not e.local for e in ep.seen(CallEnded))
    # Each call's tone bursts reached its own agent.
    assert all(agent.frames[FrameStatus.NORMAL] > 0 for agent in agents)


async def test_fifty_calls_in_a_row(tmp_path: Path) -> None:
    # 25 new calls a second, each 200 ms long: a steady stream in which ports and calls are reused, never a pile.
    def a_few_at_a_time(ep: WatchedEndpoint, caller: SippResult) -> None:
        assert 1 <= ep.peak_calls <= 12, ep.peak_calls

    await _bulk(tmp_path, "row", calls=50, concurrency=None, rate=25, duration_ms=200, check=a_few_at_a_time)


async def test_twenty_calls_at_once(tmp_path: Path) -> None:
    def all_together(ep: WatchedEndpoint, caller: SippResult) -> None:
        assert ep.peak_calls == 20

    await _bulk(tmp_path, "burst", calls=20, concurrency=20, rate=200, duration_ms=1000, check=all_together)
