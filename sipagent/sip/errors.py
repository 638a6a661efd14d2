"""Errors of the SIP core.

    SipError
    └── ProtocolError            abstract: something broke the rules of RFC 3261
        ├── LocalProtocolError   we misused the API or tried to build an invalid message
        └── RemoteProtocolError  the peer sent something we cannot accept; carries ``status_hint``

``status_hint`` is the status code a UAS can answer with (RFC 3261 §21): 400 malformed, 414 Request-URI too
long, 416 unsupported URI scheme, 420 bad extension, 481 no such dialog/transaction, 488 not acceptable,
505 version not supported, 513 message too large. Responses are never answered (§8.1.3.1: a malformed
response is discarded), so the hint only matters for requests.

When the parser rejects a request after it could read the header block, the error keeps those headers in
``headers`` so that :func:`sipagent.sip.message.make_error_response` can still answer (§8.2: the response
needs the request's Via, From, To, Call-ID and CSeq).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipagent.sip.message import Headers


class SipError(Exception):
    """Base of every error the SIP core raises on purpose."""


class ProtocolError(SipError):
    """Abstract base of protocol violations; raise one of its two subclasses instead."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """Our own code asked for something RFC 3261 forbids (a bug on this side, never the peer's)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or values we cannot accept.

    ``status_hint`` is the response code that fits; ``headers`` is the request's header block when the
    parser got that far (``None`` for responses and for messages whose header block was unreadable).
    """

    def __init__(self, message: str, status_hint: int = 400, *, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.headers = headers


__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError", "SipError"]
