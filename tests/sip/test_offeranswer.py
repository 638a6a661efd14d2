"""Offer/answer (RFC 3264) against offers shaped like those of real phones, PBXs and gateways.

Each fixture's expectation is written from the RFC rules (§6 answer shape, §6.1 codec and direction choice,
§8.4 hold) and the capabilities under test, never from our own output; every answer also goes through
``assert_rfc3264_answer``, a rule checker that looks only at the offer and the answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.offeranswer import (
    AudioCapabilities,
    LocalSession,
    MediaNotAcceptable,
    NegotiatedMedia,
    NoCommonCodec,
    accept_answer,
    answer_offer,
    make_offer,
)
from sipagent.sip.sdp import Direction, MediaDescription, SessionDescription, parse_sdp, serialize_sdp

pytestmark = pytest.mark.unit

HERE4 = "192.0.2.200"
HERE6 = "2001:db8::200"
PORT = 40000


def sdp(text: str) -> SessionDescription:
    # Fixtures are written with LF; peers send CRLF, and the parser must take both.
    return parse_sdp("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")


MICROSIP = sdp("""
    v=0
    o=- 3917251462 3917251462 IN IP4 192.168.1.34
    s=pjmedia
    b=AS:84
    t=0 0
    a=X-nat:0
    m=audio 4002 RTP/AVP 9 8 0 101
    c=IN IP4 192.168.1.34
    b=TIAS:64000
    a=rtpmap:9 G722/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=rtcp:4003 IN IP4 192.168.1.35
    a=ssrc:1653937617 cname:4b7d2a5e1c0f3a88
    a=sendrecv
""")

ASTERISK = """
    v=0
    o=- 1790435573 {version} IN IP4 203.0.113.10
    s=Asterisk
    c=IN IP4 {address}
    t=0 0
    m=audio {port} RTP/AVP 0 8 3 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:3 GSM/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a={direction}
"""


def asterisk(version: int = 1790435573, address: str = "203.0.113.10", port: int = 13056,
             direction: str = "sendrecv") -> SessionDescription:
    return sdp(ASTERISK.format(version=version, address=address, port=port, direction=direction))


FREESWITCH = sdp("""
    v=0
    o=FreeSWITCH 1700000000 1700000001 IN IP4 198.51.100.7
    s=FreeSWITCH
    c=IN IP4 198.51.100.7
    t=0 0
    m=audio 24572 RTP/AVP 102 9 0 8 101 13
    a=rtpmap:102 opus/48000/2
    a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; minptime=10; maxptime=40
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=rtpmap:13 CN/8000
    a=ptime:20
    a=sendrecv
    a=rtcp:24573
""")

BARESIP = sdp("""
    v=0
    o=- 1516137519 2128196406 IN IP4 10.0.0.5
    s=-
    c=IN IP4 10.0.0.5
    t=0 0
    m=audio 10462 RTP/AVP 96 9 0 8 101
    b=AS:64
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtcp-mux
    a=ptime:20
    a=sendrecv
    a=label:1
""")

BARESIP_IPV6 = sdp("""
    v=0
    o=- 2890844526 2890844527 IN IP6 2001:db8::5
    s=-
    c=IN IP6 2001:db8::5
    t=0 0
    m=audio 10462 RTP/AVP 0 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtcp-mux
    a=sendrecv
""")

LINPHONE = sdp("""
    v=0
    o=alice 3040 2148 IN IP4 192.168.0.20
    s=Talk
    c=IN IP4 192.168.0.20
    t=0 0
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:97 speex/16000
    a=fmtp:97 vbr=on
    a=rtpmap:98 speex/8000
    a=fmtp:98 vbr=on
    a=fmtp:18 annexb=yes
    a=rtpmap:101 telephone-event/48000
    a=rtpmap:99 telephone-event/16000
    a=rtpmap:100 telephone-event/8000
    a=rtcp-fb:* trr-int 1000
    m=video 9078 RTP/AVP 96 97
    a=rtpmap:96 VP8/90000
    a=rtpmap:97 H264/90000
    a=fmtp:97 profile-level-id=42801F
""")

CISCO_GATEWAY = """
    v=0
    o=CiscoSystemsSIP-GW-UserAgent 4375 {version} IN IP4 192.0.2.50
    s=SIP Call
    c=IN IP4 {session_address}
    t=0 0
    m=audio 17434 RTP/AVP 18 8 0 101 19
    c=IN IP4 {media_address}
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=no
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtpmap:19 CN/8000
    a=ptime:30
