"""SIP messages (RFC 3261 §7): a header container, requests, responses, and building responses (§8.2.6).

Messages are *mutable* dataclasses: the transaction and dialog layers add a Via, a To tag or a Route to a
message they are about to send, and copying a frozen message for each such step would buy nothing. The
typed properties (``vias``, ``cseq``, ``to``...) parse the header text on every access instead of caching
it, so they can never disagree with ``headers`` after an edit; to change a header, write its new text with
``headers.set(name, str(value))``. Parsed messages have already had their core headers checked by
:func:`sipagent.sip.parser.parse_message`, so the properties of those never raise; optional headers are
parsed on first use and raise :class:`RemoteProtocolError` (400) when malformed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
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
    is_list_header,
    parse_challenge,
    parse_content_length,
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
from sipagent.sip.syntax import is_token, split_header_values
from sipagent.sip.uri import NameAddress, SipUri, parse_name_addr

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "make_error_response",
    "make_response",
    "reason_phrase",
]

_FORBIDDEN = re.compile(r"[\r\n]")
# §21 and later registrations; reason_phrase() falls back to the class name for anything else (§8.1.3.2).
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    199: "Early Dialog Terminated", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded", 469: "Bad Info Package",
    470: "Consent Needed", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    580: "Precondition Failure", 600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip
_CLASS_PHRASES = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error", 5: "Server Error"}
_UNSAFE_REASON = re.compile(r"[^A-Za-z0-9 \-_.!~*'();/?:@&=+$,]+")


class Headers:
    """Ordered header rows ``(name, value)`` with case-insensitive, compact-form-aware look-up.

    Names are kept as given (``str()`` of a message writes canonical names for known headers); values are
    the unfolded text after the colon. Rows are never merged, so the order of Via, Route and Record-Route
    values is exactly the order on the wire.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[tuple[str, str]] = ()) -> None:
        self._rows: list[tuple[str, str, str]] = []
        for name, value in rows:
            self.add(name, value)

    @staticmethod
    def _check(name: str, value: str) -> None:
        if not is_token(name):
            raise LocalProtocolError(f"header name {name!r} is not a token")
        if _FORBIDDEN.search(value):  # a CR or LF would end the row early: header injection
            raise LocalProtocolError(f"header {name} value contains CR or LF")

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(row[0] == key for row in self._rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._rows] == [(k, v) for k, _, v in other._rows]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        clone = Headers()
        clone._rows = list(self._rows)
        return clone

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first row's value, unsplit; ``default`` when there is none."""
        key = header_key(name)
        return next((value for k, _, value in self._rows if k == key), default)

    def get_all(self, name: str, *, split: bool = True) -> list[str]:
        """Every value in order; rows of :data:`~sipagent.sip.headers.LIST_HEADERS` split at commas."""
        key = header_key(name)
        rows = [value for k, _, value in self._rows if k == key]
        if not split or not is_list_header(name):
            return rows
        return [item for row in rows for item in split_header_values(row)]

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a row; with ``first``, insert it above the other rows of that name (a new top Via)."""
        self._check(name, value)
        key = header_key(name)
        row = (key, name, value)
        if first:
            index = next((i for i, r in enumerate(self._rows) if r[0] == key), len(self._rows))
            self._rows.insert(index, row)
        else:
            self._rows.append(row)

    def set(self, name: str, value: str) -> None:
        """Replace every row of ``name`` by one row, where the first one was (appended if none)."""
        self._check(name, value)
        key = header_key(name)
        index = next((i for i, r in enumerate(self._rows) if r[0] == key), None)
        if index is None:
            self._rows.append((key, name, value))
            return
        self._rows[index] = (key, name, value)
        self._rows[index + 1 :] = [r for r in self._rows[index + 1 :] if r[0] != key]

    def remove(self, name: str) -> int:
        """Drop every row of ``name``; the number removed."""
        key = header_key(name)
        kept = [r for r in self._rows if r[0] != key]
        removed = len(self._rows) - len(kept)
        self._rows = kept
        return removed

    def remove_first(self, name: str) -> str | None:
        """Drop the first row of ``name`` and return its value (a proxy or UAC popping a Via or Route row)."""
        key = header_key(name)
        for i, row in enumerate(self._rows):
            if row[0] == key:
                del self._rows[i]
                return row[2]
        return None


class SipMessage:
    """What requests and responses share: the headers, the body, typed views and :meth:`serialize`."""

    headers: Headers
    body: bytes

    def _start_line(self) -> str:
        raise NotImplementedError

    def _single(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise RemoteProtocolError(f"missing {canonical_name(name)} header field")
        return value

    def _optional_int(self, name: str) -> int | None:
        value = self.headers.get(name)
        return None if value is None else parse_delta_seconds(value, canonical_name(name))

    def _addresses(self, name: str, *, allow_star: bool = False) -> list[NameAddress]:
        return [parse_name_addr(v, header=name, allow_star=allow_star) for v in self.headers.get_all(name)]

    def _tokens(self, name: str) -> list[str]:
        return [token for row in self.headers.get_all(name, split=False) for token in parse_token_list(row, name)]

    @property
    def vias(self) -> list[Via]:
        return [via for row in self.headers.get_all("Via", split=False) for via in parse_via(row)]

    @property
    def top_via(self) -> Via:
        return parse_via(self._single("Via"))[0]

    @property
    def from_(self) -> NameAddress:
        return parse_name_addr(self._single("From"), header="From")

    @property
    def to(self) -> NameAddress:
        return parse_name_addr(self._single("To"), header="To")

    @property
    def call_id(self) -> str:
        return self._single("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self._single("CSeq"))

    @property
    def contacts(self) -> list[NameAddress]:
        """Every Contact; the wildcard of §10.2.2 appears as :data:`~sipagent.sip.uri.CONTACT_STAR`."""
        return self._addresses("Contact", allow_star=True)

    @property
    def contact(self) -> NameAddress | None:
        contacts = self.contacts
        return contacts[0] if contacts else None

    @property
    def routes(self) -> list[NameAddress]:
        return self._addresses("Route")

    @property
    def record_routes(self) -> list[NameAddress]:
        return self._addresses("Record-Route")

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_max_forwards(value)

    @property
    def content_type(self) -> ContentType | None:
        value = self.headers.get("Content-Type")
        return None if value is None else parse_content_type(value)

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as received; :meth:`serialize` writes ``len(body)`` regardless."""
        value = self.headers.get("Content-Length")
        return None if value is None else parse_content_length(value)

    @property
    def expires(self) -> int | None:
        return self._optional_int("Expires")

    @property
    def min_expires(self) -> int | None:
        return self._optional_int("Min-Expires")

    @property
    def allow(self) -> list[str]:
        return self._tokens("Allow")

    @property
    def supported(self) -> list[str]:
        return self._tokens("Supported")

    @property
    def require(self) -> list[str]:
        return self._tokens("Require")

    @property
    def proxy_require(self) -> list[str]:
        return self._tokens("Proxy-Require")

    @property
    def unsupported(self) -> list[str]:
        return self._tokens("Unsupported")

    @property
    def www_authenticate(self) -> list[Challenge]:
        return [parse_challenge(v, "WWW-Authenticate") for v in self.headers.get_all("WWW-Authenticate")]

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        return [parse_challenge(v, "Proxy-Authenticate") for v in self.headers.get_all("Proxy-Authenticate")]

    @property
    def authorization(self) -> list[Credentials]:
        return [parse_credentials(v, "Authorization") for v in self.headers.get_all("Authorization")]

    @property
    def proxy_authorization(self) -> list[Credentials]:
        return [parse_credentials(v, "Proxy-Authorization") for v in self.headers.get_all("Proxy-Authorization")]

    @property
    def retry_after(self) -> RetryAfter | None:
        value = self.headers.get("Retry-After")
        return None if value is None else parse_retry_after(value)

    @property
    def rseq(self) -> int | None:
        value = self.headers.get("RSeq")
        return None if value is None else parse_rseq(value)

    @property
    def rack(self) -> RAck | None:
        value = self.headers.get("RAck")
        return None if value is None else parse_rack(value)

    def serialize(self) -> bytes:
        """Wire bytes: canonical names, unknown names as given, and Content-Length = ``len(body)`` (§20.14)."""
        lines = [self._start_line()]
        length = f"Content-Length: {len(self.body)}"
        for name, value in self.headers:
            if header_key(name) != "content-length":
                lines.append(f"{canonical_name(name)}: {value}")
            elif length:  # the first Content-Length row keeps its place; any others go
                lines.append(length)
                length = ""
        if length:
            lines.append(length)
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + bytes(self.body)


