"""SDP parsing and serialising (RFC 8866): fixtures from the RFC, peer quirks, rejects and round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    RtpMap,
    SessionDescription,
    Timing,
    parse_sdp,
    serialize_sdp,
)
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.unit


def crlf(text: str) -> bytes:
    return "".join(line.strip() + "\r\n" for line in text.strip().splitlines()).encode()


# The example session description of RFC 8866 §5, verbatim.
RFC8866_EXAMPLE = crlf("""
    v=0
    o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1
    s=Call to John Smith
    i=SDP Offer #1
    u=http://www.jdoe.example.com/home.html
    e=Jane Doe <jane@jdoe.example.com>
    p=+1 617 555-6011
    c=IN IP4 198.51.100.1
    t=0 0
    m=audio 49170 RTP/AVP 0
    m=audio 49180 RTP/AVP 0
    m=video 51372 RTP/AVP 99
    c=IN IP6 2001:db8::2
    a=rtpmap:99 h263-1998/90000
""")


def test_rfc8866_example_fields() -> None:
    sd = parse_sdp(RFC8866_EXAMPLE)
    assert sd.origin == Origin("jdoe", 3724394400, 3724394405, "198.51.100.1", "IP4", "IN")
    assert (sd.name, sd.info, sd.uri) == ("Call to John Smith", "SDP Offer #1", "http://www.jdoe.example.com/home.html")
    assert sd.emails == ("Jane Doe <jane@jdoe.example.com>",)
    assert sd.phones == ("+1 617 555-6011",)
    assert sd.connection == Connection("198.51.100.1", "IP4", "IN")
    assert sd.timings == (Timing(0, 0),)
    assert [(m.media, m.port, m.proto, m.formats) for m in sd.media] == [
        ("audio", 49170, "RTP/AVP", ("0",)),
        ("audio", 49180, "RTP/AVP", ("0",)),
        ("video", 51372, "RTP/AVP", ("99",)),
    ]
    video = sd.media[2]
    # §5.7: the video stream's own c= overrides the session's; the audio streams inherit it.
    assert sd.media_connection(video) == Connection("2001:db8::2", "IP6")
    assert sd.media_connection(sd.media[0]) == sd.connection
    assert video.rtpmaps == {99: RtpMap(99, "h263-1998", 90000, 1)}
    # RFC 3551 static type 0 without any a=rtpmap.
    assert sd.media[0].codec(0) == RtpMap(0, "PCMU", 8000, 1)


def test_canonical_text_survives_parse_and_serialise_byte_for_byte() -> None:
    assert serialize_sdp(parse_sdp(RFC8866_EXAMPLE)) == RFC8866_EXAMPLE


def test_lf_only_trailing_blanks_and_blank_lines_are_tolerated() -> None:
    messy = RFC8866_EXAMPLE.decode().replace("\r\n", " \t\n").encode() + b"\n\n"
    assert parse_sdp(messy) == parse_sdp(RFC8866_EXAMPLE)
    assert parse_sdp(RFC8866_EXAMPLE.decode()) == parse_sdp(RFC8866_EXAMPLE)


def test_empty_session_name_is_written_as_one_space() -> None:
    sd = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns= \r\nt=0 0\r\n")
    assert sd.name == ""
    # RFC 8866 §5.3: "s= " is how a nameless session is written.
    assert b"\r\ns= \r\n" in serialize_sdp(sd)


def test_multicast_suffixes_repeat_zone_key_and_bandwidth() -> None:
    # Examples from RFC 8866 §5.7, §5.8, §5.10, §5.11 and §5.12.
    sd = parse_sdp(crlf("""
        v=0
        o=- 1 1 IN IP4 192.0.2.1
        s=Seminar
        c=IN IP4 233.252.0.1/127/3
        b=CT:128
        t=3724394400 3724398000
        r=604800 3600 0 90000
        r=7d 1h 0 25h
        z=2882844526 -1h 2898848070 0
        k=prompt
        a=recvonly
        m=audio 49170/2 RTP/AVP 0
        c=IN IP6 ff1e:db8::101/3
        b=AS:64
        m=video 51372 RTP/AVP 31
        c=IN IP4 233.252.0.2/127
        c=IN IP4 233.252.0.3/127
        k=clear:secret
    """))
    assert sd.connection == Connection("233.252.0.1", "IP4", "IN", ttl=127, count=3)
    assert sd.bandwidths == (Bandwidth("CT", 128),)
    assert sd.timings == (Timing(3724394400, 3724398000, ("604800 3600 0 90000", "7d 1h 0 25h")),)
    assert sd.zone == "2882844526 -1h 2898848070 0"
    assert sd.key == "prompt"
    audio, video = sd.media
    assert (audio.port, audio.port_count) == (49170, 2)
    assert audio.connections == (Connection("ff1e:db8::101", "IP6", count=3),)
    assert audio.bandwidths == (Bandwidth("AS", 64),)
    assert [c.address for c in video.connections] == ["233.252.0.2", "233.252.0.3"]
    assert sd.media_connection(video) == Connection("233.252.0.2", ttl=127)
    assert video.key == "clear:secret"
    assert sd.direction is Direction.RECVONLY


AUDIO_ATTRIBUTES = crlf("""
    v=0
    o=- 5 6 IN IP4 192.0.2.1
    s=-
    c=IN IP4 192.0.2.1
    t=0 0
    a=sendonly
    a=group:BUNDLE audio
    m=audio 7078 RTP/AVP 96 0 8 101
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1; maxplaybackrate=16000
    a=rtpmap:101 Telephone-Event/8000
    a=fmtp:101 0-16
    a=ptime:30
    a=maxptime:150
    a=rtcp:7079 IN IP4 198.51.100.9
    a=rtcp-mux
    a=x-custom:
    a=inactive
    m=audio 8000 RTP/AVP 0
    a=ptime:20.0
    a=rtcp:8003
