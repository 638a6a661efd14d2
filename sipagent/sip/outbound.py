"""Outbound calls (RFC 3261 §13.2): dialling, provisional and final responses, Digest retries, CANCEL, ACK.

The INVITE client transaction acknowledges 3xx-6xx itself; a 2xx is the core's to acknowledge (§13.2.2.4),
every copy of it: retransmissions of the 2xx we took get the same ACK again, and a 2xx from another fork
(a different To tag) is acknowledged and then ended with a BYE, since we keep one dialog per call.
CANCEL waits for a provisional response (§9.1), so a hangup before any is remembered until one comes.
"""

from __future__ import annotations

from sipagent.sip.auth import DigestClient
from sipagent.sip.calls import Call, CallState, CallTable
from sipagent.sip.client_transaction import ClientTransaction, make_cancel
from sipagent.sip.core import UaCore
from sipagent.sip.dialog import Dialog
from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.events import Address, CallEstablished, OutboundCallProgress
from sipagent.sip.inbound import body_is_sdp
from sipagent.sip.message import Headers, SipRequest, SipResponse
from sipagent.sip.offeranswer import MediaNotAcceptable, accept_answer, make_offer
from sipagent.sip.policy import with_credentials
from sipagent.sip.routing import uri_address
from sipagent.sip.sdp import parse_sdp, serialize_sdp
from sipagent.sip.uri import NameAddress, SipUri, parse_uri

__all__ = ["OutboundCalls"]

_AUTH_HEADERS = ("Authorization", "Proxy-Authorization")