@dataclass(eq=True)
class SipRequest(SipMessage):
    method: str
    uri: SipUri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        self._start_line()

    def _start_line(self) -> str:
        if not is_token(self.method):
            raise LocalProtocolError(f"method {self.method!r} is not a token")
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass(eq=True)
class SipResponse(SipMessage):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        self._start_line()

    def _start_line(self) -> str:
        if not 100 <= self.status <= 699:
            raise LocalProtocolError(f"status {self.status} is outside 100..699")
        if _FORBIDDEN.search(self.reason):
            raise LocalProtocolError("reason phrase contains CR or LF")
        return f"SIP/2.0 {self.status} {self.reason}"


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Global Failure")


def _to_with_tag(value: str, to_tag: str | None, strict: bool) -> str:
    if to_tag is None:
        return value
    try:
        to = parse_name_addr(value, header="To")
    except RemoteProtocolError:  # only reachable from make_error_response: keep the peer's text, add the tag
        return f"{value};tag={to_tag}"
    if to.tag is not None:
        # §8.2.6.2: a To that already has a tag is copied unchanged; a different tag would be our bug.
        if strict and to.tag != to_tag:
            raise LocalProtocolError(f"request To already has tag {to.tag!r}, not {to_tag!r}")
        return value
    return str(to.with_tag(to_tag))


