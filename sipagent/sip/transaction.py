"""The SIP transaction layer's shared parts (RFC 3261 §17, RFC 6026): states, events, the engine, matching.

Theory of operation. Each of the four machines (INVITE / non-INVITE, client / server) is a table from
``(state, stimulus)`` to a :class:`Transition`: the next state, the side effects to run in order, the
timers to stop and the timers to (re)arm. A stimulus is a :class:`TransactionInput` (a message in, a
response from the TU, a transport error) or a :class:`~sipagent.sip.timers.Timer` firing. Two rules:

1. A pair missing from the table is a :class:`LocalProtocolError`. The tables define every pair that the
   *network* can produce in every state after start (a stray response or ACK is absorbed, never an error),
   so only our own misuse can raise: answering twice, starting twice, feeding an ACK to a non-INVITE.
2. Nothing outside :meth:`Transaction._feed` changes a state. Entering Terminated stops every timer and
   queues :class:`TransactionTerminated`; a timer armed with a zero duration (D, I, J, K over a reliable
   transport, §17) fires within the same call, so those states are left at once.

The concrete machines live in :mod:`sipagent.sip.client_transaction` and
:mod:`sipagent.sip.server_transaction`; the interface is aioquic's: ``start(now)``, inputs with ``now``,
``datagrams_to_send()``, ``get_timer()`` / ``handle_timer(now)`` and ``next_event()``. The transaction never
addresses its datagrams: the transport sends a client's to the request's next hop and a server's per §18.2.2.

:class:`TransactionTable` matches incoming messages to transactions (§17.1.3, §17.2.3, with the RFC 2543
fallback for requests whose branch lacks the magic cookie) and multiplexes timers and events.
"""

from __future__ import annotations

import enum
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeAlias

from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.message import SipMessage, SipRequest, SipResponse
from sipagent.sip.timers import Timer, TimerConfig, TimerSet

if TYPE_CHECKING:
    from sipagent.sip.client_transaction import ClientTransaction
    from sipagent.sip.server_transaction import ServerTransaction

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "ClientKey",
    "RequestReceived",
    "ResponseReceived",
    "ServerKey",
    "Stimulus",
    "Transaction",
    "TransactionAction",
    "TransactionEvent",
    "TransactionInput",
    "TransactionState",
    "TransactionTable",
    "TransactionTerminated",
    "TransactionTimedOut",
    "Transition",
    "TransitionTable",
    "TransportFailed",
    "absorb_rows",
    "client_key",
    "is_rfc3261_branch",
    "new_branch",
    "server_key",
    "status_input",
    "transition_rows",
]

MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7: marks a branch built by RFC 3261 rules, unique across space and time


