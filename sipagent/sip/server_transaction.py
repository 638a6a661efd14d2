"""Server transactions (RFC 3261 §17.2, RFC 6026 §7.1, §8.5-8.9): absorb retransmitted requests.

Create one for each request that matches no transaction (an ACK is never one, §17.2.3) and ``start(now)``
it: that passes the request to the TU as :class:`RequestReceived`. The TU answers through
:meth:`ServerTransaction.send_response`.

INVITE: 300-699 is retransmitted on Timer G until the ACK (Completed, then Confirmed to absorb ACK copies);
a 2xx moves to RFC 6026's Accepted state, where the UA core retransmits the 2xx itself (§13.3.1.4) through
:meth:`~ServerTransaction.send_response`, INVITE copies are absorbed and an ACK that matches goes to the TU.
"""

from __future__ import annotations

from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.message import SipMessage, SipRequest, SipResponse, make_response
from sipagent.sip.timers import Timer, TimerConfig
from sipagent.sip.transaction import (
    AckReceived,
    RequestReceived,
    ServerKey,
    Stimulus,
    Transaction,
    TransactionAction,
    TransactionInput,
    TransactionState,
    Transition,
    TransitionTable,
    absorb_rows,
    server_key,
    status_input,
    transition_rows,
)

__all__ = [
    "INVITE_SERVER_TABLE",
    "NON_INVITE_SERVER_TABLE",
    "InviteServerTransaction",
    "NonInviteServerTransaction",
    "ServerTransaction",
]

_S = TransactionState
_I = TransactionInput
_A = TransactionAction


# Figure 7 of RFC 6026 (which replaces Figure 7 of RFC 3261).
INVITE_SERVER_TABLE: TransitionTable = {
    (_S.IDLE, _I.START): Transition(_S.PROCEEDING, (_A.PASS_REQUEST,), arm=(Timer.TRYING,)),
    (_S.PROCEEDING, Timer.TRYING): Transition(_S.PROCEEDING, (_A.SEND_TRYING,)),
    # §17.2.1: a retransmitted INVITE gets the latest provisional response again (if there was one).
    (_S.PROCEEDING, _I.REQUEST): Transition(_S.PROCEEDING, (_A.RESEND_RESPONSE,)),
    **absorb_rows(_S.PROCEEDING, (_I.ACK,)),  # nothing final was sent, so nothing to acknowledge yet
    (_S.PROCEEDING, _I.PROVISIONAL): Transition(_S.PROCEEDING, (_A.SEND_RESPONSE,), stop=(Timer.TRYING,)),
    (_S.PROCEEDING, _I.SUCCESS): Transition(
        _S.ACCEPTED, (_A.SEND_RESPONSE,), stop=(Timer.TRYING,), arm=(Timer.L,)),
    (_S.PROCEEDING, _I.FAILURE): Transition(
        _S.COMPLETED, (_A.SEND_RESPONSE,), stop=(Timer.TRYING,), arm=(Timer.G, Timer.H)),
    **transition_rows((_S.PROCEEDING, _S.COMPLETED), (_I.TRANSPORT_ERROR,), Transition(
        _S.TERMINATED, (_A.REPORT_TRANSPORT_ERROR,))),
    (_S.COMPLETED, _I.REQUEST): Transition(_S.COMPLETED, (_A.RESEND_RESPONSE,)),
    (_S.COMPLETED, Timer.G): Transition(_S.COMPLETED, (_A.RESEND_RESPONSE,), arm=(Timer.G,)),
    (_S.COMPLETED, Timer.H): Transition(_S.TERMINATED, (_A.REPORT_TIMEOUT,)),
    (_S.COMPLETED, _I.ACK): Transition(_S.CONFIRMED, stop=(Timer.G, Timer.H), arm=(Timer.I,)),
    # §17.2.1: Confirmed only soaks up ACK copies still in flight; nothing is sent from there.
    **absorb_rows(_S.CONFIRMED, (_I.REQUEST, _I.ACK, _I.TRANSPORT_ERROR)),
    (_S.CONFIRMED, Timer.I): Transition(_S.TERMINATED),
    # RFC 6026 §7.1: INVITE copies must not reach the TU (it would take them for a new call); ACKs must.
    **absorb_rows(_S.ACCEPTED, (_I.REQUEST,)),
    (_S.ACCEPTED, _I.ACK): Transition(_S.ACCEPTED, (_A.PASS_ACK,)),
    (_S.ACCEPTED, _I.SUCCESS): Transition(_S.ACCEPTED, (_A.SEND_RESPONSE,)),
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): Transition(_S.ACCEPTED, (_A.REPORT_TRANSPORT_ERROR,)),
    (_S.ACCEPTED, Timer.L): Transition(_S.TERMINATED),
    **absorb_rows(_S.TERMINATED, (_I.REQUEST, _I.ACK, _I.TRANSPORT_ERROR)),
}  # fmt: skip