"""
CISCO = sdp(CISCO_GATEWAY.format(version=8925, session_address="192.0.2.50", media_address="192.0.2.51"))
# RFC 2543 hold, still sent by older gateways: the connection address becomes 0.0.0.0.
CISCO_OLD_HOLD = sdp(CISCO_GATEWAY.format(version=8926, session_address="0.0.0.0", media_address="0.0.0.0"))

CUCM_INACTIVE = sdp("""
    v=0
    o=CiscoSystemsCCM-SIP 2000 3 IN IP4 192.0.2.60
    s=SIP Call
    c=IN IP4 192.0.2.61
    b=TIAS:64000
    b=AS:64
    t=0 0
    m=audio 24580 RTP/AVP 0 101
    b=TIAS:64000
    a=ptime:20
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=inactive
""")

ZOIPER_VIDEO_FIRST = sdp("""
    v=0
    o=Zoiper 0 12345 IN IP4 192.168.1.50
    s=Zoiper
    c=IN IP4 192.168.1.50
    t=0 0
    m=video 8002 RTP/AVP 34 96
    a=rtpmap:34 H263/90000
    a=rtpmap:96 H264/90000
    m=audio 8000 RTP/AVP 0 101 8 3
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=sendrecv
""")

# Best-effort SRTP as two m-lines: the secure one first, a plain one as fallback.
SRTP_THEN_PLAIN = sdp("""
    v=0
    o=root 1 1 IN IP4 10.1.1.10
    s=call
    c=IN IP4 10.1.1.10
    t=0 0
    m=audio 5004 RTP/SAVP 0 8 101
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    m=audio 5006 RTP/AVP 0 8 101
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
""")

WEBRTC = sdp("""
    v=0
    o=- 4611731400430051336 2 IN IP4 127.0.0.1
    s=-
    t=0 0
    a=group:BUNDLE 0
    m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126
    c=IN IP4 0.0.0.0
    a=rtcp:9 IN IP4 0.0.0.0
    a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88
    a=setup:actpass
    a=mid:0
    a=sendrecv
    a=rtcp-mux
    a=rtpmap:111 opus/48000/2
    a=rtpmap:126 telephone-event/8000
""")

G729_OPUS_ONLY = sdp("""
    v=0
    o=- 7 7 IN IP4 198.51.100.20
    s=-
    c=IN IP4 198.51.100.20
    t=0 0
    m=audio 6000 RTP/AVP 18 96 101
    a=rtpmap:18 G729/8000
    a=rtpmap:96 opus/48000/2
    a=rtpmap:101 telephone-event/8000
""")

LOWERCASE_DYNAMIC_PCMU = sdp("""
    v=0
    o=- 8 8 IN IP4 198.51.100.21
    s=-
    t=0 0
    m=audio 6002 RTP/AVP 110 111
    c=IN IP4 198.51.100.21
    a=rtpmap:110 pcmu/8000
    a=rtpmap:111 Telephone-Event/8000
    a=fmtp:111 0-11
    a=recvonly
""")

SESSION_LEVEL_INACTIVE = sdp("""
    v=0
    o=- 9 10 IN IP4 198.51.100.22
    s=-
    c=IN IP4 198.51.100.22
    t=0 0
    a=inactive
    m=audio 6004 RTP/AVP 8
