"""Headers, typed header values, messages and responses (RFC 3261 §7, §8.2.6, §20)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipagent.sip.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, SipError
from sipagent.sip.headers import (
    Challenge,
    ContentType,
    Credentials,
    CSeq,
    RAck,
    RetryAfter,
    Via,
    canonical_name,
    header_key,
    parse_challenge,
    parse_content_type,
    parse_credentials,
    parse_cseq,
    parse_delta_seconds,
    parse_max_forwards,
    parse_rack,
    parse_retry_after,
    parse_rseq,
    parse_token_list,
    parse_via,
)
from sipagent.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    make_error_response,
    make_response,
    reason_phrase,
)
from sipagent.sip.parser import parse_message
from sipagent.sip.syntax import (
    format_params,
    get_param,
    has_param,
    parse_params,
    quote,
    remove_param,
    set_param,
    split_header_values,
    unquote,
)
from sipagent.sip.uri import CONTACT_STAR, AbsoluteUri, SipUri
from tests.sip._strategies import extension_headers, vias

pytestmark = pytest.mark.unit

# The INVITE of RFC 3261 §4 (F1 of the "atlanta/biloxi" flow), with a Timestamp added for §8.2.6.1.
INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
    b"v: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1, "
    b"SIP/2.0/UDP pc32.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Timestamp: 54\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def invite() -> SipRequest:
    message = parse_message(INVITE)
    assert isinstance(message, SipRequest)
    return message


# ---- errors ----


def test_error_tree() -> None:
    assert issubclass(LocalProtocolError, ProtocolError) and issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(ProtocolError, SipError)
    with pytest.raises(TypeError):
        ProtocolError("abstract")
    error = RemoteProtocolError("bad")
    assert (error.status_hint, error.headers, str(error)) == (400, None, "bad")
    assert RemoteProtocolError("old", status_hint=505).status_hint == 505


# ---- header names ----


@pytest.mark.parametrize(
    ("name", "key", "canonical"),
    [
        ("i", "call-id", "Call-ID"),
        ("CALL-ID", "call-id", "Call-ID"),
        ("m", "contact", "Contact"),
        ("e", "content-encoding", "Content-Encoding"),
        ("l", "content-length", "Content-Length"),
        ("c", "content-type", "Content-Type"),
        ("f", "from", "From"),
        ("s", "subject", "Subject"),
        ("k", "supported", "Supported"),
        ("t", "to", "To"),
        ("V", "via", "Via"),
        ("o", "event", "Event"),
        ("r", "refer-to", "Refer-To"),
        ("b", "referred-by", "Referred-By"),
        ("u", "allow-events", "Allow-Events"),
        ("x", "session-expires", "Session-Expires"),
        ("cseq", "cseq", "CSeq"),
        ("www-authenticate", "www-authenticate", "WWW-Authenticate"),
        ("rack", "rack", "RAck"),
        ("X-Custom-thing", "x-custom-thing", "X-Custom-thing"),  # unknown names are kept verbatim
    ],
)
def test_header_names(name: str, key: str, canonical: str) -> None:
    assert header_key(name) == key
    assert canonical_name(name) == canonical


# ---- the Headers container ----


def test_lookup_is_case_insensitive_and_knows_compact_forms() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("VIA", "SIP/2.0/UDP b;branch=z9hG4bK2")])
    assert "Via" in headers and "v" in headers and "Route" not in headers and 42 not in headers
    assert headers.get("via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert headers.get("Route") is None and headers.get("Route", "x") == "x"
    assert headers.get_all("Via") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2"]


def test_get_all_splits_list_headers_only() -> None:
    headers = Headers(
        [
            # §20.10's example: commas inside quotes do not split.
            (
                "Contact",
                '"Mr. Watson" <sip:watson@worcester.bell-telephone.com>;q=0.7; expires=3600, '
                '"Mr. Watson" <mailto:watson@bell-telephone.com> ;q=0.1',
            ),  # fmt: skip
            ("Contact", '"Doe, John" <sip:john@example.com>'),
            ("WWW-Authenticate", 'Digest realm="atlanta.com", qop="auth", nonce="f84f1cec"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("X-Unknown", "a, b"),
        ]
    )
    assert headers.get_all("m") == [
        '"Mr. Watson" <sip:watson@worcester.bell-telephone.com>;q=0.7; expires=3600',
        '"Mr. Watson" <mailto:watson@bell-telephone.com> ;q=0.1',
        '"Doe, John" <sip:john@example.com>',
    ]
    assert len(headers.get_all("Contact", split=False)) == 2
    assert headers.get_all("WWW-Authenticate") == ['Digest realm="atlanta.com", qop="auth", nonce="f84f1cec"']
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("X-Unknown") == ["a, b"]


def test_set_add_remove() -> None:
    headers = Headers([("Via", "v1"), ("To", "t"), ("Via", "v2"), ("Route", "r1"), ("Route", "r2")])
    headers.add("v", "v0", first=True)
    assert headers.get_all("Via") == ["v0", "v1", "v2"]
    headers.add("Record-Route", "rr", first=True)  # no row yet: goes at the end
    assert list(headers)[-1] == ("Record-Route", "rr")
    headers.set("VIA", "only")
    assert headers.get_all("Via") == ["only"] and list(headers)[0] == ("VIA", "only")
    headers.set("Subject", "new")
    assert list(headers)[-1] == ("Subject", "new")
    assert headers.remove_first("Route") == "r1" and headers.get_all("Route") == ["r2"]
    assert headers.remove_first("Accept") is None
    assert headers.remove("route") == 1 and "Route" not in headers
    assert len(headers) == 4


def test_headers_refuse_injection() -> None:
    headers = Headers()
    with pytest.raises(LocalProtocolError):
        headers.add("Subject", "hi\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(LocalProtocolError):
        headers.set("Bad Name", "x")


def test_headers_repr() -> None:
    assert repr(Headers([("To", "x")])) == "Headers([('To', 'x')])"


def test_headers_equality_and_copy() -> None:
    a = Headers([("v", "x"), ("To", "y")])
    b = Headers([("Via", "x"), ("t", "y")])
    assert a == b  # names compare as keys
    assert a != Headers([("To", "y"), ("Via", "x")])  # order matters
    clone = a.copy()
    clone.add("From", "z")
    assert "From" not in a
    assert (a == "x") is False


@given(extension_headers)
def test_headers_keep_rows_in_order(rows: list[tuple[str, str]]) -> None:
    assert list(Headers(rows)) == rows


# ---- typed headers ----


def test_via_with_rport_and_received() -> None:
    # RFC 3581 §4's example, and the bare rport a client sends (§3).
    via = parse_via("SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff")[0]
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "10.1.1.1", 4540)
    assert (via.received, via.rport, via.has_rport, via.branch) == ("192.0.2.1", 9988, True, "z9hG4bKkjshdyff")
    bare = parse_via("SIP/2.0/udp 10.1.1.1:4540;rport;branch=z9hG4bK1")[0]
    assert (bare.transport, bare.rport, bare.has_rport) == ("UDP", None, True)
    assert str(bare) == "SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bK1"
    assert parse_via("SIP/2.0/UDP h;branch=z9hG4bK1")[0].has_rport is False


def test_via_whitespace_ipv6_and_lists() -> None:
    # RFC 4475 §3.1.1.1: whitespace around every '/' and ';', and two Vias in one row.
    first, second = parse_via(
        "SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  ,"
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239"
    )
    assert (first.transport, first.host, first.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
    assert (second.transport, second.host, second.branch) == ("UDP", "192.168.255.111", "z9hG4bK30239")
    # RFC 5118 §4.5: received with and without brackets; §4.7: IPv6 sent-by with a port.
    v6 = parse_via("SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bKas3")[0]
    assert (v6.host, v6.port, v6.received, v6.sent_by) == (
        "2001:db8::9:1",
        6050,
        "2001:db8::9:255",
        "[2001:db8::9:1]:6050",
    )
    assert parse_via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255")[0].received == "2001:db8::9:255"
    assert parse_via("SIP/2.0/UDP 224.2.0.1;maddr=224.2.0.1;ttl=16")[0].ttl == 16


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP 192.0.2.15;;,;,,",  # RFC 4475 §3.1.2.1
        "SIP/2.0 192.0.2.15",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:port",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host;rport=70000",
        "SIP/2.0/UDP host;ttl=300",
        "SIP/2.0/UDP host;branch",
        'SIP/2.0/UDP host;branch="quoted"',
        "",
    ],
)
def test_malformed_via(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_via(value)


def test_via_building() -> None:
    via = Via("udp", "::1", 5060, (("branch", "z9hG4bKx"),))
    assert via.transport == "UDP"
    assert str(via) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx"
    updated = via.with_param("received", "192.0.2.1").with_param("rport", "5062")
    assert (updated.received, updated.rport) == ("192.0.2.1", 5062)
    assert updated.without_param("rport").has_param("rport") is False
    with pytest.raises(LocalProtocolError):
        Via("U D P", "host")


@given(vias())
def test_via_round_trip(via: Via) -> None:
    assert parse_via(str(via)) == [via]


def test_via_other_params() -> None:
    via = parse_via("SIP/2.0/UDP 224.2.0.1;maddr=224.2.0.1;x-custom")[0]
    assert (via.maddr, via.param("x-custom"), via.has_param("X-CUSTOM"), via.ttl) == ("224.2.0.1", None, True, None)


def test_cseq_and_rack() -> None:
    assert parse_cseq("4711 INVITE") == CSeq(4711, "INVITE")  # §20.16
    assert parse_cseq("0009\t INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(4711, "INVITE")) == "4711 INVITE"
    for bad in ("INVITE", "1", "-1 INVITE", "4294967296 INVITE", "1 INV ITE"):
        with pytest.raises(RemoteProtocolError):
            parse_cseq(bad)
    with pytest.raises(LocalProtocolError):
        CSeq(2**32, "INVITE")
    assert parse_rack("776656 1 INVITE") == RAck(776656, 1, "INVITE")  # RFC 3262 §7.2
    assert str(RAck(776656, 1, "INVITE")) == "776656 1 INVITE"
    for bad in ("0 1 INVITE", "1 INVITE", "1 99999999999 INVITE"):
        with pytest.raises(RemoteProtocolError):
            parse_rack(bad)
    for bad_rseq in ("0", "4294967296", "x"):
        with pytest.raises(RemoteProtocolError):
            parse_rseq(bad_rseq)


def test_scalars() -> None:
    assert parse_max_forwards("0068") == 68
    for bad in ("256", "-1", "", "7a", "9" * 5000):
        with pytest.raises(RemoteProtocolError):
            parse_max_forwards(bad)
    assert parse_delta_seconds(" 3600 ", "Expires") == 3600
    assert parse_delta_seconds("1" + "0" * 100, "Expires") == 2**32 - 1  # RFC 4475 §3.1.2.4: clamp
    assert parse_token_list("INVITE, ACK, OPTIONS, CANCEL, BYE", "Allow") == [
        "INVITE",
        "ACK",
        "OPTIONS",
        "CANCEL",
        "BYE",
    ]
    assert parse_token_list("", "Supported") == []
    with pytest.raises(RemoteProtocolError):
        parse_token_list("100rel, not a token", "Require")


def test_content_type() -> None:
    # §20.15's examples.
    assert parse_content_type("application/sdp") == ContentType("application", "sdp")
    html = parse_content_type("Text/HTML; charset=ISO-8859-4")
    assert (html.mime_type, html.param("CHARSET")) == ("text/html", "ISO-8859-4")
    assert str(html) == "text/html;charset=ISO-8859-4"
    assert parse_content_type('multipart/mixed;boundary="a b"').param("boundary") == '"a b"'  # raw, quoted
    with pytest.raises(RemoteProtocolError):
        parse_content_type("sdp")


def test_challenge_round_trip() -> None:
    # §20.44's example.
    value = (
        'Digest realm="atlanta.com", domain="sip:boxesbybob.com", qop="auth", '
        'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5'
    )
    challenge = parse_challenge(value)
    assert challenge.scheme == "Digest"
    assert challenge.param("REALM") == "atlanta.com" and challenge.param("opaque") == ""
    assert challenge.param("stale") == "FALSE" and challenge.param("missing") is None
    assert str(challenge) == value
    assert parse_challenge(str(challenge)) == challenge


def test_credentials_round_trip_and_quoting() -> None:
    # §20.7's example, then one with the unquoted nc and qop of RFC 7616 §3.4.
    value = (
        'Digest username="Alice", realm="atlanta.com", nonce="84a4cc6f3082121f32b42a2187831a9e", '
        'response="7587245234b3434cc3412213e5f113a5432"'
    )
    assert str(parse_credentials(value)) == value
    credentials = Credentials(
        "Digest", (("username", 'Mr "X"'), ("uri", "sip:bob@biloxi.com"), ("qop", "auth"), ("nc", "00000001"))
    )
    text = str(credentials)
    assert text == 'Digest username="Mr \\"X\\"", uri="sip:bob@biloxi.com", qop=auth, nc=00000001'
    assert parse_credentials(text) == credentials
    # A challenge's qop is a quoted list (RFC 7616 §3.3).
    assert str(Challenge("Digest", (("qop", "auth,auth-int"),))) == 'Digest qop="auth,auth-int"'


def test_other_auth_schemes() -> None:
    # RFC 4475 §3.3.7: an unknown scheme still parses (the UAS answers it, not the parser).
    assert parse_credentials("NoOneKnowsThisScheme opaque-data=here") == Credentials(
        "NoOneKnowsThisScheme", (("opaque-data", "here"),)
    )
    bearer = parse_credentials("Bearer mF_9.B5f-4.1JqM==")  # token68 (RFC 7235 §2.1, RFC 8898)
    assert (bearer.token68, str(bearer)) == ("mF_9.B5f-4.1JqM==", "Bearer mF_9.B5f-4.1JqM==")
    for bad in ('Digest realm="x" nonce="y"', "Digest realm=, nonce=1", ' ="x"', 'Digest realm="unterminated'):
        with pytest.raises(RemoteProtocolError):
            parse_challenge(bad)


def test_retry_after() -> None:
    # §20.33's examples.
    assert parse_retry_after("18000;duration=3600") == RetryAfter(18000, None, (("duration", "3600"),))
    meeting = parse_retry_after("120 (I'm in a meeting)")
    assert meeting == RetryAfter(120, "I'm in a meeting")
    assert str(meeting) == "120 (I'm in a meeting)"
    assert parse_retry_after("5 (a (nested) comment)").comment == "a (nested) comment"
    for bad in ("soon", "5 (unbalanced", "5 junk"):
        with pytest.raises(RemoteProtocolError):
            parse_retry_after(bad)


# ---- messages ----


def test_typed_properties() -> None:
    request = invite()
    assert [via.host for via in request.vias] == ["pc33.atlanta.com", "bigbox3.site3.atlanta.com", "pc32.atlanta.com"]
    assert request.top_via.branch == "z9hG4bK776asdhds"
    assert (request.from_.display_name, request.from_.tag) == ("Alice", "1928301774")
    assert request.to.uri == SipUri(user="bob", host="biloxi.com") and request.to.tag is None
    assert request.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert request.cseq == CSeq(314159, "INVITE")
    assert request.contact is not None and request.contact.uri == SipUri(user="alice", host="pc33.atlanta.com")
    assert (request.max_forwards, request.content_length, request.body) == (70, 4, b"v=0\n")
    assert request.content_type == ContentType("application", "sdp")
    assert request.routes == [] and request.record_routes == [] and request.expires is None
    assert request.allow == [] and request.www_authenticate == [] and request.rseq is None and request.rack is None


def test_optional_header_properties() -> None:
    headers = Headers(
        [
            ("Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
            ("Record-Route", "<sip:p3.example.com;lr>"),
            ("Contact", "*"),
            ("Expires", "0"),
            ("Min-Expires", "60"),
            ("Allow", "INVITE, ACK"),
            ("Allow", "BYE"),
            ("k", "100rel, timer"),
            ("Require", "100rel"),
            ("Proxy-Require", "foo"),
            ("Unsupported", "bar"),
            ("Proxy-Authenticate", 'Digest realm="r", nonce="n"'),
            ("Authorization", 'Digest username="u", realm="r"'),
            ("Proxy-Authorization", 'Digest username="u", realm="p"'),
            ("WWW-Authenticate", 'Digest realm="w", nonce="n"'),
            ("Retry-After", "30"),
            ("RSeq", "988789"),
            ("RAck", "988789 1 INVITE"),
        ]
    )
    message = SipResponse(200, "OK", headers)
    assert [r.uri.host for r in message.routes] == ["p1.example.com", "p2.example.com"]  # type: ignore[union-attr]
    assert message.record_routes[0].uri == SipUri(host="p3.example.com", params=(("lr", None),))
    assert message.contacts == [CONTACT_STAR] and message.expires == 0 and message.min_expires == 60
    assert message.allow == ["INVITE", "ACK", "BYE"] and message.supported == ["100rel", "timer"]
    assert (message.require, message.proxy_require, message.unsupported) == (["100rel"], ["foo"], ["bar"])
    assert message.proxy_authenticate[0].param("realm") == "r"
    assert message.www_authenticate[0].param("realm") == "w"
    assert message.authorization[0].param("username") == "u"
    assert message.proxy_authorization[0].param("realm") == "p"
    assert message.retry_after == RetryAfter(30) and message.rseq == 988789
    assert message.rack == RAck(988789, 1, "INVITE")


def test_missing_and_malformed_headers_raise_remote_errors() -> None:
    message = SipResponse(200, "OK", Headers([("Expires", "soon"), ("To", "<sip:x")]))
    for name in ("from_", "call_id", "cseq", "top_via"):
        with pytest.raises(RemoteProtocolError, match="missing"):
            getattr(message, name)
    for name in ("expires", "to"):
        with pytest.raises(RemoteProtocolError):
            getattr(message, name)


def test_serialize_writes_canonical_names_and_the_real_content_length() -> None:
    request = SipRequest(
        "OPTIONS",
        SipUri(user="bob", host="biloxi.com"),
        Headers([("v", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("l", "999"), ("X-Mixed-CASE", "kept"), ("i", "c@h")]),
        b"hello",
    )
    assert request.serialize() == (
        b"OPTIONS sip:bob@biloxi.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Content-Length: 5\r\n"
        b"X-Mixed-CASE: kept\r\n"
        b"Call-ID: c@h\r\n"
        b"\r\n"
        b"hello"
    )
    doubled = SipResponse(200, "OK", Headers([("l", "1"), ("Content-Length", "2"), ("To", "t")]), b"abc")
    assert doubled.serialize() == b"SIP/2.0 200 OK\r\nContent-Length: 3\r\nTo: t\r\n\r\nabc"
    empty = SipResponse(180, "Ringing")
    assert empty.serialize() == b"SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n"


def test_message_constructors_check_their_start_line() -> None:
    with pytest.raises(LocalProtocolError):
        SipRequest("IN VITE", SipUri(host="h"))
    with pytest.raises(LocalProtocolError):
        SipResponse(700)
    with pytest.raises(LocalProtocolError):
        SipResponse(200, "OK\r\nVia: x")


def test_make_response_copies_what_section_8_2_6_asks() -> None:
    request = invite()
    response = make_response(request, 180, to_tag="a6c85cf")
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert [via.branch for via in response.vias] == [via.branch for via in request.vias]
    assert response.from_ == request.from_ and response.call_id == request.call_id and response.cseq == request.cseq
    assert response.to.uri == request.to.uri and response.to.tag == "a6c85cf"
    assert "Timestamp" not in response.headers and "Contact" not in response.headers
    assert response.body == b""
    trying = make_response(request, 100)
    assert trying.reason == "Trying" and trying.headers.get("Timestamp") == "54" and trying.to.tag is None


def test_make_response_with_existing_tag_and_extras() -> None:
    request = invite()
    request.headers.set("To", "Bob <sip:bob@biloxi.com>;tag=xyz")
    ok = make_response(request, 200, "Fine", to_tag="xyz", headers=[("Contact", "<sip:bob@192.0.2.4>")])
    assert ok.headers.get("To") == "Bob <sip:bob@biloxi.com>;tag=xyz"  # copied unchanged
    assert ok.reason == "Fine" and ok.contact is not None
    with pytest.raises(LocalProtocolError):
        make_response(request, 200, to_tag="other")
    ack = SipRequest("ACK", request.uri, request.headers.copy())
    with pytest.raises(LocalProtocolError):
        make_response(ack, 200)


def test_reason_phrases() -> None:
    assert reason_phrase(200) == "OK" and reason_phrase(481) == "Call/Transaction Does Not Exist"
    assert reason_phrase(505) == "Version Not Supported" and reason_phrase(513) == "Message Too Large"
    assert (
        reason_phrase(299) == "Success"
        and reason_phrase(499) == "Client Error"
        and reason_phrase(699) == "Global Failure"
    )


def test_make_error_response() -> None:
    broken = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(broken)
    response = make_error_response(caught.value, to_tag="t1")
    assert response is not None
    assert response.status == 400 and "CSeq" in response.reason
    assert response.to.tag == "t1" and response.cseq == CSeq(314159, "BYE")
    assert len(response.vias) == 3
    version = INVITE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(version)
    answered = make_error_response(caught.value)
    assert answered is not None and (answered.status, answered.reason) == (505, "Version Not Supported")


def test_no_error_response_without_what_a_response_needs() -> None:
    assert make_error_response(RemoteProtocolError("a response was bad")) is None
    no_call_id = INVITE.replace(b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", b"")
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(no_call_id)
    assert caught.value.headers is not None and make_error_response(caught.value) is None
    ack = INVITE.replace(b"INVITE sip:", b"ACK sip:").replace(b"314159 INVITE", b"314159 ACK")
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(ack.replace(b"Max-Forwards: 70", b"Max-Forwards: 700"))
    assert make_error_response(caught.value) is None  # ACK is never answered


@given(st.sampled_from(sorted({"i", "m", "e", "l", "c", "f", "s", "k", "t", "v", "o", "r", "b", "u", "x"})))
def test_compact_and_long_names_find_the_same_rows(compact: str) -> None:
    headers = Headers([(compact, "value")])
    assert headers.get(canonical_name(compact)) == "value"
    assert headers.get(canonical_name(compact).upper()) == "value"


def test_absolute_uri_display() -> None:
    assert str(AbsoluteUri("urn", "uuid:f81d4fae")) == "urn:uuid:f81d4fae"


# ---- lexical helpers ----


def test_quoting_helpers() -> None:
    assert quote('say "hi" \\ \x00\t') == '"say \\"hi\\" \\\\ \\\x00\t"'
    assert unquote('"say \\"hi\\""') == 'say "hi"' and unquote("token") == "token" and unquote('"') == '"'
    with pytest.raises(LocalProtocolError):
        quote("line\r\nbreak")


def test_split_header_values_respects_quotes_and_brackets() -> None:
    assert split_header_values('"a, \\"b" <sip:x,y@h>, c ,, d') == ['"a, \\"b" <sip:x,y@h>', "c", "d"]
    assert split_header_values(" , ") == [] and split_header_values("  ") == []


def test_param_helpers() -> None:
    params = (("a", "1"), ("B", None), ("a", "2"))
    assert set_param(params, "A", "3") == (("a", "3"), ("B", None))  # duplicates collapse into one
    assert set_param(params, "c", None) == (*params, ("c", None))
    assert remove_param(params, "b") == (("a", "1"), ("a", "2"))
    assert get_param(params, "b") is None and has_param(params, "b") and not has_param(params, "z")
    assert format_params(params) == ";a=1;B;a=2"
    assert parse_params(' ; a = "x;y" ;B', "X") == (("a", '"x;y"'), ("B", None))


def test_sip_message_base_has_no_start_line() -> None:
    with pytest.raises(NotImplementedError):
        SipMessage().serialize()
