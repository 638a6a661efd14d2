"""Inbound calls (RFC 3261 §13.3, §9.2): admitting an INVITE, ringing, answering, rejecting, CANCEL.

Checks on a new INVITE, in order, after the user agent's checks for every request (method, Require); the first
that fails answers it:

1. Source outside the allowed networks: 401 challenge when a DigestServer is set, else 403 (toll fraud).
2. A second INVITE with a Call-ID already in use: 482 (§8.2.2.2 merged requests).
3. Call limit reached: 503 with Retry-After (§21.5.4).
4. A body that is not SDP: 415 with Accept (§8.2.3); an Accept that rules out SDP, the only body we answer
   with: 406 (§21.4.7, RFC 4475 §3.3.15); an SDP offer we cannot answer: 488 with Warning (§13.3.1.4,
   §20.43), checked with answer_offer before the endpoint has picked an RTP port.

What passes becomes an :class:`IncomingCall`; the endpoint then calls ``ring``/``accept``/``reject``.
"""

from __future__ import annotations

from sipagent.sip.calls import Call, CallState, CallTable
from sipagent.sip.core import UaCore
from sipagent.sip.dialog import Dialog
from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.events import IncomingCall
from sipagent.sip.message import SipMessage
from sipagent.sip.offeranswer import LocalSession, MediaNotAcceptable, NoCommonCodec, answer_offer, make_offer
from sipagent.sip.policy import authenticate, source_allowed
from sipagent.sip.sdp import parse_sdp, serialize_sdp
from sipagent.sip.server_transaction import ServerTransaction

__all__ = ["InboundCalls", "accepts_sdp", "body_is_sdp", "warning_row"]

_DISCARD_PORT = 9  # RFC 8866 §5.14 uses 9 (discard) for "no port yet"; only used to test an offer


def warning_row(core: UaCore, error: MediaNotAcceptable) -> tuple[str, str]:
    # §20.43: 305 Incompatible media format, 304 Media type not available.
    code, text = (
        (305, "Incompatible media format") if isinstance(error, NoCommonCodec) else (304, "Media type not available")
    )
    return "Warning", f'{code} {core.config.sent_by} "{text}"'


def accepts_sdp(message: SipMessage) -> bool:
    """§20.1: without Accept the peer takes application/sdp; with it, one of its media ranges must cover SDP
    (an empty Accept covers nothing)."""
    if "Accept" not in message.headers:
        return True
    ranges = {value.split(";")[0].strip().lower() for value in message.headers.get_all("Accept")}
    return bool(ranges & {"application/sdp", "application/*", "*/*"})


def body_is_sdp(message: SipMessage) -> bool:
    """Whether a non-empty body is SDP; anything else gets 415 with Accept (§8.2.3)."""
    content_type = message.content_type
    return content_type is not None and content_type.mime_type == "application/sdp"


