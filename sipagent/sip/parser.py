"""Bytes to messages: :func:`parse_message` for one datagram or framed message, :class:`StreamFramer` for TCP.

Leniency, decided once here (RFC 3261 §7, RFC 4475):

- Accepted: bare LF line ends, a datagram that ends without the blank line after its headers, runs of
  SP/HTAB between request-line elements and trailing ones (RFC 4475 §3.1.2.9-10 allow a liberal receiver
  that), folded lines, any case and compact forms of names, a missing Max-Forwards (RFC 2543 peers,
  RFC 4475 §3.4.1), bytes that are not UTF-8 (kept as surrogate escapes, so serialising gives them back).
- Refused with 400: everything the core layers rely on that is missing, repeated or malformed (Via, From,
  To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact), a CSeq method other than the request's, a
  Request-URI carrying headers (RFC 4475 §3.1.2.11), a Content-Length beyond the datagram (§18.3).
- 416 for a Request-URI scheme other than sip, sips or tel; 505 for a version other than SIP/2.0; 513 for
  a message over the size limit.

Requests refused after the header block was read carry it in ``RemoteProtocolError.headers`` so that
:func:`~sipagent.sip.message.make_error_response` can answer them.
"""

from __future__ import annotations

import re

from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.headers import (
    canonical_name,
    header_key,
    parse_content_length,
    parse_content_type,
    parse_cseq,
    parse_max_forwards,
    parse_via,
)
from sipagent.sip.message import Headers, SipRequest, SipResponse
from sipagent.sip.syntax import bounded_int, is_token
from sipagent.sip.uri import parse_name_addr, parse_uri

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PING",
    "PONG",
    "StreamFramer",
    "is_keepalive",
    "parse_message",
]

MAX_MESSAGE_SIZE = 65_536
"""Default size limit of one message: the largest UDP datagram, and our bound for TCP (§18.1.1)."""
PING = b"\r\n\r\n"
"""RFC 5626 §4.4.1 keep-alive ping (a client sends it on a flow; the server answers :data:`PONG`)."""
PONG = b"\r\n"
"""RFC 5626 §4.4.1 keep-alive pong."""

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_WS = re.compile(r"[ \t]+")
_VERSION = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.IGNORECASE)
_STATUS_LINE = re.compile(r"SIP/([0-9]+\.[0-9]+)[ \t]+([0-9]+)(?:[ \t](.*))?", re.IGNORECASE | re.S)
_CALL_ID = re.compile(r"[^\s\x00-\x1f\x7f]+")
# §20: these appear exactly once in every request and response; the others at most once.
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type")


def is_keepalive(data: bytes) -> bool:
    """True for a datagram made only of CRLFs (RFC 5626 §4.4.1 style keep-alive; §7.5 says ignore them)."""
    return bool(data) and not data.strip(b"\r\n")


def _skip_line_ends(data: bytes) -> int:
    pos = 0
    while pos < len(data) and data[pos] in b"\r\n":
        pos += 1
    return pos


def _split_head(head: str) -> tuple[str, list[tuple[str, str]]]:
    lines = _LINE_END.split(head)
    start_line = lines[0]
    rows: list[tuple[str, str]] = []
    for line in lines[1:]:
        if "\r" in line:
            raise RemoteProtocolError("bare CR inside a header line")
        if line[:1] in (" ", "\t"):
            # §7.3.1: a line starting with whitespace continues the previous one; the fold is one SP.
            if not rows:
                raise RemoteProtocolError("continuation line before the first header")
            name, value = rows[-1]
            rows[-1] = (name, (value + " " + line.strip(" \t")).strip(" \t"))
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise RemoteProtocolError(f"malformed header line {line[:40]!r}")
        rows.append((name, value.strip(" \t")))
    return start_line, rows


def _check_version(text: str, headers: Headers | None) -> None:
    match = _VERSION.fullmatch(text)
    if match is None:
        raise RemoteProtocolError(f"SIP-Version {text[:20]!r} is malformed", headers=headers)
    if (bounded_int(match.group(1)), bounded_int(match.group(2))) != (2, 0):
        raise RemoteProtocolError(f"SIP version {text[:20]} is not supported", status_hint=505, headers=headers)


