"""Requests inside a dialog (RFC 3261 §12.2, §14, §15; RFC 3311 UPDATE; RFC 3515 REFER; RFC 6086 INFO).

Received: re-INVITE and UPDATE are answered at once from the call's RTP address and port (hold and resume
fall out of RFC 3264 §6.1: sendonly is answered recvonly, inactive inactive); an INVITE without an offer
gets ours in the 200 and the answer comes in the ACK. Glare: an offer while ours awaits its answer is 491
(§14.2, RFC 3311 §5.2), an offer while the peer's previous one is unanswered is 500 with Retry-After.
BYE ends the call, INFO may carry DTMF, NOTIFY reports a transfer we asked for.

Sent: BYE (hangup) and REFER (transfer), each in its own client transaction, retried once per challenge
when the call has credentials (§22.2). A 481 or 408 to anything but BYE ends the dialog (§12.2.1.2).
"""

from __future__ import annotations

from sipagent.sip.bodies import parse_dtmf, parse_sipfrag
from sipagent.sip.calls import Call, CallState, CallTable
from sipagent.sip.client_transaction import ClientTransaction
from sipagent.sip.core import UaCore
from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.events import CallEstablished, DtmfReceived, MediaUpdated, TransferProgress
from sipagent.sip.inbound import body_is_sdp, warning_row
from sipagent.sip.message import SipRequest, SipResponse
from sipagent.sip.offeranswer import MediaNotAcceptable, NegotiatedMedia, accept_answer, answer_offer, make_offer
from sipagent.sip.policy import with_credentials
from sipagent.sip.sdp import parse_sdp, serialize_sdp
from sipagent.sip.server_transaction import ServerTransaction
from sipagent.sip.uri import NameAddress, parse_uri

__all__ = ["DialogRequests"]