# --- events -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A server transaction started: pass its request to the TU (§17.2.1, §17.2.2)."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK matched an INVITE server transaction in Accepted: it is the TU's (RFC 6026 §7.1)."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU: every 1xx, the one non-2xx final, and every 2xx (RFC 6026 §7.2)."""

    response: SipResponse


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B or F (the TU acts as on a 408, §8.1.3.1) or Timer H (no ACK came, §17.2.1) fired."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not send for this transaction (§17.1.4, §17.2.4)."""

    reason: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction reached Terminated; its table entry can go."""


TransactionEvent: TypeAlias = (
    RequestReceived | AckReceived | ResponseReceived | TransactionTimedOut | TransportFailed | TransactionTerminated
)


# --- the engine ---------------------------------------------------------------------------------------


class TransactionState(enum.Enum):
    IDLE = "Idle"  # not in the RFC: built, not started, so that the first send and its timers share one now
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1 and §7.2
    TERMINATED = "Terminated"


class TransactionInput(enum.Enum):
    START = "start"
    REQUEST = "request"  # a retransmission of the request a server transaction was created with
    ACK = "ACK"  # an ACK that matched an INVITE server transaction
    PROVISIONAL = "1xx"  # received (client) or passed down by the TU (server)
    SUCCESS = "2xx"
    FAILURE = "300-699"
    TRANSPORT_ERROR = "transport error"


Stimulus: TypeAlias = TransactionInput | Timer


class TransactionAction(enum.Enum):
    SEND_REQUEST = "send request"  # the first transmission and every retransmission
    SEND_ACK = "send ACK"  # §17.1.1.3, for a non-2xx final response
    SEND_RESPONSE = "send response"  # the response the TU just passed down
    RESEND_RESPONSE = "resend response"  # the last response sent, if any
    SEND_TRYING = "send 100"  # §17.2.1: the TU stayed silent for 200 ms
    PASS_REQUEST = "request to TU"
    PASS_RESPONSE = "response to TU"
    PASS_ACK = "ACK to TU"
    REPORT_TIMEOUT = "timeout to TU"
    REPORT_TRANSPORT_ERROR = "transport error to TU"


@dataclass(frozen=True, slots=True)
class Transition:
    target: TransactionState
    actions: tuple[TransactionAction, ...] = ()
    stop: tuple[Timer, ...] = ()
    arm: tuple[Timer, ...] = ()  # a timer that just fired and is armed again backs off (§17.1.1.2)


TransitionTable: TypeAlias = Mapping[tuple[TransactionState, Stimulus], Transition]


def transition_rows(
    states: Iterable[TransactionState], stimuli: Iterable[Stimulus], transition: Transition
) -> dict[tuple[TransactionState, Stimulus], Transition]:
    """Table rows giving every ``(state, stimulus)`` pair the same transition."""
    stimuli = tuple(stimuli)
    return {(state, stimulus): transition for state in states for stimulus in stimuli}


def absorb_rows(
    state: TransactionState, stimuli: Iterable[Stimulus]
) -> dict[tuple[TransactionState, Stimulus], Transition]:
    """Rows where ``state`` swallows ``stimuli``: no side effect, no state change."""
    return transition_rows((state,), stimuli, Transition(state))


def status_input(status: int) -> TransactionInput:
    if status < 200:
        return TransactionInput.PROVISIONAL
    return TransactionInput.SUCCESS if status < 300 else TransactionInput.FAILURE


class Transaction:
    """What the four machines share: the table-driven engine, the timers, the send queue and the events."""

    TABLE: ClassVar[TransitionTable]

    def __init__(self, request: SipRequest, *, reliable: bool, config: TimerConfig | None = None) -> None:
        self.request = request
        self.reliable = reliable
        self.config = config if config is not None else TimerConfig()
        self._state = TransactionState.IDLE
        self._timers = TimerSet()
        self._events: deque[TransactionEvent] = deque()
        self._outgoing: list[bytes] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self._state.name}>"

    @property
    def state(self) -> TransactionState:
        return self._state

    @property
    def terminated(self) -> bool:
        return self._state is TransactionState.TERMINATED

    @property
    def method(self) -> str:
        return self.request.method

    def start(self, now: float) -> None:
        self._feed(TransactionInput.START, now)

    def transport_error(self, now: float, reason: str = "transport error") -> None:
        """Report that sending one of this transaction's datagrams failed."""
        self._feed(TransactionInput.TRANSPORT_ERROR, now, reason=reason)

    def get_timer(self) -> float | None:
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        while (timer := self._timers.pop_due(now)) is not None:
            self._feed(timer, now)

    def timers(self) -> dict[Timer, float]:
        """The running timers and their deadlines."""
        return self._timers.deadlines()

    def datagrams_to_send(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> TransactionEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def _feed(self, stimulus: Stimulus, now: float, message: SipMessage | None = None, reason: str = "") -> None:
        source = self._state
        transition = self.TABLE.get((source, stimulus))
        if transition is None:
            name = stimulus.name if isinstance(stimulus, TransactionInput) else f"Timer {stimulus.name}"
            raise LocalProtocolError(f"{type(self).__name__}: {name} is not allowed in state {source.value}")
        self._state = transition.target
        for timer in transition.stop:
            self._timers.cancel(timer)
        if self._state is TransactionState.TERMINATED:
            self._timers.clear()
        for action in transition.actions:
            self._act(action, stimulus, message, reason)
        immediate: list[Timer] = []
        for timer in transition.arm:
            duration = self._duration(timer, stimulus, source)
            if duration is None:
                continue
            if duration <= 0:
                immediate.append(timer)
            else:
                self._timers.arm(timer, now, duration)
        if self._state is TransactionState.TERMINATED and source is not TransactionState.TERMINATED:
            self._events.append(TransactionTerminated())
        for timer in immediate:
            self._feed(timer, now)

    def _duration(self, timer: Timer, stimulus: Stimulus, source: TransactionState) -> float | None:
        previous = self._timers.duration(timer)
        if timer is stimulus and previous is not None:
            return self.config.backoff(timer, previous, proceeding=source is TransactionState.PROCEEDING)
        return self.config.initial(timer, reliable=self.reliable)

    def _act(self, action: TransactionAction, stimulus: Stimulus, message: SipMessage | None, reason: str) -> None:
        if action is TransactionAction.REPORT_TIMEOUT and isinstance(stimulus, Timer):
            self._events.append(TransactionTimedOut(stimulus))
        elif action is TransactionAction.REPORT_TRANSPORT_ERROR:
            self._events.append(TransportFailed(reason))
        else:  # pragma: no cover - a table names an action its machine does not implement
            raise LocalProtocolError(f"{type(self).__name__} cannot {action.value}")

    def _send(self, message: SipMessage) -> None:
        self._outgoing.append(message.serialize())


# --- matching (§17.1.3, §17.2.3) -----------------------------------------------------------------------


def new_branch(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh Via branch: the magic cookie and 96 random bits (§8.1.1.7)."""
    return MAGIC_COOKIE + randbytes(12).hex()


def is_rfc3261_branch(branch: str | None) -> bool:
    return branch is not None and branch.startswith(MAGIC_COOKIE)


@dataclass(frozen=True, slots=True)
class ClientKey:
    """§17.1.3: a response matches by its top Via branch and its CSeq method."""

    branch: str
    method: str


@dataclass(frozen=True, slots=True)
class ServerKey:
    """§17.2.3: branch, sent-by and method; an ACK carries the INVITE's method here."""

    branch: str
    sent_by: str
    method: str


def client_key(message: SipMessage) -> ClientKey | None:
    branch = message.top_via.branch
    if branch is None:
        return None
    # §17.1.3: the method of CSeq, not of a request line, since a CANCEL shares the INVITE's branch.
    return ClientKey(branch, message.cseq.method)


def server_key(request: SipRequest) -> ServerKey | None:
    """The §17.2.3 key, or ``None`` when the branch lacks the magic cookie (an RFC 2543 peer)."""
    via = request.top_via
    branch = via.branch
    if branch is None or not is_rfc3261_branch(branch):
        return None
    method = "INVITE" if request.method == "ACK" else request.method
    # Host names compare case-insensitively (§19.1.4 style); the port is kept as written.
    return ServerKey(branch, via.sent_by.lower(), method)


def _legacy_match(origin: SipRequest, request: SipRequest, to_tag: str | None) -> bool:
    """The RFC 2543 comparison of §17.2.3: Request-URI, tags, Call-ID, CSeq number, top Via."""
    return (
        origin.uri.equivalent(request.uri)
        and origin.from_.tag == request.from_.tag
        and request.to.tag == to_tag
        and origin.call_id == request.call_id
        and origin.cseq.seq == request.cseq.seq
        and origin.top_via == request.top_via
    )


class TransactionTable:
    """Every live transaction of one UA, found by key, with one timer and one event stream for them all."""

    def __init__(self) -> None:
        self._clients: dict[ClientKey, ClientTransaction] = {}
        self._servers: dict[ServerKey, ServerTransaction] = {}
        self._legacy: list[ServerTransaction] = []  # RFC 2543 peers: matched by comparison, not by key

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers) + len(self._legacy)

    def __iter__(self) -> Iterator[Transaction]:
        yield from list(self._clients.values())
        yield from list(self._servers.values())
        yield from list(self._legacy)

    def add_client(self, transaction: ClientTransaction) -> None:
        if transaction.key in self._clients:
            raise LocalProtocolError(f"a client transaction with branch {transaction.key.branch} exists")
        self._clients[transaction.key] = transaction

    def add_server(self, transaction: ServerTransaction) -> None:
        key = transaction.key
        if key is None:
            self._legacy.append(transaction)
        elif key in self._servers:
            raise LocalProtocolError(f"a server transaction with branch {key.branch} exists")
        else:
            self._servers[key] = transaction

    def remove(self, transaction: Transaction) -> None:
        self._clients = {k: t for k, t in self._clients.items() if t is not transaction}
        self._servers = {k: t for k, t in self._servers.items() if t is not transaction}
        self._legacy = [t for t in self._legacy if t is not transaction]

    def match_response(self, response: SipResponse) -> ClientTransaction | None:
        """The client transaction a response belongs to; ``None`` for a stray (RFC 6026 §7.3: drop it)."""
        key = client_key(response)
        return None if key is None else self._clients.get(key)

    def match_request(self, request: SipRequest) -> ServerTransaction | None:
        """The server transaction a request (a retransmission, or an ACK for a non-2xx) belongs to."""
        key = server_key(request)
        if key is not None:
            # server_key() gave an ACK the method INVITE; a CANCEL keeps its own (it is its own transaction).
            return self._servers.get(key)
        for transaction in self._legacy:
            if request.method == "ACK":
                # §17.2.3: the ACK's To tag is the one of the response we sent, not the INVITE's.
                if transaction.method == "INVITE" and _legacy_match(transaction.request, request, transaction.to_tag):
                    return transaction
            elif transaction.method == request.method and transaction.request.cseq == request.cseq:
                if _legacy_match(transaction.request, request, transaction.request.to.tag):
                    return transaction
        return None

    def match_cancel(self, cancel: SipRequest) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL targets (§9.2: §17.2.3 matching with the method INVITE)."""
        key = server_key(cancel)
        if key is not None:
            return self._servers.get(ServerKey(key.branch, key.sent_by, "INVITE"))
        for transaction in self._legacy:
            if transaction.method == "INVITE" and _legacy_match(
                transaction.request, cancel, transaction.request.to.tag
            ):
                return transaction
        return None

    def get_timer(self) -> float | None:
        return min((d for t in self if (d := t.get_timer()) is not None), default=None)

    def handle_timer(self, now: float) -> None:
        for transaction in self:
            deadline = transaction.get_timer()
            if deadline is not None and deadline <= now:
                transaction.handle_timer(now)

    def datagrams_to_send(self) -> list[tuple[Transaction, bytes]]:
        return [(t, data) for t in self for data in t.datagrams_to_send()]

    def next_event(self) -> tuple[Transaction, TransactionEvent] | None:
        """The next event of any transaction; a terminated one leaves the table once its events are read."""
        for transaction in self:
            event = transaction.next_event()
            if event is not None:
                return transaction, event
            if transaction.terminated:
                self.remove(transaction)
        return None