""")


def test_typed_media_accessors() -> None:
    sd = parse_sdp(AUDIO_ATTRIBUTES)
    first, second = sd.media
    assert first.payload_types == (96, 0, 8, 101)
    assert first.rtpmaps == {96: RtpMap(96, "opus", 48000, 2), 101: RtpMap(101, "Telephone-Event", 8000, 1)}
    assert first.codec(8) == RtpMap(8, "PCMA", 8000, 1)
    assert first.codec(97) is None
    assert first.fmtps == {96: "useinbandfec=1; maxplaybackrate=16000", 101: "0-16"}
    assert (first.ptime, first.maxptime) == (30, 150)
    assert first.rtcp == RtcpAttribute(7079, "198.51.100.9", "IP4", "IN")
    assert first.rtcp_mux and not second.rtcp_mux
    assert first.values("x-custom") == ("",)
    assert second.ptime == 20
    assert second.rtcp == RtcpAttribute(8003)
    assert second.fmtp(0) is None and second.maxptime is None
    # RFC 8866 §6.7: a media-level direction overrides the session-level one, which overrides sendrecv.
    assert sd.media_direction(first) is Direction.INACTIVE
    assert sd.media_direction(second) is Direction.SENDONLY
    assert parse_sdp(RFC8866_EXAMPLE).media_direction(second) is Direction.SENDRECV


def test_attribute_order_and_flags_are_preserved() -> None:
    sd = parse_sdp(AUDIO_ATTRIBUTES)
    assert sd.attributes == (Attribute("sendonly"), Attribute("group", "BUNDLE audio"))
    assert sd.values("GROUP") == ("BUNDLE audio",) and sd.values("sendonly") == ("",)
    names = " ".join(a.name for a in sd.media[0].attributes)
    assert names == "rtpmap fmtp rtpmap fmtp ptime maxptime rtcp rtcp-mux x-custom inactive"
    assert serialize_sdp(sd) == AUDIO_ATTRIBUTES


def test_direction_algebra() -> None:
    for d in Direction:
        assert Direction.of(send=d.sends, recv=d.receives) is d
    assert [d.value for d in Direction if d.sends] == ["sendrecv", "sendonly"]


def test_latin1_session_name_is_accepted() -> None:
    sd = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=Sitzung \xfc\r\nt=0 0\r\n")
    assert sd.name == "Sitzung \u00fc"


def test_missing_time_and_name_are_tolerated() -> None:
    sd = parse_sdp(b"v=0\no=- 1 1 IN IP4 192.0.2.1\nm=audio 5000 RTP/AVP 0\n")
    assert sd.timings == () and sd.name == ""
    assert sd.media[0].port == 5000


BASE = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "v=0"),
        ("o=- 1 1 IN IP4 192.0.2.1\r\n", "v=0"),
        ("v=1\r\n" + BASE[5:], "v=0"),
        (BASE + "hello world\r\n", "hello world"),
        (BASE + " a=sendrecv\r\n", " a=sendrecv"),
        (BASE + "x=unknown\r\n", "x=unknown"),
        (BASE + "A=sendrecv\r\n", "A=sendrecv"),
        (BASE + "o=- 2 2 IN IP4 192.0.2.1\r\n", "o=- 2 2"),
        (BASE + "v=0\r\n", "'v=0' repeats"),
        ("v=0\r\ns=-\r\nt=0 0\r\n", "o="),
        ("v=0\r\no=- 1 IN IP4 192.0.2.1\r\n", "o=- 1 IN"),
        ("v=0\r\no=- abc 1 IN IP4 192.0.2.1\r\n", "session id"),
        (BASE + "c=IN IP4\r\n", "c=IN IP4"),
        (BASE + "c=IN IP4 233.252.0.1/127/3/9\r\n", "c=IN IP4 233.252.0.1/127/3/9"),
        (BASE + "c=IN IP6 ff1e::1/127/3\r\n", "c=IN IP6 ff1e::1/127/3"),
        (BASE + "b=AS\r\n", "b=AS"),
        (BASE + "b=AS:fast\r\n", "b= bandwidth"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nr=7d 1h 0 25h\r\n", "r=7d"),
        (BASE + "t=0\r\n", "t=0"),
        (BASE + "a=:value\r\n", "a=:value"),
        (BASE + "a=bad name\r\n", "a=bad name"),
        (BASE + "m=audio 5000 RTP/AVP\r\n", "m=audio 5000 RTP/AVP"),
        (BASE + "m=audio 70000 RTP/AVP 0\r\n", "m=audio port"),
        (BASE + "m=audio 5000/0 RTP/AVP 0\r\n", "m=audio port count"),
        (BASE + "m=audio -1 RTP/AVP 0\r\n", "m=audio port"),
        (BASE + "m=audio 5000 RTP//AVP 0\r\n", "m=audio 5000 RTP//AVP"),
        (BASE + "m=audio 5000 RTP/AVP 0\r\nt=0 0\r\n", "t=0 0"),
        (BASE + "m=audio 5000 RTP/AVP 0\r\ni=a\r\ni=b\r\n", "m=audio repeats"),
        (BASE + "m=audio 5000 RTP/AVP 0\r\n" + "v=0\x00\r\n", "NUL"),
        ("v=0\r\no=- " + "9" * 5000 + " 1 IN IP4 192.0.2.1\r\n", "session id"),
    ],
)
def test_garbage_is_rejected_naming_the_line(text: str, named: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_sdp(text.encode())
    assert named in str(info.value)
    assert info.value.status_hint == 400


def test_malformed_values_of_known_attributes_are_ignored() -> None:
    sd = parse_sdp(crlf("""
        v=0
        o=- 1 1 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=audio 5000 RTP/AVP 0 96 97 98 300
        a=rtpmap:96 opus
        a=rtpmap:200 opus/48000
        a=rtpmap:97 opus/0
        a=rtpmap:98 speex/8000/x
        a=rtpmap:0 PCMU/8000
        a=fmtp:300 x=1
        a=fmtp:0 ok=1
        a=ptime:soon
        a=maxptime:0
        a=rtcp:5001 IN IP4
    """))
    m = sd.media[0]
    assert m.payload_types == (0, 96, 97, 98)  # 300 is no RTP payload type (RFC 3550 §5.1: 7 bits)
    assert m.rtpmaps == {0: RtpMap(0, "PCMU", 8000, 1)}
    assert m.fmtps == {0: "ok=1"}
    assert (m.ptime, m.maxptime, m.rtcp) == (None, None, None)
    assert parse_sdp(BASE + "m=audio 5000 RTP/AVP 0\r\na=ptime:nan\r\n").media[0].ptime is None
    assert parse_sdp(BASE + "m=audio 5000 RTP/AVP 0\r\na=rtcp:99999\r\n").media[0].rtcp is None


def torture_bodies() -> list[tuple[str, bytes]]:
    folder = SHARED_DATA / "sip-torture" / "msgs"
    if not folder.is_dir():
        return []
    bodies = []
    for path in sorted(folder.glob("*.dat")):
        head, sep, body = path.read_bytes().partition(b"\r\n\r\n")
        if sep and body.lstrip().startswith(b"v=0"):
            bodies.append((path.name, body))
    return bodies


def test_rfc5118_sdp_bodies() -> None:
    bodies = dict(torture_bodies())
    if not bodies:
        pytest.skip("shared torture data is absent")
    # RFC 5118 §4.5: an IPv6 session; §4.6: one stream on IPv4 and one on IPv6.
    six = parse_sdp(bodies["ipv6-in-sdp.clfix.dat"])
    assert six.connection == Connection("2001:db8::20", "IP6")
    assert [m.media for m in six.media] == ["audio", "video"]
    assert six.media[0].codec(2) == RtpMap(2, "G726-32", 8000, 1)
    mixed = parse_sdp(bodies["mult-ip-in-sdp.clfix.dat"])
    resolved = [mixed.media_connection(m) for m in mixed.media]
    assert resolved == [Connection("192.0.2.1"), Connection("2001:db8::1", "IP6")]


def test_every_torture_body_parses_or_is_rejected_cleanly() -> None:
    bodies = torture_bodies()
    if not bodies:
        pytest.skip("shared torture data is absent")
    for name, body in bodies:
        if name == "test.dat":
            # Its body is "v=0" then "testing=123": a type of more than one letter breaks RFC 8866 §9's grammar.
            with pytest.raises(RemoteProtocolError, match="testing=123"):
                parse_sdp(body)
            continue
        sd = parse_sdp(body)
        read_everything(sd)
        assert parse_sdp(serialize_sdp(sd)) == sd


# ---- properties -------------------------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`{|}~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=8)
# Free text: anything but line breaks and NUL, with no trailing blanks (the parser strips those).
texts = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=("Cs",)), max_size=20).filter(
    lambda s: s == s.rstrip(" \t")
)
addresses = st.text(TOKEN_CHARS.replace("-", "") + ":", min_size=1, max_size=16)
numbers = st.integers(0, 2**64)
TYPED = {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp"}


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    kind = draw(st.sampled_from(["IP4", "IP6", "X25"]))
    address = draw(addresses)
    if kind == "IP4":
        ttl = draw(st.none() | st.integers(1, 255))
        count = None if ttl is None else draw(st.none() | st.integers(1, 9))
        return Connection(address, kind, "IN", ttl, count)
    if kind == "IP6":
        return Connection(address, kind, "IN", None, draw(st.none() | st.integers(1, 9)))
    return Connection(address, kind, draw(tokens))


attributes = st.builds(Attribute, tokens.filter(lambda n: n.lower() not in TYPED), st.none() | texts)
bandwidths = st.builds(Bandwidth, tokens, numbers)
typed_attributes = st.sampled_from(
    [
        Attribute("rtpmap", "0 PCMU/8000"),
        Attribute("rtpmap", "96 opus/48000/2"),
        Attribute("fmtp", "101 0-16"),
        Attribute("ptime", "20"),
        Attribute("maxptime", "40"),
        Attribute("rtcp", "5001 IN IP4 192.0.2.1"),
        Attribute("rtcp-mux"),
        Attribute("sendonly"),
    ]
)
media_descriptions = st.builds(
    MediaDescription,
    media=tokens,
    port=st.integers(0, 65535),
    proto=st.lists(tokens, min_size=1, max_size=3).map("/".join),
    formats=st.lists(tokens, min_size=1, max_size=5).map(tuple),
    port_count=st.none() | st.integers(1, 4),
    title=st.none() | texts,
    connections=st.lists(connections(), max_size=2).map(tuple),
    bandwidths=st.lists(bandwidths, max_size=2).map(tuple),
    key=st.none() | texts,
    attributes=st.lists(attributes | typed_attributes, max_size=6).map(tuple),
)
sessions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, tokens, numbers, numbers, addresses, st.sampled_from(["IP4", "IP6"]), st.just("IN")),
    name=texts,
    info=st.none() | texts,
    uri=st.none() | texts,
    emails=st.lists(texts, max_size=2).map(tuple),
    phones=st.lists(texts, max_size=2).map(tuple),
    connection=st.none() | connections(),
    bandwidths=st.lists(bandwidths, max_size=2).map(tuple),
    timings=st.lists(st.builds(Timing, numbers, numbers, st.lists(texts, max_size=2).map(tuple)), max_size=2).map(
        tuple
    ),
    zone=st.none() | texts,
    key=st.none() | texts,
    attributes=st.lists(attributes, max_size=4).map(tuple),
    media=st.lists(media_descriptions, max_size=3).map(tuple),
)


@given(sessions)
@settings(max_examples=300)
def test_parse_inverts_serialise(sd: SessionDescription) -> None:
    wire = serialize_sdp(sd)
    assert parse_sdp(wire) == sd
    assert serialize_sdp(parse_sdp(wire)) == wire


def read_everything(sd: SessionDescription) -> None:
    # Once a description parsed, none of its typed views may raise.
    for m in sd.media:
        _ = (m.rtpmaps, m.fmtps, m.ptime, m.maxptime, m.rtcp, m.rtcp_mux, m.payload_types)
        _ = (sd.media_direction(m), sd.media_connection(m), [m.codec(pt) for pt in m.payload_types])


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_input_parses_or_raises_remote_protocol_error(data: bytes | str) -> None:
    try:
        sd = parse_sdp(data)
    except RemoteProtocolError:
        return
    read_everything(sd)


sdp_ish_lines = st.tuples(st.sampled_from("vosiuepcbtrzkamx"), st.sampled_from(["=", ":", ""]), texts).map("".join)
structured_values = st.sampled_from(
    [
        "m=audio 5000 RTP/AVP 0 8",
        "m=audio 5000/2 RTP/AVP 96",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:96 x/y",
        "a=fmtp:96 a=b",
        "a=ptime:20",
        "a=rtcp:5001 IN IP4 a",
        "c=IN IP4 233.252.0.1/1/2",
        "c=IN IP6 ::1/3",
        "t=0 0",
        "r=1 2",
        "b=AS:64",
    ]
)


@given(st.lists(sdp_ish_lines | structured_values, max_size=12), st.sampled_from(["\r\n", "\n"]))
def test_sdp_shaped_input_parses_or_raises_remote_protocol_error(lines: list[str], eol: str) -> None:
    text = eol.join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", *lines])
    try:
        sd = parse_sdp(text)
    except RemoteProtocolError as exc:
        assert exc.status_hint == 400
        return
    read_everything(sd)
    assert parse_sdp(serialize_sdp(sd)) == sd
