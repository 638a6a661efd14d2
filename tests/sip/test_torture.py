"""RFC 4475 and RFC 5118 torture messages, read in place from the shared data folder.

Every file in ``msgs/`` has a row in :data:`CASES`: accepted (with the fields the RFC's explanation points
at checked in :data:`CHECKS`) or rejected (with the status hint). Where the RFC lets a receiver choose, or
the problem is one of application semantics rather than syntax, the row's note records our decision:

| file                  | RFC section   | outcome | why                                                          |
|-----------------------|---------------|---------|--------------------------------------------------------------|
| lwsstart              | 4475 3.1.2.9  | accept  | extra SP in the Request-Line is unambiguous; liberal allowed |
| trws                  | 4475 3.1.2.10 | accept  | trailing SP likewise                                         |
| escruri               | 4475 3.1.2.11 | 400     | a Request-URI with headers means nothing to a UA             |
| baddate               | 4475 3.1.2.12 | accept  | Date is kept as text; the parser never interprets it         |
| badaspec              | 4475 3.1.2.14 | accept  | spaces just inside <...> are dropped, liberal allowed        |
| mismatch02            | 4475 3.1.2.18 | 400     | RFC prefers 501 but allows 400; the parser sees the mismatch |
| scalarlg, bigcode     | 4475 3.1.2.5/19 | drop  | responses: raised without headers, so never answered        |
| unkscm, novelsc       | 4475 3.3.2-3  | 416     | the parser refuses schemes other than sip, sips and tel      |
| insuf, multi01, mcl01 | 4475 3.3.1/8/9 | 400    | checked by the parser, naming the header at fault            |
| bext01, invut, sdp01, regaut01, zeromf, bcast | 4475 3.3 | accept | semantic: UA answers 420/415/406/401 or drops |
| test                  | (archive only)| 400     | not described in RFC 4475's text: no SIP-Version, no colon   |
| ipv6-bug-abnf-3-colons | 5118 4.10    | accept  | "must tolerate": read as 2001:db8::192.0.2.1                 |
| ipv6-in-sdp           | 5118 4.6      | 400     | as stored, Content-Length exceeds the CRLF-converted body    |
| mult-ip-in-sdp, ipv4-mapped-ipv6 | 5118 4.8-9 | accept | as stored, body longer than Content-Length: cut (§18.3) |
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.headers import CSeq, header_key
from sipagent.sip.message import SipMessage, SipRequest, SipResponse, make_error_response, make_response
from sipagent.sip.parser import PONG, StreamFramer, parse_message
from sipagent.sip.uri import AbsoluteUri, SipUri, parse_uri
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.unit

MSGS = SHARED_DATA / "sip-torture" / "msgs"
needs_data = pytest.mark.skipif(not MSGS.is_dir(), reason="shared SIP torture messages are absent")


@dataclass(frozen=True)
class Case:
    file: str
    section: str
    status: int | None = None
    """``None``: accepted. Otherwise the status hint of the RemoteProtocolError (0: a response, dropped)."""
    note: str = ""


CASES = [
    # RFC 4475 §3.1.1: valid messages.
    Case("wsinv", "4475 3.1.1.1"),
    Case("intmeth", "4475 3.1.1.2"),
    Case("esc01", "4475 3.1.1.3"),
    Case("escnull", "4475 3.1.1.4"),
    Case("esc02", "4475 3.1.1.5"),
    Case("lwsdisp", "4475 3.1.1.6"),
    Case("longreq", "4475 3.1.1.7"),
    Case("dblreq", "4475 3.1.1.8"),
    Case("semiuri", "4475 3.1.1.9"),
    Case("transports", "4475 3.1.1.10"),
    Case("mpart01", "4475 3.1.1.11"),
    Case("unreason", "4475 3.1.1.12"),
    Case("noreason", "4475 3.1.1.13"),
    # RFC 4475 §3.1.2: invalid messages.
    Case("badinv01", "4475 3.1.2.1", 400),
    Case("clerr", "4475 3.1.2.2", 400),
    Case("ncl", "4475 3.1.2.3", 400),
    Case("scalar02", "4475 3.1.2.4", 400),
    Case("scalarlg", "4475 3.1.2.5", 0),
    Case("quotbal", "4475 3.1.2.6", 400),
    Case("ltgtruri", "4475 3.1.2.7", 400),
    Case("lwsruri", "4475 3.1.2.8", 400),
    Case("lwsstart", "4475 3.1.2.9", None, "liberal: extra SP ignored"),
    Case("trws", "4475 3.1.2.10", None, "liberal: trailing SP ignored"),
    Case("escruri", "4475 3.1.2.11", 400, "rejected rather than ignoring the headers"),
    Case("baddate", "4475 3.1.2.12", None, "Date is never interpreted"),
    Case("regbadct", "4475 3.1.2.13", 400),
    Case("badaspec", "4475 3.1.2.14", None, "liberal: spaces inside <> ignored"),
    Case("baddn", "4475 3.1.2.15", 400),
    Case("badvers", "4475 3.1.2.16", 505),
    Case("mismatch01", "4475 3.1.2.17", 400),
    Case("mismatch02", "4475 3.1.2.18", 400, "400 rather than 501, which the RFC also allows"),
    Case("bigcode", "4475 3.1.2.19", 0),
    # RFC 4475 §3.2 to §3.4: transaction and application semantics, backward compatibility.
    Case("badbranch", "4475 3.2.1", None, "syntactically fine; the transaction layer matches it RFC 2543 style"),
    Case("insuf", "4475 3.3.1", 400),
    Case("unkscm", "4475 3.3.2", 416),
    Case("novelsc", "4475 3.3.3", 416),
    Case("unksm2", "4475 3.3.4"),
    Case("bext01", "4475 3.3.5", None, "the UA answers 420"),
    Case("invut", "4475 3.3.6", None, "the UA answers 415"),
    Case("regaut01", "4475 3.3.7", None, "the registrar answers 401"),
    Case("multi01", "4475 3.3.8", 400),
    Case("mcl01", "4475 3.3.9", 400),
    Case("bcast", "4475 3.3.10", None, "the transport layer drops it"),
    Case("zeromf", "4475 3.3.11", None, "the UA may answer; a proxy would send 483"),
    Case("cparam01", "4475 3.3.12"),
    Case("cparam02", "4475 3.3.13"),
    Case("regescrt", "4475 3.3.14"),
    Case("sdp01", "4475 3.3.15", None, "the UA answers 406 (Accept excludes SDP)"),
    Case("inv2543", "4475 3.4.1"),
    Case("test", "archive", 400, "not in RFC 4475's text"),
    # RFC 5118.
    Case("ipv6-good", "5118 4.1"),
    Case("ipv6-bad", "5118 4.2", 400),
    Case("port-ambiguous", "5118 4.3"),
    Case("port-unambiguous", "5118 4.4"),
    Case("via-received-param-with-delim", "5118 4.5"),
    Case("via-received-param-no-delim", "5118 4.5"),
    Case("ipv6-in-sdp", "5118 4.6", 400, "stored Content-Length exceeds the CRLF body"),
    Case("ipv6-in-sdp.clfix", "5118 4.6"),
    Case("mult-ip-in-header", "5118 4.7"),
    Case("mult-ip-in-sdp", "5118 4.8", None, "body cut to the stored Content-Length"),
    Case("mult-ip-in-sdp.clfix", "5118 4.8"),
    Case("ipv4-mapped-ipv6", "5118 4.9", None, "body cut to the stored Content-Length"),
    Case("ipv4-mapped-ipv6.clfix", "5118 4.9"),
    Case("ipv6-bug-abnf-3-colons", "5118 4.10", None, "tolerated as RFC 5118 asks"),
    Case("ipv6-correct-abnf-2-colons", "5118 4.10"),
]
ACCEPTED = [case for case in CASES if case.status is None]
REJECTED = [case for case in CASES if case.status is not None]


def load(name: str) -> bytes:
    return (MSGS / f"{name}.dat").read_bytes()


def req(message: SipMessage) -> SipRequest:
    assert isinstance(message, SipRequest)
    return message


def sip(uri: SipUri | AbsoluteUri) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


def _wsinv(m: SipMessage) -> None:
    r = req(m)
    assert r.uri == SipUri(user="vivekg", host="chair-dnrc.example.com", params=(("unknownparam", None),))
    assert r.to.tag == "1918181833n" and r.to.uri == SipUri(user="vivekg", host="chair-dnrc.example.com")
    assert r.from_.display_name == 'J Rosenberg \\"' and r.from_.tag == "98asjd8"
    assert (r.max_forwards, r.cseq, r.content_length, len(r.body)) == (68, CSeq(9, "INVITE"), 150, 150)
    assert [(v.transport, v.host, v.branch) for v in r.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert r.headers.get("Subject") == "" and r.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert r.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    route = sip(r.routes[0].uri)
    assert route.params == (("lr", None), ("unknownwith", "value"), ("unknown-no-value", None))
    contact = r.contacts[0]
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))


def _intmeth(m: SipMessage) -> None:
    r = req(m)
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert r.method == method and r.cseq == CSeq(139122385, method)
    assert r.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert r.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert r.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert r.from_.display_name == "token1~` token2'+_ token3*%!.-" and r.from_.tag == "_token~1'+`*%!-."
    assert r.from_.param("fromParam''~+*_!.-%") == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    assert r.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert r.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert r.top_via.branch == "z9hG4bK-.!%66*_+`'~" and r.max_forwards == 255


def _esc01(m: SipMessage) -> None:
    r = req(m)
    assert r.uri.user == "sips:user@example.com" and r.uri.host == "example.net"
    assert r.to.uri.equivalent(parse_uri("sip:user@example.com"))
    assert sip(r.from_.uri).user == "I have spaces"
    contact = sip(r.contacts[0].uri)
    assert contact.user == "caller" and contact.params == (("lr", None), ("name", "value%41"))
    assert not contact.equivalent(parse_uri("sip:caller@host5.example.net;lr;name=valueA"))


def _escnull(m: SipMessage) -> None:
    r = req(m)
    assert sip(r.to.uri).user == "null-\x00-null"
    first, second = (sip(c.uri) for c in r.contacts)
    assert (first.user, second.user) == ("\x00", "\x00\x00") and not first.equivalent(second)


def _esc02(m: SipMessage) -> None:
    r = req(m)
    assert r.method == "RE%47IST%45R" and r.cseq.method == r.method  # escapes mean nothing in a method
    assert r.to.display_name == "%Z%45" == r.from_.display_name
    assert r.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [sip(c.uri).user for c in r.contacts] == ["alias1", "alias3"]
    assert r.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"  # an extension header, not Contact


def _lwsdisp(m: SipMessage) -> None:
    assert m.from_.display_name == "caller" and m.from_.tag == "323"


def _longreq(m: SipMessage) -> None:
    r = req(m)
    to = sip(r.to.uri)
    assert r.to.display_name is not None and r.to.display_name.endswith("extreme proportion")
    assert to.port == 6000 and len(to.params) == 3 and to.params[2][1] is None
    assert len(r.vias) == 34 and [v.host for v in r.vias[:2]] == ["sip33.example.com", "sip32.example.com"]
    assert r.vias[-1].received == "192.0.2.5" and r.vias[-1].branch is not None
    assert r.from_.tag is not None and len(r.from_.tag) > 150
    assert r.headers.get("Unknown-" + "Long" * 20 + "-Name") is not None
    assert len(r.body) == 150


def _dblreq(m: SipMessage) -> None:
    r = req(m)
    # §18.3: the INVITE after the REGISTER's empty body is not part of this datagram's message.
    assert (r.method, r.body, r.call_id) == ("REGISTER", b"", "dblreq.0ha0isndaksdj99sdfafnl3lk233412")


def _semiuri(m: SipMessage) -> None:
    r = req(m)
    assert (r.uri.user, r.uri.host, r.uri.params) == ("user;par=u@example.net", "example.com", ())
    assert len(r.headers.get_all("Accept")) == 6


def _transports(m: SipMessage) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def _mpart01(m: SipMessage) -> None:
    content_type = m.content_type
    assert content_type is not None and content_type.mime_type == "multipart/mixed"
    assert content_type.param("boundary") == "7a9cbec02ceef655"
    assert len(m.body) == 553 and m.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n") and b"\x00" in m.body


def _unreason(m: SipMessage) -> None:
    assert isinstance(m, SipResponse) and m.status == 200
    assert m.reason.startswith("= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e")
    assert len(m.body) == 154


def _noreason(m: SipMessage) -> None:
    assert isinstance(m, SipResponse) and (m.status, m.reason) == (100, "")


def _badbranch(m: SipMessage) -> None:
    assert m.top_via.branch == "z9hG4bK"


def _unksm2(m: SipMessage) -> None:
    assert m.to.uri == AbsoluteUri("isbn", "2983792873")
    assert m.from_.uri == AbsoluteUri("http", "//www.example.com") and m.from_.tag == "3234233"
    assert m.contacts[0].uri == AbsoluteUri("name", "John_Smith")


def _bext01(m: SipMessage) -> None:
    assert m.require == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.proxy_require == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def _invut(m: SipMessage) -> None:
    assert m.content_type is not None and m.content_type.mime_type == "application/unknownformat"


def _regaut01(m: SipMessage) -> None:
    credentials = m.authorization[0]
    assert credentials.scheme == "NoOneKnowsThisScheme" and credentials.param("opaque-data") == "here"


def _bcast(m: SipMessage) -> None:
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def _zeromf(m: SipMessage) -> None:
    assert m.max_forwards == 0


def _cparam01(m: SipMessage) -> None:
    assert m.contacts[0].params == (("unknownparam", None),) and sip(m.contacts[0].uri).params == ()


def _cparam02(m: SipMessage) -> None:
    assert m.contacts[0].params == () and sip(m.contacts[0].uri).params == (("unknownparam", None),)


def _regescrt(m: SipMessage) -> None:
    assert sip(m.contacts[0].uri).headers == (("Route", "<sip:sip.example.com>"),)


def _sdp01(m: SipMessage) -> None:
    assert m.headers.get_all("Accept") == ["text/nobodyKnowsThis"]


def _inv2543(m: SipMessage) -> None:
    assert m.max_forwards is None and m.top_via.branch is None and m.content_length is None
    assert m.to.params == (("user", "phone"),) and sip(m.from_.uri).params == (("user", "phone"),)
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


def _lenient(m: SipMessage) -> None:
    assert req(m).uri.host in ("example.com", "example.org") and m.call_id


def _baddate(m: SipMessage) -> None:
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def _badaspec(m: SipMessage) -> None:
    assert m.to.uri == SipUri(user="t.watson", host="example.org") and m.to.display_name == "Watson, Thomas"


def _ipv6_good(m: SipMessage) -> None:
    assert req(m).uri.host == "2001:db8::10" and m.top_via.host == "2001:db8::9:1"
    assert sip(m.contacts[0].uri).host == "2001:db8::1"


def _port(host: str, port: int | None) -> Callable[[SipMessage], None]:
    def check(m: SipMessage) -> None:
        assert (req(m).uri.host, req(m).uri.port) == (host, port)

    return check


def _received(m: SipMessage) -> None:
    assert m.top_via.received == "2001:db8::9:255" and m.top_via.host == "2001:db8::9:1"


def _sdp_body(length: int, needle: bytes) -> Callable[[SipMessage], None]:
    def check(m: SipMessage) -> None:
        assert len(m.body) == length and m.content_length == length and needle in m.body

    return check


def _mult_ip_in_header(m: SipMessage) -> None:
    assert [(v.transport, v.host, v.port) for v in m.vias] == [
        ("UDP", "2001:db8::9:1", 6050),
        ("UDP", "192.0.2.1", None),
        ("TCP", "2001:db8::9:255", None),
    ]
    assert m.vias[2].received == "192.0.2.200"


def _ipv4_mapped(length: int) -> Callable[[SipMessage], None]:
    def check(m: SipMessage) -> None:
        assert [(v.host, v.port) for v in m.vias] == [("::ffff:192.0.2.10", 19823), ("::ffff:192.0.2.2", None)]
        assert sip(m.contacts[0].uri).host == "::ffff:192.0.2.2" and len(m.body) == length

    return check


def _ipv6_embedded(m: SipMessage) -> None:
    assert req(m).uri.host == "2001:db8::192.0.2.1"
    assert req(m).uri.equivalent(parse_uri("sip:user@[2001:db8::c000:201]"))


CHECKS: dict[str, Callable[[SipMessage], None]] = {
    "wsinv": _wsinv,
    "intmeth": _intmeth,
    "esc01": _esc01,
    "escnull": _escnull,
    "esc02": _esc02,
    "lwsdisp": _lwsdisp,
    "longreq": _longreq,
    "dblreq": _dblreq,
    "semiuri": _semiuri,
    "transports": _transports,
    "mpart01": _mpart01,
    "unreason": _unreason,
    "noreason": _noreason,
    "lwsstart": _lenient,
    "trws": _lenient,
    "baddate": _baddate,
    "badaspec": _badaspec,
    "badbranch": _badbranch,
    "unksm2": _unksm2,
    "bext01": _bext01,
    "invut": _invut,
    "regaut01": _regaut01,
    "bcast": _bcast,
    "zeromf": _zeromf,
    "cparam01": _cparam01,
    "cparam02": _cparam02,
    "regescrt": _regescrt,
    "sdp01": _sdp01,
    "inv2543": _inv2543,
    "ipv6-good": _ipv6_good,
    "port-ambiguous": _port("2001:db8::10:5070", None),
    "port-unambiguous": _port("2001:db8::10", 5070),
    "via-received-param-with-delim": _received,
    "via-received-param-no-delim": _received,
    "ipv6-in-sdp.clfix": _sdp_body(251, b"c=IN IP6 2001:db8::20\r\n"),
    "mult-ip-in-header": _mult_ip_in_header,
    "mult-ip-in-sdp": _sdp_body(181, b"c=IN IP6 2001:db8::1\r\n"),
    "mult-ip-in-sdp.clfix": _sdp_body(189, b"c=IN IP6 2001:db8::1\r\n"),
    "ipv4-mapped-ipv6": _ipv4_mapped(236),
    "ipv4-mapped-ipv6.clfix": _ipv4_mapped(245),
    "ipv6-bug-abnf-3-colons": _ipv6_embedded,
    "ipv6-correct-abnf-2-colons": _ipv6_embedded,
}


def semantic(message: SipMessage) -> tuple[object, ...]:
    start = (message.method, message.uri) if isinstance(message, SipRequest) else (message.status, message.reason)  # type: ignore[attr-defined]
    rows = [(header_key(n), v) for n, v in message.headers if header_key(n) != "content-length"]
    return start, rows, message.body


@needs_data
def test_files_are_intact_and_all_classified() -> None:
    sums: dict[str, str] = {}
    for line in (MSGS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    for name, digest in sums.items():
        assert hashlib.sha256((MSGS / name).read_bytes()).hexdigest() == digest, f"{name} is not byte-exact"
    on_disk = {path.name.removesuffix(".dat") for path in MSGS.glob("*.dat")}
    assert on_disk == {case.file for case in CASES}
    assert {case.file for case in ACCEPTED} == set(CHECKS)


@needs_data
@pytest.mark.parametrize("case", ACCEPTED, ids=lambda case: case.file)
def test_accepted(case: Case) -> None:
    message = parse_message(load(case.file))
    CHECKS[case.file](message)
    again = parse_message(message.serialize())
    assert semantic(again) == semantic(message)  # so the checked fields survived too (Content-Length aside)
    assert again.vias == message.vias and again.to == message.to and again.from_ == message.from_
    if isinstance(message, SipRequest) and message.method != "ACK":
        tag = message.to.tag or "t0rture"
        response = make_response(message, 200, to_tag=tag)
        reparsed = parse_message(response.serialize())
        assert isinstance(reparsed, SipResponse) and reparsed.to.tag == tag
        assert reparsed.vias == message.vias and reparsed.cseq == message.cseq


@needs_data
@pytest.mark.parametrize("case", REJECTED, ids=lambda case: case.file)
def test_rejected(case: Case) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(load(case.file))
    error = caught.value
    if case.status == 0:
        assert error.headers is None  # a response: nothing to answer
        return
    assert error.status_hint == case.status
    response = make_error_response(error, to_tag="t0rture")
    needed = error.headers is not None and all(
        name in error.headers for name in ("Via", "From", "To", "Call-ID", "CSeq")
    )
    if not needed:
        assert response is None
        return
    assert response is not None and response.status == case.status and error.headers is not None
    # The copies are verbatim (§8.2.6.2), malformed values included, so only the start line is checked here.
    assert response.serialize().startswith(f"SIP/2.0 {case.status} ".encode())
    assert response.headers.get_all("Via", split=False) == error.headers.get_all("Via", split=False)


@needs_data
def test_insufficient_headers_are_named() -> None:
    # RFC 4475 §3.3.1: To, From and Call-ID are missing; a useful 400 says which.
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(load("insuf"))
    assert all(name in str(caught.value) for name in ("To", "From", "Call-ID"))


@needs_data
@pytest.mark.parametrize("name", ["ncl", "mcl01"])
def test_stream_framing_errors_are_fatal(name: str) -> None:
    # RFC 4475 §3.1.2.3 and §3.3.9: over a stream these leave no way to find the next message.
    framer = StreamFramer()
    with pytest.raises(RemoteProtocolError):
        framer.feed(load(name))
    assert framer.broken


@needs_data
def test_stream_waits_for_a_long_content_length() -> None:
    # RFC 4475 §3.1.2.2: over TCP, clerr just means more data is still to come.
    framer = StreamFramer()
    assert framer.feed(load("clerr")) == [] and not framer.broken


@needs_data
@pytest.mark.parametrize("case", ACCEPTED, ids=lambda case: case.file)
def test_accepted_messages_frame_on_a_stream(case: Case) -> None:
    wire = parse_message(load(case.file)).serialize()  # serialising writes the Content-Length TCP needs
    framer = StreamFramer()
    assert framer.feed(PONG + wire[:7]) + framer.feed(wire[7:]) == [PONG, wire]


@needs_data
def test_the_extra_request_in_dblreq_is_a_message_of_its_own() -> None:
    data = load("dblreq")
    second = data[data.index(b"INVITE") :]
    message = req(parse_message(second))
    # RFC 4475 §3.1.1.8 only asks that it be ignored as part of the first datagram; on its own it parses.
    assert (message.method, message.to.uri) == ("INVITE", SipUri(user="joe", host="example.com"))


def test_table_documents_every_decision() -> None:
    for case in CASES:
        assert case.section
        if case.file in ("lwsstart", "trws", "escruri", "baddate", "badaspec", "mismatch02", "test"):
            assert case.note, case.file