class OutboundCalls:
    def __init__(self, core: UaCore, calls: CallTable) -> None:
        self._core = core
        self._calls = calls

    def dial(
        self,
        target: str,
        rtp_address: str,
        rtp_port: int,
        now: float,
        *,
        from_user: str | None = None,
        display_name: str | None = None,
        credentials: DigestClient | None = None,
        destination: Address | None = None,
    ) -> str:
        core, config = self._core, self._core.config
        try:
            uri = parse_uri(target)
        except RemoteProtocolError as error:
            raise LocalProtocolError(f"cannot dial {target!r}: {error}") from None
        if not 0 < rtp_port <= 65535:
            raise LocalProtocolError(f"RTP port {rtp_port} is out of range")
        first_hop = destination or uri_address(uri, config.transport)
        # The From domain is the target's (what a PBX account expects); a tel: target has none.
        domain = uri.host if uri.scheme != "tel" else first_hop[0]
        local = NameAddress(display_name, SipUri("sip", from_user or config.user, host=domain))
        call_id, tag = core.new_call_id(), core.new_tag()
        session = core.new_session()
        offer = make_offer(config.capabilities, rtp_address, rtp_port, session)
        headers = Headers(
            [
                ("From", str(local.with_tag(tag))),
                ("To", str(NameAddress(None, uri))),
                ("Call-ID", call_id),
                ("CSeq", "1 INVITE"),
                *core.contact_rows(),
                ("Content-Type", "application/sdp"),
            ]
        )
        invite = SipRequest("INVITE", uri, headers, serialize_sdp(offer))
        tx = core.send_request(invite, first_hop, now)
        call = Call(
            call_id=call_id,
            inbound=False,
            state=CallState.CALLING,
            invite=invite,
            invite_tx=tx,
            peer=first_hop,
            transport=config.transport.upper(),
            session=session,
            local_tag=tag,
            local_offer=offer,
            rtp=(rtp_address, rtp_port),
            credentials=credentials,
            destination=first_hop,
        )
        core.owners[tx] = call
        self._calls.add(call)
        return call_id

    def cancel(self, call: Call, now: float) -> None:
        """Hang up before the answer: CANCEL now if a provisional came (§9.1), otherwise once one does."""
        if call.cancelling:
            return
        call.cancelling = True
        if call.provisional:
            self._send_cancel(call, now)

    def _send_cancel(self, call: Call, now: float) -> None:
        cancel = make_cancel(call.invite)
        destination = call.destination or call.peer
        self._core.send_request(cancel, destination, now)
        # §9.1: if no final response comes within 64*T1 of the CANCEL, the INVITE is taken as cancelled.
        call.cancel_deadline = now + 64 * self._core.config.timers.t1

    def on_response(self, call: Call, tx: ClientTransaction, response: SipResponse, now: float) -> None:
        if tx is not call.invite_tx:
            if 200 <= response.status < 300:
                self._on_2xx(call, response, now)  # a 2xx to an INVITE we replaced: still acknowledge it
            return
        status = response.status
        if status < 200:
            if call.state is CallState.CALLING:
                call.provisional = True
                self._core.emit(OutboundCallProgress(call.call_id, status, response.reason))
                if call.cancelling and call.cancel_deadline is None:
                    self._send_cancel(call, now)
            return
        if status < 300:
            self._on_2xx(call, response, now)
            return
        if call.state is not CallState.CALLING:
            return
        if status in (401, 407) and call.credentials is not None and not call.cancelling:
            retry = with_credentials(call.invite, response, call.credentials, call.invite.cseq.seq + 1)
            if retry is not None:
                # §22.2: same Call-ID, From tag and To, CSeq + 1, new branch; the old transaction ACKed the 401.
                call.invite = retry
                call.invite_tx = self._core.send_request(retry, call.destination, now, owner=call)
                call.provisional = False
                return
        self._calls.end(call, "cancel" if call.cancelling else "rejected", status, local=call.cancelling)

    def on_stray_2xx(self, response: SipResponse, now: float) -> bool:
        """A 2xx retransmission after the INVITE transaction ended (Timer M): ACK it again (§13.2.2.4)."""
        call = self._calls.get(response.call_id)
        if call is None or call.inbound or response.from_.tag != call.local_tag:
            return False
        self._on_2xx(call, response, now)
        return True

    def _on_2xx(self, call: Call, response: SipResponse, now: float) -> None:
        dialog = call.dialog
        if dialog is not None and (response.to.tag or "") == dialog.remote_tag:
            if call.ack is not None:
                self._core.send_bytes(call.ack[0], call.ack[1])
            return
        if dialog is not None or call.state is not CallState.CALLING:
            self._end_fork(call, response, now)
            return
        dialog = Dialog.as_uac(call.invite, response)
        dialog.confirm()
        call.dialog = dialog
        if self._core.current_source is not None:
            call.peer = self._core.current_source
        call.cancel_deadline = None
        self._send_ack(call, dialog, response, now)
        if call.cancelling:
            self._calls.send_bye(call, now, "cancel")  # §15: the 2xx won the race with our CANCEL
            return
        try:
            if not response.body or not body_is_sdp(response) or call.local_offer is None:
                raise MediaNotAcceptable("the 2xx carries no SDP answer")
            call.media = accept_answer(call.local_offer, parse_sdp(response.body))
        except RemoteProtocolError:
            # §13.2.1: the 2xx must hold the answer to our offer; without a usable one the session cannot start.
            self._core.stats["bad_answers"] += 1
            self._calls.send_bye(call, now, "error")
            return
        call.local_offer = None
        call.state = CallState.CONFIRMED
        self._core.emit(CallEstablished(call.call_id, call.media))

    def _send_ack(self, call: Call, dialog: Dialog, response: SipResponse, now: float) -> None:
        # §13.2.2.4: CSeq number of the INVITE, method ACK, the INVITE's credentials (§22.1), new branch.
        auth = [(name, value) for name in _AUTH_HEADERS for value in call.invite.headers.get_all(name, split=False)]
        ack = dialog.build_request("ACK", cseq=call.invite.cseq.seq, headers=auth)
        self._core.prepare(ack)
        destination = self._calls.destination(call, ack)
        call.ack = (self._core.send(ack, destination), destination)

    def _end_fork(self, call: Call, response: SipResponse, now: float) -> None:
        """§13.2.2.4: a 2xx from a second fork creates a dialog too; acknowledge it and end it with BYE."""
        fork = Dialog.as_uac(call.invite, response)
        ack = fork.build_request("ACK", cseq=call.invite.cseq.seq)
        self._core.prepare(ack)
        source = self._core.current_source or call.peer
        self._core.send(ack, source)
        bye = fork.build_request("BYE")
        self._core.send_request(bye, source, now)
        self._core.stats["forks_ended"] += 1
