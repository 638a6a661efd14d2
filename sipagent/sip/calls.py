"""Calls: the state of one INVITE session on either side, and the table that owns their life cycle.

A call is keyed by its Call-ID (the handle the endpoint sees). Its life, whichever side started it:

    inbound   INCOMING --accept--> ANSWERED --ACK--> CONFIRMED --BYE--> ENDED
                  \\--reject/CANCEL/hangup------------------------------> ENDED
    outbound  CALLING --2xx--> CONFIRMED;  CALLING --3xx-6xx/timeout--> ENDED
    either    CONFIRMED --hangup--> ENDING --BYE's final response or timeout--> ENDED

:class:`CallTable.end` is the one place a call ends, so :class:`CallEnded` is emitted exactly once.
The table also runs the UAS core's 2xx retransmission (§13.3.1.4), which outlives the INVITE transaction's
own duties: RFC 6026 leaves 2xx reliability to the TU.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sipagent.sip.auth import DigestClient
from sipagent.sip.client_transaction import ClientTransaction
from sipagent.sip.core import UaCore
from sipagent.sip.dialog import Dialog
from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.events import Address, CallEnded, CallEndReason
from sipagent.sip.message import SipRequest, SipResponse
from sipagent.sip.offeranswer import LocalSession, NegotiatedMedia
from sipagent.sip.routing import next_hop
from sipagent.sip.sdp import Direction, SessionDescription
from sipagent.sip.server_transaction import ServerTransaction
from sipagent.sip.transaction import Transaction

__all__ = ["Call", "CallState", "CallTable", "Pending2xx"]


class CallState(enum.Enum):
    INCOMING = "incoming"  # inbound INVITE, no final response yet
    CALLING = "calling"  # outbound INVITE, no final response yet
    ANSWERED = "answered"  # inbound: 2xx sent, ACK not yet received
    CONFIRMED = "confirmed"
    ENDING = "ending"  # our BYE is on its way
    ENDED = "ended"


@dataclass(slots=True)
class Pending2xx:
    """A 2xx to an INVITE that we keep sending until its ACK arrives (§13.3.1.4)."""

    tx: ServerTransaction
    response: SipResponse
    destination: Address
    transport: str
    cseq: int
    interval: float
    next_at: float
    give_up_at: float
    offer: SessionDescription | None
    """Our offer when the INVITE had none: its answer must come in the ACK (§13.2.1)."""


@dataclass(eq=False, slots=True)
class Call:
    call_id: str
    inbound: bool
    state: CallState
    invite: SipRequest
    invite_tx: Transaction
    peer: Address
    """Where the peer sends from: in-dialog requests without a route set go there (``UaConfig.symmetric``)."""
    transport: str
    session: LocalSession
    local_tag: str
    dialog: Dialog | None = None
    remote_offer: SessionDescription | None = None
    local_offer: SessionDescription | None = None
    rtp: Address | None = None
    local_direction: Direction = Direction.SENDRECV
    media: NegotiatedMedia | None = None
    pending: Pending2xx | None = None
    credentials: DigestClient | None = None
    destination: Address | None = None
    """Outbound: the first hop the INVITE went to (an outbound proxy, or the target)."""
    provisional: bool = False
    cancelling: bool = False
    cancel_deadline: float | None = None
    hangup_after_ack: bool = False
    ending_reason: CallEndReason = "bye"
    ack: tuple[bytes, Address] | None = None
    """Outbound: the ACK for our 2xx and where it went, sent again for each 2xx retransmission."""
    refer_sent: bool = False
    requests: list[ClientTransaction] = field(default_factory=list)


class CallTable:
    """Every live call, found by Call-ID, dialog or INVITE transaction; ends them and retransmits 2xx."""

    def __init__(self, core: UaCore) -> None:
        self._core = core
        self._calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._calls.values()))

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def add(self, call: Call) -> None:
        self._calls[call.call_id] = call

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def find(self, request: SipRequest) -> Call | None:
        """The call whose dialog ``request`` belongs to (§12.2.2), if any."""
        call = self._calls.get(request.call_id)
        if call is None or call.dialog is None or not call.dialog.matches(request):
            return None
        return call

    def by_invite_tx(self, tx: Transaction) -> Call | None:
        return next((call for call in self._calls.values() if call.invite_tx is tx), None)

    def end(self, call: Call, reason: CallEndReason, status: int | None = None, *, local: bool = False) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.pending = None
        call.cancel_deadline = None
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        self._core.emit(CallEnded(call.call_id, reason, status, local))

    # --- requests inside the dialog ---------------------------------------------------------------------

    def send_in_dialog(
        self,
        call: Call,
        method: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> ClientTransaction:
        if call.dialog is None:
            raise LocalProtocolError(f"call {call.call_id} has no dialog yet")
        rows = list(headers)
        if content_type is not None and body:
            rows.append(("Content-Type", content_type))
        request = call.dialog.build_request(method, headers=rows, body=body)
        return self.send_built(call, request, now)

    def send_built(self, call: Call, request: SipRequest, now: float) -> ClientTransaction:
        # The call's transport: a peer that called over TCP expects the BYE on TCP too (§18.1.1).
        tx = self._core.send_request(request, self.destination(call, request), now, call, call.transport)
        call.requests.append(tx)
        return tx

    def destination(self, call: Call, request: SipRequest) -> Address:
        """A proxy in the route set is the next hop; otherwise the peer's own address when symmetric."""
        if call.dialog is not None and call.dialog.route_set or not self._core.config.symmetric:
            return next_hop(request, call.transport)
        return call.peer

    def send_bye(self, call: Call, now: float, reason: CallEndReason = "bye") -> None:
        """§15.1.1: BYE ends the session; CallEnded follows its final response (or its timeout)."""
        call.state = CallState.ENDING
        call.ending_reason = reason
        call.pending = None
        self.send_in_dialog(call, "BYE", now)

    # --- §13.3.1.4: the UAS core retransmits its 2xx until the ACK -------------------------------------

    def start_2xx(
        self, call: Call, tx: ServerTransaction, response: SipResponse, now: float, offer: SessionDescription | None
    ) -> None:
        t1 = self._core.config.timers.t1
        destination, transport = self._core.route_of(tx)
        call.pending = Pending2xx(
            tx, response, destination, transport, tx.request.cseq.seq, t1, now + t1, now + 64 * t1, offer
        )

    def next_deadline(self) -> float | None:
        deadlines = []
        for call in self._calls.values():
            if call.pending is not None:
                deadlines.append(min(call.pending.next_at, call.pending.give_up_at))
            if call.cancel_deadline is not None:
                deadlines.append(call.cancel_deadline)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        for call in self:
            pending = call.pending
            if pending is not None and now >= pending.give_up_at:
                # §13.3.1.4: no ACK after 64*T1: the dialog is confirmed but the session ends with a BYE.
                self._core.stats["ack_timeouts"] += 1
                self.send_bye(call, now, "timeout")
            elif pending is not None and now >= pending.next_at:
                if pending.tx.terminated:  # pragma: no cover - Timer L and the give-up both end at 64*T1
                    self._core.send(pending.response, pending.destination, pending.transport)
                else:
                    pending.tx.send_response(pending.response, now)
                pending.interval = min(2 * pending.interval, self._core.config.timers.t2)
                pending.next_at = now + pending.interval
            if call.cancel_deadline is not None and now >= call.cancel_deadline:
                # §9.1: no final response 64*T1 after the CANCEL: consider the INVITE cancelled.
                self.end(call, "cancel", 408, local=True)
