"""What the user-agent core tells its owner, and the datagrams it hands to the transport.

Every value is a frozen slotted dataclass; the endpoint loops over :meth:`UserAgent.next_event` and ``match``es
on the type. A call announced by :class:`IncomingCall` or started by ``dial()`` ends with exactly one
:class:`CallEnded`, whatever happens in between, so the endpoint can free its RTP port there and only there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from sipagent.sip.message import SipRequest, SipResponse
from sipagent.sip.offeranswer import NegotiatedMedia
from sipagent.sip.sdp import SessionDescription
from sipagent.sip.uri import NameAddress, SipUri

__all__ = [
    "Address",
    "CallEndReason",
    "CallEnded",
    "CallEstablished",
    "DtmfReceived",
    "IncomingCall",
    "MediaUpdated",
    "OutboundCallProgress",
    "Outgoing",
    "RequestAnswered",
    "RequestFailed",
    "TransferProgress",
    "UaEvent",
]

Address: TypeAlias = tuple[str, int]
"""A transport address: an IP literal (IPv6 without brackets) or, for next hops we could not resolve, a name."""

CallEndReason: TypeAlias = Literal["bye", "cancel", "timeout", "rejected", "error"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the transport: send ``data`` to ``destination`` over ``transport`` (``"UDP"``, ``"TCP"``).

    For a reliable transport, a response goes back on the connection its request came from, which the
    endpoint finds by ``destination`` (the peer's address as the connection reported it).
    """

    data: bytes
    destination: Address
    transport: str


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """An INVITE passed every check; answer with ``ring``/``accept``/``reject``.

    ``offer`` is ``None`` for a delayed offer (RFC 3261 §13.2.1: we offer in the 200 and the answer comes
    in the ACK). ``invite`` is the request itself, for headers the core does not interpret.
    """

    call_id: str
    offer: SessionDescription | None
    from_: NameAddress
    to: NameAddress
    source: Address
    request_uri: SipUri
    invite: SipRequest = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class OutboundCallProgress:
    """A provisional response (100, 180, 183...) to an INVITE we sent."""

    call_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallEstablished:
    """The session is up: on the ACK for an inbound call, on the 2xx for an outbound one."""

    call_id: str
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class MediaUpdated:
    """A re-INVITE or UPDATE changed the session (hold, resume, new address); it was answered already."""

    call_id: str
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over. ``local`` is true when we ended it (hangup, reject, cancel, no ACK).

    ``status`` is the final response that ended it when there was one: the rejection status, 487 for a
    cancelled INVITE, the response to our BYE (408 when none came); ``None`` for a BYE from the peer.
    """

    call_id: str
    reason: CallEndReason
    status: int | None = None
    local: bool = False


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A key press sent in SIP INFO (application/dtmf-relay or application/dtmf); RFC 4733 events go by RTP."""

    call_id: str
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """How a transfer we asked for (REFER, RFC 3515) is going.

    ``status`` is the status line of a NOTIFY's message/sipfrag body, or the REFER's own response when it
    was refused or timed out (then ``final``). ``final`` means nothing more will be reported.
    """

    call_id: str
    status: int
    reason: str
    final: bool


@dataclass(frozen=True, slots=True)
class RequestAnswered:
    """A response to a request sent with ``send_request`` (every response, provisional ones included)."""

    request_id: str
    status: int
    response: SipResponse = field(compare=False)


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """A request sent with ``send_request`` got no final response: ``"timeout"`` (Timer F/B) or ``"transport"``."""

    request_id: str
    reason: Literal["timeout", "transport"]


UaEvent: TypeAlias = (
    IncomingCall
    | OutboundCallProgress
    | CallEstablished
    | MediaUpdated
    | CallEnded
    | DtmfReceived
    | TransferProgress
    | RequestAnswered
    | RequestFailed
)
