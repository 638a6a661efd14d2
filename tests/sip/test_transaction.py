"""The transaction machines of RFC 3261 §17 and RFC 6026, driven on virtual time through a fake transport.

Expected send times are computed here from the RFC's rules (T1 doubling, T2 cap, 64*T1 timeouts), never
copied from the code's output. Messages are written as text and read back with the parser, so what the
machines send is checked on the wire form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.sip.client_transaction import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
    make_ack,
    make_cancel,
)
from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.message import SipMessage, SipRequest, SipResponse
from sipagent.sip.parser import parse_message
from sipagent.sip.server_transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from sipagent.sip.timers import Timer, TimerConfig
from sipagent.sip.transaction import (
    MAGIC_COOKIE,
    AckReceived,
    RequestReceived,
    ResponseReceived,
    Transaction,
    TransactionEvent,
    TransactionInput,
    TransactionState,
    TransactionTable,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    new_branch,
)

pytestmark = pytest.mark.unit

# §17.1.1.1 defaults, and the 64*T1 of Timers B, F, H, J (Appendix A).
T1, T2, T4 = 0.5, 4.0, 5.0
TIMEOUT = 64 * T1
BRANCH = "z9hG4bK776asdhds"
S = TransactionState


# --- messages, written as a peer would write them ------------------------------------------------------


def request(
    method: str = "INVITE",
    *,
    branch: str = BRANCH,
    sent_by: str = "192.0.2.1:5060",
    to_tag: str | None = None,
    cseq: int = 314159,
    uri: str = "sip:bob@example.com",
) -> SipRequest:
    to = "Bob <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKproxy1\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        f"To: {to}\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@192.0.2.1>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def response(req: SipRequest, status: int, to_tag: str | None = "bob-1") -> SipResponse:
    """The peer's response: Vias, From, Call-ID, CSeq copied, To tagged except on 100 (§8.2.6)."""
    to = req.headers.get("To") or ""
    if to_tag is not None and status != 100:
        to += f";tag={to_tag}"
    rows = "".join(f"Via: {via}\r\n" for via in req.headers.get_all("Via", split=False))
    text = (
        f"SIP/2.0 {status} Whatever\r\n{rows}"
        f"From: {req.headers.get('From')}\r\nTo: {to}\r\n"
        f"Call-ID: {req.call_id}\r\nCSeq: {req.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipResponse)
    return message


def ack_for(invite: SipRequest, to_tag: str = "bob-1", branch: str | None = None) -> SipRequest:
    top = invite.top_via
    return request("ACK", branch=branch or top.branch or "", sent_by=top.sent_by, to_tag=to_tag, cseq=invite.cseq.seq)


# --- the fake transport ----------------------------------------------------------------------------------


@dataclass
class Wire:
    """Drives one transaction: records every datagram (parsed) with its send time, and every event."""

    txn: Transaction
    now: float = 0.0
    sent: list[tuple[float, SipMessage]] = field(default_factory=list)
    events: list[TransactionEvent] = field(default_factory=list)
    last_timer: float | None = None  # when handle_timer last ran

    def pump(self) -> None:
        for data in self.txn.datagrams_to_send():
            self.sent.append((self.now, parse_message(data)))
        while (event := self.txn.next_event()) is not None:
            self.events.append(event)

    def at(self, now: float, action: Callable[[float], None]) -> None:
        self.run_until(now)
        self.now = now
        action(now)
        self.pump()

    def start(self, now: float = 0.0) -> None:
        self.at(now, self.txn.start)

    def run_until(self, until: float) -> None:
        while (deadline := self.txn.get_timer()) is not None and deadline <= until:
            self.now = self.last_timer = deadline
            self.txn.handle_timer(deadline)
            self.pump()
        self.now = max(self.now, until)

    def times(self, method_or_status: str | int) -> list[float]:
        return [t for t, m in self.sent if _label(m) == method_or_status]

    def take_events(self) -> list[TransactionEvent]:
        out, self.events = self.events, []
        return out


def _label(message: SipMessage) -> str | int:
    return (
        message.method
        if isinstance(message, SipRequest)
        else message.status
        if isinstance(message, SipResponse)
        else ""
    )


def receive(wire: Wire, now: float, resp: SipResponse) -> None:
    assert isinstance(wire.txn, ClientTransaction)
    txn = wire.txn
    wire.at(now, lambda t: txn.receive_response(resp, t))


def answer(wire: Wire, now: float, resp: SipResponse) -> None:
    assert isinstance(wire.txn, ServerTransaction)
    txn = wire.txn
    wire.at(now, lambda t: txn.send_response(resp, t))


def incoming(wire: Wire, now: float, req: SipRequest) -> None:
    assert isinstance(wire.txn, ServerTransaction)
    txn = wire.txn
    wire.at(now, lambda t: txn.receive_request(req, t))


def schedule(first: float, limit: float, step: Callable[[float], float]) -> list[float]:
    """Send times: ``first``, then each interval from ``step(previous interval)``, all strictly before limit."""
    times, interval, t = [0.0], first, 0.0
    while t + interval < limit:
        t += interval
        times.append(t)
        interval = step(interval)
    return times


def statuses(events: list[TransactionEvent]) -> list[int]:
    return [e.response.status for e in events if isinstance(e, ResponseReceived)]


# --- timers ------------------------------------------------------------------------------------------------


def test_timer_values_follow_the_rfc_table() -> None:
    config = TimerConfig()
    assert (config.t1, config.t2, config.t4, config.trying_delay) == (T1, T2, T4, 0.2)
    unreliable = {
        Timer.A: T1, Timer.B: TIMEOUT, Timer.D: 32.0, Timer.E: T1, Timer.F: TIMEOUT, Timer.G: T1,
        Timer.H: TIMEOUT, Timer.I: T4, Timer.J: TIMEOUT, Timer.K: T4, Timer.L: TIMEOUT, Timer.M: TIMEOUT,
    }  # fmt: skip
    reliable: dict[Timer, float | None] = {
        Timer.A: None, Timer.B: TIMEOUT, Timer.D: 0.0, Timer.E: None, Timer.F: TIMEOUT, Timer.G: None,
        Timer.H: TIMEOUT, Timer.I: 0.0, Timer.J: 0.0, Timer.K: 0.0, Timer.L: TIMEOUT, Timer.M: TIMEOUT,
    }  # fmt: skip
    for timer, value in unreliable.items():
        assert config.initial(timer, reliable=False) == value, timer
    for timer, expected in reliable.items():
        assert config.initial(timer, reliable=True) == expected, timer
    # Timer D is "at least 32 s" and covers the server's 64*T1 when T1 is larger.
    assert TimerConfig(t1=1.0, t2=4.0).initial(Timer.D, reliable=False) == 64.0


@pytest.mark.parametrize(("t1", "t2", "t4"), [(0, 4, 5), (1, 0.5, 5), (0.5, 4, 0), (-1, 4, 5)])
def test_timer_config_rejects_nonsense(t1: float, t2: float, t4: float) -> None:
    with pytest.raises(LocalProtocolError, match="t1"):
        TimerConfig(t1=t1, t2=t2, t4=t4)


# --- INVITE client ---------------------------------------------------------------------------------------


def invite_client(reliable: bool = False) -> tuple[Wire, SipRequest]:
    invite = request("INVITE")
    wire = Wire(InviteClientTransaction(invite, reliable=reliable))
    wire.start()
    return wire, invite


def test_invite_client_udp_retransmits_with_doubling_until_timer_b() -> None:
    wire, _ = invite_client()
    assert wire.txn.state is S.CALLING
    wire.run_until(1000)
    # §17.1.1.2: Timer A starts at T1 and doubles with no cap; Timer B ends it all at 64*T1.
    assert wire.times("INVITE") == schedule(T1, TIMEOUT, lambda i: 2 * i)
    assert wire.times("INVITE") == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # 7 transmissions, the familiar figure
    assert wire.events == [TransactionTimedOut(Timer.B), TransactionTerminated()]
    assert wire.last_timer == TIMEOUT and wire.txn.terminated and wire.txn.get_timer() is None


def test_invite_client_provisional_stops_retransmission_and_timer_b() -> None:
    wire, invite = invite_client()
    receive(wire, 0.7, response(invite, 100))
    receive(wire, 2.0, response(invite, 180))
    assert wire.txn.state is S.PROCEEDING
    wire.run_until(1000)
    assert wire.times("INVITE") == [0, 0.5]  # the retransmission at T1 went before the 100 came
    assert statuses(wire.events) == [100, 180]
    assert wire.txn.get_timer() is None  # §17.1.1.2: Proceeding has no timeout; that is the TU's Timer C


@pytest.mark.parametrize("status", [300, 404, 486, 500, 603])
@pytest.mark.parametrize("provisional_first", [False, True])
def test_invite_client_failure_is_acked_and_reacked_until_timer_d(status: int, provisional_first: bool) -> None:
    wire, invite = invite_client()
    if provisional_first:
        receive(wire, 0.1, response(invite, 180))
    final = response(invite, status)
    receive(wire, 1.0, final)
    assert wire.txn.state is S.COMPLETED
    acks = [m for _, m in wire.sent if isinstance(m, SipRequest) and m.method == "ACK"]
    assert len(acks) == 1
    ack = acks[0]
    # §17.1.1.3, field by field against the INVITE and the response.
    assert ack.uri == invite.uri
    assert ack.headers.get_all("Via") == [invite.headers.get_all("Via")[0]]
    assert ack.top_via.branch == BRANCH
    assert ack.headers.get("To") == final.headers.get("To") and ack.to.tag == "bob-1"
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.call_id == invite.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (invite.cseq.seq, "ACK")
    assert ack.headers.get_all("Route") == invite.headers.get_all("Route")
    # A retransmitted final response gets the same ACK again and is not passed up twice.
    receive(wire, 2.0, final)
    receive(wire, 3.0, final)
    assert wire.times("ACK") == [1.0, 2.0, 3.0]
    assert all(m.serialize() == ack.serialize() for _, m in wire.sent if _label(m) == "ACK")
    assert statuses(wire.events) == ([180] if provisional_first else []) + [status]
    wire.run_until(1000)
    assert wire.last_timer == 1.0 + 32.0  # Timer D
    assert wire.txn.terminated and wire.events[-1] == TransactionTerminated()
    assert wire.times("INVITE") == ([0] if provisional_first else [0, 0.5])


def test_invite_client_2xx_goes_to_accepted_and_passes_every_2xx_until_timer_m() -> None:
    wire, invite = invite_client()
    receive(wire, 0.2, response(invite, 180))
    receive(wire, 1.0, response(invite, 200))
    assert wire.txn.state is S.ACCEPTED
    receive(wire, 1.5, response(invite, 200))  # retransmission
    receive(wire, 2.0, response(invite, 200, to_tag="bob-fork-2"))  # another fork
    receive(wire, 2.5, response(invite, 183))  # absorbed
    receive(wire, 3.0, response(invite, 486, to_tag="bob-fork-3"))  # absorbed, and not ACKed here
    assert statuses(wire.events) == [180, 200, 200, 200]
    assert wire.times("ACK") == []  # RFC 6026 §7.2: the TU ACKs a 2xx
    wire.run_until(1000)
    assert wire.last_timer == 1.0 + TIMEOUT  # Timer M
    assert wire.txn.terminated


def test_invite_client_over_tcp_never_retransmits() -> None:
    wire, invite = invite_client(reliable=True)
    wire.run_until(1000)
    assert wire.times("INVITE") == [0]
    assert wire.events == [TransactionTimedOut(Timer.B), TransactionTerminated()] and wire.last_timer == TIMEOUT

    wire, invite = invite_client(reliable=True)
    receive(wire, 1.0, response(invite, 404))
    # Timer D is zero over a reliable transport: Completed is left within the same call.
    assert wire.times("ACK") == [1.0] and wire.txn.terminated
    assert wire.events == [ResponseReceived(response(invite, 404)), TransactionTerminated()]


def test_invite_client_transport_error() -> None:
    wire, _ = invite_client()
    wire.at(0.1, lambda t: wire.txn.transport_error(t, "ICMP port unreachable"))
    assert wire.events == [TransportFailed("ICMP port unreachable"), TransactionTerminated()]
    assert wire.txn.get_timer() is None


# --- non-INVITE client ---------------------------------------------------------------------------------


def non_invite_client(reliable: bool = False) -> tuple[Wire, SipRequest]:
    options = request("OPTIONS")
    wire = Wire(NonInviteClientTransaction(options, reliable=reliable))
    wire.start()
    return wire, options


def test_non_invite_client_doubles_up_to_t2_until_timer_f() -> None:
    wire, _ = non_invite_client()
    assert wire.txn.state is S.TRYING
    wire.run_until(1000)
    # §17.1.2.2: T1, 2*T1, 4*T1, then T2 each time.
    expected = schedule(T1, TIMEOUT, lambda i: min(2 * i, T2))
    assert expected[:6] == [0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert wire.times("OPTIONS") == expected
    assert wire.events == [TransactionTimedOut(Timer.F), TransactionTerminated()] and wire.last_timer == TIMEOUT


def test_non_invite_client_retransmits_every_t2_once_proceeding() -> None:
    wire, options = non_invite_client()
    receive(wire, 0.6, response(options, 100))
    assert wire.txn.state is S.PROCEEDING
    wire.run_until(1000)
    # Timer E was pending for 1.5 (armed with 2*T1 at 0.5); from then on it is T2 (§17.1.2.2).
    after = [1.5 + k * T2 for k in range(100) if 1.5 + k * T2 < TIMEOUT]
    assert wire.times("OPTIONS") == [0, 0.5, *after]
    assert wire.events == [ResponseReceived(response(options, 100)), TransactionTimedOut(Timer.F),
                           TransactionTerminated()]  # fmt: skip


@pytest.mark.parametrize("status", [200, 202, 404, 503])
def test_non_invite_client_final_then_timer_k(status: int) -> None:
    wire, options = non_invite_client()
    receive(wire, 0.3, response(options, 180))
    receive(wire, 0.9, response(options, status))
    assert wire.txn.state is S.COMPLETED
    for t in (1.0, 2.0, 3.0):
        receive(wire, t, response(options, status))
        receive(wire, t, response(options, 180))
    assert statuses(wire.events) == [180, status]
    wire.run_until(1000)
    assert wire.last_timer == 0.9 + T4 and wire.txn.terminated  # Timer K
    assert wire.times("OPTIONS") == [0, 0.5]


def test_non_invite_client_over_tcp() -> None:
    wire, options = non_invite_client(reliable=True)
    wire.run_until(1000)
    assert wire.times("OPTIONS") == [0] and wire.last_timer == TIMEOUT
    assert wire.events[0] == TransactionTimedOut(Timer.F)

    wire, options = non_invite_client(reliable=True)
    receive(wire, 0.4, response(options, 200))
    assert wire.txn.terminated  # Timer K is zero
    assert wire.events == [ResponseReceived(response(options, 200)), TransactionTerminated()]


# --- INVITE server ---------------------------------------------------------------------------------------


def invite_server(reliable: bool = False, auto_trying: bool = True) -> tuple[Wire, SipRequest]:
    invite = request("INVITE")
    wire = Wire(InviteServerTransaction(invite, reliable=reliable, auto_trying=auto_trying))
    wire.start()
    return wire, invite


def test_invite_server_passes_the_request_up_and_sends_100_after_200_ms() -> None:
    wire, invite = invite_server()
    assert wire.txn.state is S.PROCEEDING
    assert wire.take_events() == [RequestReceived(invite)]
    wire.run_until(1.0)
    assert wire.times(100) == [0.2]
    trying = wire.sent[0][1]
    assert isinstance(trying, SipResponse) and trying.to.tag is None  # §8.2.6.1: no tag on 100
    assert trying.headers.get_all("Via") == invite.headers.get_all("Via")

    wire, invite = invite_server()
    answer(wire, 0.1, response(invite, 180))
    wire.run_until(1.0)
    assert wire.times(100) == [] and wire.times(180) == [0.1]

    wire, invite = invite_server(auto_trying=False)
    wire.run_until(10.0)
    assert wire.sent == [] and wire.txn.get_timer() is None


def test_invite_server_resends_the_last_provisional_on_retransmission() -> None:
    wire, invite = invite_server(auto_trying=False)
    incoming(wire, 0.5, invite)
    assert wire.sent == []  # nothing to resend yet
    answer(wire, 0.6, response(invite, 180))
    answer(wire, 0.7, response(invite, 183))
    incoming(wire, 1.5, invite)
    assert [(t, _label(m)) for t, m in wire.sent] == [(0.6, 180), (0.7, 183), (1.5, 183)]
    assert wire.take_events() == [RequestReceived(invite)]  # retransmissions never reach the TU


def test_invite_server_failure_retransmits_with_g_until_timer_h() -> None:
    wire, invite = invite_server()
    answer(wire, 0.1, response(invite, 486))
    assert wire.txn.state is S.COMPLETED
    wire.run_until(1000)
    # §17.2.1: Timer G from T1, doubling, capped at T2; Timer H gives up at 64*T1.
    expected = [0.1 + t for t in schedule(T1, TIMEOUT, lambda i: min(2 * i, T2))]
    assert wire.times(486) == expected
    assert wire.take_events() == [RequestReceived(invite), TransactionTimedOut(Timer.H), TransactionTerminated()]
    assert wire.last_timer == 0.1 + TIMEOUT


def test_invite_server_ack_confirms_and_timer_i_terminates() -> None:
    wire, invite = invite_server()
    answer(wire, 0.1, response(invite, 603))
    incoming(wire, 0.3, invite)  # a retransmitted INVITE gets the final response again
    assert wire.times(603) == [0.1, 0.3]
    wire.run_until(0.7)
    assert wire.times(603) == [0.1, 0.3, 0.6]  # G at T1
    incoming(wire, 0.8, ack_for(invite))
    assert wire.txn.state is S.CONFIRMED
    incoming(wire, 0.9, ack_for(invite))  # absorbed
    incoming(wire, 1.0, invite)  # absorbed
    wire.run_until(1000)
    assert wire.times(603) == [0.1, 0.3, 0.6]
    assert wire.last_timer == 0.8 + T4 and wire.txn.terminated
    assert wire.take_events() == [RequestReceived(invite), TransactionTerminated()]


def test_invite_server_2xx_accepted_absorbs_invites_and_passes_acks() -> None:
    wire, invite = invite_server()
    ok = response(invite, 200)
    answer(wire, 0.1, ok)
    assert wire.txn.state is S.ACCEPTED
    incoming(wire, 0.5, invite)
    assert wire.times(200) == [0.1]  # the 2xx is the UA core's to retransmit (§13.3.1.4)
    answer(wire, 0.6, ok)
    assert wire.times(200) == [0.1, 0.6]
    ack = ack_for(invite)
    incoming(wire, 0.7, ack)
    with pytest.raises(LocalProtocolError, match="FAILURE is not allowed in state Accepted"):
        answer(wire, 0.8, response(invite, 486))
    wire.run_until(1000)
    assert wire.last_timer == 0.1 + TIMEOUT  # Timer L
    assert wire.take_events() == [RequestReceived(invite), AckReceived(ack), TransactionTerminated()]


def test_invite_server_over_tcp() -> None:
    wire, invite = invite_server(reliable=True)
    answer(wire, 0.1, response(invite, 480))
    wire.run_until(1000)
    assert wire.times(480) == [0.1]  # no Timer G
    assert wire.last_timer == 0.1 + TIMEOUT and wire.events[-2:] == [
        TransactionTimedOut(Timer.H),
        TransactionTerminated(),
    ]

    wire, invite = invite_server(reliable=True)
    answer(wire, 0.1, response(invite, 480))
    incoming(wire, 0.2, ack_for(invite))
    assert wire.txn.terminated  # Timer I is zero


# --- non-INVITE server ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reliable", [False, True])
def test_non_invite_server(reliable: bool) -> None:
    bye = request("BYE", to_tag="bob-1")
    wire = Wire(NonInviteServerTransaction(bye, reliable=reliable))
    wire.start()
    assert wire.txn.state is S.TRYING and wire.take_events() == [RequestReceived(bye)]
    incoming(wire, 0.1, bye)
    assert wire.sent == []  # §17.2.2: Trying discards retransmissions
    answer(wire, 0.2, response(bye, 100))
    incoming(wire, 0.3, bye)
    assert [(t, _label(m)) for t, m in wire.sent] == [(0.2, 100), (0.3, 100)]
    answer(wire, 0.4, response(bye, 200))
    if reliable:
        assert wire.txn.terminated  # Timer J is zero
        return
    incoming(wire, 0.5, bye)
    assert [(t, _label(m)) for t, m in wire.sent][2:] == [(0.4, 200), (0.5, 200)]
    with pytest.raises(LocalProtocolError):
        answer(wire, 0.6, response(bye, 500))
    wire.run_until(1000)
    assert wire.last_timer == 0.4 + TIMEOUT and wire.take_events() == [TransactionTerminated()]  # Timer J


def test_non_invite_server_transport_error() -> None:
    bye = request("BYE", to_tag="bob-1")
    wire = Wire(NonInviteServerTransaction(bye, reliable=False))
    wire.start()
    answer(wire, 0.1, response(bye, 200))
    wire.at(0.2, lambda t: wire.txn.transport_error(t, "no route"))
    assert wire.take_events()[-2:] == [TransportFailed("no route"), TransactionTerminated()]


# --- misuse --------------------------------------------------------------------------------------------------


def test_constructors_refuse_the_wrong_request() -> None:
    with pytest.raises(LocalProtocolError, match="INVITE client"):
        InviteClientTransaction(request("OPTIONS"), reliable=False)
    with pytest.raises(LocalProtocolError, match="non-INVITE client"):
        NonInviteClientTransaction(request("INVITE"), reliable=False)
    with pytest.raises(LocalProtocolError, match="non-INVITE client"):
        NonInviteClientTransaction(request("ACK"), reliable=False)
    with pytest.raises(LocalProtocolError, match="INVITE server"):
        InviteServerTransaction(request("BYE"), reliable=False)
    with pytest.raises(LocalProtocolError, match="non-INVITE server"):
        NonInviteServerTransaction(request("ACK"), reliable=False)
    with pytest.raises(LocalProtocolError, match="z9hG4bK"):
        InviteClientTransaction(request(branch="1234legacy"), reliable=False)
    with pytest.raises(LocalProtocolError, match="CSeq method"):
        bye = request("BYE")
        bye.headers.set("CSeq", "1 OPTIONS")
        NonInviteClientTransaction(bye, reliable=False)


def test_inputs_that_do_not_belong_are_refused() -> None:
    wire, invite = invite_client()
    with pytest.raises(LocalProtocolError, match="does not match"):
        assert isinstance(wire.txn, ClientTransaction)
        wire.txn.receive_response(response(request(branch="z9hG4bKother"), 200), 1.0)
    with pytest.raises(LocalProtocolError, match="START is not allowed"):
        wire.txn.start(1.0)
    server, invite = invite_server()
    assert isinstance(server.txn, ServerTransaction)
    with pytest.raises(LocalProtocolError, match="does not match"):
        server.txn.receive_request(request(branch="z9hG4bKother"), 1.0)
    with pytest.raises(LocalProtocolError, match="CSeq"):
        server.txn.send_response(response(request("INVITE", cseq=1), 200), 1.0)
    idle = InviteClientTransaction(invite, reliable=False)
    with pytest.raises(LocalProtocolError, match="not allowed in state Idle"):
        idle.receive_response(response(invite, 200), 0.0)


# --- the tables, walked exhaustively -------------------------------------------------------------------------

# For each machine: a way to reach each of its states through the public API.
RECIPES: dict[type[Transaction], dict[TransactionState, list[str | int]]] = {
    InviteClientTransaction: {
        S.IDLE: [], S.CALLING: ["start"], S.PROCEEDING: ["start", 180], S.COMPLETED: ["start", 486],
        S.ACCEPTED: ["start", 200], S.TERMINATED: ["start", "error"],
    },
    NonInviteClientTransaction: {
        S.IDLE: [], S.TRYING: ["start"], S.PROCEEDING: ["start", 180], S.COMPLETED: ["start", 404],
        S.TERMINATED: ["start", "error"],
    },
    InviteServerTransaction: {
        S.IDLE: [], S.PROCEEDING: ["start"], S.COMPLETED: ["start", 486], S.CONFIRMED: ["start", 486, "ack"],
        S.ACCEPTED: ["start", 200], S.TERMINATED: ["start", "error"],
    },
    NonInviteServerTransaction: {
        S.IDLE: [], S.TRYING: ["start"], S.PROCEEDING: ["start", 100], S.COMPLETED: ["start", 404],
        S.TERMINATED: ["start", "error"],
    },
}  # fmt: skip
STIMULI = [*TransactionInput, *Timer]
STATUS_OF = {TransactionInput.PROVISIONAL: 180, TransactionInput.SUCCESS: 200, TransactionInput.FAILURE: 486}
NETWORK = {
    ClientTransaction: [TransactionInput.PROVISIONAL, TransactionInput.SUCCESS, TransactionInput.FAILURE],
    ServerTransaction: [TransactionInput.REQUEST],
}


def build(cls: type[Transaction]) -> Transaction:
    method = "INVITE" if cls in (InviteClientTransaction, InviteServerTransaction) else "OPTIONS"
    return cls(request(method), reliable=False)


def step(txn: Transaction, action: str | int | TransactionInput | Timer, now: float) -> None:
    """Apply a recipe step or a stimulus through the public API where the machine has one."""
    if isinstance(action, TransactionInput):
        action = {
            TransactionInput.START: "start",
            TransactionInput.TRANSPORT_ERROR: "error",
            TransactionInput.ACK: "ack",
            TransactionInput.REQUEST: "request",
        }.get(action) or STATUS_OF[action]
    if action == "start":
        txn.start(now)
    elif action == "error":
        txn.transport_error(now)
    elif isinstance(action, int) and isinstance(txn, ClientTransaction):
        txn.receive_response(response(txn.request, action), now)
    elif isinstance(action, int) and isinstance(txn, ServerTransaction):
        txn.send_response(response(txn.request, action), now)
    elif action in ("ack", "request") and isinstance(txn, ServerTransaction):
        txn.receive_request(ack_for(txn.request) if action == "ack" else txn.request, now)
    else:
        # Stimuli with no public entry point on this machine (a timer; a request to a client) go straight
        # to the engine: the table alone must decide.
        stimulus = {"ack": TransactionInput.ACK, "request": TransactionInput.REQUEST}.get(str(action), action)
        assert isinstance(stimulus, (TransactionInput, Timer))
        txn._feed(stimulus, now)


def reach(cls: type[Transaction], state: TransactionState) -> Transaction:
    txn = build(cls)
    for action in RECIPES[cls][state]:
        step(txn, action, 0.0)
    assert txn.state is state
    return txn


CASES = [(cls, state, stimulus) for cls in RECIPES for state in RECIPES[cls] for stimulus in STIMULI]


@pytest.mark.parametrize(("cls", "state", "stimulus"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_state_and_stimulus_is_defined_or_refused(
    cls: type[Transaction], state: TransactionState, stimulus: TransactionInput | Timer
) -> None:
    txn = reach(cls, state)
    transition = cls.TABLE.get((state, stimulus))
    if transition is None:
        with pytest.raises(LocalProtocolError):
            step(txn, stimulus, 0.1)
        assert txn.state is state  # a refused input changes nothing
    else:
        step(txn, stimulus, 0.1)
        assert txn.state is transition.target


@pytest.mark.parametrize("cls", list(RECIPES), ids=lambda c: c.__name__)
def test_table_shape(cls: type[Transaction]) -> None:
    table = cls.TABLE
    states = set(RECIPES[cls])
    assert {s for s, _ in table} | {t.target for t in table.values()} <= states
    # Every running timer has a row in the state it runs in, so handle_timer() can never raise.
    for state in states:
        for timer in reach(cls, state).timers():
            assert (state, timer) in table, (state, timer)
    # The network cannot make us raise: every message a peer can send has a row in every started state.
    network = NETWORK[ClientTransaction if issubclass(cls, ClientTransaction) else ServerTransaction]
    for state in states - {S.IDLE}:
        for stimulus in [*network, TransactionInput.TRANSPORT_ERROR]:
            assert (state, stimulus) in table, (state, stimulus)
    # Terminated is a sink, and every state leads there.
    assert all(t.target is S.TERMINATED for (s, _), t in table.items() if s is S.TERMINATED)
    for start in states:
        seen, frontier = {start}, [start]
        while frontier:
            here = frontier.pop()
            for (source, _), transition in table.items():
                if source is here and transition.target not in seen:
                    seen.add(transition.target)
                    frontier.append(transition.target)
        assert S.TERMINATED in seen, start


# --- matching ---------------------------------------------------------------------------------------------------


def test_new_branch() -> None:
    assert new_branch(lambda n: bytes(range(n))) == MAGIC_COOKIE + "000102030405060708090a0b"
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100 and all(b.startswith("z9hG4bK") for b in branches)


def test_table_matches_responses_by_branch_and_cseq_method() -> None:
    table = TransactionTable()
    invite = request("INVITE")
    client = InviteClientTransaction(invite, reliable=False)
    cancel = NonInviteClientTransaction(make_cancel(invite), reliable=False)
    table.add_client(client)
    table.add_client(cancel)  # same branch, other method: its own transaction (§9.1)
    with pytest.raises(LocalProtocolError):
        table.add_client(InviteClientTransaction(invite, reliable=False))
    assert table.match_response(response(invite, 180)) is client
    assert table.match_response(response(cancel.request, 200)) is cancel
    assert table.match_response(response(request("INVITE", branch="z9hG4bKelse"), 200)) is None
    assert table.match_response(response(request("BYE"), 200)) is None


def test_table_matches_requests_acks_and_cancels() -> None:
    table = TransactionTable()
    invite = request("INVITE")
    server = InviteServerTransaction(invite, reliable=False)
    table.add_server(server)
    cancel_request = request("CANCEL")  # same Via as the INVITE, per §9.1
    assert table.match_request(cancel_request) is None  # a CANCEL is a transaction of its own
    assert table.match_cancel(cancel_request) is server
    cancel = NonInviteServerTransaction(cancel_request, reliable=False)
    table.add_server(cancel)
    assert table.match_request(invite) is server
    assert table.match_request(ack_for(invite)) is server  # §17.2.3: ACK matches the INVITE
    assert table.match_request(cancel_request) is cancel
    assert table.match_request(ack_for(invite, branch="z9hG4bKnew")) is None  # the ACK of a 2xx: the TU's
    # Same branch from another sent-by is another client's transaction.
    assert table.match_request(request("INVITE", sent_by="203.0.113.9:5060")) is None
    assert table.match_cancel(request("CANCEL", branch="z9hG4bKelse")) is None
    with pytest.raises(LocalProtocolError):
        table.add_server(InviteServerTransaction(invite, reliable=False))


def test_table_rfc2543_fallback() -> None:
    table = TransactionTable()
    invite = request("INVITE", branch="legacy-1")
    server = InviteServerTransaction(invite, reliable=False)
    assert server.key is None
    table.add_server(server)
    server.start(0.0)
    assert table.match_request(request("INVITE", branch="legacy-1")) is server
    assert table.match_request(request("INVITE", branch="legacy-1", cseq=2)) is None
    assert table.match_request(request("INVITE", branch="legacy-1", uri="sip:carol@example.com")) is None
    assert table.match_cancel(request("CANCEL", branch="legacy-1")) is server
    assert table.match_cancel(request("CANCEL", branch="legacy-2")) is None  # another top Via
    server.send_response(response(invite, 486, to_tag="tag-486"), 0.1)
    # §17.2.3: the ACK carries the To tag of the response we sent.
    assert table.match_request(ack_for(invite, to_tag="tag-486")) is server
    assert table.match_request(ack_for(invite, to_tag="other")) is None
    bye = request("BYE", branch="legacy-1", to_tag="x")
    assert table.match_request(bye) is None


def test_table_multiplexes_timers_and_events() -> None:
    table = TransactionTable()
    options = NonInviteClientTransaction(request("OPTIONS", branch="z9hG4bKo"), reliable=False)
    invite = InviteClientTransaction(request("INVITE", branch="z9hG4bKi"), reliable=True)
    table.add_client(options)
    table.add_client(invite)
    options.start(0.0)
    invite.start(0.0)
    assert len(table) == 2 and table.get_timer() == T1  # Timer E; the TCP INVITE has only B at 64*T1
    sent = table.datagrams_to_send()
    assert [t for t, _ in sent] == [options, invite]
    table.handle_timer(T1)
    assert [t for t, _ in table.datagrams_to_send()] == [options]
    options.receive_response(response(options.request, 200), 0.6)
    table.handle_timer(0.6 + T4)
    drained = []
    while (item := table.next_event()) is not None:
        drained.append(item)
    assert drained == [(options, ResponseReceived(response(options.request, 200))), (options, TransactionTerminated())]
    assert list(table) == [invite] and table.get_timer() == TIMEOUT


def test_make_cancel_copies_what_section_9_1_asks() -> None:
    invite = request("INVITE")
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    for name in ("From", "To", "Call-ID", "Max-Forwards"):
        assert cancel.headers.get(name) == invite.headers.get(name), name
    assert cancel.headers.get_all("Via") == [invite.headers.get_all("Via")[0]]
    assert cancel.headers.get_all("Route") == invite.headers.get_all("Route")
    assert (cancel.cseq.seq, cancel.cseq.method) == (invite.cseq.seq, "CANCEL")
    assert cancel.headers.get("Contact") is None
    reparsed = parse_message(cancel.serialize())
    assert isinstance(reparsed, SipRequest) and reparsed.cseq == cancel.cseq
    with pytest.raises(LocalProtocolError, match="INVITE only"):
        make_cancel(request("OPTIONS"))
    with pytest.raises(LocalProtocolError, match="300-699"):
        make_ack(invite, response(invite, 200))
    with pytest.raises(LocalProtocolError, match="only an INVITE"):
        make_ack(request("OPTIONS"), response(request("OPTIONS"), 404))


def test_odds_and_ends() -> None:
    invite = request("INVITE")
    client = InviteClientTransaction(invite, reliable=False)
    assert client.branch == BRANCH and client.method == "INVITE"
    assert repr(client) == "<InviteClientTransaction INVITE IDLE>"
    client.start(0.0)
    client.receive_response(response(invite, 180), 0.1)
    assert client.has_events
    # A request without Max-Forwards still gives an ACK and a CANCEL with one (§8.1.1.6: 70).
    bare = request("INVITE")
    bare.headers.remove("Max-Forwards")
    assert make_ack(bare, response(bare, 404)).headers.get("Max-Forwards") == "70"
    assert make_cancel(bare).headers.get("Max-Forwards") == "70"
    bare.headers.remove("Via")
    with pytest.raises(LocalProtocolError, match="no Via"):
        make_cancel(bare)
    # A response whose top Via has no branch matches nothing.
    stray = response(invite, 200)
    stray.headers.set("Via", "SIP/2.0/UDP 192.0.2.1:5060")
    table = TransactionTable()
    table.add_client(client)
    assert table.match_response(stray) is None


# --- properties --------------------------------------------------------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("respond"), st.sampled_from([100, 180, 183, 200, 202, 302, 404, 486, 503, 603])),
        st.tuples(st.just("replay"), st.integers(0, 30)),  # a late duplicate of an earlier response
        st.tuples(st.just("wait"), st.floats(0, 20, allow_nan=False)),  # time passes, due timers fire
        st.tuples(st.just("error"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, invite=st.booleans(), reliable=st.booleans())
def test_any_interleaving_gives_the_tu_one_final_answer(
    ops: list[tuple[str, float]], invite: bool, reliable: bool
) -> None:
    req = request("INVITE" if invite else "OPTIONS")
    cls = InviteClientTransaction if invite else NonInviteClientTransaction
    wire = Wire(cls(req, reliable=reliable))
    wire.start()
    seen: list[SipResponse] = []
    for op, value in ops:
        if op == "respond":
            seen.append(response(req, int(value), to_tag=f"t{int(value) % 3}"))
            receive(wire, wire.now, seen[-1])
        elif op == "replay" and seen:
            receive(wire, wire.now, seen[int(value) % len(seen)])
        elif op == "wait":
            wire.run_until(wire.now + value)
        elif op == "error":
            wire.at(wire.now, lambda t: wire.txn.transport_error(t))
    wire.run_until(wire.now + 1000)
    # Only an INVITE in Proceeding waits for ever: ending it is the TU's business (Timer C, CANCEL).
    assert wire.txn.terminated or (invite and wire.txn.state is S.PROCEEDING)
    passed = statuses(wire.events)
    finals = [s for s in passed if s >= 200]
    assert wire.events.count(TransactionTerminated()) == int(wire.txn.terminated)
    assert not wire.txn.terminated or wire.events[-1] == TransactionTerminated()
    if invite:
        # One non-2xx at most, never mixed with 2xx; every 2xx is passed (RFC 6026 §7.2).
        failures = [s for s in finals if s >= 300]
        assert len(failures) <= 1 and not (failures and len(failures) != len(finals))
        assert len(wire.times("ACK")) == 0 or failures
    else:
        assert len(finals) <= 1
    # Nothing reaches the TU after its final answer but 2xx copies of an INVITE.
    if finals:
        after = passed[passed.index(finals[0]) + 1 :]
        assert all(200 <= s < 300 for s in after) and (invite or not after)
