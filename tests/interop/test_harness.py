"""The interop harness proven with the peers talking to each other; later copies swap one side for sipagent.

Expectations come from the RFCs (message flows, Record-Route and loose routing, digest with qop) and from
independent witnesses (sipp's own verdict, kamailio's location table, tshark's RTP decoder, baresip's
recordings), never from our own code.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.interop.peers import (
    FRAME,
    RATE,
    Baresip,
    Kamailio,
    Sipp,
    Tshark,
    free_port,
    free_ports,
    kamailio_config,
    parse_message_trace,
    read_wav,
    require_loopback,
    require_peer,
    require_root,
    rtp_streams,
    similarity,
    speech_like,
    ulaw_decode,
    ulaw_encode,
    write_rtp_pcap,
    write_wav,
)

pytestmark = pytest.mark.interop


def _via_branch(via: str) -> str:
    match = re.search(r";\s*branch=([^;,\s]+)", via)
    assert match, via
    return match[1]


def _digest_params(header: str) -> dict[str, str]:
    return {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header)}


# --- helpers that need no peer -----------------------------------------------------------------------------

def test_ulaw_coder_matches_the_standard_library() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the CPython G.711 coder (Sun's reference code): an independent oracle until 3.13
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw_encode(pcm).tobytes() == audioop.lin2ulaw(pcm.tobytes(), 2)
    codes = np.arange(256, dtype=np.uint8)
    assert ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes.tobytes(), 2)


def test_ports_are_never_handed_out_twice() -> None:
    singles = [free_port() for _ in range(50)]
    blocks = [free_ports(4) for _ in range(20)]
    taken = singles + [b + i for b in blocks for i in range(4)]
    assert len(taken) == len(set(taken))
    assert all(b % 2 == 0 for b in blocks)  # RTP on even ports (RFC 3550 §11)


def test_only_loopback_targets_are_accepted() -> None:
    for target in ("127.0.0.1:5060", "sip:bob@127.0.0.1:5070;transport=udp", "[::1]:5060", "sip:a@[::1]:5"):
        assert require_loopback(target) == target
    for target in ("192.0.2.1:5060", "sip:bob@example.com", "sip:bob@10.0.0.1:5060", "localhost:5060"):
        with pytest.raises(ValueError, match="loopback"):
            require_loopback(target)


def test_message_trace_is_split_into_messages() -> None:
    trace = ("----------------------------------------------- 2026-01-01 10:00:00.000001\n"
             "UDP message sent (60 bytes):\n\nOPTIONS sip:a@127.0.0.1 SIP/2.0\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
             "----------------------------------------------- 2026-01-01 10:00:00.000002\n"
             "UDP message received [40] bytes :\n\nSIP/2.0 200 OK\nCSeq: 1 OPTIONS\n\nbody\n")
    sent, received = parse_message_trace(trace)
    assert (sent.direction, sent.method, sent.is_request) == ("sent", "OPTIONS", True)
    assert (received.status, received.method, received.body) == (200, "OPTIONS", "body")


# --- (a) sipp to sipp ----------------------------------------------------------------------------------------

async def test_sipp_basic_call_with_rtp(tmp_path: Path) -> None:
    require_peer("sipp")
    require_root("sipp play_pcap_audio (raw socket)")
    pcap = write_rtp_pcap(tmp_path / "speech.pcap", speech_like(0.8))
    async with Sipp("uas_basic", rtp_echo=True, workdir=tmp_path / "uas") as uas:
        uac = await Sipp("uac_basic", uas.address, service="bob", pcap=pcap, duration_ms=1000,
                         workdir=tmp_path / "uac").run()
        callee = await uas.wait()
    assert uac.returncode == 0, uac.explain()
    assert callee.returncode == 0, callee.explain()
    assert (uac.successful_calls, uac.failed_calls) == (1, 0)
    assert [m.start_line.split()[0] for m in uac.sent("")] == ["INVITE", "ACK", "BYE"]
    assert [m.method for m in callee.received("")] == ["INVITE", "ACK", "BYE"]
    # The callee's answer selected PCMU from the offer (RFC 3264 §6.1).
    [ok] = [m for m in uac.received("SIP/2.0 200") if m.method == "INVITE"]
    assert re.search(r"^m=audio \d+ RTP/AVP 0\b", ok.body, re.MULTILINE)


# --- (b) CANCEL ------------------------------------------------------------------------------------------------

async def test_sipp_cancel_against_ringing_callee(tmp_path: Path) -> None:
    require_peer("sipp")
    async with Sipp("uas_ring_forever", workdir=tmp_path / "uas") as uas:
        uac = await Sipp("uac_cancel", uas.address, service="bob", workdir=tmp_path / "uac").run()
        callee = await uas.wait()
    assert uac.returncode == 0, uac.explain()
    assert callee.returncode == 0, callee.explain()
    [invite], [cancel] = uac.sent("INVITE"), uac.sent("CANCEL")
    # RFC 3261 §9.1: the CANCEL names the same transaction as the INVITE (top Via branch, Call-ID, CSeq number).
    assert _via_branch(cancel.headers("Via")[0]) == _via_branch(invite.headers("Via")[0])
    assert cancel.headers("CSeq")[0].split()[0] == invite.headers("CSeq")[0].split()[0]
    assert [(m.status, m.method) for m in uac.received("SIP/2.0")] == [(180, "INVITE"), (200, "CANCEL"),
                                                                        (487, "INVITE")]
    # The ACK for the 487 belongs to the INVITE transaction (RFC 3261 §17.1.1.3).
    [ack] = uac.sent("ACK")
    assert _via_branch(ack.headers("Via")[0]) == _via_branch(invite.headers("Via")[0])


def test_kamailio_config_parses_with_every_switch(tmp_path: Path) -> None:
    require_peer("kamailio")
    config = tmp_path / "kamailio.cfg"
    config.write_text(kamailio_config(free_port(), {"2000": "secret"}, "sip.test", tmp_path / "ctl.sock"))
    names = ("WITH_AUTH", "WITH_QOP", "WITH_AUTH_CALLS", "REGISTRAR_ONLY")
    for switches in itertools.product((False, True), repeat=len(names)):
        defines = [arg for name, on in zip(names, switches, strict=True) if on for arg in ("-A", name)]
        check = subprocess.run(["kamailio", "-c", "-f", str(config), *defines], capture_output=True, text=True,
                               timeout=10, check=False)
        assert check.returncode == 0, (defines, check.stderr[-2000:])


async def test_registrar_only_kamailio_registers_but_refuses_calls(tmp_path: Path) -> None:
    require_peer("sipp", "kamailio")
    callee_port = free_port()
    async with Kamailio(registrar_and_proxy=False, workdir=tmp_path / "kamailio") as registrar:
        register = await Sipp("register", registrar.address, local_port=callee_port, service="2000",
                              workdir=tmp_path / "register").run()
        assert register.returncode == 0, register.explain()
        assert not register.received("SIP/2.0 401")  # no authentication asked for
        assert [c for c in await registrar.registered_contacts("2000") if f":{callee_port}" in c]
        caller = await Sipp("uac_via_proxy", registrar.address, service="2000", workdir=tmp_path / "uac").run()
    assert caller.returncode != 0
    assert [m.status for m in caller.received("SIP/2.0")] == [403]


# --- (c) registration with digest + qop, then a call through the proxy -----------------------------------------

async def test_register_with_qop_then_call_through_kamailio(tmp_path: Path) -> None:
    require_peer("sipp", "kamailio")
    callee_port = free_port()
    async with Kamailio(auth=True, qop=True, users={"2000": "secret"}, workdir=tmp_path / "kamailio") as proxy:
        assert await proxy.registered_contacts("2000") == []
        # A wrong password is challenged again: the registrar really checks the digest (RFC 3261 §22.4).
        refused = await Sipp("register", proxy.address, local_port=callee_port, service="2000",
                             auth=("2000", "wrong"), workdir=tmp_path / "refused").run()
        assert refused.returncode != 0 and len(refused.received("SIP/2.0 401")) == 2, refused.explain()
        assert await proxy.registered_contacts("2000") == []
        register = await Sipp("register", proxy.address, local_port=callee_port, service="2000",
                              auth=("2000", "secret"), workdir=tmp_path / "register").run()
        assert register.returncode == 0, register.explain() + proxy.log
        [challenge] = register.received("SIP/2.0 401")
        offered = _digest_params(challenge.headers("WWW-Authenticate")[0])
        assert offered["qop"] == "auth"
        [_, second] = register.sent("REGISTER")
        answer = _digest_params(second.headers("Authorization")[0])
        # RFC 2617 §3.2.2.1 with qop=auth: response = MD5(HA1:nonce:nc:cnonce:qop:HA2).
        ha1 = hashlib.md5(f"2000:{offered['realm']}:secret".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{answer['uri']}".encode()).hexdigest()
        expected = hashlib.md5(":".join([ha1, offered["nonce"], answer["nc"], answer["cnonce"], "auth", ha2])
                               .encode()).hexdigest()
        assert answer["response"] == expected
        assert register.received("SIP/2.0 200")
        contacts = await proxy.registered_contacts("2000")
        assert [c for c in contacts if f"127.0.0.1:{callee_port}" in c], contacts

        async with Sipp("uas_basic", local_port=callee_port, service="2000", workdir=tmp_path / "uas") as uas:
            uac = await Sipp("uac_via_proxy", proxy.address, service="2000", duration_ms=300,
                             workdir=tmp_path / "uac").run()
            callee = await uas.wait()
        assert uac.returncode == 0, uac.explain() + proxy.log
        assert callee.returncode == 0, callee.explain() + proxy.log
        await proxy.wait_for_log(r"LOOSE-ROUTE BYE")
    proxy_uri = re.compile(rf"<sip:127\.0\.0\.1:{proxy.port};lr[;>]")  # kamailio adds ;ftag=
    # The proxy record-routed the INVITE (RFC 3261 §16.6 step 4); the callee echoed it in its 200 (§12.1.1).
    [invite] = callee.received("INVITE")
    assert proxy_uri.search(", ".join(invite.headers("Record-Route"))), invite.text
    [ok] = [m for m in uac.received("SIP/2.0 200") if m.method == "INVITE"]
    assert proxy_uri.search(", ".join(ok.headers("Record-Route"))), ok.text
    # The caller's BYE goes to the callee's Contact through the route set (§12.2.1.1) and arrives via the proxy.
    [bye] = uac.sent("BYE")
    assert bye.start_line.startswith(f"BYE sip:2000@127.0.0.1:{callee_port}")
    assert proxy_uri.search(", ".join(bye.headers("Route"))), bye.text
    [arrived] = callee.received("BYE")
    assert f"127.0.0.1:{proxy.port}" in arrived.headers("Via")[0]


# --- (d) baresip calls an echoing sipp and hears itself ----------------------------------------------------------

async def test_baresip_hears_its_own_voice_echoed_by_sipp(tmp_path: Path) -> None:
    require_peer("sipp", "baresip")
    voice = speech_like(2.0, seed=7)
    # The call ends with the microphone file: a tail of silence lets the last echo come back before the BYE.
    microphone = write_wav(tmp_path / "mic.wav", np.concatenate([voice, np.zeros(RATE // 2, np.int16)]))
    async with Sipp("uas_basic", rtp_echo=True, service="echo", workdir=tmp_path / "uas") as uas:
        async with Baresip(tmp_path / "baresip", wav_in=microphone, dial=uas.uri()) as phone:
            await phone.wait_for_log(r"Call established", 5.0)
            await phone.wait_for_log(r"terminated", 10.0)
            callee = await uas.wait()
            recordings = phone.recordings()
    assert callee.returncode == 0, callee.explain() + phone.log
    [heard], [sent] = recordings.decoded, recordings.encoded
    rate, echoed = read_wav(heard)
    assert rate == RATE
    score, lag = similarity(voice, echoed)
    assert score > 0.5, (score, lag)
    assert lag < RATE // 2  # the echo returns within 500 ms on loopback
    assert similarity(voice, read_wav(sent)[1])[0] > 0.9


# --- (e) tshark sees the RTP of (a) -------------------------------------------------------------------------------

async def test_tshark_captures_rtp_of_basic_call(tmp_path: Path) -> None:
    require_peer("sipp", "tshark")
    require_root("capturing on lo and sipp play_pcap_audio")
    ssrc = 0x0BADCAFE
    voice = speech_like(0.6)
    pcap = write_rtp_pcap(tmp_path / "voice.pcap", voice, ssrc=ssrc)
    frames = -(-len(voice) // FRAME)  # one packet per started 20 ms frame
    uas = Sipp("uas_basic", rtp_echo=True, workdir=tmp_path / "uas")
    uac = Sipp("uac_basic", uas.address, pcap=pcap, duration_ms=900, workdir=tmp_path / "uac")
    capture = tmp_path / "call.pcapng"
    media = [uas.media_port, uac.media_port]
    async with Tshark(capture, port_ranges=[(port, port + 3) for port in media]):
        async with uas:
            caller = await uac.run()
            callee = await uas.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()
    streams = {(s.source[1], s.destination[1]): s for s in await rtp_streams(capture, media)}
    sent = streams[(uac.media_port, uas.media_port)]
    echoed = streams[(uas.media_port, uac.media_port)]
    for stream in (sent, echoed):
        assert (stream.ssrc, stream.payload, stream.packets, stream.lost) == (ssrc, "g711U", frames, 0), stream
    assert 15 < sent.mean_delta_ms < 25  # the capture's 20 ms packet time, as played by sipp


# --- the other scenarios against an independent UA -------------------------------------------------------------

async def test_sipp_hold_and_resume_against_baresip(tmp_path: Path) -> None:
    require_peer("sipp", "baresip")
    async with Baresip(tmp_path / "baresip", silence_seconds=10.0) as phone:
        caller = await Sipp("uac_hold", phone.address, service=phone.user, workdir=tmp_path / "uac").run()
    assert caller.returncode == 0, caller.explain() + phone.log
    # RFC 3264 §8.4: a sendonly offer is answered recvonly, and sendrecv again on resume.
    answers = [m for m in caller.received("SIP/2.0 200") if m.method == "INVITE"]
    directions = [re.findall(r"^a=(sendrecv|sendonly|recvonly|inactive)", m.body, re.MULTILINE) for m in answers]
    assert directions == [["sendrecv"], ["recvonly"], ["sendrecv"]]
    assert "hold answered with" in caller.logs


async def test_sipp_waits_for_baresip_to_hang_up(tmp_path: Path) -> None:
    require_peer("sipp", "baresip")
    # baresip hangs up when its microphone file ends.
    async with Baresip(tmp_path / "baresip", silence_seconds=1.0) as phone:
        caller = await Sipp("uac_wait_bye", phone.address, service=phone.user, workdir=tmp_path / "uac").run()
    assert caller.returncode == 0, caller.explain() + phone.log
    [bye] = caller.received("BYE")
    [ok] = caller.sent("SIP/2.0 200")
    assert ok.headers("CSeq") == bye.headers("CSeq")


async def test_baresip_registers_and_calls_through_authenticating_kamailio(tmp_path: Path) -> None:
    require_peer("sipp", "baresip", "kamailio")
    callee_port = free_port()
    users = {"2000": "secret", "3000": "other"}
    async with Kamailio(auth=True, qop=True, auth_calls=True, users=users, workdir=tmp_path / "kamailio") as proxy:
        register = await Sipp("register", proxy.address, local_port=callee_port, service="3000",
                              auth=("3000", "other"), workdir=tmp_path / "register").run()
        assert register.returncode == 0, register.explain()
        account = f"<sip:2000@{proxy.address}>;auth_pass=secret;regint=60;answermode=auto"
        async with Sipp("uas_basic", local_port=callee_port, service="3000", workdir=tmp_path / "uas") as uas:
            async with Baresip(tmp_path / "baresip", account=account, user="2000", silence_seconds=1.0) as phone:
                await phone.wait_for_log(r"200 OK .*\[1 binding\]", 5.0)
                [contact] = await proxy.registered_contacts("2000")
                assert f"127.0.0.1:{phone.sip_port}" in contact
                await phone.command(f"/dial {proxy.uri('3000')}")
                await phone.wait_for_log(r"terminated", 8.0)
                callee = await uas.wait()
        assert callee.returncode == 0, callee.explain() + phone.log + proxy.log
        # The INVITE was challenged with 407 before it was relayed (RFC 3261 §22.3); the BYE came back along
        # the route set.
        await proxy.wait_for_log(r"CHALLENGE INVITE sip:2000@")
        await proxy.wait_for_log(r"LOOSE-ROUTE BYE")
    [invite] = callee.received("INVITE")
    assert invite.headers("Record-Route")
    assert "Proxy-Authorization" not in invite.text  # kamailio consumed the credentials