def _response_from(
    source: Headers,
    status: int,
    reason: str | None,
    to_tag: str | None,
    extra: Iterable[tuple[str, str]],
    *,
    strict: bool = True,
) -> SipResponse:
    headers = Headers()
    seen: set[str] = set()
    for name, value in source:
        key = header_key(name)
        # §8.2.6.2: every Via in order, and one each of From, To, Call-ID, CSeq; §8.2.6.1: a 100 (Trying)
        # echoes Timestamp.
        if key == "via" or (key == "timestamp" and status == 100):
            headers.add(name, value)
        elif key in ("from", "to", "call-id", "cseq") and key not in seen:
            seen.add(key)
            headers.add(name, _to_with_tag(value, to_tag, strict) if key == "to" else value)
    for name, value in extra:
        headers.add(name, value)
    return SipResponse(status, reason_phrase(status) if reason is None else reason, headers)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> SipResponse:
    """A response to ``request`` per §8.2.6: Vias, From, To (plus ``to_tag`` if it has none), Call-ID, CSeq.

    ``headers`` are appended as given. Record-Route copying (§12.1.1) and Contact belong to the dialog layer.
    """
    if request.method == "ACK":
        raise LocalProtocolError("ACK is never answered (§17.1.1.3)")
    return _response_from(request.headers, status, reason, to_tag, headers)


def make_error_response(error: RemoteProtocolError, *, to_tag: str | None = None) -> SipResponse | None:
    """The answer to a request the parser rejected, or ``None`` when there must be none.

    ``None`` when the error kept no headers (it was a response, or unreadable), when the request lacked
    what a response needs (Via, From, To, Call-ID, CSeq), or when it was an ACK. For 400 the reason phrase
    says what was wrong, as §21.4.1 suggests.
    """
    source = error.headers
    if source is None or any(name not in source for name in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    if (source.get("CSeq") or "").split()[-1:] == ["ACK"]:
        return None
    status = error.status_hint if 300 <= error.status_hint <= 699 else 400
    reason = None
    if status == 400:
        reason = " ".join(_UNSAFE_REASON.sub(" ", str(error)).split())[:100] or None
    return _response_from(source, status, reason, to_tag, (), strict=False)
