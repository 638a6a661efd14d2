"""Client transactions (RFC 3261 §17.1, RFC 6026 §7.2, §8.4): the two machines, the ACK and CANCEL builders.

The INVITE client acknowledges a 300-699 final response itself (§17.1.1.3) and re-sends that ACK for every
retransmission of the response while Completed. A 2xx moves it to RFC 6026's Accepted state for Timer M,
passing every 2xx up (retransmissions and other forks alike): the UA core builds their ACKs (§13.2.2.4).

The non-INVITE client passes at most one final response up: once Completed it absorbs the rest (§17.1.2.2).
"""

from __future__ import annotations

from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.message import Headers, SipMessage, SipRequest, SipResponse
from sipagent.sip.timers import Timer, TimerConfig
from sipagent.sip.transaction import (
    ClientKey,
    ResponseReceived,
    Stimulus,
    Transaction,
    TransactionAction,
    TransactionInput,
    TransactionState,
    Transition,
    TransitionTable,
    absorb_rows,
    client_key,
    is_rfc3261_branch,
    status_input,
    transition_rows,
)

__all__ = [
    "INVITE_CLIENT_TABLE",
    "NON_INVITE_CLIENT_TABLE",
    "ClientTransaction",
    "InviteClientTransaction",
    "NonInviteClientTransaction",
    "make_ack",
    "make_cancel",
]

_S = TransactionState
_I = TransactionInput
_A = TransactionAction
_RESPONSES = (_I.PROVISIONAL, _I.SUCCESS, _I.FAILURE)


# Figure 5 of RFC 6026 (which replaces Figure 5 of RFC 3261).
INVITE_CLIENT_TABLE: TransitionTable = {
    (_S.IDLE, _I.START): Transition(_S.CALLING, (_A.SEND_REQUEST,), arm=(Timer.A, Timer.B)),
    (_S.CALLING, Timer.A): Transition(_S.CALLING, (_A.SEND_REQUEST,), arm=(Timer.A,)),
    (_S.CALLING, Timer.B): Transition(_S.TERMINATED, (_A.REPORT_TIMEOUT,)),
    # §17.1.1.2: a provisional response ends retransmission, and Timer B with it (the TU has Timer C).
    **transition_rows((_S.CALLING, _S.PROCEEDING), (_I.PROVISIONAL,), Transition(
        _S.PROCEEDING, (_A.PASS_RESPONSE,), stop=(Timer.A, Timer.B))),
    **transition_rows((_S.CALLING, _S.PROCEEDING), (_I.SUCCESS,), Transition(
        _S.ACCEPTED, (_A.PASS_RESPONSE,), stop=(Timer.A, Timer.B), arm=(Timer.M,))),
    **transition_rows((_S.CALLING, _S.PROCEEDING), (_I.FAILURE,), Transition(
        _S.COMPLETED, (_A.SEND_ACK, _A.PASS_RESPONSE), stop=(Timer.A, Timer.B), arm=(Timer.D,))),
    **transition_rows((_S.CALLING, _S.PROCEEDING, _S.COMPLETED), (_I.TRANSPORT_ERROR,), Transition(
        _S.TERMINATED, (_A.REPORT_TRANSPORT_ERROR,))),
    (_S.COMPLETED, _I.FAILURE): Transition(_S.COMPLETED, (_A.SEND_ACK,)),
    **absorb_rows(_S.COMPLETED, (_I.PROVISIONAL, _I.SUCCESS)),
    (_S.COMPLETED, Timer.D): Transition(_S.TERMINATED),
    (_S.ACCEPTED, _I.SUCCESS): Transition(_S.ACCEPTED, (_A.PASS_RESPONSE,)),
    # Nothing is sent from Accepted, so a late transport error concerns an INVITE already answered.
    **absorb_rows(_S.ACCEPTED, (_I.PROVISIONAL, _I.FAILURE, _I.TRANSPORT_ERROR)),
    (_S.ACCEPTED, Timer.M): Transition(_S.TERMINATED),
    **absorb_rows(_S.TERMINATED, (*_RESPONSES, _I.TRANSPORT_ERROR)),
}  # fmt: skip

# Figure 6 of RFC 3261.
NON_INVITE_CLIENT_TABLE: TransitionTable = {
    (_S.IDLE, _I.START): Transition(_S.TRYING, (_A.SEND_REQUEST,), arm=(Timer.E, Timer.F)),
    # Timer E keeps its doubling in Trying and is T2 in Proceeding (TimerConfig.backoff).
    **{(s, Timer.E): Transition(s, (_A.SEND_REQUEST,), arm=(Timer.E,)) for s in (_S.TRYING, _S.PROCEEDING)},
    **transition_rows((_S.TRYING, _S.PROCEEDING), (Timer.F,), Transition(_S.TERMINATED, (_A.REPORT_TIMEOUT,))),
    **transition_rows((_S.TRYING, _S.PROCEEDING), (_I.PROVISIONAL,), Transition(_S.PROCEEDING, (_A.PASS_RESPONSE,))),
    **transition_rows((_S.TRYING, _S.PROCEEDING), (_I.SUCCESS, _I.FAILURE), Transition(
        _S.COMPLETED, (_A.PASS_RESPONSE,), stop=(Timer.E, Timer.F), arm=(Timer.K,))),
    **transition_rows((_S.TRYING, _S.PROCEEDING), (_I.TRANSPORT_ERROR,), Transition(
        _S.TERMINATED, (_A.REPORT_TRANSPORT_ERROR,))),
    # §17.1.2.2: Completed exists to buffer response retransmissions; the TU already has its answer.
    **absorb_rows(_S.COMPLETED, (*_RESPONSES, _I.TRANSPORT_ERROR)),
    (_S.COMPLETED, Timer.K): Transition(_S.TERMINATED),
    **absorb_rows(_S.TERMINATED, (*_RESPONSES, _I.TRANSPORT_ERROR)),
}  # fmt: skip