def _parse_request_line(line: str, headers: Headers) -> tuple[str, str]:
    parts = _WS.split(line.strip(" \t"))
    if len(parts) != 3:
        raise RemoteProtocolError("Request-Line is not 'Method Request-URI SIP-Version'", headers=headers)
    method, uri_text, version = parts
    if not is_token(method):
        raise RemoteProtocolError(f"method {method[:30]!r} is not a token", headers=headers)
    _check_version(version, headers)
    return method, uri_text


def _check_headers(headers: Headers, method: str | None) -> None:
    counts: dict[str, int] = {}
    for name, _ in headers:
        key = header_key(name)
        counts[key] = counts.get(key, 0) + 1
    missing = [canonical_name(key) for key in _REQUIRED if key not in counts]
    if missing:
        raise RemoteProtocolError(f"missing {', '.join(missing)} header field{'s' if len(missing) > 1 else ''}")
    repeated = [canonical_name(key) for key in _SINGLE if counts.get(key, 0) > 1]
    if repeated:
        raise RemoteProtocolError(f"more than one {', '.join(repeated)} header field")  # RFC 4475 §3.3.8-9
    for row in headers.get_all("Via", split=False):
        parse_via(row)
    parse_name_addr(headers.get("From") or "", header="From")
    parse_name_addr(headers.get("To") or "", header="To")
    for contact in headers.get_all("Contact"):
        parse_name_addr(contact, header="Contact", allow_star=True)
    if _CALL_ID.fullmatch(headers.get("Call-ID") or "") is None:
        raise RemoteProtocolError("Call-ID is empty or contains whitespace")
    cseq = parse_cseq(headers.get("CSeq") or "")
    if method is not None and cseq.method != method:
        raise RemoteProtocolError(f"CSeq method {cseq.method[:30]!r} does not match the request method")
    for name, parse in (("Max-Forwards", parse_max_forwards), ("Content-Type", parse_content_type)):
        value = headers.get(name)
        if value is not None:
            parse(value)


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> SipRequest | SipResponse:
    """Parse one complete message: a UDP datagram (§18.3) or a message cut by :class:`StreamFramer`.

    The body is what follows the blank line, cut to Content-Length when that header is present; a
    Content-Length beyond the bytes received is an error (400). Raises only :class:`RemoteProtocolError`.
    """
    if len(data) > max_size:
        raise RemoteProtocolError(f"message of {len(data)} bytes is over the {max_size}-byte limit", status_hint=513)
    start = _skip_line_ends(data)  # §7.5: CRLFs before the start-line are ignored
    if start == len(data):
        raise RemoteProtocolError("empty message")
    end = _HEAD_END.search(data, start)
    if end is not None:
        head, rest = data[start : end.start()], data[end.end() :]
    elif data.endswith(b"\n"):
        # A datagram that stops right after its last header line: the blank line is missing but nothing
        # else can follow (§18.3), so read it as headers without a body.
        head, rest = data[start:].rstrip(b"\r\n"), b""
    else:
        raise RemoteProtocolError("no blank line ends the header fields")
    start_line, rows = _split_head(head.decode("utf-8", "surrogateescape"))
    is_response = start_line[:4].upper() == "SIP/"
    context: Headers | None = None
    try:
        headers = Headers(rows)
        context = None if is_response else headers
        if "\r" in start_line:
            # §7.1/§7.2: CR may appear only in the CRLF ending the start line; a bare one in a URI or a
            # Reason-Phrase would also make the message impossible to serialise safely.
            raise RemoteProtocolError("bare CR inside the start line")
        if is_response:
            match = _STATUS_LINE.fullmatch(start_line)
            if match is None or len(match.group(2)) != 3 or not 100 <= int(match.group(2)) <= 699:
                raise RemoteProtocolError(f"Status-Line {start_line[:40]!r} is malformed")  # RFC 4475 §3.1.2.19
            _check_version(f"SIP/{match.group(1)}", None)
            message: SipRequest | SipResponse = SipResponse(int(match.group(2)), match.group(3) or "", headers)
            method = None
        else:
            method, uri_text = _parse_request_line(start_line, headers)
            uri = parse_uri(uri_text)
            if uri.headers:
                raise RemoteProtocolError("Request-URI must not carry headers")  # RFC 4475 §3.1.2.11
            message = SipRequest(method, uri, headers)
        _check_headers(headers, method)
        length = headers.get("Content-Length")
        if length is not None:
            size = parse_content_length(length)
            if size > len(rest):
                raise RemoteProtocolError(f"Content-Length {size} is more than the {len(rest)} bytes received")
            rest = rest[:size]  # §18.3: octets past Content-Length in a datagram are discarded
    except RemoteProtocolError as error:
        if error.headers is None and context is not None:
            error.headers = context
        raise
    message.body = rest
    return message


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (§18.3), sans-I/O.

    ``feed(data)`` returns complete messages (bytes, ready for :func:`parse_message`) and keep-alives in the
    order they arrived: :data:`PING` for a CRLFCRLF between messages and :data:`PONG` for a lone CRLF
    (RFC 5626 §4.4.1; a CRLF is reported as PONG at once, so a ping split across reads shows as PONG, PING).

    Framing errors cannot be recovered from, since the next message boundary is unknown: a missing,
    negative or conflicting Content-Length (400), or a header block or body over its limit (513). The framer
    then stays :attr:`broken` and every later ``feed`` raises; close the connection. When the error comes
    after messages already complete in the same ``feed``, those are returned first and the error is raised
    by the next call, so check :attr:`broken` after each call.
    """

    def __init__(self, *, max_header_size: int = 16_384, max_body_size: int = 49_152) -> None:
        self._buffer = bytearray()
        self._max_header = max_header_size
        self._max_body = max_body_size
        self._scan_from = 0
        self._pending: int | None = None  # total size of the message at the buffer's head, once known
        self._lone_crlf = False
        self._error: RemoteProtocolError | None = None

    @property
    def broken(self) -> bool:
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise RemoteProtocolError(f"stream is broken: {self._error}", self._error.status_hint) from self._error
        self._buffer += data
        out: list[bytes] = []
        try:
            while self._next(out):
                pass
        except RemoteProtocolError as error:
            self._error = error
            if not out:
                raise
        return out

    def _next(self, out: list[bytes]) -> bool:
        buf = self._buffer
        if self._pending is None and not self._skip_keepalives(out):
            return False
        if self._pending is None:
            end = _HEAD_END.search(buf, self._scan_from)
            if end is None:
                if len(buf) > self._max_header:
                    raise RemoteProtocolError(f"header block over {self._max_header} bytes", status_hint=513)
                self._scan_from = max(0, len(buf) - 3)
                return False
            if end.start() > self._max_header:
                raise RemoteProtocolError(f"header block over {self._max_header} bytes", status_hint=513)
            size = self._content_length(bytes(buf[: end.start()]))
            if size > self._max_body:
                raise RemoteProtocolError(f"body of {size} bytes is over {self._max_body}", status_hint=513)
            self._pending = end.end() + size
        if len(buf) < self._pending:
            return False
        out.append(bytes(buf[: self._pending]))
        del buf[: self._pending]
        self._pending = None
        self._scan_from = 0
        return True

    def _skip_keepalives(self, out: list[bytes]) -> bool:
        """Consume CRLFs at a message boundary; True when the first byte of a message is next."""
        buf = self._buffer
        while buf:
            if buf.startswith(PING):
                del buf[:4]
                out.append(PING)
                self._lone_crlf = False
            elif buf.startswith(PONG):
                if buf[2:] == b"\r":
                    return False  # "\r\n\r" may be a ping still arriving
                del buf[:2]
                # The second half of a ping whose first CRLF was already reported as a pong.
                out.append(PING if self._lone_crlf else PONG)
                self._lone_crlf = not self._lone_crlf and not buf
            elif buf.startswith(b"\n"):  # a bare LF between messages: tolerated, not a keep-alive
                del buf[:1]
            elif buf == b"\r":
                return False
            else:
                self._lone_crlf = False
                return True
        return False

    @staticmethod
    def _content_length(head: bytes) -> int:
        # Only the framing matters here; parse_message validates the rest. Unfold first (§7.3.1).
        text = re.sub(rb"\r?\n[ \t]+", b" ", head).decode("latin-1")
        values = set()
        for line in _LINE_END.split(text)[1:]:
            name, colon, value = line.partition(":")
            if colon and header_key(name.strip(" \t")) == "content-length":
                values.add(parse_content_length(value))
        if not values:
            raise RemoteProtocolError("Content-Length is required on stream transports (§18.3)")
        if len(values) > 1:
            raise RemoteProtocolError("conflicting Content-Length values")  # RFC 4475 §3.3.9
        return values.pop()