# Figure 8 of RFC 3261.
NON_INVITE_SERVER_TABLE: TransitionTable = {
    (_S.IDLE, _I.START): Transition(_S.TRYING, (_A.PASS_REQUEST,)),
    **absorb_rows(_S.TRYING, (_I.REQUEST,)),  # §17.2.2: nothing to resend before the TU has answered
    **transition_rows((_S.TRYING, _S.PROCEEDING), (_I.PROVISIONAL,), Transition(_S.PROCEEDING, (_A.SEND_RESPONSE,))),
    **transition_rows((_S.TRYING, _S.PROCEEDING), (_I.SUCCESS, _I.FAILURE), Transition(
        _S.COMPLETED, (_A.SEND_RESPONSE,), arm=(Timer.J,))),
    # §17.2.2: once the TU has answered, a retransmitted request gets that answer again.
    **{(s, _I.REQUEST): Transition(s, (_A.RESEND_RESPONSE,)) for s in (_S.PROCEEDING, _S.COMPLETED)},
    **transition_rows((_S.TRYING, _S.PROCEEDING, _S.COMPLETED), (_I.TRANSPORT_ERROR,), Transition(
        _S.TERMINATED, (_A.REPORT_TRANSPORT_ERROR,))),
    (_S.COMPLETED, Timer.J): Transition(_S.TERMINATED),
    **absorb_rows(_S.TERMINATED, (_I.REQUEST, _I.TRANSPORT_ERROR)),
}  # fmt: skip


class ServerTransaction(Transaction):
    """A server transaction: ``start(now)`` passes the request up; the TU answers with :meth:`send_response`."""

    def __init__(self, request: SipRequest, *, reliable: bool, config: TimerConfig | None = None) -> None:
        super().__init__(request, reliable=reliable, config=config)
        self.key: ServerKey | None = server_key(request)
        """``None`` for an RFC 2543 request (no magic cookie): :class:`TransactionTable` compares fields."""
        self.last_response: SipResponse | None = None
        self._response_bytes: bytes | None = None

    @property
    def to_tag(self) -> str | None:
        """The To tag of the last response sent: an RFC 2543 ACK must carry it (§17.2.3)."""
        return None if self.last_response is None else self.last_response.to.tag

    def receive_request(self, request: SipRequest, now: float) -> None:
        """Feed a retransmission of the request, or (INVITE only) an ACK that matched this transaction."""
        if self.key is not None and server_key(request) != self.key:
            raise LocalProtocolError("request does not match this server transaction (§17.2.3)")
        stimulus = _I.ACK if request.method == "ACK" else _I.REQUEST
        self._feed(stimulus, now, request)

    def send_response(self, response: SipResponse, now: float) -> None:
        if response.cseq != self.request.cseq:
            raise LocalProtocolError(f"response CSeq {response.cseq} is not the request's {self.request.cseq}")
        self._feed(status_input(response.status), now, response)

    def _act(self, action: TransactionAction, stimulus: Stimulus, message: SipMessage | None, reason: str) -> None:
        if action is _A.SEND_RESPONSE and isinstance(message, SipResponse):
            self._remember(message)
        elif action is _A.SEND_TRYING:
            self._remember(make_response(self.request, 100))
        elif action is _A.RESEND_RESPONSE:
            if self._response_bytes is not None:
                self._outgoing.append(self._response_bytes)
        elif action is _A.PASS_REQUEST:
            self._events.append(RequestReceived(self.request))
        elif action is _A.PASS_ACK and isinstance(message, SipRequest):
            self._events.append(AckReceived(message))
        else:
            super()._act(action, stimulus, message, reason)

    def _remember(self, response: SipResponse) -> None:
        self.last_response = response
        self._response_bytes = response.serialize()
        self._outgoing.append(self._response_bytes)


class InviteServerTransaction(ServerTransaction):
    TABLE = INVITE_SERVER_TABLE

    def __init__(
        self,
        request: SipRequest,
        *,
        reliable: bool,
        config: TimerConfig | None = None,
        auto_trying: bool = True,
    ) -> None:
        if request.method != "INVITE":
            raise LocalProtocolError(f"an INVITE server transaction cannot carry {request.method}")
        super().__init__(request, reliable=reliable, config=config)
        self.auto_trying = auto_trying

    def _duration(self, timer: Timer, stimulus: Stimulus, source: TransactionState) -> float | None:
        if timer is Timer.TRYING and not self.auto_trying:
            return None
        return super()._duration(timer, stimulus, source)


class NonInviteServerTransaction(ServerTransaction):
    TABLE = NON_INVITE_SERVER_TABLE

    def __init__(self, request: SipRequest, *, reliable: bool, config: TimerConfig | None = None) -> None:
        if request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"a non-INVITE server transaction cannot carry {request.method}")
        super().__init__(request, reliable=reliable, config=config)
