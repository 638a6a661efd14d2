"""Dialog state (RFC 3261 §12): creation on either side, requests within a dialog, and checks on incoming ones.

A dialog is the peer-to-peer relationship an INVITE sets up. Its state is what §12.1 lists: Call-ID, the
two tags, the two CSeq counters, the remote target (the peer's Contact), the route set (the Record-Route of
the request that made it, reversed on the caller's side) and the secure flag. Requests we send in it take
their Request-URI, Route and From/To from that state (§12.2.1.1); requests we receive are checked against
the remote CSeq (§12.2.2), and target refresh requests and their 2xx move the remote target.

The Via is not ours to set here: the user agent adds it when it hands the request to a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.headers import MAX_SEQ
from sipagent.sip.message import Headers, SipMessage, SipRequest, SipResponse
from sipagent.sip.uri import NameAddress, SipUri

__all__ = ["TARGET_REFRESH", "Dialog", "DialogId"]

TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})
"""Methods whose requests (and 2xx responses) replace the remote target (§12.2, RFC 3311 §5.1)."""

# §19.1.1 Table 1: these URI parameters are not allowed in a Request-URI.
_NOT_IN_REQUEST_URI = ("method", "ttl", "maddr", "lr")


@dataclass(frozen=True, slots=True)
class DialogId:
    """§12: Call-ID, local tag and remote tag identify a dialog."""

    call_id: str
    local_tag: str
    remote_tag: str


def _bare(address: NameAddress) -> NameAddress:
    # §12.2.1.1 wants the dialog's URIs in From/To; the header parameters of the original (tag, others)
    # belong to that one message.
    return NameAddress(address.display_name, address.uri)


def _target(message: SipMessage, fallback: SipUri) -> SipUri:
    # §12.1.1/§12.1.2: the remote target is the Contact URI. A peer that sends none (or a non-SIP one)
    # breaks §8.1.1.8; we fall back instead of failing, since symmetric routing still reaches it.
    contact = message.contact
    if contact is not None and isinstance(contact.uri, SipUri) and not contact.is_star:
        return contact.uri
    return fallback


class Dialog:
    """One dialog's state; ``early`` until a 2xx confirms it (§12.1)."""

    __slots__ = (
        "call_id",
        "early",
        "local_seq",
        "local_tag",
        "local_uri",
        "remote_seq",
        "remote_tag",
        "remote_target",
        "remote_uri",
        "route_set",
        "secure",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddress,
        remote_uri: NameAddress,
        remote_target: SipUri,
        route_set: Iterable[NameAddress] = (),
        local_seq: int | None = None,
        remote_seq: int | None = None,
        secure: bool = False,
        early: bool = False,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = _bare(local_uri)
        self.remote_uri = _bare(remote_uri)
        self.remote_target = remote_target
        self.route_set = tuple(route_set)
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.early = early

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} local={self.local_tag} remote={self.remote_tag}>"

    @classmethod
    def as_uas(cls, request: SipRequest, local_tag: str, *, secure: bool = False) -> Dialog:
        """§12.1.1: the dialog our response to ``request`` creates (early for a 1xx)."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=request.to,
            remote_uri=request.from_,
            remote_target=_target(request, _fallback(request.from_, request.uri)),
            route_set=request.record_routes,  # in order: the first entry is the hop nearest to us
            remote_seq=request.cseq.seq,
            secure=secure or request.uri.scheme == "sips",
            early=True,
        )

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """§12.1.2: the dialog a 1xx/2xx with a To tag creates for the request we sent."""
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=request.from_,
            remote_uri=request.to,
            remote_target=_target(response, request.uri),
            # Reversed: Record-Route lists the proxies from the callee's side.
            route_set=reversed(response.record_routes),
            local_seq=request.cseq.seq,
            secure=request.uri.scheme == "sips",
            early=response.status < 200,
        )

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    def matches(self, request: SipRequest) -> bool:
        """Whether an incoming request belongs here: its To tag is ours and its From tag the peer's (§12.2.2)."""
        return (
            request.call_id == self.call_id
            and request.to.tag == self.local_tag
            and (request.from_.tag or "") == self.remote_tag
        )

    def check_remote_seq(self, request: SipRequest) -> bool:
        """§12.2.2: False for a request out of order (CSeq below the last one; answer 500), else record it.

        ACK and CANCEL reuse the CSeq of the request they refer to, so they are not counted.
        """
        if request.method in ("ACK", "CANCEL"):
            return True
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def refresh_target(self, message: SipMessage) -> None:
        """A target refresh request, or the 2xx to ours, replaces the remote target (§12.2.1.2, §12.2.2)."""
        self.remote_target = _target(message, self.remote_target)

    def confirm(self, response: SipResponse | None = None) -> None:
        """The 2xx arrived (or was sent): the dialog is confirmed; on the UAC side the 2xx sets the target."""
        if response is not None and self.early:
            self.remote_target = _target(response, self.remote_target)
            # §12.1.2: the route set of a confirmed dialog comes from the 2xx, not an earlier 1xx.
            self.route_set = tuple(reversed(response.record_routes))
        self.early = False

    def next_cseq(self) -> int:
        # §12.2.1.1: one more than the last; an empty counter may start anywhere (we start at 1).
        seq = 1 if self.local_seq is None else self.local_seq + 1
        if seq > MAX_SEQ:
            raise LocalProtocolError("the dialog's local CSeq ran out of 32-bit numbers")
        self.local_seq = seq
        return seq

    def request_target(self) -> tuple[SipUri, tuple[NameAddress, ...]]:
        """The Request-URI and Route values of a request in this dialog (§12.2.1.1)."""
        routes = self.route_set
        first = routes[0].uri if routes else None
        if isinstance(first, SipUri) and not first.has_param("lr"):
            # Strict router (RFC 2543): it gets the Request-URI and the remote target goes last in Route.
            uri = first
            for name in _NOT_IN_REQUEST_URI:
                uri = uri.without_param(name)
            return SipUri(uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params), (
                *routes[1:],
                NameAddress(None, self.remote_target),
            )
        return self.remote_target, routes

    def build_request(
        self,
        method: str,
        *,
        cseq: int | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> SipRequest:
        """A request in this dialog without a Via; ``cseq`` is for ACK and CANCEL, which reuse the INVITE's."""
        uri, routes = self.request_target()
        out = Headers()
        for route in routes:
            out.add("Route", str(route))
        out.add("Max-Forwards", "70")
        out.add("From", str(self.local_uri.with_tag(self.local_tag)))
        remote = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        out.add("To", str(remote))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{self.next_cseq() if cseq is None else cseq} {method}")
        for name, value in headers:
            out.add(name, value)
        return SipRequest(method, uri, out, body)


def _fallback(address: NameAddress, uri: SipUri) -> SipUri:
    return address.uri if isinstance(address.uri, SipUri) and address.uri.scheme != "tel" else uri
