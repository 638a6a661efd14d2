"""parse_message and StreamFramer (RFC 3261 §7, §18.3; RFC 5626 §4.4.1)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.headers import CSeq, header_key
from sipagent.sip.message import SipMessage, SipRequest, SipResponse
from sipagent.sip.parser import PING, PONG, StreamFramer, is_keepalive, parse_message
from sipagent.sip.uri import SipUri
from tests.sip._strategies import messages

pytestmark = pytest.mark.unit

CORE = (
    "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n"
    "To: Bob <sip:bob@biloxi.com>\r\n"
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710\r\n"
)


def request(extra: str = "", *, method: str = "OPTIONS", body: bytes = b"", line: str | None = None) -> bytes:
    start = line if line is not None else f"{method} sip:bob@biloxi.com SIP/2.0"
    head = f"{start}\r\n{CORE}CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}\r\n"
    return head.encode() + body


def rejected(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(data)
    return caught.value


def semantic(message: SipMessage) -> tuple[object, ...]:
    """What must survive a serialise/parse round trip: start line, header rows but Content-Length, body."""
    start: tuple[object, ...] = (
        (message.method, message.uri) if isinstance(message, SipRequest) else (message.status, message.reason)  # type: ignore[attr-defined]
    )
    rows = [(header_key(n), v) for n, v in message.headers if header_key(n) != "content-length"]
    return start, rows, message.body


def test_request() -> None:
    message = parse_message(request("Content-Type: text/plain\r\nContent-Length: 5\r\n", body=b"hello"))
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri, message.body) == ("OPTIONS", SipUri(user="bob", host="biloxi.com"), b"hello")
    assert message.cseq == CSeq(1, "OPTIONS")


def test_response() -> None:
    data = f"SIP/2.0 180 Ringing\r\n{CORE}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode()
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason, message.cseq.method) == (180, "Ringing", "INVITE")
    spaced = parse_message(data.replace(b"180 Ringing", b"200 Very  Good  News "))
    assert isinstance(spaced, SipResponse) and spaced.reason == "Very  Good  News "


def test_header_syntax_variants() -> None:
    # §7.3.1: folding, tabs and whitespace around the colon; §7.3.3 compact forms; case-insensitive names.
    data = request(
        "SUBJECT\t :\t first part\r\n"
        "  second part\r\n"
        "\tthird part\r\n"
        "k: 100rel\r\n"
        "supported: timer\r\n"
        "X-Empty:\r\n"
        "X-Colons: a:b : c\r\n"
    )
    message = parse_message(data)
    assert message.headers.get("Subject") == "first part second part third part"
    assert message.supported == ["100rel", "timer"]
    assert message.headers.get("x-empty") == "" and message.headers.get("X-COLONS") == "a:b : c"
    assert ("SUBJECT", "first part second part third part") in list(message.headers)  # name kept as sent


def test_bare_lf_line_ends_and_leading_crlfs() -> None:
    data = b"\r\n\r\n" + request("Content-Length: 2\r\n", body=b"ok").replace(b"\r\n", b"\n")
    message = parse_message(data)
    assert message.call_id == "a84b4c76e66710" and message.body == b"ok"


def test_non_utf8_bytes_survive_a_round_trip() -> None:
    data = request("X-Latin1: caf\xe9 \xff\r\n".encode("latin-1").decode("latin-1")).replace(
        b"caf\xc3\xa9 \xc3\xbf", b"caf\xe9 \xff"
    )
    assert b"caf\xe9 \xff" in data
    message = parse_message(data)
    assert b"X-Latin1: caf\xe9 \xff\r\n" in message.serialize()
    reason = parse_message(f"SIP/2.0 200 \xd0\x9e\xd0\x9a\r\n{CORE}CSeq: 1 INVITE\r\n\r\n".encode("latin-1"))
    assert isinstance(reason, SipResponse) and reason.reason == "ОК"


def test_request_line_leniency() -> None:
    # RFC 4475 §3.1.2.9 and §3.1.2.10: extra and trailing SP may be ignored by a liberal receiver.
    message = parse_message(request(line="OPTIONS  sip:bob@biloxi.com \t SIP/2.0  "))
    assert isinstance(message, SipRequest) and message.uri == SipUri(user="bob", host="biloxi.com")
    assert isinstance(parse_message(request(line="OPTIONS sip:bob@biloxi.com sip/2.0")), SipRequest)


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("OPTIONS sip:bob@biloxi.com SIP/3.0", 505),
        ("OPTIONS sip:bob@biloxi.com SIP/2.1", 505),
        ("OPTIONS sip:bob@biloxi.com SIP/20", 400),
        ("OPTIONS sip:bob@biloxi.com HTTP/1.1", 400),
        ("OPTIONS sip:bob@biloxi.com", 400),
        ("OPTIONS sip:bob@biloxi.com; lr SIP/2.0", 400),
        ("OPTIONS <sip:bob@biloxi.com> SIP/2.0", 400),
        ("OPTIONS http://biloxi.com SIP/2.0", 416),
        ("OPTIONS sip:bob@biloxi.com?Route=%3Csip:x%3E SIP/2.0", 400),
    ],
)
def test_bad_request_lines(line: str, status: int) -> None:
    error = rejected(request(line=line))
    assert error.status_hint == status
    assert error.headers is not None and error.headers.get("Call-ID") == "a84b4c76e66710"


def test_bad_method_token() -> None:
    assert rejected(request(method="OPT<IONS")).status_hint == 400


@pytest.mark.parametrize(
    "line",
    ["SIP/2.0 4294967301 big", "SIP/2.0 99 Low", "SIP/2.0 700 High", "SIP/2.0 20 Short", "SIP/2.0 OK", "SIP/2.0"],
)
def test_bad_status_lines(line: str) -> None:
    error = rejected(f"{line}\r\n{CORE}CSeq: 1 INVITE\r\n\r\n".encode())
    assert error.headers is None  # responses are dropped, never answered


@pytest.mark.parametrize(
    "line",
    [
        "SIP/2.0 200 O\rK",
        "SIP/2.0 200 OK\r",
        "OPTIONS sip:bob@biloxi.com SIP/2.0\r",
        "OPTIONS\rsip:bob@biloxi.com SIP/2.0",
    ],
)
def test_bare_cr_in_the_start_line_is_the_peers_error(line: str) -> None:
    # RFC 3261 §7.1-7.2: CR belongs only to the CRLF that ends the start line; a bare one is malformed,
    # the peer's fault (RemoteProtocolError), never a LocalProtocolError from building the message.
    error = rejected(f"{line}\r\n{CORE}CSeq: 1 OPTIONS\r\n\r\n".encode())
    assert error.status_hint == 400
    assert (error.headers is None) == line.startswith("SIP/")  # a request keeps its headers for the 400


def test_response_version() -> None:
    assert rejected(f"SIP/7.0 200 OK\r\n{CORE}CSeq: 1 INVITE\r\n\r\n".encode()).status_hint == 505


@pytest.mark.parametrize("name", ["Via", "To", "From", "Call-ID"])
def test_missing_mandatory_header_is_named(name: str) -> None:
    data = request()
    lines = [line for line in data.split(b"\r\n") if not line.startswith(name.encode() + b":")]
    error = rejected(b"\r\n".join(lines))
    assert error.status_hint == 400 and name in str(error)


def test_missing_cseq_and_several_missing() -> None:
    assert "CSeq" in str(rejected(request().replace(b"CSeq: 1 OPTIONS\r\n", b"")))
    only = b"OPTIONS sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"
    assert str(rejected(only)) == "missing From, To, Call-ID, CSeq header fields"


def test_max_forwards_may_be_missing_but_not_wrong() -> None:
    message = parse_message(request().replace(b"Max-Forwards: 70\r\n", b""))
    assert message.max_forwards is None  # RFC 2543 peers (RFC 4475 §3.4.1)
    assert rejected(request().replace(b"Max-Forwards: 70", b"Max-Forwards: 256")).status_hint == 400


@pytest.mark.parametrize("name", ["To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"])
def test_single_headers_must_not_repeat(name: str) -> None:
    value = {"Content-Length": "0", "Content-Type": "text/plain", "CSeq": "1 OPTIONS", "Max-Forwards": "70"}
    extra = f"{name}: {value.get(name, '<sip:x@example.com>' if name in ('To', 'From') else 'abc')}\r\n"
    data = request(extra + (extra if name in ("Content-Type", "Content-Length") else ""))
    assert "more than one" in str(rejected(data))


def test_cseq_method_must_match() -> None:
    error = rejected(request().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"))
    assert "CSeq" in str(error) and error.status_hint == 400


@pytest.mark.parametrize(
    "extra",
    [
        "Contact: <sip:x@example.com;;>\r\n",
        "Content-Type: nonsense\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 12345678901234567890123\r\n",
        "No colon here\r\n",
        "Bad Name: x\r\n",
    ],
)
def test_malformed_core_headers(extra: str) -> None:
    assert rejected(request(extra)).status_hint == 400


def test_continuation_line_needs_a_header_to_continue() -> None:
    data = request().replace(b"SIP/2.0\r\n", b"SIP/2.0\r\n folded onto nothing\r\n", 1)
    assert "continuation" in str(rejected(data))


def test_call_id_must_be_one_word() -> None:
    assert rejected(request().replace(b"Call-ID: a84b4c76e66710", b"Call-ID: two words")).status_hint == 400


def test_content_length_frames_a_datagram() -> None:
    # §18.3: extra octets are dropped; a body shorter than announced is an error; no header means all of it.
    short = parse_message(request("Content-Length: 3\r\n", body=b"abcdef"))
    assert short.body == b"abc"
    assert rejected(request("Content-Length: 7\r\n", body=b"abcdef")).status_hint == 400
    assert parse_message(request(body=b"abcdef")).body == b"abcdef"


def test_size_limit_is_513() -> None:
    data = request(body=b"x" * 100)
    assert rejected(data.ljust(70_000, b"x")).status_hint == 513
    assert parse_message(data, max_size=len(data)).body == b"x" * 100
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(data, max_size=len(data) - 1)
    assert caught.value.status_hint == 513


def test_framing_failures() -> None:
    assert str(rejected(b"")) == "empty message"
    assert str(rejected(b"\r\n\r\n")) == "empty message"
    assert rejected(b"OPTIONS sip:bob@biloxi.com SIP/2.0\r\nVia: x").status_hint == 400  # no blank line
    # A datagram that ends right after its last header line is read without a body.
    assert parse_message(request()[:-2]).body == b""


def test_is_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n")
    assert not is_keepalive(b"") and not is_keepalive(request())


# ---- StreamFramer ----


def test_framer_cuts_messages_and_reports_keepalives() -> None:
    one, two = request("Content-Length: 0\r\n"), request("Content-Length: 3\r\n", body=b"abc")
    framer = StreamFramer()
    assert framer.feed(PING + one + two + PONG) == [PING, one, two, PONG]
    assert framer.buffered == 0 and not framer.broken
    assert framer.feed(one[:10]) == [] and framer.buffered == 10
    assert framer.feed(one[10:] + PONG + PONG) == [one, PING]  # two CRLFs in a row are a ping


def test_framer_split_ping_and_lone_pong() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [PONG]  # a pong must not wait for more bytes
    assert framer.feed(b"\r\n") == [PING]  # ... but a CRLF right after it completes a ping
    assert framer.feed(b"\r\n\r") == []  # a CR right after a CRLF: wait for the byte that decides
    assert framer.feed(b"\n") == [PING]
    assert framer.feed(b"\n") == []  # bare LF between messages is skipped


def test_framer_waits_for_the_whole_body() -> None:
    # RFC 4475 §3.1.2.2: over a stream, a Content-Length beyond the data means "wait for more".
    data = request("Content-Length: 10\r\n", body=b"12345")
    framer = StreamFramer()
    assert framer.feed(data) == []
    assert framer.feed(b"67890NEXT") == [data + b"67890"]
    assert framer.buffered == 4


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request(), 400),  # no Content-Length: required on streams (§18.3)
        (request("Content-Length: -999\r\n"), 400),  # RFC 4475 §3.1.2.3
        (request("Content-Length: 13\r\nl: 5\r\n"), 400),  # RFC 4475 §3.3.9
        (request("Content-Length: 100000\r\n"), 513),
        (b"OPTIONS " + b"x" * 20_000, 513),
        (request("X-Big: " + "y" * 20_000 + "\r\nContent-Length: 0\r\n"), 513),
    ],
)
def test_framer_errors_break_the_stream(data: bytes, status: int) -> None:
    framer = StreamFramer()
    with pytest.raises(RemoteProtocolError) as caught:
        framer.feed(data)
    assert caught.value.status_hint == status and framer.broken
    with pytest.raises(RemoteProtocolError):
        framer.feed(request("Content-Length: 0\r\n"))


def test_framer_returns_messages_before_a_later_error() -> None:
    good = request("Content-Length: 0\r\n")
    framer = StreamFramer()
    assert framer.feed(good + request()) == [good]
    assert framer.broken
    with pytest.raises(RemoteProtocolError, match="Content-Length"):
        framer.feed(b"")


def test_framer_accepts_folded_and_compact_content_length() -> None:
    data = request("l:\r\n 2\r\n", body=b"ok")
    assert StreamFramer().feed(data) == [data]
    assert parse_message(data).body == b"ok"


# ---- properties ----


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b"SIP/2.0 200 O\rK\r\n" + CORE.encode() + b"CSeq: 1 INVITE\r\n\r\n")
def test_arbitrary_bytes_parse_or_raise_remote_protocol_error(data: bytes) -> None:
    try:
        parse_message(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([request(body=b""), b"\r\n", b":", b" ", b";", b"<", b"\xff", b"%"]), max_size=8),
       st.data())  # fmt: skip
def test_mangled_messages_parse_or_raise_remote_protocol_error(pieces: list[bytes], data: st.DataObject) -> None:
    blob = bytearray(b"".join(pieces))
    for _ in range(data.draw(st.integers(0, 4))):
        if blob:
            del blob[data.draw(st.integers(0, len(blob) - 1))]
    try:
        message = parse_message(bytes(blob))
    except RemoteProtocolError:
        return
    assert semantic(parse_message(message.serialize())) == semantic(message)


@settings(max_examples=100, deadline=None)
@given(messages)
def test_generated_messages_round_trip(message: SipRequest | SipResponse) -> None:
    parsed = parse_message(message.serialize())
    assert semantic(parsed) == semantic(message)
    assert parsed.content_length == len(message.body)
    assert parsed.vias == message.vias and parsed.from_ == message.from_ and parsed.to == message.to
    assert parsed.cseq == message.cseq and parsed.call_id == message.call_id


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(messages, st.sampled_from([b"", PONG, PING])), min_size=1, max_size=4), st.data())
def test_framer_gives_the_same_messages_for_any_split(
    items: list[tuple[SipRequest | SipResponse, bytes]], data: st.DataObject
) -> None:
    wire = [message.serialize() for message, _ in items]
    stream = b"".join(keepalive + raw for (_, keepalive), raw in zip(items, wire, strict=True))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer = StreamFramer()
    out: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += framer.feed(stream[start:end])
    assert [item for item in out if item not in (PING, PONG)] == wire
    assert not framer.broken and framer.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_framer_on_arbitrary_bytes(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_header_size=128, max_body_size=64)
    for chunk in chunks:
        try:
            framer.feed(chunk)
        except RemoteProtocolError:
            assert framer.broken
            return
