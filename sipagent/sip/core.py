"""The plumbing every part of the user agent shares: transactions and their addresses, ids, sending, events.

Transactions never address their datagrams (see :mod:`sipagent.sip.transaction`), so this keeps, for each
one, where its messages go: a server transaction answers per §18.2.2 (computed once from the stamped top
Via), a client transaction sends to the next hop chosen when it was created. It also remembers which call
(or which ``send_request`` caller) owns a client transaction, so the user agent can route its events.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable

from sipagent.sip.client_transaction import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction
from sipagent.sip.events import Address, Outgoing, UaEvent
from sipagent.sip.message import Headers, SipMessage, SipRequest, SipResponse, make_response
from sipagent.sip.offeranswer import LocalSession
from sipagent.sip.policy import ALLOWED_METHODS, UaConfig
from sipagent.sip.routing import is_reliable, next_hop, response_destination
from sipagent.sip.server_transaction import InviteServerTransaction, NonInviteServerTransaction, ServerTransaction
from sipagent.sip.transaction import Transaction, TransactionTable, new_branch

__all__ = ["UaCore"]


class UaCore:
    """Shared state of one user agent: config, randomness, the transaction table, outgoing data and events."""

    def __init__(self, config: UaConfig, rng: Callable[[int], bytes]) -> None:
        self.config = config
        self.rng = rng
        self.table = TransactionTable()
        self.events: deque[UaEvent] = deque()
        self.stats: Counter[str] = Counter()
        self.owners: dict[Transaction, object] = {}
        self.current_source: Address | None = None
        """The source of the message being processed (a response's sender, for symmetric routing)."""
        self._outgoing: list[Outgoing] = []
        self._routes: dict[Transaction, tuple[Address, str]] = {}
        self._sources: dict[Transaction, Address] = {}

    # --- ids (§8.1.1.4, §8.1.1.7, §19.3) ----------------------------------------------------------------

    def new_tag(self) -> str:
        return self.rng(8).hex()  # §19.3: at least 32 random bits

    def new_call_id(self) -> str:
        return self.rng(16).hex()  # §8.1.1.4: globally unique; no host part, so it says nothing about us

    def new_branch(self) -> str:
        return new_branch(self.rng)

    def random_below(self, bound: int) -> int:
        return int.from_bytes(self.rng(4), "big") % bound

    def new_session(self) -> LocalSession:
        return LocalSession(int.from_bytes(self.rng(8), "big") >> 2, username=self.config.user)

    # --- headers we add ---------------------------------------------------------------------------------

    def capability_rows(self) -> list[tuple[str, str]]:
        """Allow and Supported (§20.5, §20.37), for responses that set up or describe a session."""
        rows = [("Allow", ", ".join(ALLOWED_METHODS))]
        if self.config.extensions:
            rows.append(("Supported", ", ".join(self.config.extensions)))
        return rows

    def contact_rows(self) -> list[tuple[str, str]]:
        return [("Contact", self.config.contact), *self.capability_rows()]

    # --- server side ------------------------------------------------------------------------------------

    def new_server(self, request: SipRequest, source: Address, transport: str, now: float) -> ServerTransaction:
        """Create, file and start the server transaction of a request that matched none (§17.2.3)."""
        reliable = is_reliable(transport)
        timers = self.config.timers
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = InviteServerTransaction(request, reliable=reliable, config=timers)
        else:
            tx = NonInviteServerTransaction(request, reliable=reliable, config=timers)
        self.table.add_server(tx)
        self._routes[tx] = (response_destination(request.top_via, source, transport), transport)
        self._sources[tx] = source
        tx.start(now)
        return tx

    def source_of(self, tx: Transaction) -> Address:
        return self._sources.get(tx) or self._routes[tx][0]

    def transport_of(self, tx: Transaction) -> str:
        return self._routes[tx][1] if tx in self._routes else self.config.transport

    def respond(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str = "application/sdp",
    ) -> SipResponse:
        """Answer through ``tx``. Outside a dialog every response but 100 gets a To tag (§8.2.6.2)."""
        request = tx.request
        tag = None
        if request.to.tag is None and status > 100:
            tag = to_tag or self.new_tag()
        rows = [*headers, ("Server", self.config.user_agent)]
        if body:
            rows.append(("Content-Type", content_type))
        response = make_response(request, status, reason, to_tag=tag, headers=rows)
        response.body = body
        tx.send_response(response, now)
        self._collect_from(tx)
        return response

    def route_of(self, tx: Transaction) -> tuple[Address, str]:
        """Where ``tx`` sends (its peer, or the next hop) and over which transport."""
        return self._routes[tx]

    # --- client side ------------------------------------------------------------------------------------

    def prepare(self, request: SipRequest, transport: str | None = None) -> SipRequest:
        """Give a request we originate its Via (new branch, rport: RFC 3581 §3) and the usual headers."""
        transport = (transport or self.config.transport).upper()
        if "Via" not in request.headers:
            via = f"SIP/2.0/{transport} {self.config.sent_by};branch={self.new_branch()};rport"
            request.headers = Headers([("Via", via), *request.headers])
        if "Max-Forwards" not in request.headers:
            request.headers.add("Max-Forwards", "70")
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.config.user_agent)
        return request

    def send_request(
        self,
        request: SipRequest,
        destination: Address | None,
        now: float,
        owner: object = None,
        transport: str | None = None,
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` towards ``destination`` (default: its next hop)."""
        transport = (transport or self.config.transport).upper()
        self.prepare(request, transport)
        target = destination or next_hop(request, transport)
        reliable = is_reliable(transport)
        tx: ClientTransaction
        if request.method == "INVITE":
            tx = InviteClientTransaction(request, reliable=reliable, config=self.config.timers)
        else:
            tx = NonInviteClientTransaction(request, reliable=reliable, config=self.config.timers)
        self.table.add_client(tx)
        self._routes[tx] = (target, transport)
        if owner is not None:
            self.owners[tx] = owner
        tx.start(now)
        self._collect_from(tx)
        return tx

    def transport_error(self, destination: Address, now: float) -> None:
        for tx, (target, _) in list(self._routes.items()):
            if target == destination and not tx.terminated:
                tx.transport_error(now, f"cannot reach {destination[0]}:{destination[1]}")

    # --- output -----------------------------------------------------------------------------------------

    def send(self, message: SipMessage, destination: Address, transport: str | None = None) -> bytes:
        """Send outside any transaction: an ACK for a 2xx (§13.2.2.4), a stateless error response."""
        data = message.serialize()
        self._outgoing.append(Outgoing(data, destination, (transport or self.config.transport).upper()))
        return data

    def send_bytes(self, data: bytes, destination: Address, transport: str | None = None) -> None:
        self._outgoing.append(Outgoing(data, destination, (transport or self.config.transport).upper()))

    def collect(self) -> None:
        """Move every transaction's pending datagrams to the outgoing queue, addressed."""
        for tx, data in self.table.datagrams_to_send():
            destination, transport = self._routes[tx]
            self._outgoing.append(Outgoing(data, destination, transport))

    def _collect_from(self, tx: Transaction) -> None:
        # Queue what we just sent at once, in the order we sent it: ``collect`` walks the table in creation
        # order, which would put the 487 of an older INVITE before the 200 for its CANCEL (RFC 3261 §9.2 answers
        # the CANCEL first, and strict peers such as sipp scenarios expect that order on the wire).
        destination, transport = self._routes[tx]
        self._outgoing.extend(Outgoing(data, destination, transport) for data in tx.datagrams_to_send())

    def take_outgoing(self) -> list[Outgoing]:
        out, self._outgoing = self._outgoing, []
        return out

    def forget(self, tx: Transaction) -> None:
        """The transaction has terminated and its datagrams were collected: drop what we kept for it."""
        self._routes.pop(tx, None)
        self._sources.pop(tx, None)
        self.owners.pop(tx, None)

    def emit(self, event: UaEvent) -> None:
        self.events.append(event)
