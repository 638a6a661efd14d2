"""The sans-I/O SIP core (RFC 3261): bytes and ``now`` in, messages, events and bytes out.

Message layer (this package's base; no sockets, no clock, no asyncio):

    errors    SipError > ProtocolError > LocalProtocolError / RemoteProtocolError(status_hint)
    syntax    tokens, quoted strings, ;parameters, comma lists (RFC 3261 §25.1)
    uri       SipUri (sip, sips, tel), AbsoluteUri, NameAddress; parse_uri, parse_name_addr
    headers   header names and compact forms; Via, CSeq, ContentType, Challenge, Credentials...
    message   Headers, SipRequest, SipResponse, make_response, make_error_response
    parser    parse_message (one datagram or framed message), StreamFramer (TCP)
"""

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
from sipagent.sip.parser import PING, PONG, StreamFramer, is_keepalive, parse_message
from sipagent.sip.uri import (
    CONTACT_STAR,
    AbsoluteUri,
    NameAddress,
    SipUri,
    Uri,
    parse_any_uri,
    parse_name_addr,
    parse_uri,
)

__all__ = [
    "CONTACT_STAR",
    "PING",
    "PONG",
    "AbsoluteUri",
    "CSeq",
    "Challenge",
    "ContentType",
    "Credentials",
    "Headers",
    "LocalProtocolError",
    "NameAddress",
    "ProtocolError",
    "RAck",
    "RemoteProtocolError",
    "RetryAfter",
    "SipError",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamFramer",
    "Uri",
    "Via",
    "canonical_name",
    "header_key",
    "is_keepalive",
    "make_error_response",
    "make_response",
    "parse_any_uri",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "reason_phrase",
]