class InboundCalls:
    def __init__(self, core: UaCore, calls: CallTable) -> None:
        self._core = core
        self._calls = calls

    def on_invite(self, tx: ServerTransaction, now: float) -> None:
        core, config, request = self._core, self._core.config, tx.request
        source = core.source_of(tx)
        if not source_allowed(config, source[0]):
            if config.digest_server is None:
                core.respond(tx, 403, now)
                core.stats["forbidden"] += 1
                return
            challenge = authenticate(config.digest_server, request, now)
            if challenge is not None:
                core.respond(tx, 401, now, headers=challenge)
                core.stats["challenged"] += 1
                return
        if request.call_id in self._calls:
            core.respond(tx, 482, now)  # §8.2.2.2: a merged request, or a Call-ID reused for a new call
            return
        if len(self._calls) >= config.max_calls:
            core.respond(tx, 503, now, headers=[("Retry-After", str(config.retry_after))])
            core.stats["busy"] += 1
            return
        if request.body and not body_is_sdp(request):
            core.respond(tx, 415, now, headers=[("Accept", "application/sdp")])
            return
        if not accepts_sdp(request):
            core.respond(tx, 406, now, headers=[("Warning", f'399 {config.sent_by} "we answer with application/sdp"')])
            return
        offer = None
        if request.body:
            offer = parse_sdp(request.body)
            try:
                answer_offer(
                    offer,
                    config.capabilities,
                    config.public_address or config.local_address,
                    _DISCARD_PORT,
                    LocalSession(0),
                )
            except MediaNotAcceptable as error:
                core.respond(tx, 488, now, headers=[warning_row(core, error)])
                core.stats["not_acceptable"] += 1
                return
        local_tag = core.new_tag()
        call = Call(
            call_id=request.call_id,
            inbound=True,
            state=CallState.INCOMING,
            invite=request,
            invite_tx=tx,
            peer=source,
            transport=core.transport_of(tx),
            session=core.new_session(),
            local_tag=local_tag,
            dialog=Dialog.as_uas(request, local_tag),
            remote_offer=offer,
            credentials=config.credentials,
        )
        self._calls.add(call)
        core.emit(IncomingCall(call.call_id, offer, request.from_, request.to, source, request.uri, request))

    def _record_routes(self, call: Call) -> list[tuple[str, str]]:
        # §12.1.1: a response that creates a dialog copies the request's Record-Route, in order.
        return [("Record-Route", value) for value in call.invite.headers.get_all("Record-Route", split=False)]

    def ring(self, call: Call, now: float) -> bool:
        if call.state is not CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return False
        headers = [("Contact", self._core.config.contact), *self._record_routes(call)]
        self._core.respond(call.invite_tx, 180, now, to_tag=call.local_tag, headers=headers)
        return True

    def accept(self, call: Call, rtp_address: str, rtp_port: int, now: float) -> bool:
        if call.state is not CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return False
        if not 0 < rtp_port <= 65535:
            raise LocalProtocolError(f"RTP port {rtp_port} is out of range")
        core, caps = self._core, self._core.config.capabilities
        tx = call.invite_tx
        call.rtp = (rtp_address, rtp_port)
        offer_in_2xx = None
        if call.remote_offer is not None:
            try:
                result = answer_offer(call.remote_offer, caps, rtp_address, rtp_port, call.session)
            except MediaNotAcceptable as error:
                # Only reachable when the RTP address family differs from the one the offer was checked with.
                core.respond(tx, 488, now, to_tag=call.local_tag, headers=[warning_row(core, error)])
                self._calls.end(call, "error", 488, local=True)
                return False
            body = serialize_sdp(result.answer)
            call.media = result.media
        else:
            offer_in_2xx = make_offer(caps, rtp_address, rtp_port, call.session)
            call.local_offer = offer_in_2xx
            body = serialize_sdp(offer_in_2xx)
        headers = [*core.contact_rows(), *self._record_routes(call)]
        response = core.respond(tx, 200, now, to_tag=call.local_tag, headers=headers, body=body)
        call.state = CallState.ANSWERED
        if call.dialog is not None:
            call.dialog.confirm()
        self._calls.start_2xx(call, tx, response, now, offer_in_2xx)
        return True

    def reject(self, call: Call, status: int, now: float) -> bool:
        if not 300 <= status <= 699:
            raise LocalProtocolError(f"a rejection needs a 3xx-6xx status, not {status}")
        if call.state is not CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return False
        self._core.respond(call.invite_tx, status, now, to_tag=call.local_tag)
        self._calls.end(call, "rejected", status, local=True)
        return True

    def on_cancel(self, tx: ServerTransaction, now: float) -> None:
        """§9.2: 200 for the CANCEL if it matches an INVITE; 487 for that INVITE if still unanswered."""
        invite_tx = self._core.table.match_cancel(tx.request)
        if invite_tx is None:
            self._core.respond(tx, 481, now)
            return
        call = self._calls.by_invite_tx(invite_tx)
        # §9.2: the CANCEL's response carries the To tag of the INVITE's responses.
        tag = call.local_tag if call is not None else invite_tx.to_tag
        self._core.respond(tx, 200, now, to_tag=tag)
        if call is not None and call.state is CallState.INCOMING:
            self._core.respond(invite_tx, 487, now, to_tag=call.local_tag)
            self._calls.end(call, "cancel", 487)
