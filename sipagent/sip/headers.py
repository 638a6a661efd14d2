"""Header names and typed header values (RFC 3261 §7.3, §20; RFC 3262 RAck/RSeq).

Names: :func:`header_key` is the look-up key (lower case, compact forms expanded, §7.3.3) and
:func:`canonical_name` the spelling we write. Unknown names are written as the peer (or caller) spelled them.

Lists: only the headers in :data:`LIST_HEADERS` are split at commas (§7.3.1). Everything else is one value
per row: the authentication headers carry commas between their parameters, Date has one after the weekday,
and an unknown header may use commas any way it likes.

Each typed value is a frozen dataclass whose ``str()`` is its wire form; parsers raise
:class:`~sipagent.sip.errors.RemoteProtocolError` (400) naming the header at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.syntax import (
    TOKEN_CHARS,
    TOKEN_RE,
    Params,
    bounded_int,
    format_params,
    get_param,
    has_param,
    is_token,
    parse_params,
    quote,
    remove_param,
    set_param,
    skip_ws,
    split_header_values,
)
from sipagent.sip.uri import format_host, parse_host_port

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "MAX_DELTA_SECONDS",
    "MAX_SEQ",
    "CSeq",
    "Challenge",
    "ContentType",
    "Credentials",
    "RAck",
    "RetryAfter",
    "Via",
    "canonical_name",
    "header_key",
    "is_list_header",
    "parse_challenge",
    "parse_content_length",
    "parse_content_type",
    "parse_credentials",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_max_forwards",
    "parse_params",
    "parse_rack",
    "parse_retry_after",
    "parse_rseq",
    "parse_token_list",
    "parse_via",
    "split_header_values",
]

# §7.3.3 plus the compact forms registered later (RFC 3265 o/u, RFC 3515 r, RFC 3892 b, RFC 4028 x,
# RFC 3841 a/j/d, RFC 4474 y/n).
COMPACT_FORMS = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To",
    "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip
_KNOWN = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Authentication-Info",
    "Authorization", "Call-Info", "Content-Disposition", "Content-Language", "CSeq", "Date", "Error-Info",
    "Expires", "History-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE",
    "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route",
    "Replaces", "Reply-To", "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "SIP-ETag", "SIP-If-Match", "Subscription-State", "Timestamp", "Unsupported", "User-Agent", "Warning",
    "WWW-Authenticate", *COMPACT_FORMS.values(),
)  # fmt: skip
_CANONICAL = {name.lower(): name for name in _KNOWN} | {k: v for k, v in COMPACT_FORMS.items()}
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
        "History-Info", "In-Reply-To", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Proxy-Require",
        "Reason", "Record-Route", "Reject-Contact", "Request-Disposition", "Require", "Route",
        "Service-Route", "Supported", "Unsupported", "Via", "Warning",
    )
)  # fmt: skip
"""Look-up keys of the headers whose values are comma-separated lists (§7.3.1)."""

MAX_SEQ = 2**32 - 1  # §20.16: CSeq (and RFC 3262 RSeq) numbers are 32-bit unsigned
MAX_DELTA_SECONDS = 2**32 - 1  # §20.19, §20.33: delta-seconds fit 32 bits; larger values are clamped to it

_DIGITS = re.compile(r"[ \t]*([0-9]+)[ \t]*")
_CSEQ = re.compile(rf"[ \t]*([0-9]+)[ \t]+([{TOKEN_CHARS}]+)[ \t]*")
_RACK = re.compile(rf"[ \t]*([0-9]+)[ \t]+([0-9]+)[ \t]+([{TOKEN_CHARS}]+)[ \t]*")
# §20.42 sent-protocol, with the SWS that SLASH allows around each '/' (RFC 4475 §3.1.1.1).
_SENT_PROTOCOL = re.compile(rf"[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)")
_MEDIA = re.compile(rf"[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)")


@lru_cache(maxsize=1024)  # a few dozen names recur in every message
def header_key(name: str) -> str:
    """The case-insensitive look-up key of a header name, compact forms expanded (``"v"`` -> ``"via"``)."""
    lower = name.lower()
    compact = COMPACT_FORMS.get(lower)
    return compact.lower() if compact is not None else lower


@lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """The spelling to write: ``"call-id"`` and ``"i"`` give ``"Call-ID"``; unknown names stay as given."""
    return _CANONICAL.get(name.lower(), name)


def is_list_header(name: str) -> bool:
    return header_key(name) in LIST_HEADERS


def _number(value: str, header: str) -> int:
    match = _DIGITS.fullmatch(value)
    if match is None:
        raise RemoteProtocolError(f"{header}: {value[:20]!r} is not a number")
    return bounded_int(match.group(1))


def parse_max_forwards(value: str) -> int:
    hops = _number(value, "Max-Forwards")
    if hops > 255:  # §20.22 and RFC 4475 §3.1.2.4: the value is an integer in 0..255
        raise RemoteProtocolError(f"Max-Forwards: {hops} is above 255")
    return hops


def parse_content_length(value: str) -> int:
    return _number(value, "Content-Length")


def parse_delta_seconds(value: str, header: str) -> int:
    """An Expires/Min-Expires style delta-seconds, clamped to 2**32-1 (RFC 4475 §3.1.2.4 allows either)."""
    return min(_number(value, header), MAX_DELTA_SECONDS)


def parse_rseq(value: str) -> int:
    seq = _number(value, "RSeq")
    if not 1 <= seq <= MAX_SEQ:
        raise RemoteProtocolError(f"RSeq: {seq} is outside 1..2**32-1")
    return seq


def parse_token_list(value: str, header: str) -> list[str]:
    """Allow, Supported, Require, Proxy-Require, Unsupported...: a comma list of tokens, as written."""
    items = split_header_values(value)
    for item in items:
        if not is_token(item):
            raise RemoteProtocolError(f"{header}: {item[:30]!r} is not a token")
    return items


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= MAX_SEQ or not is_token(self.method):
            raise LocalProtocolError(f"CSeq needs a 32-bit number and a method token, not {self.seq} {self.method!r}")

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    match = _CSEQ.fullmatch(value)
    if match is None:
        raise RemoteProtocolError(f"CSeq: {value[:40]!r} is not 'number method'")
    seq = bounded_int(match.group(1))
    if seq > MAX_SEQ:
        raise RemoteProtocolError(f"CSeq: sequence number {match.group(1)[:20]} does not fit 32 bits")
    return CSeq(seq, match.group(2))


@dataclass(frozen=True, slots=True)
class RAck:
    """RFC 3262 §7.2: the RSeq and CSeq of the reliable provisional response a PRACK acknowledges."""

    rseq: int
    cseq: int
    method: str

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


def parse_rack(value: str) -> RAck:
    match = _RACK.fullmatch(value)
    if match is None:
        raise RemoteProtocolError(f"RAck: {value[:40]!r} is not 'rseq cseq method'")
    rseq, cseq = bounded_int(match.group(1)), bounded_int(match.group(2))
    if not 1 <= rseq <= MAX_SEQ or cseq > MAX_SEQ:
        raise RemoteProtocolError("RAck: number does not fit 32 bits")
    return RAck(rseq, cseq, match.group(3))


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (§20.42). ``host`` has no IPv6 brackets; ``params`` are raw (see :mod:`syntax`)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    def __post_init__(self) -> None:
        if not is_token(self.transport) or not self.host or (self.port is not None and not 0 <= self.port <= 65535):
            raise LocalProtocolError(f"invalid Via: transport {self.transport!r}, host {self.host!r}")
        # Transport names are case-insensitive (§7.1); one spelling makes comparisons plain string ones.
        if self.transport != self.transport.upper():
            object.__setattr__(self, "transport", self.transport.upper())

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    @property
    def sent_by(self) -> str:
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        """The ``received`` address without IPv6 brackets (RFC 5118 §4.5: both spellings occur)."""
        value = get_param(self.params, "received")
        return value[1:-1] if value and value.startswith("[") and value.endswith("]") else value

    @property
    def has_rport(self) -> bool:
        """True when ``rport`` is present, with or without a value (RFC 3581 §3 asks for it bare)."""
        return has_param(self.params, "rport")

    @property
    def rport(self) -> int | None:
        """The port a server filled in (RFC 3581 §4); ``None`` when absent or still empty."""
        return _small_int(get_param(self.params, "rport"))

    @property
    def maddr(self) -> str | None:
        return get_param(self.params, "maddr")

    @property
    def ttl(self) -> int | None:
        return _small_int(get_param(self.params, "ttl"))

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> Via:
        return Via(self.transport, self.host, self.port, set_param(self.params, name, value), self.protocol)

    def without_param(self, name: str) -> Via:
        return Via(self.transport, self.host, self.port, remove_param(self.params, name), self.protocol)


def _small_int(value: str | None) -> int | None:
    """A Via port or ttl parameter as a number; ``None`` when absent, empty or not digits."""
    if not value or not (value.isascii() and value.isdigit()):
        return None
    return bounded_int(value)


def _parse_one_via(text: str) -> Via:
    match = _SENT_PROTOCOL.match(text)
    if match is None or match.end() == len(text) or text[match.end()] not in " \t":
        raise RemoteProtocolError(f"Via: {text[:40]!r} does not start with 'SIP/2.0/transport sent-by'")
    rest = text[match.end() :]
    semi = rest.find(";")
    sent_by = rest if semi < 0 else rest[:semi]
    host, port = parse_host_port(sent_by.strip(" \t"), "Via")
    params = parse_params(rest[len(sent_by) :], "Via")
    for name, value in params:
        key = name.lower()
        # Check the numeric parameters now so that the properties above never meet garbage (§20.42).
        number = _small_int(value)
        if key == "rport" and value is not None and (number is None or number > 65535):
            raise RemoteProtocolError(f"Via: rport {value[:10]!r} is not a port")
        if key == "ttl" and (number is None or number > 255):
            raise RemoteProtocolError("Via: ttl is not a number in 0..255")
        if key == "branch" and (value is None or not is_token(value)):
            raise RemoteProtocolError("Via: branch needs a token value")
    protocol = f"{match.group(1)}/{match.group(2)}".upper()
    return Via(match.group(3), host, port, params, protocol)


def parse_via(value: str) -> list[Via]:
    """Every Via in one header row (a row may hold several, comma-separated)."""
    vias = [_parse_one_via(item) for item in split_header_values(value)]
    if not vias:
        raise RemoteProtocolError("Via: empty value")
    return vias


@dataclass(frozen=True, slots=True)
class ContentType:
    """A media type (§20.15, RFC 2045): ``type`` and ``subtype`` lower case, ``params`` raw."""

    type: str
    subtype: str
    params: Params = ()

    @property
    def mime_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def __str__(self) -> str:
        return f"{self.mime_type}{format_params(self.params)}"


def parse_content_type(value: str) -> ContentType:
    match = _MEDIA.match(value)
    if match is None:
        raise RemoteProtocolError(f"Content-Type: {value[:40]!r} is not 'type/subtype'")
    params = parse_params(value[match.end() :], "Content-Type")
    return ContentType(match.group(1).lower(), match.group(2).lower(), params)


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """§20.33: seconds to wait, an optional comment (without its parentheses) and parameters."""

    seconds: int
    comment: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        comment = "" if self.comment is None else f" ({self.comment})"
        return f"{self.seconds}{comment}{format_params(self.params)}"


def parse_retry_after(value: str) -> RetryAfter:
    match = _DIGITS.match(value)
    if match is None:
        raise RemoteProtocolError(f"Retry-After: {value[:20]!r} does not start with delta-seconds")
    seconds = min(bounded_int(match.group(1)), MAX_DELTA_SECONDS)
    pos = skip_ws(value, match.end())
    comment = None
    if value[pos : pos + 1] == "(":
        # comment = "(" *(ctext / quoted-pair / comment) ")" (§25.1): comments nest.
        depth, start, end = 0, pos, len(value)
        while pos < end:
            ch = value[pos]
            pos += 2 if ch == "\\" else 1
            depth += 1 if ch == "(" else -1 if ch == ")" else 0
            if depth == 0:
                break
        if depth:
            raise RemoteProtocolError("Retry-After: unbalanced comment")
        comment = value[start + 1 : pos - 1]
    return RetryAfter(seconds, comment, parse_params(value[pos:], "Retry-After"))


# One auth-param (§25.1 auth-param, RFC 7235 §2.1): a token name, '=', a quoted-string or a bare value.
# Bare values are looser than tokens because peers send unquoted URIs and base64 nonces.
_AUTH_PARAM = re.compile(rf'([{TOKEN_CHARS}]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^ \t,"]+))[ \t]*', re.S)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


@dataclass(frozen=True, slots=True)
class _AuthValue:
    scheme: str
    params: tuple[tuple[str, str], ...] = ()
    """Auth-params in order, values unquoted."""
    token68: str | None = None
    """The whole value after the scheme when it is a token68 blob (RFC 7235 §2.1) rather than params."""

    def param(self, name: str) -> str | None:
        key = name.lower()
        return next((value for n, value in self.params if n.lower() == key), None)

    def _format(self, bare: frozenset[str]) -> str:
        if self.token68 is not None:
            return f"{self.scheme} {self.token68}"
        # A value goes out bare only where the grammar wants a token (RFC 7616 §3.3/§3.4: algorithm, stale,
        # nc, the credentials' qop, userhash); everything else is quoted, which auth-param always allows.
        parts = [
            f"{name}={value}" if name.lower() in bare and is_token(value) else f"{name}={quote(value)}"
            for name, value in self.params
        ]
        return f"{self.scheme} {', '.join(parts)}" if parts else self.scheme


@dataclass(frozen=True, slots=True)
class Challenge(_AuthValue):
    """One WWW-Authenticate or Proxy-Authenticate value (§20.27, §20.44): a scheme and its auth-params."""

    def __str__(self) -> str:
        return self._format(frozenset({"algorithm", "stale", "userhash"}))


@dataclass(frozen=True, slots=True)
class Credentials(_AuthValue):
    """One Authorization or Proxy-Authorization value (§20.7, §20.28)."""

    def __str__(self) -> str:
        return self._format(frozenset({"algorithm", "nc", "qop", "userhash"}))


def _parse_auth(value: str, header: str) -> tuple[str, tuple[tuple[str, str], ...], str | None]:
    scheme = TOKEN_RE.match(value, skip_ws(value, 0))
    if scheme is None or value[scheme.end() : scheme.end() + 1] not in ("", " ", "\t"):
        raise RemoteProtocolError(f"{header}: missing or invalid auth scheme")
    rest = value[scheme.end() :].strip(" \t")
    if _TOKEN68.fullmatch(rest) and "=" not in rest.rstrip("="):
        return scheme.group(), (), rest
    params: list[tuple[str, str]] = []
    pos, end = 0, len(rest)
    while True:
        while pos < end and rest[pos] in " \t,":
            pos += 1
        if pos >= end:
            return scheme.group(), tuple(params), None
        match = _AUTH_PARAM.match(rest, pos)
        if match is None:
            raise RemoteProtocolError(f"{header}: malformed auth-param at {rest[pos : pos + 20]!r}")
        quoted = match.group(2)
        params.append((match.group(1), _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else match.group(3)))
        pos = match.end()
        if pos < end and rest[pos] != ",":
            raise RemoteProtocolError(f"{header}: expected ',' between auth-params at {rest[pos : pos + 20]!r}")


def parse_challenge(value: str, header: str = "WWW-Authenticate") -> Challenge:
    return Challenge(*_parse_auth(value, header))


def parse_credentials(value: str, header: str = "Authorization") -> Credentials:
    return Credentials(*_parse_auth(value, header))