""")


@dataclass(frozen=True)
class Expected:
    index: int
    codec: str
    pt: int
    event_pt: int | None
    event_fmtp: str | None
    address: str
    port: int
    rtcp: tuple[str, int]
    mux: bool
    ptime: int | None
    ours: Direction
    theirs: Direction
    hold: bool


S, SO, RO, IN = Direction.SENDRECV, Direction.SENDONLY, Direction.RECVONLY, Direction.INACTIVE

CASES = {
    # G722 is first but not ours: §6.1 keeps the offerer's order among what we support, so PCMA;
    # RFC 3605 gives RTCP its own address; PJSIP puts c= at media level only.
    "microsip": (MICROSIP, Expected(0, "PCMA", 8, 101, "0-16", "192.168.1.34", 4002, ("192.168.1.35", 4003),
                                    False, None, S, S, False)),
    # No a=rtcp: RTCP on the next port (RFC 3550 §11); session-level c= only.
    "asterisk": (asterisk(), Expected(0, "PCMU", 0, 101, "0-16", "203.0.113.10", 13056, ("203.0.113.10", 13057),
                                      False, 20, S, S, False)),
    # §6.1 hold: an offer marked sendonly is answered recvonly.
    "asterisk-hold": (asterisk(direction="sendonly"),
                      Expected(0, "PCMU", 0, 101, "0-16", "203.0.113.10", 13056, ("203.0.113.10", 13057),
                               False, 20, RO, SO, True)),
    # Opus (dynamic) and G722 first; a=rtcp with a port only takes the connection address.
    "freeswitch": (FREESWITCH, Expected(0, "PCMU", 0, 101, "0-16", "198.51.100.7", 24572, ("198.51.100.7", 24573),
                                        False, 20, S, S, False)),
    # RFC 5761 §5.1.1: both sides mux, so RTCP goes to the RTP port; events 0-15 echoed as offered.
    "baresip": (BARESIP, Expected(0, "PCMU", 0, 101, "0-15", "10.0.0.5", 10462, ("10.0.0.5", 10462),
                                  True, 20, S, S, False)),
    # Static 0 without a=rtpmap (RFC 3551); the 8 kHz telephone-event matches our 8 kHz codec, not 48/16 kHz;
    # the video stream is refused (§6).
    "linphone": (LINPHONE, Expected(0, "PCMU", 0, 100, None, "192.168.0.20", 7078, ("192.168.0.20", 7079),
                                    False, None, S, S, False)),
    # A media-level c= overrides the session one (RFC 8866 §5.7); the remote packet time is 30 ms.
    "cisco": (CISCO, Expected(0, "PCMA", 8, 101, "0-15", "192.0.2.51", 17434, ("192.0.2.51", 17435),
                              False, 30, S, S, False)),
    # §8.4: c=0.0.0.0 means send nothing, so we may only receive even though the offer says sendrecv.
    "cisco-old-hold": (CISCO_OLD_HOLD, Expected(0, "PCMA", 8, 101, "0-15", "0.0.0.0", 17434, ("0.0.0.0", 17435),
                                                False, 30, RO, SO, True)),
    # §6.1: inactive is answered inactive.
    "cucm-inactive": (CUCM_INACTIVE, Expected(0, "PCMU", 0, 101, "0-15", "192.0.2.61", 24580, ("192.0.2.61", 24581),
                                              False, 20, IN, IN, True)),
    # The audio stream is the second m-line; the first (video) is refused with port 0.
    "zoiper-video-first": (ZOIPER_VIDEO_FIRST,
                           Expected(1, "PCMU", 0, 101, "0-16", "192.168.1.50", 8000, ("192.168.1.50", 8001),
                                    False, None, S, S, False)),
    # We cannot do SRTP: the RTP/SAVP stream is refused and the plain RTP/AVP one accepted.
    "srtp-then-plain": (SRTP_THEN_PLAIN, Expected(1, "PCMU", 0, 101, "0-15", "10.1.1.10", 5006, ("10.1.1.10", 5007),
                                                  False, None, S, S, False)),
    # Encoding names are case-insensitive (RFC 4855 §3); §6.1: recvonly is answered sendonly.
    "dynamic-pcmu": (LOWERCASE_DYNAMIC_PCMU,
                     Expected(0, "PCMU", 110, 111, "0-11", "198.51.100.21", 6002, ("198.51.100.21", 6003),
                              False, None, SO, RO, False)),
    # RFC 8866 §6.7: a session-level direction applies to every stream without its own.
    "session-inactive": (SESSION_LEVEL_INACTIVE,
                         Expected(0, "PCMA", 8, None, None, "198.51.100.22", 6004, ("198.51.100.22", 6005),
                                  False, None, IN, IN, True)),
}

# RFC 3264 §6.1: the answer direction each offered direction allows.
ALLOWED_ANSWER_DIRECTIONS = {
    "sendonly": {"recvonly", "inactive"},
    "recvonly": {"sendonly", "inactive"},
    "inactive": {"inactive"},
    "sendrecv": {"sendrecv", "sendonly", "recvonly", "inactive"},
}


def direction_of(sd: SessionDescription, index: int) -> str:
    flags = ("sendrecv", "sendonly", "recvonly", "inactive")
    for attributes in (sd.media[index].attributes, sd.attributes):
        for a in attributes:
            if a.value is None and a.name in flags:
                return a.name
    return "sendrecv"


def assert_rfc3264_answer(offer: SessionDescription, answer: SessionDescription, address: str) -> None:
    answer = parse_sdp(serialize_sdp(answer))  # check what goes on the wire
    assert len(answer.media) == len(offer.media)  # §6: one m-line per offered m-line, in order
    for i, (om, am) in enumerate(zip(offer.media, answer.media, strict=True)):
        assert (am.media, am.proto) == (om.media, om.proto)
        assert am.formats  # RFC 8866 §5.14: at least one format, even in a refused stream
        if om.port == 0:
            assert am.port == 0  # §6: a disabled stream stays disabled
        if am.port == 0:
            continue
        offered_names = {pt: om.codec(pt) for pt in om.payload_types}
        for pt in am.payload_types:
            # §6.1: only offered formats, under the offerer's payload type numbers.
            offered, answered = offered_names.get(pt), am.codec(pt)
            assert offered is not None and answered is not None
            assert (offered.encoding.upper(), offered.clock_rate) == (answered.encoding.upper(), answered.clock_rate)
        assert direction_of(answer, i) in ALLOWED_ANSWER_DIRECTIONS[direction_of(offer, i)]
        c = answer.media[i].connections[0] if answer.media[i].connections else answer.connection
        assert c is not None and c.address == address
    assert sum(1 for m in answer.media if m.port != 0) == 1


def encoding(m: MediaDescription, pt: int) -> str | None:
    codec = m.codec(pt)
    return None if codec is None else codec.encoding.upper()


@pytest.mark.parametrize("name", sorted(CASES))
def test_answers_to_real_world_offers(name: str) -> None:
    offer, want = CASES[name]
    result = answer_offer(offer, AudioCapabilities(), HERE4, PORT, LocalSession(77))
    assert_rfc3264_answer(offer, result.answer, HERE4)
    got = result.media
    assert got == NegotiatedMedia(
        media_index=want.index, remote_address=want.address, remote_port=want.port,
        remote_rtcp_address=want.rtcp[0], remote_rtcp_port=want.rtcp[1], rtcp_mux=want.mux, codec=want.codec,
        payload_type=want.pt, clock_rate=8000, telephone_event_pt=want.event_pt, telephone_event_fmtp=want.event_fmtp,
        remote_ptime=want.ptime, local_direction=want.ours, remote_direction=want.theirs, on_hold=want.hold,
    )
    ours = result.answer.media[want.index]
    assert ours.port == PORT
    event = () if want.event_pt is None else (str(want.event_pt),)
    assert ours.formats == (str(want.pt), *event)
    assert encoding(ours, want.pt) == want.codec
    if want.event_pt is not None:
        assert encoding(ours, want.event_pt) == "TELEPHONE-EVENT"
        assert ours.fmtp(want.event_pt) == want.event_fmtp
    assert ours.ptime == 20
    assert ours.rtcp_mux is want.mux
    assert ours.direction is want.ours  # stated explicitly, not left to the default
    assert [m.port for i, m in enumerate(result.answer.media) if i != want.index] == [0] * (len(offer.media) - 1)


def test_ipv6_offer_is_answered_from_an_ipv6_address_only() -> None:
    result = answer_offer(BARESIP_IPV6, AudioCapabilities(), HERE6, PORT, LocalSession(1))
    assert_rfc3264_answer(BARESIP_IPV6, result.answer, HERE6)
    assert result.answer.connection is not None and result.answer.connection.addr_type == "IP6"
    assert result.answer.origin.addr_type == "IP6"
    assert (result.media.remote_address, result.media.remote_port, result.media.codec) == ("2001:db8::5", 10462, "PCMU")
    with pytest.raises(MediaNotAcceptable) as info:
        answer_offer(BARESIP_IPV6, AudioCapabilities(), HERE4, PORT, LocalSession(1))
    assert info.value.status_hint == 488


VIDEO_ONLY = sdp("""
    v=0
    o=- 1 1 IN IP4 192.0.2.9
    s=-
    c=IN IP4 192.0.2.9
    t=0 0
    m=video 9078 RTP/AVP 96
    a=rtpmap:96 VP8/90000