def _token(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip(" \t").lower()


class DialogRequests:
    def __init__(self, core: UaCore, calls: CallTable) -> None:
        self._core = core
        self._calls = calls

    # --- received ---------------------------------------------------------------------------------------

    def on_request(self, call: Call, tx: ServerTransaction, now: float) -> None:
        request, core = tx.request, self._core
        if call.dialog is None or not call.dialog.check_remote_seq(request):
            core.respond(tx, 500, now, reason="Out Of Order CSeq")  # §12.2.2
            return
        method = request.method
        if method in ("INVITE", "UPDATE"):
            self._on_offer(call, tx, now)
        elif method == "BYE":
            core.respond(tx, 200, now)
            if call.state is CallState.INCOMING and isinstance(call.invite_tx, ServerTransaction):
                core.respond(call.invite_tx, 487, now, to_tag=call.local_tag)  # §15.1.2, early dialog
            self._calls.end(call, "bye")
        elif method == "INFO":
            self._on_info(call, tx, now)
        elif method == "NOTIFY":
            self._on_notify(call, tx, now)
        else:  # REFER: we transfer others but are not transferred ourselves
            core.respond(tx, 603, now)

    def _conflict(self, call: Call, request: SipRequest) -> int | None:
        if call.state is CallState.INCOMING:
            return 500  # §14.2, RFC 3311 §5.2: the INVITE's offer is not answered yet
        if call.pending is not None and (call.pending.offer is not None or request.method == "INVITE"):
            return 491  # our offer (or our 2xx) is still waiting for the ACK
        if call.state is not CallState.CONFIRMED:
            return 481 if call.state is CallState.ENDING else 491
        return None

    def _on_offer(self, call: Call, tx: ServerTransaction, now: float) -> None:
        request, core = tx.request, self._core
        if request.body and not body_is_sdp(request):
            core.respond(tx, 415, now, headers=[("Accept", "application/sdp")])
            return
        if call.dialog is None:  # pragma: no cover - only calls with a dialog are found for a request
            raise LocalProtocolError("in-dialog request for a call without a dialog")
        if not request.body and request.method == "UPDATE":
            call.dialog.refresh_target(request)  # an UPDATE without SDP only refreshes the target
            core.respond(tx, 200, now, headers=core.contact_rows())
            return
        status = self._conflict(call, request)
        if status is not None or call.rtp is None:
            # §14.2: 500 carries Retry-After with a random value between 0 and 10 seconds.
            status = status or 491
            rows = [("Retry-After", str(core.random_below(11)))] if status == 500 else []
            core.respond(tx, status, now, headers=rows)
            return
        media: NegotiatedMedia | None = None
        offer = None
        if request.body:
            try:
                result = answer_offer(
                    parse_sdp(request.body),
                    core.config.capabilities,
                    *call.rtp,
                    call.session,
                    direction=call.local_direction,
                )
            except MediaNotAcceptable as error:
                core.respond(tx, 488, now, headers=[warning_row(core, error)])  # §14.2: the session stays as is
                return
            body, media = serialize_sdp(result.answer), result.media
        else:
            offer = make_offer(core.config.capabilities, *call.rtp, call.session, direction=call.local_direction)
            body = serialize_sdp(offer)
        call.dialog.refresh_target(request)
        response = core.respond(tx, 200, now, headers=core.contact_rows(), body=body)
        if request.method == "INVITE":
            self._calls.start_2xx(call, tx, response, now, offer)
        if media is not None:
            call.media = media
            core.emit(MediaUpdated(call.call_id, media))

    def on_ack(self, call: Call, ack: SipRequest, now: float) -> None:
        """The ACK for our 2xx (§13.3.1.4): stop retransmitting; it may carry the answer to our offer."""
        pending = call.pending
        if pending is None or ack.cseq.seq != pending.cseq:
            return  # a copy of an ACK already taken, or an ACK for a non-2xx (the transaction's)
        call.pending = None
        if pending.offer is not None:
            try:
                if not ack.body or not body_is_sdp(ack):
                    raise MediaNotAcceptable("the ACK carries no SDP answer to the offer in our 2xx")
                call.media = accept_answer(pending.offer, parse_sdp(ack.body))
            except RemoteProtocolError:
                # §13.3.1.4 / RFC 6337 §3.1: a missing or unusable answer leaves no session: end it.
                self._core.stats["bad_answers"] += 1
                self._calls.send_bye(call, now, "error")
                return
            call.local_offer = None
        if call.state is CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            if call.hangup_after_ack:
                self._calls.send_bye(call, now)  # §15: the callee's BYE waits for the ACK
            elif call.media is not None:
                self._core.emit(CallEstablished(call.call_id, call.media))
        elif pending.offer is not None and call.media is not None:
            self._core.emit(MediaUpdated(call.call_id, call.media))

    def _on_info(self, call: Call, tx: ServerTransaction, now: float) -> None:
        request = tx.request
        if "Info-Package" in request.headers:
            # RFC 6086 §4.2.2: we announced no Recv-Info, so no package is acceptable.
            self._core.respond(tx, 469, now)
            return
        self._core.respond(tx, 200, now)  # RFC 6086 §2: legacy INFO usages get 200 whatever they carry
        content_type = request.content_type
        key = parse_dtmf(content_type.mime_type, request.body) if content_type is not None else None
        if key is not None:
            self._core.emit(DtmfReceived(call.call_id, key.digit, key.duration_ms))

    def _on_notify(self, call: Call, tx: ServerTransaction, now: float) -> None:
        request = tx.request
        if _token(request.headers.get("Event")) != "refer":
            self._core.respond(tx, 489, now)  # RFC 6665 §4.1.3: an event package we did not subscribe to
            return
        if not call.refer_sent:
            self._core.respond(tx, 481, now)  # no REFER of ours, so no implicit subscription (RFC 3515 §2.4.4)
            return
        self._core.respond(tx, 200, now)
        terminated = _token(request.headers.get("Subscription-State")) == "terminated"
        content_type = request.content_type
        fragment = None
        if content_type is not None and content_type.mime_type == "message/sipfrag":
            fragment = parse_sipfrag(request.body)
        if terminated:
            call.refer_sent = False
        if fragment is not None:
            final = fragment.status >= 200 or terminated
            self._core.emit(TransferProgress(call.call_id, fragment.status, fragment.reason, final))

    # --- sent -------------------------------------------------------------------------------------------

    def hangup(self, call: Call, now: float) -> bool:
        if call.state is CallState.ANSWERED:
            call.hangup_after_ack = True  # §15: no BYE before the ACK (or its timeout)
            return True
        if call.state is CallState.CONFIRMED:
            self._calls.send_bye(call, now)
            return True
        return False

    def transfer(self, call: Call, target: str, now: float) -> bool:
        if call.state is not CallState.CONFIRMED or call.dialog is None:
            return False
        try:
            uri = parse_uri(target)
        except RemoteProtocolError as error:
            raise LocalProtocolError(f"cannot transfer to {target!r}: {error}") from None
        headers = [
            ("Refer-To", str(NameAddress(None, uri))),
            ("Referred-By", str(call.dialog.local_uri)),
            ("Contact", self._core.config.contact),
        ]
        self._calls.send_in_dialog(call, "REFER", now, headers=headers)
        call.refer_sent = True
        return True

    def on_response(self, call: Call, tx: ClientTransaction, response: SipResponse, now: float) -> None:
        status = response.status
        if status < 200:
            return
        alive = call.state is not CallState.ENDED
        if status in (401, 407) and alive and call.credentials is not None and call.dialog is not None:
            retry = with_credentials(tx.request, response, call.credentials, call.dialog.next_cseq())
            if retry is not None:
                self._calls.send_built(call, retry, now)
                return
        self._finish(call, tx, status, response.reason, now)

    def on_failure(self, call: Call, tx: ClientTransaction, now: float) -> None:
        self._finish(call, tx, 408, "Request Timeout", now)

    def _finish(self, call: Call, tx: ClientTransaction, status: int, reason: str, now: float) -> None:
        if tx.method == "BYE":
            # §15.1.1: whatever the answer (481, 408, none at all), the session is over.
            self._calls.end(call, call.ending_reason, status, local=True)
            return
        if tx.method == "REFER":
            if status >= 300:
                call.refer_sent = False
            self._core.emit(TransferProgress(call.call_id, status, reason, status >= 300))
        if status in (408, 481) and call.state is CallState.CONFIRMED:
            # §12.2.1.2: the peer has lost the dialog or cannot be reached.
            self._calls.end(call, "timeout" if status == 408 else "error", status)
