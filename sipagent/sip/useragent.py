"""The sans-I/O SIP user agent (RFC 3261 §8, §12-§15): bytes and ``now`` in; datagrams, events and a timer out.

The interface is aioquic's. After every input (``receive``, ``handle_timer`` or a command such as ``accept``)
the owner sends :meth:`UserAgent.datagrams_to_send`, reads :meth:`UserAgent.next_event` until ``None`` and
re-arms one timer at :meth:`UserAgent.get_timer`::

    ua = UserAgent(config, now=loop.time())
    ua.receive(data, addr, "UDP", loop.time())
    for out in ua.datagrams_to_send(): transport.sendto(out.data, out.destination)
    while (event := ua.next_event()) is not None: ...

Flow of a request: parse (malformed: 400 naming the fault when it can be answered, otherwise dropped and
counted), stamp the top Via (RFC 3581), hand it to the server transaction it matches or create one (an ACK
that matches none goes to its dialog). When a transaction passes a new request up, it is routed: method
checks (501/405 with Allow, 420), CANCEL, OPTIONS (answered for anyone), INVITE without To tag (a new call),
other requests by dialog (481 when there is none). Responses go to their client transaction and from there
to the call or the ``send_request`` caller that owns it.

Peer input never raises out of ``receive``: anything unexpected is logged, counted in ``stats`` under
``internal_errors`` and, when a request is waiting for an answer, answered with 500.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable

from sipagent.sip.auth import DigestClient
from sipagent.sip.calls import Call, CallState, CallTable
from sipagent.sip.client_transaction import ClientTransaction
from sipagent.sip.core import UaCore
from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.events import Address, Outgoing, RequestAnswered, RequestFailed, UaEvent
from sipagent.sip.inbound import InboundCalls
from sipagent.sip.indialog import DialogRequests
from sipagent.sip.message import SipRequest, SipResponse, make_error_response
from sipagent.sip.outbound import OutboundCalls
from sipagent.sip.parser import is_keepalive, parse_message
from sipagent.sip.policy import ALLOWED_METHODS, DIALOG_METHODS, KNOWN_METHODS, UaConfig, unsupported_options
from sipagent.sip.routing import response_destination, stamp_via
from sipagent.sip.server_transaction import ServerTransaction
from sipagent.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    Transaction,
    TransactionEvent,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)

__all__ = ["UserAgent"]

_log = logging.getLogger(__name__)
_UNSAFE_REASON = re.compile(r"[^A-Za-z0-9 \-_.!~*'();/?:@&=+$,]+")


class UserAgent:
    """One SIP user agent: every call of the endpoint, the transactions under them, and ``send_request``."""

    def __init__(self, config: UaConfig, now: float = 0.0, rng: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.config = config
        self.started_at = now
        self._core = UaCore(config, rng)
        self._calls = CallTable(self._core)
        self._inbound = InboundCalls(self._core, self._calls)
        self._outbound = OutboundCalls(self._core, self._calls)
        self._dialogs = DialogRequests(self._core, self._calls)

    # --- the sans-I/O surface ---------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> None:
        """One datagram (or one framed TCP message) from ``source`` over ``transport`` (``"UDP"``, ``"TCP"``)."""
        try:
            self._receive(data, source, transport.upper(), now)
        except Exception:  # the boundary: nothing a peer sends may take the user agent down
            self._core.stats["internal_errors"] += 1
            _log.exception("SIP input could not be processed")
        self._pump(now)
        self._core.current_source = None

    def datagrams_to_send(self) -> list[Outgoing]:
        self._core.collect()
        return self._core.take_outgoing()

    def next_event(self) -> UaEvent | None:
        events = self._core.events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._core.table.get_timer(), self._calls.next_deadline()) if d is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        # Transactions first, so a Timer L or M that ends one is seen before the calls' own deadlines.
        for handle in (self._core.table.handle_timer, self._calls.handle_timer):
            try:
                handle(now)
            except Exception:
                self._core.stats["internal_errors"] += 1
                _log.exception("SIP timer could not be processed")
            self._pump(now)

    def transport_error(self, destination: Address, now: float) -> None:
        """The transport could not reach ``destination`` (ICMP unreachable, TCP connect or write failure):
        every transaction sending there fails at once (§17.1.4, §17.2.4) instead of waiting for its timeout."""
        try:
            self._core.transport_error(destination, now)
        except Exception:
            self._core.stats["internal_errors"] += 1
            _log.exception("transport error could not be processed")
        self._pump(now)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: malformed/dropped input, rejections by reason, stray responses, internal errors..."""
        return dict(self._core.stats)

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # --- calls --------------------------------------------------------------------------------------------

    def ring(self, call_id: str, now: float) -> bool:
        """180 Ringing for an inbound call; False when the call is gone or already answered."""
        return self._command(now, lambda call: self._inbound.ring(call, now), call_id)

    def accept(self, call_id: str, rtp_address: str, rtp_port: int, now: float) -> bool:
        """200 OK with our SDP (answer, or offer for a delayed offer); CallEstablished follows the ACK."""
        return self._command(now, lambda call: self._inbound.accept(call, rtp_address, rtp_port, now), call_id)

    def reject(self, call_id: str, status: int, now: float) -> bool:
        return self._command(now, lambda call: self._inbound.reject(call, status, now), call_id)

    def hangup(self, call_id: str, now: float) -> bool:
        """End a call whatever its state: BYE, CANCEL (outbound, not answered) or 480 (inbound, not answered)."""

        def act(call: Call) -> bool:
            if call.state is CallState.INCOMING:
                return self._inbound.reject(call, 480, now)
            if call.state is CallState.CALLING:
                self._outbound.cancel(call, now)
                return True
            return self._dialogs.hangup(call, now)

        return self._command(now, act, call_id)

    def transfer(self, call_id: str, target_uri: str, now: float) -> bool:
        """Blind transfer (RFC 3515): REFER to ``target_uri``; progress comes as TransferProgress."""
        return self._command(now, lambda call: self._dialogs.transfer(call, target_uri, now), call_id)

    def dial(
        self,
        target_uri: str,
        rtp_address: str,
        rtp_port: int,
        now: float,
        *,
        from_user: str | None = None,
        display_name: str | None = None,
        credentials: DigestClient | None = None,
        destination: Address | None = None,
    ) -> str:
        """Send an INVITE with our offer; the call's id (its Call-ID) is returned at once."""
        call_id = self._outbound.dial(
            target_uri, rtp_address, rtp_port, now, from_user=from_user, display_name=display_name,
            credentials=credentials, destination=destination,
        )  # fmt: skip
        self._pump(now)
        return call_id

    # --- for other components (registration) --------------------------------------------------------------

    def send_request(
        self, request: SipRequest, now: float, destination: Address | None = None, transport: str | None = None
    ) -> ClientTransaction:
        """Send a request outside any call (REGISTER, keep-alive OPTIONS) in its own client transaction.

        A request without a Via gets ours (new branch, ``rport``); one that has a Via keeps it, so its branch
        must be new (§8.1.1.7). Max-Forwards and User-Agent are added when missing. ``destination`` defaults
        to the next hop (first Route, else Request-URI). Responses come back as :class:`RequestAnswered`,
        failures as :class:`RequestFailed`, both tagged with ``request_id`` = the transaction's branch.
        """
        tx = self._core.send_request(request, destination, now, _RequestOwner(), transport)
        self._pump(now)
        return tx

    def new_call_id(self) -> str:
        return self._core.new_call_id()

    def new_tag(self) -> str:
        return self._core.new_tag()

    @property
    def contact(self) -> str:
        """Our Contact header value, ``<sip:user@host:port>``."""
        return self.config.contact

    # --- internals ----------------------------------------------------------------------------------------

    def _command(self, now: float, action: Callable[[Call], bool], call_id: str) -> bool:
        call = self._calls.get(call_id)
        if call is None:
            return False  # ended meanwhile (CANCEL, BYE): the endpoint sees CallEnded next
        done = action(call)
        self._pump(now)
        return done

    def _receive(self, data: bytes, source: Address, transport: str, now: float) -> None:
        if is_keepalive(data):
            self._core.stats["keepalives"] += 1
            return
        try:
            message = parse_message(data)
        except RemoteProtocolError as error:
            self._answer_malformed(error, source, transport)
            return
        except LocalProtocolError:
            # The parser should only raise RemoteProtocolError on input (a bare CR in a reason phrase still
            # escapes as LocalProtocolError): the datagram is the peer's fault all the same, so drop it.
            self._core.stats["parser_errors"] += 1
            self._core.stats["malformed_dropped"] += 1
            return
        self._core.current_source = source
        if isinstance(message, SipResponse):
            self._on_response(message, now)
            return
        message.headers, _ = stamp_via(message.headers, source)
        tx = self._core.table.match_request(message)
        if tx is not None:
            tx.receive_request(message, now)  # a retransmission, or an ACK for a non-2xx final
        elif message.method == "ACK":
            call = self._calls.find(message)
            if call is not None:
                self._dialogs.on_ack(call, message, now)
            else:
                self._core.stats["stray_acks"] += 1
        else:
            self._core.new_server(message, source, transport, now)

    def _answer_malformed(self, error: RemoteProtocolError, source: Address, transport: str) -> None:
        """§8.2 / §21.4.1: a 400 (or the error's hint) whose reason names the fault, sent without a transaction."""
        if error.headers is not None:
            error.headers, via = stamp_via(error.headers, source)
            response = make_error_response(error, to_tag=self._core.new_tag())
            if response is not None:
                response.headers.add("Server", self.config.user_agent)
                self._core.send(response, response_destination(via, source, transport), transport)
                self._core.stats["malformed_answered"] += 1
                return
        self._core.stats["malformed_dropped"] += 1

    def _on_response(self, response: SipResponse, now: float) -> None:
        tx = self._core.table.match_response(response)
        if tx is not None:
            tx.receive_response(response, now)
        elif not (
            response.cseq.method == "INVITE"
            and 200 <= response.status < 300
            and self._outbound.on_stray_2xx(response, now)
        ):
            self._core.stats["stray_responses"] += 1  # RFC 6026 §7.3 / §18.1.2: discard

    def _pump(self, now: float) -> None:
        table = self._core.table
        while True:
            self._core.collect()
            item = table.next_event()
            if item is None:
                break
            tx, event = item
            try:
                self._on_transaction_event(tx, event, now)
            except Exception:
                self._core.stats["internal_errors"] += 1
                _log.exception("transaction event could not be processed")
                if isinstance(event, RequestReceived) and isinstance(tx, ServerTransaction):
                    self._answer_if_pending(tx, 500, None, now)
        self._core.collect()

    def _on_transaction_event(self, tx: Transaction, event: TransactionEvent, now: float) -> None:
        owner = self._core.owners.get(tx)
        if isinstance(event, RequestReceived) and isinstance(tx, ServerTransaction):
            try:
                self._route_request(tx, now)
            except RemoteProtocolError as error:  # a header read lazily was malformed
                self._core.stats["malformed_answered"] += 1
                self._answer_if_pending(tx, error.status_hint, str(error), now)
        elif isinstance(event, AckReceived):
            call = self._calls.find(event.request)
            if call is not None:
                self._dialogs.on_ack(call, event.request, now)
        elif isinstance(event, ResponseReceived) and isinstance(tx, ClientTransaction):
            try:
                self._on_owned_response(owner, tx, event.response, now)
            except RemoteProtocolError:
                # §8.1.3.1 would drop a malformed response, but a final one also ends its transaction:
                # a call whose answer we cannot use is over.
                self._core.stats["malformed_responses"] += 1
                status = event.response.status
                if isinstance(owner, Call) and tx is owner.invite_tx and status >= 200:
                    if owner.dialog is not None and owner.state is not CallState.ENDED:
                        self._calls.send_bye(owner, now, "error")
                    else:
                        self._calls.end(owner, "error", status)
        elif isinstance(event, TransactionTimedOut | TransportFailed) and isinstance(tx, ClientTransaction):
            self._on_owned_failure(owner, tx, isinstance(event, TransactionTimedOut), now)
        elif isinstance(event, TransportFailed):
            call = self._calls.by_invite_tx(tx)
            if call is not None and call.state is CallState.INCOMING:
                self._calls.end(call, "error")  # the caller cannot be answered any more
        elif isinstance(event, TransactionTerminated):
            self._core.forget(tx)

    def _answer_if_pending(self, tx: ServerTransaction, status: int, text: str | None, now: float) -> None:
        last = tx.last_response
        if tx.terminated or (last is not None and last.status >= 200):
            return
        status = status if 300 <= status <= 699 else 400
        # §21.4.1 suggests naming the fault; only characters a reason phrase may carry, and not too many.
        reason = None
        if status == 400 and text:
            reason = " ".join(_UNSAFE_REASON.sub(" ", text).split())[:100] or None
        try:
            self._core.respond(tx, status, now, reason=reason)
        except Exception:
            self._core.stats["internal_errors"] += 1
            _log.exception("could not answer a failed request")

    def _route_request(self, tx: ServerTransaction, now: float) -> None:
        request, core = tx.request, self._core
        method = request.method
        if method not in KNOWN_METHODS or method not in ALLOWED_METHODS:
            # §8.2.1: 405 for a method we know but do not accept, 501 for one we do not know; both list Allow.
            core.respond(tx, 501 if method not in KNOWN_METHODS else 405, now, headers=core.capability_rows())
            return
        if method != "CANCEL" and (unsupported := unsupported_options(request, core.config.extensions)):
            # §8.2.2.3: any request but CANCEL (and ACK, never routed here) that requires an extension we lack.
            core.respond(tx, 420, now, headers=[("Unsupported", ", ".join(unsupported))])
            core.stats["bad_extension"] += 1
            return
        # No Max-Forwards check: it bounds forwarding (§16.3) and a UA is the final recipient, so a request
        # arriving with 0 is processed like any other (RFC 4475 §3.3.11); 483 is a proxy's answer.
        if method == "CANCEL":
            self._inbound.on_cancel(tx, now)
        elif method == "OPTIONS":
            # §11.2: capabilities for anyone asking, in a dialog or not (PBX qualify pings).
            rows = [*core.capability_rows(), ("Accept", "application/sdp"), ("Contact", core.config.contact)]
            core.respond(tx, 200, now, headers=rows)
        elif request.to.tag is None:
            if method == "INVITE":
                self._inbound.on_invite(tx, now)
            else:  # BYE, INFO, UPDATE, REFER, NOTIFY: they need a dialog there is none of
                core.respond(tx, 481, now)
        elif (call := self._calls.find(request)) is not None:
            self._dialogs.on_request(call, tx, now)
        else:
            core.respond(tx, 481, now)  # §12.2.2: a To tag that names no dialog of ours
            core.stats["unknown_dialog"] += 1

    def _on_owned_response(self, owner: object, tx: ClientTransaction, response: SipResponse, now: float) -> None:
        if isinstance(owner, _RequestOwner):
            self._core.emit(RequestAnswered(tx.branch, response.status, response))
        elif isinstance(owner, Call):
            if tx.method == "INVITE":
                self._outbound.on_response(owner, tx, response, now)
            elif tx.method in DIALOG_METHODS:
                self._dialogs.on_response(owner, tx, response, now)

    def _on_owned_failure(self, owner: object, tx: ClientTransaction, timed_out: bool, now: float) -> None:
        if isinstance(owner, _RequestOwner):
            self._core.emit(RequestFailed(tx.branch, "timeout" if timed_out else "transport"))
        elif isinstance(owner, Call):
            if tx.method == "INVITE":
                if tx is owner.invite_tx and owner.state is CallState.CALLING:
                    # §8.1.3.1: Timer B is a 408 (Request Timeout) made up by the transaction layer.
                    self._calls.end(owner, "timeout" if timed_out else "error", 408)
            elif tx.method in DIALOG_METHODS:
                self._dialogs.on_failure(owner, tx, now)


class _RequestOwner:
    """Marks a client transaction started by ``send_request``: its events go out as Request* events."""

    __slots__ = ()