class ClientTransaction(Transaction):
    """A client transaction: ``start(now)`` sends the request; feed the responses that match :attr:`key`."""

    def __init__(self, request: SipRequest, *, reliable: bool, config: TimerConfig | None = None) -> None:
        super().__init__(request, reliable=reliable, config=config)
        key = client_key(request)
        # §8.1.1.7: our own branches always carry the cookie, which makes §17.1.3 matching by key sound.
        if key is None or not is_rfc3261_branch(key.branch):
            raise LocalProtocolError("the request's top Via needs a branch starting with z9hG4bK (§8.1.1.7)")
        if key.method != request.method:
            raise LocalProtocolError(f"CSeq method {key.method} differs from the request method {request.method}")
        self.key: ClientKey = key
        self._request_bytes = request.serialize()  # every retransmission is the same bytes

    @property
    def branch(self) -> str:
        return self.key.branch

    def receive_response(self, response: SipResponse, now: float) -> None:
        if client_key(response) != self.key:
            raise LocalProtocolError("response does not match this client transaction (§17.1.3)")
        self._feed(status_input(response.status), now, response)

    def _act(self, action: TransactionAction, stimulus: Stimulus, message: SipMessage | None, reason: str) -> None:
        if action is _A.SEND_REQUEST:
            self._outgoing.append(self._request_bytes)
        elif action is _A.PASS_RESPONSE and isinstance(message, SipResponse):
            self._events.append(ResponseReceived(message))
        else:
            super()._act(action, stimulus, message, reason)


class InviteClientTransaction(ClientTransaction):
    TABLE = INVITE_CLIENT_TABLE

    def __init__(self, request: SipRequest, *, reliable: bool, config: TimerConfig | None = None) -> None:
        if request.method != "INVITE":
            raise LocalProtocolError(f"an INVITE client transaction cannot carry {request.method}")
        super().__init__(request, reliable=reliable, config=config)
        self.ack: SipRequest | None = None
        """The ACK sent for the last non-2xx final response."""

    def _act(self, action: TransactionAction, stimulus: Stimulus, message: SipMessage | None, reason: str) -> None:
        if action is _A.SEND_ACK and isinstance(message, SipResponse):
            # Built from the response at hand: a retransmission gives the same bytes.
            self.ack = make_ack(self.request, message)
            self._send(self.ack)
        else:
            super()._act(action, stimulus, message, reason)


class NonInviteClientTransaction(ClientTransaction):
    TABLE = NON_INVITE_CLIENT_TABLE

    def __init__(self, request: SipRequest, *, reliable: bool, config: TimerConfig | None = None) -> None:
        # §17: INVITE has its own machine, and ACK is never a transaction of its own (§17.1.1.3, §13.2.2.4).
        if request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"a non-INVITE client transaction cannot carry {request.method}")
        super().__init__(request, reliable=reliable, config=config)


def _top_via(invite: SipRequest) -> str:
    vias = invite.headers.get_all("Via")
    if not vias:
        raise LocalProtocolError("the INVITE has no Via to copy")
    return vias[0]


def _copy(source: Headers, target: Headers, name: str, default: str | None = None) -> None:
    rows = source.get_all(name, split=False)
    if not rows and default is not None:
        rows = [default]
    for row in rows:
        target.add(name, row)


def make_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a 300-699 response (§17.1.1.3); the ACK for a 2xx is the dialog's (§13.2.2.4)."""
    if invite.method != "INVITE":
        raise LocalProtocolError(f"only an INVITE is acknowledged, not {invite.method}")
    if response.status < 300:
        raise LocalProtocolError(f"the transaction acknowledges 300-699 only, not {response.status}")
    headers = Headers()
    # A single Via equal to the INVITE's top one: the ACK is part of the INVITE transaction.
    headers.add("Via", _top_via(invite))
    _copy(invite.headers, headers, "Max-Forwards", "70")
    _copy(invite.headers, headers, "Route")
    _copy(invite.headers, headers, "From")
    _copy(response.headers, headers, "To")  # with the tag the response added
    _copy(invite.headers, headers, "Call-ID")
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    return SipRequest("ACK", invite.uri, headers)


def make_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL of a pending INVITE (§9.1); send it in its own non-INVITE client transaction."""
    if invite.method != "INVITE":
        raise LocalProtocolError(f"§9.1: CANCEL is for INVITE only, not {invite.method}")
    headers = Headers()
    # Same top Via (hence the same branch), so that every hop matches it to the INVITE (§9.2).
    headers.add("Via", _top_via(invite))
    _copy(invite.headers, headers, "Max-Forwards", "70")
    _copy(invite.headers, headers, "Route")
    _copy(invite.headers, headers, "From")
    _copy(invite.headers, headers, "To")
    _copy(invite.headers, headers, "Call-ID")
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return SipRequest("CANCEL", invite.uri, headers)