""")


@pytest.mark.parametrize("offer", [WEBRTC, G729_OPUS_ONLY, VIDEO_ONLY])
def test_unacceptable_offers_get_488(offer: SessionDescription) -> None:
    with pytest.raises(MediaNotAcceptable) as info:
        answer_offer(offer, AudioCapabilities(), HERE4, PORT, LocalSession(1))
    assert info.value.status_hint == 488
    # Only an offer whose plain RTP audio stream lacks our codecs is a codec mismatch.
    assert isinstance(info.value, NoCommonCodec) is (offer is G729_OPUS_ONLY)


def test_capabilities_shape_the_answer() -> None:
    # Our preference order instead of the offerer's: Cisco offers G729, PCMA, PCMU.
    mine = answer_offer(CISCO, AudioCapabilities(prefer_offerer_order=False), HERE4, PORT, LocalSession(1))
    assert (mine.media.codec, mine.media.payload_type) == ("PCMU", 0)
    only_pcma = answer_offer(asterisk(), AudioCapabilities(codecs=("PCMA",)), HERE4, PORT, LocalSession(1))
    assert (only_pcma.media.codec, only_pcma.media.payload_type) == ("PCMA", 8)
    assert_rfc3264_answer(asterisk(), only_pcma.answer, HERE4)
    quiet = answer_offer(BARESIP, AudioCapabilities(telephone_event=False, rtcp_mux=False), HERE4, PORT,
                         LocalSession(1))
    assert quiet.media.telephone_event_pt is None and quiet.answer.media[0].formats == ("0",)
    # Without mux on our side RTCP stays on the next port (RFC 5761 §5.1.1, RFC 3550 §11).
    assert (quiet.media.rtcp_mux, quiet.media.remote_rtcp_port) == (False, 10463)
    assert not quiet.answer.media[0].rtcp_mux
    longer = answer_offer(asterisk(), AudioCapabilities(ptime=30), HERE4, PORT, LocalSession(1))
    assert longer.answer.media[0].ptime == 30


def test_mux_only_stream_is_refused_by_an_endpoint_that_will_not_mux() -> None:
    offer = sdp(serialize_sdp(BARESIP).decode().replace("a=rtcp-mux", "a=rtcp-mux\na=rtcp-mux-only"))
    assert answer_offer(offer, AudioCapabilities(), HERE4, PORT, LocalSession(1)).media.rtcp_mux
    with pytest.raises(MediaNotAcceptable):  # RFC 8858 §4.2
        answer_offer(offer, AudioCapabilities(rtcp_mux=False), HERE4, PORT, LocalSession(1))


def test_only_the_first_usable_audio_stream_is_accepted() -> None:
    offer = sdp("""
        v=0
        o=- 1 1 IN IP4 192.0.2.9
        s=-
        c=IN IP4 192.0.2.9
        t=0 0
        m=audio 0 RTP/AVP 0
        m=audio 5000 RTP/AVP 18
        a=rtpmap:18 G729/8000
        m=audio 5002 RTP/AVP 8
        m=audio 5004 RTP/AVP 0
    """)
    result = answer_offer(offer, AudioCapabilities(), HERE4, PORT, LocalSession(1))
    assert_rfc3264_answer(offer, result.answer, HERE4)
    assert [m.port for m in result.answer.media] == [0, 0, PORT, 0]
    assert (result.media.media_index, result.media.codec) == (2, "PCMA")


def test_audio_stream_without_a_connection_address_is_a_bad_request() -> None:
    offer = sdp("""
        v=0
        o=- 1 1 IN IP4 192.0.2.9
        s=-
        t=0 0
        m=audio 5000 RTP/AVP 0
    """)
    with pytest.raises(RemoteProtocolError, match="c=") as info:
        answer_offer(offer, AudioCapabilities(), HERE4, PORT, LocalSession(1))
    assert info.value.status_hint == 400


def test_reoffers_for_media_move_hold_and_resume() -> None:
    session = LocalSession(4242, version=7)
    first = answer_offer(asterisk(), AudioCapabilities(), HERE4, PORT, session)
    assert first.answer.origin.session_version == 7
    # Direct media: Asterisk moves the stream to the phone. Our answer is unchanged, so is its version (§8).
    moved = answer_offer(asterisk(version=1790435574, address="198.51.100.99", port=17000), AudioCapabilities(),
                         HERE4, PORT, session)
    assert (moved.media.remote_address, moved.media.remote_port) == ("198.51.100.99", 17000)
    assert moved.media.remote_rtcp_address == "198.51.100.99"
    assert moved.answer == first.answer
    held = answer_offer(asterisk(version=1790435575, address="198.51.100.99", port=17000, direction="sendonly"),
                        AudioCapabilities(), HERE4, PORT, session)
    assert held.media.on_hold and held.media.local_direction is Direction.RECVONLY
    assert held.answer.origin.session_version == 8  # §8: changed SDP, version + 1
    # The same hold the RFC 2543 way (c=0.0.0.0, §8.4) needs the same answer, so the version stays.
    old_hold = answer_offer(asterisk(version=1790435576, address="0.0.0.0", port=17000), AudioCapabilities(),
                            HERE4, PORT, session)
    assert old_hold.media.on_hold and old_hold.answer == held.answer
    resumed = answer_offer(asterisk(version=1790435577), AudioCapabilities(), HERE4, PORT, session)
    assert not resumed.media.on_hold and resumed.media.local_direction is Direction.SENDRECV
    assert resumed.answer.origin.session_version == 9
    assert {r.answer.origin.session_id for r in (first, moved, held, old_hold, resumed)} == {4242}


def test_we_hold_the_call_and_the_peer_refreshes_the_session() -> None:
    # While we hold (we want sendonly), a sendrecv re-offer is answered sendonly (§6.1 allows it).
    result = answer_offer(asterisk(), AudioCapabilities(), HERE4, PORT, LocalSession(1), direction=Direction.SENDONLY)
    assert result.media.local_direction is Direction.SENDONLY and not result.media.on_hold
    assert_rfc3264_answer(asterisk(), result.answer, HERE4)


# ---- our offers ---------------------------------------------------------------------------------------------------


def test_offer_lists_our_codecs_with_static_numbers_and_events() -> None:
    offer = make_offer(AudioCapabilities(codecs=("PCMA", "PCMU")), HERE4, PORT, LocalSession(31, version=5))
    wire = parse_sdp(serialize_sdp(offer))
    assert wire.origin.session_id == 31 and wire.origin.session_version == 5
    assert wire.connection is not None and wire.connection.address == HERE4
    (m,) = wire.media
    assert (m.media, m.port, m.proto) == ("audio", PORT, "RTP/AVP")
    assert m.payload_types == (8, 0, 101)  # RFC 3551: PCMA is 8, PCMU 0; preference order kept
    assert [encoding(m, pt) for pt in (8, 0, 101)] == ["PCMA", "PCMU", "TELEPHONE-EVENT"]
    assert m.rtpmaps[101].clock_rate == 8000 and m.fmtp(101) == "0-16"
    assert (m.ptime, m.rtcp_mux, wire.media_direction(m)) == (20, True, Direction.SENDRECV)


def test_plain_offer_without_events_or_mux() -> None:
    offer = make_offer(AudioCapabilities(codecs=("PCMU",), telephone_event=False, rtcp_mux=False, ptime=30), HERE6,
                       PORT, LocalSession(3), direction=Direction.RECVONLY)
    (m,) = offer.media
    assert m.formats == ("0",) and not m.rtcp_mux and m.ptime == 30 and m.direction is Direction.RECVONLY
    assert offer.connection is not None and offer.connection.addr_type == "IP6"


def test_host_name_connection_address_is_usable() -> None:
    # RFC 8866 §5.7 allows a fully qualified domain name where an address would be; it is no hold.
    offer = sdp(serialize_sdp(asterisk()).decode().replace("c=IN IP4 203.0.113.10", "c=IN IP4 pbx.example.com"))
    result = answer_offer(offer, AudioCapabilities(), HERE4, PORT, LocalSession(1))
    assert (result.media.remote_address, result.media.on_hold) == ("pbx.example.com", False)


def cucm_answer(extra: str = "", port: int = 24580, formats: str = "8 101", mline_extra: str = "") -> str:
    return f"""
        v=0
        o=CiscoSystemsCCM-SIP 2000 1 IN IP4 192.0.2.60
        s=SIP Call
        c=IN IP4 192.0.2.61
        b=TIAS:64000
        t=0 0
        m=audio {port} RTP/AVP {formats}
        a=ptime:20
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15
        {extra}
        {mline_extra}
    """


def test_delayed_offer_answered_in_ack() -> None:
    # INVITE without SDP: we offer in the 200 OK and CUCM answers in the ACK.
    offer = make_offer(AudioCapabilities(), HERE4, PORT, LocalSession(1))
    got = accept_answer(offer, sdp(cucm_answer()))
    assert got == NegotiatedMedia(
        media_index=0, remote_address="192.0.2.61", remote_port=24580, remote_rtcp_address="192.0.2.61",
        remote_rtcp_port=24581, rtcp_mux=False, codec="PCMA", payload_type=8, clock_rate=8000,
        telephone_event_pt=101, telephone_event_fmtp="0-15", remote_ptime=20, local_direction=Direction.SENDRECV,
        remote_direction=Direction.SENDRECV, on_hold=False,
    )
    assert accept_answer(offer, sdp(cucm_answer("a=rtcp-mux"))).rtcp_mux


def test_answer_payload_numbers_are_what_we_send_with() -> None:
    offer = make_offer(AudioCapabilities(), HERE4, PORT, LocalSession(1))
    # §5.1/§6.1: each side's numbers are what it receives; the answerer chose 96 for telephone-event.
    renumbered = cucm_answer(formats="8 96").replace("rtpmap:101", "rtpmap:96").replace("fmtp:101", "fmtp:96")
    assert accept_answer(offer, sdp(renumbered)).telephone_event_pt == 96
    # An answer without a=rtpmap for our dynamic number means what we offered under it.
    bare = sdp(cucm_answer().replace("a=rtpmap:101 telephone-event/8000", ""))
    assert accept_answer(offer, bare).telephone_event_pt == 101
    # The first answered codec that we offered wins (§7); unknown extras are ignored.
    assert accept_answer(offer, sdp(cucm_answer(formats="18 0 8 101"))).codec == "PCMU"


def test_answer_directions_narrow_ours() -> None:
    offer = make_offer(AudioCapabilities(), HERE4, PORT, LocalSession(1))
    recvonly = accept_answer(offer, sdp(cucm_answer("a=recvonly")))
    assert (recvonly.local_direction, recvonly.remote_direction, recvonly.on_hold) == (SO, RO, False)
    held = make_offer(AudioCapabilities(), HERE4, PORT, LocalSession(1), direction=Direction.SENDONLY)
    reply = accept_answer(held, sdp(cucm_answer("a=recvonly")))
    assert (reply.local_direction, reply.remote_direction) == (SO, RO)
    zero = accept_answer(offer, sdp(cucm_answer().replace("c=IN IP4 192.0.2.61", "c=IN IP4 0.0.0.0")))
    assert zero.on_hold and not zero.local_direction.sends


def test_bad_answers_are_rejected() -> None:
    offer = make_offer(AudioCapabilities(), HERE4, PORT, LocalSession(1))
    with pytest.raises(MediaNotAcceptable, match="port 0"):
        accept_answer(offer, sdp(cucm_answer(port=0)))
    with pytest.raises(NoCommonCodec):
        accept_answer(offer, sdp(cucm_answer(formats="18", mline_extra="a=rtpmap:18 G729/8000")))
    with pytest.raises(RemoteProtocolError, match="m-lines") as info:
        accept_answer(offer, sdp(cucm_answer(mline_extra="m=video 0 RTP/AVP 96")))
    assert info.value.status_hint == 400
    with pytest.raises(RemoteProtocolError, match="video"):
        accept_answer(offer, sdp(cucm_answer().replace("m=audio", "m=video")))
    with pytest.raises(RemoteProtocolError, match="c="):
        accept_answer(offer, sdp(cucm_answer().replace("c=IN IP4 192.0.2.61", "")))
    with pytest.raises(LocalProtocolError):
        accept_answer(VIDEO_ONLY, VIDEO_ONLY)


def test_both_ends_of_our_own_offer_answer_agree() -> None:
    alice, bob = LocalSession(1), LocalSession(2)
    offer = make_offer(AudioCapabilities(codecs=("PCMA", "PCMU")), HERE4, PORT, alice)
    answered = answer_offer(parse_sdp(serialize_sdp(offer)), AudioCapabilities(), "192.0.2.201", 50000, bob)
    assert_rfc3264_answer(offer, answered.answer, "192.0.2.201")
    accepted = accept_answer(offer, parse_sdp(serialize_sdp(answered.answer)))
    assert (answered.media.remote_address, answered.media.remote_port) == (HERE4, PORT)
    assert (accepted.remote_address, accepted.remote_port) == ("192.0.2.201", 50000)
    assert accepted.codec == answered.media.codec == "PCMA"
    assert accepted.rtcp_mux and answered.media.rtcp_mux
    assert accepted.telephone_event_pt == answered.media.telephone_event_pt == 101


# ---- local session and capabilities --------------------------------------------------------------------------------


def test_version_moves_only_when_the_description_changes() -> None:
    session = LocalSession(10)
    caps = AudioCapabilities()
    first = make_offer(caps, HERE4, PORT, session)
    assert make_offer(caps, HERE4, PORT, session) == first
    moved = make_offer(caps, HERE4, PORT + 2, session)
    assert moved.origin.session_version == first.origin.session_version + 1
    again = make_offer(caps, HERE4, PORT + 2, session)
    assert again.origin.session_version == moved.origin.session_version == session.version
    assert session.session_id == 10


def test_random_session_ids_are_seedable_and_in_range() -> None:
    a, b = LocalSession.random(random.Random(5)), LocalSession.random(random.Random(5))
    assert a.session_id == b.session_id and 0 <= a.session_id < 2**62
    assert 0 <= LocalSession.random().session_id < 2**62


@pytest.mark.parametrize(
    "kwargs", [{"codecs": ("G729",)}, {"codecs": ()}, {"codecs": ("PCMU", "pcmu")}, {"ptime": 25}, {"ptime": 0}]
)
def test_impossible_capabilities_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        AudioCapabilities(**kwargs)  # type: ignore[arg-type]


def test_bad_origin_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        LocalSession(1, username="a b")
    with pytest.raises(LocalProtocolError):
        LocalSession(-1)


# ---- property: any offer built from a codec pool is answered by the rules ---------------------------------------

POOL = [("PCMU", 8000, 1), ("PCMA", 8000, 1), ("G722", 8000, 1), ("opus", 48000, 2), ("G729", 8000, 1),
        ("telephone-event", 8000, 1), ("telephone-event", 48000, 1), ("PCMU", 16000, 1)]


@st.composite
def offers(draw: st.DrawFn) -> tuple[str, list[tuple[int, str, int, int]], str]:
    chosen = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=6, unique=True))
    pts = draw(st.lists(st.integers(96, 127), min_size=len(chosen), max_size=len(chosen), unique=True))
    streams = [(pt, name, rate, ch) for pt, (name, rate, ch) in zip(pts, chosen, strict=True)]
    direction = draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]))
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.9", "s=-", "c=IN IP4 192.0.2.9", "t=0 0",
             "m=audio 5000 RTP/AVP " + " ".join(str(s[0]) for s in streams)]
    lines += [f"a=rtpmap:{pt} {name}/{rate}" + (f"/{ch}" if ch > 1 else "") for pt, name, rate, ch in streams]
    lines.append(f"a={direction}")
    return "\r\n".join(lines) + "\r\n", streams, direction


MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


@given(offers(), st.booleans())
def test_generated_offers_follow_rfc3264(case: tuple[str, list[tuple[int, str, int, int]], str], ours: bool) -> None:
    text, streams, direction = case
    offer = parse_sdp(text)
    caps = AudioCapabilities(prefer_offerer_order=not ours)
    usable = [(pt, name) for pt, name, rate, _ in streams if name in ("PCMU", "PCMA") and rate == 8000]
    if not usable:
        with pytest.raises(NoCommonCodec):
            answer_offer(offer, caps, HERE4, PORT, LocalSession(1))
        return
    result = answer_offer(offer, caps, HERE4, PORT, LocalSession(1))
    assert_rfc3264_answer(offer, result.answer, HERE4)
    want = usable[0] if not ours else min(usable, key=lambda u: caps.codecs.index(u[1]))
    assert (result.media.payload_type, result.media.codec) == want
    events = [pt for pt, name, rate, _ in streams if name == "telephone-event" and rate == 8000]
    assert result.media.telephone_event_pt == (events[0] if events else None)
    assert result.media.local_direction.value == MIRROR[direction]
