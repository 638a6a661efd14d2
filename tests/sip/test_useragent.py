"""The user-agent core (RFC 3261 §8, §12-§15, RFC 3264, RFC 3515, RFC 6086) on virtual time.

Two ways in: hand-written messages as MicroSIP, Asterisk or sipp write them (fed through the parser, answers
read back with the parser), and two of our user agents wired back to back through a fake link that can drop
or duplicate datagrams. Expected timings come from the RFC's rules (T1 doubling to T2, 64*T1), digests from
the RFC 2617 formulas computed here with hashlib, SDP expectations from RFC 3264 §6.1.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipagent.sip.auth import DigestClient, DigestServer
from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.events import (
    Address,
    CallEnded,
    CallEstablished,
    DtmfReceived,
    IncomingCall,
    MediaUpdated,
    OutboundCallProgress,
    RequestAnswered,
    RequestFailed,
    TransferProgress,
    UaEvent,
)
from sipagent.sip.message import Headers, SipMessage, SipRequest, SipResponse
from sipagent.sip.parser import parse_message
from sipagent.sip.policy import UaConfig
from sipagent.sip.sdp import parse_sdp
from sipagent.sip.uri import SipUri
from sipagent.sip.useragent import UserAgent

pytestmark = pytest.mark.unit

T1, T2 = 0.5, 4.0  # §17.1.1.1 defaults
US: Address = ("192.0.2.10", 5060)
PHONE: Address = ("192.168.1.50", 5060)
PUBLIC: Address = ("203.0.113.5", 5060)
LAN = ipaddress.ip_network("192.168.1.0/24")
TEST_NET = ipaddress.ip_network("192.0.2.0/24")


def seeded(seed: int) -> Callable[[int], bytes]:
    counter = [0]

    def rng(size: int) -> bytes:
        counter[0] += 1
        return hashlib.sha256(f"{seed}:{counter[0]}".encode()).digest()[:size]

    return rng


def make_ua(address: Address = US, seed: int = 1, **overrides: object) -> UserAgent:
    settings_ = {"allowed_networks": (LAN, TEST_NET), **overrides}
    return UserAgent(UaConfig(address[0], address[1], **settings_), 0.0, seeded(seed))  # type: ignore[arg-type]


def crlf(text: str) -> str:
    return "".join(line.strip(" ") + "\r\n" for line in text.strip().splitlines())


# MicroSIP (pjsip) style offer: PCMA first, then PCMU and telephone-event.
OFFER = crlf("""
    v=0
    o=- 3870000001 3870000001 IN IP4 192.168.1.50
    s=pjmedia
    c=IN IP4 192.168.1.50
    t=0 0
    m=audio 4000 RTP/AVP 8 0 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=sendrecv
""")


def offer_with(direction: str, address: str = "192.168.1.50", version: int = 2) -> str:
    return (
        OFFER.replace("a=sendrecv", f"a={direction}")
        .replace("3870000001 3870000001 IN IP4 192.168.1.50", f"3870000001 {version} IN IP4 {address}")
        .replace("c=IN IP4 192.168.1.50", f"c=IN IP4 {address}")
    )


def message(start: str, headers: list[str], body: str = "", content_type: str = "application/sdp") -> bytes:
    rows = list(headers)
    if body:
        rows.append(f"Content-Type: {content_type}")
    rows.append(f"Content-Length: {len(body.encode())}")
    return (start + "\r\n" + "".join(row + "\r\n" for row in rows) + "\r\n" + body).encode()


def invite(
    call_id: str = "c1@phone",
    *,
    branch: str = "z9hG4bKinv1",
    body: str = OFFER,
    cseq: int = 1,
    via: str = "192.168.1.50:5060;rport",
    extra: tuple[str, ...] = (),
    to_tag: str | None = None,
    from_tag: str = "ph1",
) -> bytes:
    to = "<sip:agent@192.0.2.10>" + (f";tag={to_tag}" if to_tag else "")
    return message(
        "INVITE sip:agent@192.0.2.10 SIP/2.0",
        [
            f"Via: SIP/2.0/UDP {via};branch={branch}",
            "Max-Forwards: 70",
            f'From: "Alice" <sip:alice@192.168.1.1>;tag={from_tag}',
            f"To: {to}",
            "Contact: <sip:alice@192.168.1.50:5060;ob>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} INVITE",
            "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, NOTIFY",
            "User-Agent: MicroSIP/3.21.3",
            *extra,
        ],
        body,
    )


def in_dialog(
    method: str,
    call: Established,
    cseq: int,
    *,
    branch: str,
    body: str = "",
    content_type: str = "application/sdp",
    extra: tuple[str, ...] = (),
    uri: str = "sip:sipagent@192.0.2.10:5060",
) -> bytes:
    return message(
        f"{method} {uri} SIP/2.0",
        [
            f"Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch={branch}",
            "Max-Forwards: 70",
            f'From: "Alice" <sip:alice@192.168.1.1>;tag={call.remote_tag}',
            f"To: <sip:agent@192.0.2.10>;tag={call.local_tag}",
            "Contact: <sip:alice@192.168.1.50:5060;ob>",
            f"Call-ID: {call.call_id}",
            f"CSeq: {cseq} {method}",
            *extra,
        ],
        body,
        content_type,
    )


def reply(
    request: SipRequest,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: tuple[str, ...] = (),
    body: str = "",
) -> bytes:
    """A response as the peer writes it: the request's Vias, From, To (+ tag), Call-ID and CSeq (§8.2.6.2)."""
    to = request.headers.get("To") or ""
    if to_tag is not None and request.to.tag is None:
        to += f";tag={to_tag}"
    rows = [f"Via: {v}" for v in request.headers.get_all("Via", split=False)]
    rows += [
        f"From: {request.headers.get('From')}",
        f"To: {to}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.headers.get('CSeq')}",
        *extra,
    ]
    return message(f"SIP/2.0 {status} {reason}", rows, body)


@dataclass
class Sent:
    message: SipMessage
    destination: Address

    @property
    def request(self) -> SipRequest:
        assert isinstance(self.message, SipRequest)
        return self.message

    @property
    def response(self) -> SipResponse:
        assert isinstance(self.message, SipResponse)
        return self.message


def sent(ua: UserAgent) -> list[Sent]:
    return [Sent(parse_message(out.data), out.destination) for out in ua.datagrams_to_send()]


def events(ua: UserAgent) -> list[UaEvent]:
    out = []
    while (event := ua.next_event()) is not None:
        out.append(event)
    return out


def statuses(items: list[Sent]) -> list[int]:
    return [s.response.status for s in items if isinstance(s.message, SipResponse)]


def feed(ua: UserAgent, data: bytes, now: float = 0.0, source: Address = PHONE) -> list[Sent]:
    ua.receive(data, source, "UDP", now)
    return sent(ua)


def finals(items: list[Sent]) -> list[Sent]:
    """Without the 100 (Trying) that every INVITE gets at once."""
    return [s for s in items if not (isinstance(s.message, SipResponse) and s.message.status == 100)]


@dataclass
class Established:
    call_id: str
    local_tag: str
    remote_tag: str
    answer: SipResponse
    events: list[UaEvent] = field(default_factory=list)


def establish(
    ua: UserAgent, call_id: str = "c1@phone", *, body: str = OFFER, extra: tuple[str, ...] = (), rtp_port: int = 20000
) -> Established:
    """A call from the phone, answered and acknowledged at t=0."""
    feed(ua, invite(call_id, body=body, extra=extra))
    assert isinstance(events(ua)[0], IncomingCall)
    assert ua.accept(call_id, "192.0.2.10", rtp_port, 0.0)
    ok = next(s.response for s in sent(ua) if s.response.status == 200)
    local_tag = ok.to.tag
    assert local_tag
    ack = message(
        "ACK sip:sipagent@192.0.2.10:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bKack1",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            f"To: <sip:agent@192.0.2.10>;tag={local_tag}",
            f"Call-ID: {call_id}",
            "CSeq: 1 ACK",
        ],
    )
    feed(ua, ack)
    return Established(call_id, local_tag, "ph1", ok, events(ua))


def sdp_lines(body: bytes) -> list[str]:
    return body.decode().split("\r\n")


def direction(body: bytes) -> str:
    found = [line[2:] for line in sdp_lines(body) if line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive")]
    return found[-1] if found else "sendrecv"


# --- the fake link between two user agents -------------------------------------------------------------


@dataclass
class Net:
    """Delivers datagrams between user agents at zero latency; ``drop``/``duplicate`` pick datagrams by content."""

    nodes: dict[Address, UserAgent]
    now: float = 0.0
    drop: Callable[[Address, SipMessage], bool] = lambda src, msg: False
    duplicate: Callable[[Address, SipMessage], bool] = lambda src, msg: False
    trace: list[tuple[float, Address, Address, SipMessage]] = field(default_factory=list)
    seen: dict[Address, list[UaEvent]] = field(default_factory=dict)

    def flush(self) -> None:
        for _ in range(1000):
            moved = False
            for src, ua in self.nodes.items():
                for out in ua.datagrams_to_send():
                    moved = True
                    parsed = parse_message(out.data)  # everything we send must parse
                    self.trace.append((self.now, src, out.destination, parsed))
                    if self.drop(src, parsed) or out.destination not in self.nodes:
                        continue
                    for _ in range(2 if self.duplicate(src, parsed) else 1):
                        self.nodes[out.destination].receive(out.data, src, out.transport, self.now)
            for address, ua in self.nodes.items():
                self.seen.setdefault(address, []).extend(events(ua))
            if not moved:
                return
        raise AssertionError("datagrams kept flowing")

    def run(self, until: float) -> None:
        self.flush()
        for _ in range(10_000):
            due = [t for ua in self.nodes.values() if (t := ua.get_timer()) is not None and t <= until]
            if not due:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, min(due))
            for ua in self.nodes.values():
                deadline = ua.get_timer()
                if deadline is not None and deadline <= self.now:
                    ua.handle_timer(self.now)
            self.flush()
        raise AssertionError("timers kept firing")

    def methods(self, src: Address | None = None) -> list[str]:
        return [
            m.method if isinstance(m, SipRequest) else str(m.status)  # type: ignore[attr-defined]
            for _, s, _, m in self.trace
            if src is None or s == src
        ]


CALLER: Address = ("192.0.2.20", 5060)


def pair(**callee: object) -> tuple[Net, UserAgent, UserAgent]:
    uac, uas = make_ua(CALLER, seed=2), make_ua(US, seed=3, **callee)
    return Net({CALLER: uac, US: uas}), uac, uas


def of_type(items: list[UaEvent], kind: type) -> list[UaEvent]:
    return [e for e in items if isinstance(e, kind)]


# --- inbound calls from hand-written messages ------------------------------------------------------------


def test_inbound_call_rings_answers_and_ends_with_bye() -> None:
    ua = make_ua()
    out = feed(ua, invite())
    # §17.2.1 with a zero delay: 100 Trying goes out before the endpoint has seen the call.
    assert statuses(out) == [100]
    assert out[0].destination == PHONE
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall)
    assert incoming.call_id == "c1@phone" and incoming.source == PHONE
    assert incoming.offer is not None and incoming.from_.tag == "ph1"
    assert incoming.request_uri == SipUri(user="agent", host="192.0.2.10")

    assert ua.ring("c1@phone", 0.1)
    (ringing,) = sent(ua)
    assert ringing.response.status == 180 and ringing.response.to.tag  # §12.1.1: the 180 makes an early dialog
    assert ringing.response.contact is not None

    assert ua.accept("c1@phone", "192.0.2.10", 20000, 1.0)
    (ok,) = sent(ua)
    response = ok.response
    assert response.status == 200 and response.to.tag == ringing.response.to.tag
    assert "INVITE" in response.allow and "REFER" in response.allow
    answer = parse_sdp(response.body)
    # RFC 3264 §6.1: one m-line per offered one, our port, a payload type taken from the offer.
    assert len(answer.media) == 1 and answer.media[0].port == 20000
    assert answer.media[0].formats[0] in ("8", "0") and direction(response.body) == "sendrecv"
    assert events(ua) == []  # established only on the ACK

    call = establish_from(ua, response)
    (bye_ok,) = feed(ua, in_dialog("BYE", call, 2, branch="z9hG4bKbye1"), 5.0)
    assert bye_ok.response.status == 200
    assert events(ua) == [CallEnded("c1@phone", "bye", None, False)]
    assert ua.active_calls == 0


def establish_from(ua: UserAgent, ok: SipResponse) -> Established:
    tag = ok.to.tag or ""
    ack = message(
        "ACK sip:sipagent@192.0.2.10:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bKack9",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            f"To: <sip:agent@192.0.2.10>;tag={tag}",
            f"Call-ID: {ok.call_id}",
            f"CSeq: {ok.cseq.seq} ACK",
        ],
    )
    assert feed(ua, ack, 1.1) == []
    (established,) = events(ua)
    assert isinstance(established, CallEstablished)
    assert established.media.remote_port == 4000 and established.media.remote_address == "192.168.1.50"
    return Established(ok.call_id, tag, "ph1", ok)


def test_cancel_before_answer_gets_200_and_487() -> None:
    ua = make_ua()
    feed(ua, invite())
    events(ua)
    ua.ring("c1@phone", 0.0)
    ringing = sent(ua)[0].response
    cancel = message(
        "CANCEL sip:agent@192.0.2.10 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bKinv1",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            "To: <sip:agent@192.0.2.10>",
            "Call-ID: c1@phone",
            "CSeq: 1 CANCEL",
        ],
    )
    out = feed(ua, cancel, 2.0)
    assert sorted((s.response.status, s.response.cseq.method) for s in out) == [(200, "CANCEL"), (487, "INVITE")]
    # §9.2: the CANCEL's response carries the To tag of the INVITE's responses.
    assert {s.response.to.tag for s in out} == {ringing.to.tag}
    assert events(ua) == [CallEnded("c1@phone", "cancel", 487, False)]
    assert not ua.accept("c1@phone", "192.0.2.10", 20000, 2.1)  # too late: the call is gone


def test_cancel_for_unknown_invite_is_481() -> None:
    ua = make_ua()
    cancel = message(
        "CANCEL sip:agent@192.0.2.10 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKnone",
            "Max-Forwards: 70",
            "From: <sip:alice@192.168.1.1>;tag=x",
            "To: <sip:agent@192.0.2.10>",
            "Call-ID: nobody",
            "CSeq: 1 CANCEL",
        ],
    )
    assert statuses(feed(ua, cancel)) == [481]


def test_delayed_offer_is_answered_in_the_ack() -> None:
    ua = make_ua()
    feed(ua, invite(body=""))
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall) and incoming.offer is None
    ua.accept("c1@phone", "192.0.2.10", 20002, 0.5)
    ok = sent(ua)[0].response
    our_offer = parse_sdp(ok.body)  # §13.2.1: with no offer in the INVITE, the 200 carries ours
    assert our_offer.media[0].port == 20002 and set(our_offer.media[0].formats) >= {"0", "8"}
    answer = crlf("""
        v=0
        o=- 7 7 IN IP4 192.168.1.50
        s=-
        c=IN IP4 192.168.1.50
        t=0 0
        m=audio 4002 RTP/AVP 0 101
        a=rtpmap:0 PCMU/8000
        a=rtpmap:101 telephone-event/8000
        a=sendrecv
    """)
    ack = message(
        "ACK sip:sipagent@192.0.2.10:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bKack2",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            f"To: <sip:agent@192.0.2.10>;tag={ok.to.tag}",
            "Call-ID: c1@phone",
            "CSeq: 1 ACK",
        ],
        answer,
    )
    feed(ua, ack, 0.6)
    (established,) = events(ua)
    assert isinstance(established, CallEstablished)
    assert established.media.remote_port == 4002 and established.media.codec == "PCMU"


def test_delayed_offer_without_answer_in_ack_ends_with_bye() -> None:
    ua = make_ua()
    feed(ua, invite(body=""))
    events(ua)
    ua.accept("c1@phone", "192.0.2.10", 20002, 0.5)
    ok = sent(ua)[0].response
    ack = message(
        "ACK sip:sipagent@192.0.2.10:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKack3",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            f"To: <sip:agent@192.0.2.10>;tag={ok.to.tag}",
            "Call-ID: c1@phone",
            "CSeq: 1 ACK",
        ],
    )
    (bye,) = feed(ua, ack, 0.6)
    assert bye.request.method == "BYE" and bye.destination == PHONE
    feed(ua, reply(bye.request, 200, "OK"), 0.7)
    assert events(ua) == [CallEnded("c1@phone", "error", 200, True)]


@pytest.mark.parametrize(
    ("offered", "answered", "on_hold"),
    [
        ("sendonly", "recvonly", True),  # RFC 3264 §6.1: hold
        ("inactive", "inactive", True),
        ("recvonly", "sendonly", False),
        ("sendrecv", "sendrecv", False),  # resume
    ],
)
def test_reinvite_hold_and_resume_are_answered_per_rfc3264(offered: str, answered: str, on_hold: bool) -> None:
    ua = make_ua()
    call = establish(ua)
    (ok,) = finals(feed(ua, in_dialog("INVITE", call, 2, branch="z9hG4bKre1", body=offer_with(offered)), 3.0))
    assert ok.response.status == 200
    assert direction(ok.response.body) == answered
    assert parse_sdp(ok.response.body).media[0].port == 20000  # same local port as the first answer
    (update,) = events(ua)
    assert isinstance(update, MediaUpdated) and update.media.on_hold is on_hold


def test_hold_then_resume_keeps_port_and_moves_address() -> None:
    ua = make_ua()
    call = establish(ua)
    feed(ua, in_dialog("INVITE", call, 2, branch="z9hG4bKre2", body=offer_with("sendonly")), 3.0)
    first = events(ua)
    # Until the ACK of that re-INVITE's 200, another one collides with it (§14.2: 491).
    again = in_dialog("INVITE", call, 3, branch="z9hG4bKre3", body=offer_with("sendrecv", "198.51.100.9", 3))
    assert statuses(finals(feed(ua, again, 3.1))) == [491]
    feed(ua, in_dialog("ACK", call, 2, branch="z9hG4bKack6"), 3.2)
    # The phone moves (Wi-Fi to LTE) and resumes from another address.
    again = in_dialog("INVITE", call, 4, branch="z9hG4bKre4", body=offer_with("sendrecv", "198.51.100.9", 3))
    (ok,) = finals(feed(ua, again, 5.0))
    assert ok.response.status == 200 and direction(ok.response.body) == "sendrecv"
    (moved,) = events(ua)
    assert isinstance(moved, MediaUpdated) and moved.media.remote_address == "198.51.100.9"
    assert first and not moved.media.on_hold
    # §8 of RFC 3264: each changed answer has a higher o= version.
    assert parse_sdp(ok.response.body).origin.session_version > parse_sdp(call.answer.body).origin.session_version


def test_reinvite_without_sdp_gets_an_offer_and_the_ack_answers() -> None:
    ua = make_ua()
    call = establish(ua)
    (ok,) = finals(feed(ua, in_dialog("INVITE", call, 2, branch="z9hG4bKre4"), 3.0))
    assert ok.response.status == 200 and parse_sdp(ok.response.body).media[0].port == 20000
    ack = in_dialog("ACK", call, 2, branch="z9hG4bKack4", body=offer_with("sendonly").replace("8 0 101", "0"))
    feed(ua, ack, 3.1)
    (update,) = events(ua)
    assert isinstance(update, MediaUpdated) and update.media.codec == "PCMU"


def test_update_with_sdp_is_answered_and_without_sdp_refreshes_target() -> None:
    ua = make_ua()
    call = establish(ua)
    (ok,) = feed(ua, in_dialog("UPDATE", call, 2, branch="z9hG4bKup1", body=offer_with("inactive")), 3.0)
    assert ok.response.status == 200 and direction(ok.response.body) == "inactive"
    assert isinstance(events(ua)[0], MediaUpdated)
    moved = in_dialog("UPDATE", call, 3, branch="z9hG4bKup2").replace(
        b"Contact: <sip:alice@192.168.1.50:5060;ob>", b"Contact: <sip:alice@192.168.1.77:5062>"
    )
    (ok2,) = feed(ua, moved, 4.0)
    assert ok2.response.status == 200 and not ok2.response.body
    ua.hangup(call.call_id, 5.0)
    (bye,) = sent(ua)
    assert bye.request.uri == SipUri(user="alice", host="192.168.1.77", port=5062)  # the refreshed target


def test_reinvite_with_unusable_codecs_gets_488_and_keeps_the_session() -> None:
    ua = make_ua()
    call = establish(ua)
    g729 = offer_with("sendonly").replace("8 0 101", "18").replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000")
    (refused,) = finals(feed(ua, in_dialog("INVITE", call, 2, branch="z9hG4bKre5", body=g729), 3.0))
    assert refused.response.status == 488
    assert events(ua) == []
    assert ua.hangup(call.call_id, 4.0)  # still up


def test_out_of_order_cseq_is_500() -> None:
    ua = make_ua()
    call = establish(ua)
    feed(ua, in_dialog("INFO", call, 5, branch="z9hG4bKi5"), 2.0)
    (late,) = feed(ua, in_dialog("INFO", call, 4, branch="z9hG4bKi4"), 2.1)
    assert late.response.status == 500  # §12.2.2


def test_bye_from_us_and_its_outcomes() -> None:
    for status in (200, 481, 408):
        ua = make_ua()
        call = establish(ua)
        assert ua.hangup(call.call_id, 2.0)
        (bye,) = sent(ua)
        assert bye.request.method == "BYE" and bye.destination == PHONE
        assert bye.request.from_.tag == call.local_tag and bye.request.to.tag == "ph1"
        assert bye.request.top_via.has_rport  # RFC 3581 §3
        feed(ua, reply(bye.request, status, "X"), 2.1)
        # §15.1.1: the session is over whatever the BYE's answer.
        assert events(ua) == [CallEnded(call.call_id, "bye", status, True)]
        assert not ua.hangup(call.call_id, 2.2)


def test_bye_without_any_answer_times_out_after_64_t1() -> None:
    ua = make_ua()
    call = establish(ua)
    ua.hangup(call.call_id, 10.0)
    sent(ua)
    while (deadline := ua.get_timer()) is not None and deadline <= 10.0 + 64 * T1:
        ua.handle_timer(deadline)
    assert events(ua) == [CallEnded(call.call_id, "bye", 408, True)]


def test_2xx_is_retransmitted_until_ack_then_bye_after_64_t1() -> None:
    ua = make_ua()
    feed(ua, invite())
    events(ua)
    ua.accept("c1@phone", "192.0.2.10", 20000, 0.0)
    sent(ua)
    times = []
    bye: Sent | None = None
    while (deadline := ua.get_timer()) is not None and deadline <= 64 * T1 and bye is None:
        ua.handle_timer(deadline)
        for item in sent(ua):
            if isinstance(item.message, SipResponse) and item.response.status == 200:
                times.append(deadline)
            elif isinstance(item.message, SipRequest):
                bye = item
    # §13.3.1.4: intervals start at T1 and double up to T2: 0.5, 1, 2, 4, 4, ...; stop at 64*T1.
    expected, t, interval = [], 0.0, T1
    while t + interval < 64 * T1:
        t += interval
        expected.append(t)
        interval = min(2 * interval, T2)
    assert times == pytest.approx(expected)
    assert bye is not None and bye.request.method == "BYE"
    feed(ua, reply(bye.request, 200, "OK"), 33.0)
    assert events(ua) == [CallEnded("c1@phone", "timeout", 200, True)]


def test_hangup_before_ack_waits_for_the_ack() -> None:
    ua = make_ua()
    feed(ua, invite())
    events(ua)
    ua.accept("c1@phone", "192.0.2.10", 20000, 0.0)
    ok = sent(ua)[0].response
    assert ua.hangup("c1@phone", 0.1)
    assert sent(ua) == []  # §15: no BYE before the ACK
    ack = message(
        "ACK sip:sipagent@192.0.2.10:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKack5",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            f"To: <sip:agent@192.0.2.10>;tag={ok.to.tag}",
            "Call-ID: c1@phone",
            "CSeq: 1 ACK",
        ],
    )
    (bye,) = feed(ua, ack, 0.2)
    assert bye.request.method == "BYE"
    assert events(ua) == []  # no CallEstablished for a call we are ending


def test_hangup_before_answer_rejects_with_480() -> None:
    ua = make_ua()
    feed(ua, invite())
    events(ua)
    assert ua.hangup("c1@phone", 0.5)
    assert statuses(sent(ua)) == [480]
    assert events(ua) == [CallEnded("c1@phone", "rejected", 480, True)]


def test_reject_sends_the_status_and_ends_the_call() -> None:
    ua = make_ua()
    feed(ua, invite())
    events(ua)
    assert ua.reject("c1@phone", 486, 0.5)
    (busy,) = sent(ua)
    assert busy.response.status == 486 and busy.response.to.tag
    assert events(ua) == [CallEnded("c1@phone", "rejected", 486, True)]


# --- admission -------------------------------------------------------------------------------------------


def test_unknown_dialog_is_481() -> None:
    ua = make_ua()
    ghost = Established("ghost@phone", "nope", "ph1", SipResponse(200))
    (out,) = feed(ua, in_dialog("BYE", ghost, 2, branch="z9hG4bKg1"))
    assert out.response.status == 481
    # BYE without any To tag is no dialog either.
    bye = in_dialog("BYE", ghost, 2, branch="z9hG4bKg2").replace(b";tag=nope", b"")
    assert statuses(feed(ua, bye)) == [481]


@pytest.mark.parametrize(("method", "status"), [("MESSAGE", 405), ("SUBSCRIBE", 405), ("FROBNICATE", 501)])
def test_methods_we_do_not_take_are_answered_with_allow(method: str, status: int) -> None:
    ua = make_ua()
    request = message(
        f"{method} sip:agent@192.0.2.10 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKm1",
            "Max-Forwards: 70",
            "From: <sip:alice@192.168.1.1>;tag=m",
            "To: <sip:agent@192.0.2.10>",
            "Call-ID: m1",
            f"CSeq: 1 {method}",
        ],
    )
    (out,) = feed(ua, request)
    assert out.response.status == status
    assert set(out.response.allow) == {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY"}


def test_unknown_required_extension_is_420_with_unsupported() -> None:
    ua = make_ua()
    out = feed(ua, invite(extra=("Require: 100rel, timer",)))
    final = [s.response for s in out if s.response.status >= 200]
    assert [r.status for r in final] == [420]
    assert final[0].unsupported == ["100rel", "timer"]  # §8.2.2.3
    assert events(ua) == []


def test_offer_without_common_codec_is_488_with_warning() -> None:
    ua = make_ua()
    g729 = OFFER.replace("8 0 101", "18 101").replace(
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000"
    )
    out = feed(ua, invite(body=g729))
    final = out[-1].response
    assert final.status == 488
    assert (final.headers.get("Warning") or "").startswith("305 ")  # §20.43 Incompatible media format
    assert events(ua) == []


def test_call_limit_gives_503_with_retry_after() -> None:
    ua = make_ua(max_calls=1, retry_after=60)
    feed(ua, invite("c1@phone"))
    out = feed(ua, invite("c2@phone", branch="z9hG4bKinv2"))
    final = out[-1].response
    assert final.status == 503 and final.retry_after is not None and final.retry_after.seconds == 60
    assert [type(e) for e in events(ua)] == [IncomingCall]


def test_caller_outside_allowed_networks_is_forbidden() -> None:
    ua = make_ua()
    out = feed(ua, invite(via="203.0.113.5:5060"), source=PUBLIC)
    assert statuses(out) == [100, 403]
    assert out[-1].destination == PUBLIC
    assert events(ua) == [] and ua.stats["forbidden"] == 1


def digest_response(
    user: str, realm: str, password: str, method: str, uri: str, nonce: str, nc: str, cnonce: str
) -> str:
    # RFC 2617 §3.2.2.1 with qop=auth.
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    return md5(f"{md5(f'{user}:{realm}:{password}')}:{nonce}:{nc}:{cnonce}:auth:{md5(f'{method}:{uri}')}")


def test_outside_caller_is_challenged_and_admitted_with_good_credentials() -> None:
    server = DigestServer("agent", {"alice": "s3cret"}.get, b"k" * 16, algorithms=("MD5",))
    ua = make_ua(digest_server=server)
    out = feed(ua, invite(via="203.0.113.5:5060"), source=PUBLIC)
    challenge = out[-1].response
    assert challenge.status == 401 and events(ua) == []
    params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge.headers.get("WWW-Authenticate") or ""))
    uri = "sip:agent@192.0.2.10"
    response = digest_response("alice", "agent", "s3cret", "INVITE", uri, params["nonce"], "00000001", "c0ffee")
    auth = (
        f'Authorization: Digest username="alice", realm="agent", nonce="{params["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, cnonce="c0ffee", qop=auth, nc=00000001'
    )
    feed(ua, invite(via="203.0.113.5:5060", branch="z9hG4bKinv2", cseq=2, extra=(auth,)), 0.5, source=PUBLIC)
    assert [type(e) for e in events(ua)] == [IncomingCall]

    wrong = auth.replace(response, "0" * 32)
    out = feed(
        ua, invite("c2@x", via="203.0.113.5:5060", branch="z9hG4bKinv3", cseq=3, extra=(wrong,)), 0.6, source=PUBLIC
    )
    assert out[-1].response.status == 401 and events(ua) == []


def test_options_is_answered_for_anyone() -> None:
    ua = make_ua()
    options = message(
        "OPTIONS sip:agent@192.0.2.10 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKo1;rport",
            "Max-Forwards: 70",
            "From: <sip:qualify@pbx>;tag=q",
            "To: <sip:agent@192.0.2.10>",
            "Call-ID: q1",
            "CSeq: 102 OPTIONS",
        ],
    )
    (out,) = feed(ua, options, source=PUBLIC)
    response = out.response
    assert response.status == 200 and response.to.tag  # §8.2.6.2: a To tag on every final response
    assert "INVITE" in response.allow and response.headers.get("Accept") == "application/sdp"


def test_max_forwards_zero_changes_nothing_for_a_ua() -> None:
    # RFC 4475 §3.3.11: Max-Forwards bounds forwarding (§16.3); the final recipient processes the request as if
    # the value were still positive, so 483 is a proxy's answer, not ours.
    ua = make_ua()
    out = feed(ua, invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
    assert statuses(out) == [100] and [type(e) for e in events(ua)] == [IncomingCall]
    options = message(
        "OPTIONS sip:agent@192.0.2.10 SIP/2.0",
        ["Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKmf0", "Max-Forwards: 0", "From: <sip:p@x>;tag=p",
         "To: <sip:agent@192.0.2.10>", "Call-ID: mf0", "CSeq: 1 OPTIONS"],
    )  # fmt: skip
    assert statuses(feed(ua, options)) == [200]


def test_require_is_checked_on_every_request_but_cancel() -> None:
    # §8.2.2.3, and RFC 4475 §3.3.5 (bext01): an OPTIONS requiring unknown extensions gets 420 with Unsupported.
    ua = make_ua()
    options = message(
        "OPTIONS sip:agent@192.0.2.10 SIP/2.0",
        ["Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKreq", "Max-Forwards: 70", "From: <sip:p@x>;tag=p",
         "To: <sip:agent@192.0.2.10>", "Call-ID: req1", "CSeq: 1 OPTIONS", "Require: nothingSupportsThis, foo"],
    )  # fmt: skip
    (out,) = feed(ua, options)
    assert out.response.status == 420 and out.response.unsupported == ["nothingSupportsThis", "foo"]


def test_accept_without_sdp_is_406() -> None:
    # RFC 4475 §3.3.15 (sdp01): our answer would be SDP, which the caller's Accept rules out (§21.4.7).
    ua = make_ua()
    out = finals(feed(ua, invite(extra=("Accept: text/nobodyKnowsThis",))))
    assert [s.response.status for s in out] == [406] and events(ua) == []
    for accept in ("application/sdp;level=1, text/html", "application/*", "*/*"):
        ua = make_ua()
        feed(ua, invite(extra=(f"Accept: {accept}",)))
        assert [type(e) for e in events(ua)] == [IncomingCall], accept


# --- malformed input, Via stamping ------------------------------------------------------------------------


def test_malformed_request_is_400_naming_the_fault() -> None:
    ua = make_ua()
    bad = invite().replace(b"Max-Forwards: 70", b"Max-Forwards: seventy")
    (out,) = feed(ua, bad)
    assert out.response.status == 400 and "Max-Forwards" in out.response.reason  # §21.4.1
    assert out.destination == PHONE and out.response.top_via.received == PHONE[0]
    # A CSeq that cannot be read is echoed as received (§8.2.6.2), so look at the bytes.
    ua.receive(invite().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), PHONE, "UDP", 0.1)
    (raw,) = ua.datagrams_to_send()
    assert raw.data.startswith(b"SIP/2.0 400 CSeq") and b"\r\nCSeq: one INVITE\r\n" in raw.data
    assert ua.stats["malformed_answered"] == 2 and events(ua) == []


def test_unanswerable_garbage_is_dropped_and_counted() -> None:
    ua = make_ua()
    assert feed(ua, b"\x16\x03\x01 not sip at all\r\n\r\n") == []
    assert feed(ua, b"INVITE sip:x@y SIP/2.0\r\nFrom: <sip:a@b>\r\n\r\n") == []  # no Via: nowhere to answer
    assert ua.stats["malformed_dropped"] == 2
    assert feed(ua, b"\r\n\r\n") == []  # a keep-alive is not an error (RFC 5626 §4.4.1)
    assert ua.stats["keepalives"] == 1 and events(ua) == []


def test_rport_and_received_route_the_response_back_through_the_nat() -> None:
    ua = make_ua()
    nat = ("192.168.1.99", 40123)  # the phone says 10.0.0.7:5060; the packet came from its NAT's mapping
    out = feed(ua, invite(via="10.0.0.7:5060;rport"), source=nat)
    via = out[0].response.top_via
    assert via.received == "192.168.1.99" and via.rport == 40123  # RFC 3581 §4
    assert all(item.destination == nat for item in out)
    ua2 = make_ua()
    out = feed(ua2, invite(via="10.0.0.7:5070"), source=nat)
    via = out[0].response.top_via
    # §18.2.2: no rport: to the received address and the sent-by port.
    assert via.received == "192.168.1.99" and not via.has_rport
    assert out[0].destination == ("192.168.1.99", 5070)


def test_record_route_set_is_used_for_our_bye() -> None:
    ua = make_ua()
    rr = ("Record-Route: <sip:10.1.1.1:5070;lr>", "Record-Route: <sip:10.2.2.2;lr;transport=udp>")
    call = establish(ua, extra=rr)
    assert call.answer.headers.get_all("Record-Route", split=False) == [r[14:] for r in rr]  # §12.1.1: copied
    ua.hangup(call.call_id, 2.0)
    (bye,) = sent(ua)
    # §12.2.1.1: Request-URI is the remote target, Route the route set in order; next hop the first route.
    assert bye.request.uri == SipUri(user="alice", host="192.168.1.50", port=5060, params=(("ob", None),))
    assert [str(r.uri) for r in bye.request.routes] == ["sip:10.1.1.1:5070;lr", "sip:10.2.2.2;lr;transport=udp"]
    assert bye.destination == ("10.1.1.1", 5070)


# --- INFO, NOTIFY, REFER ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", DtmfReceived("c1@phone", "5", 160)),
        ("application/dtmf-relay", "Signal= 11\r\nDuration= 250\r\n", DtmfReceived("c1@phone", "#", 250)),
        ("application/dtmf", "*", DtmfReceived("c1@phone", "*", None)),
    ],
)
def test_info_dtmf_is_reported(content_type: str, body: str, expected: DtmfReceived) -> None:
    ua = make_ua()
    call = establish(ua)
    (ok,) = feed(ua, in_dialog("INFO", call, 2, branch="z9hG4bKd1", body=body, content_type=content_type), 2.0)
    assert ok.response.status == 200
    assert events(ua) == [expected]


def test_info_without_dtmf_or_with_a_package() -> None:
    ua = make_ua()
    call = establish(ua)
    other = in_dialog("INFO", call, 2, branch="z9hG4bKd2", body="<xml/>", content_type="application/xml")
    assert statuses(feed(ua, other, 2.0)) == [200]  # RFC 6086: legacy INFO usage
    package = in_dialog(
        "INFO",
        call,
        3,
        branch="z9hG4bKd3",
        body="Signal=1\r\n",
        content_type="application/dtmf-relay",
        extra=("Info-Package: foo",),
    )
    assert statuses(feed(ua, package, 2.1)) == [469]
    assert events(ua) == []


def test_transfer_sends_refer_and_reports_notify_sipfrag() -> None:
    ua = make_ua()
    call = establish(ua)
    assert ua.transfer(call.call_id, "sip:1002@192.168.1.1", 2.0)
    (refer,) = sent(ua)
    request = refer.request
    assert request.method == "REFER" and refer.destination == PHONE
    assert request.headers.get("Refer-To") == "<sip:1002@192.168.1.1>"
    assert request.headers.get("Referred-By") == "<sip:agent@192.0.2.10>"
    feed(ua, reply(request, 202, "Accepted"), 2.1)
    assert events(ua) == [TransferProgress(call.call_id, 202, "Accepted", False)]
    for cseq, (state, frag, final) in enumerate(
        [("active;expires=60", "SIP/2.0 100 Trying", False), ("terminated;reason=noresource", "SIP/2.0 200 OK", True)],
        start=2,
    ):
        notify = in_dialog(
            "NOTIFY",
            call,
            cseq,
            branch=f"z9hG4bKn{cseq}",
            body=frag + "\r\n",
            content_type="message/sipfrag;version=2.0",
            extra=("Event: refer", f"Subscription-State: {state}"),
        )
        assert statuses(feed(ua, notify, 3.0)) == [200]
        status = int(frag.split()[1])
        assert events(ua) == [TransferProgress(call.call_id, status, frag.split(None, 2)[2], final)]
    # The subscription is over: another NOTIFY matches none (RFC 6665 §4.1.3).
    late = in_dialog(
        "NOTIFY",
        call,
        9,
        branch="z9hG4bKn9",
        body="SIP/2.0 200 OK\r\n",
        content_type="message/sipfrag",
        extra=("Event: refer", "Subscription-State: terminated"),
    )
    assert statuses(feed(ua, late, 4.0)) == [481]
    other = in_dialog("NOTIFY", call, 10, branch="z9hG4bKn10", extra=("Event: dialog",))
    assert statuses(feed(ua, other, 4.0)) == [489]


def test_refered_refusal_and_challenge() -> None:
    client = DigestClient("agent", "pw", lambda: "abcdef")
    ua = make_ua(credentials=client)
    call = establish(ua)
    ua.transfer(call.call_id, "sip:1002@192.168.1.1", 2.0)
    (refer,) = sent(ua)
    challenge = 'Proxy-Authenticate: Digest realm="pbx", nonce="n1", algorithm=MD5, qop="auth"'
    (again,) = feed(ua, reply(refer.request, 407, "Proxy Authentication Required", extra=(challenge,)), 2.1)
    # §22.3: the same request with CSeq + 1 and credentials for the realm.
    assert again.request.method == "REFER" and again.request.cseq.seq == refer.request.cseq.seq + 1
    creds = again.request.headers.get("Proxy-Authorization") or ""
    nc, cnonce = re.search(r"nc=(\w+)", creds), re.search(r'cnonce="(\w+)"', creds)
    assert nc and cnonce
    expected = digest_response("agent", "pbx", "pw", "REFER", str(again.request.uri), "n1", nc[1], cnonce[1])
    assert f'response="{expected}"' in creds
    feed(ua, reply(again.request, 603, "Declined"), 2.2)
    assert events(ua) == [TransferProgress(call.call_id, 603, "Declined", True)]


def test_incoming_refer_is_declined() -> None:
    ua = make_ua()
    call = establish(ua)
    refer = in_dialog("REFER", call, 2, branch="z9hG4bKr1", extra=("Refer-To: <sip:1000@192.168.1.1>",))
    assert statuses(feed(ua, refer, 2.0)) == [603]


# --- outbound calls ------------------------------------------------------------------------------------


def test_outbound_dial_with_407_then_200() -> None:
    ua = make_ua()
    client = DigestClient("agent", "pw", lambda: "0a4f113b")
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0, from_user="agent", credentials=client)
    (first,) = sent(ua)
    invite1 = first.request
    assert first.destination == ("192.168.1.1", 5060) and invite1.call_id == call_id
    assert invite1.top_via.has_rport and parse_sdp(invite1.body).media[0].port == 20010
    challenge = 'Proxy-Authenticate: Digest realm="asterisk", nonce="5f1e2d", algorithm=MD5, qop="auth"'
    out = feed(
        ua,
        reply(invite1, 407, "Proxy Authentication Required", to_tag="as1", extra=(challenge,)),
        0.1,
        source=("192.168.1.1", 5060),
    )
    ack, invite2 = (s.request for s in out)
    assert ack.method == "ACK" and ack.top_via.branch == invite1.top_via.branch  # §17.1.1.3, the transaction's
    # §22.2: same Call-ID and From tag, CSeq + 1, a new branch, credentials computed per RFC 2617.
    assert invite2.call_id == call_id and invite2.from_.tag == invite1.from_.tag
    assert invite2.cseq.seq == invite1.cseq.seq + 1 and invite2.top_via.branch != invite1.top_via.branch
    creds = invite2.headers.get("Proxy-Authorization") or ""
    expected = digest_response(
        "agent", "asterisk", "pw", "INVITE", "sip:1001@192.168.1.1", "5f1e2d", "00000001", "0a4f113b"
    )
    assert f'response="{expected}"' in creds and 'uri="sip:1001@192.168.1.1"' in creds

    feed(ua, reply(invite2, 180, "Ringing", to_tag="as2", extra=("Contact: <sip:1001@192.168.1.1:5060>",)), 0.2)
    assert events(ua) == [OutboundCallProgress(call_id, 180, "Ringing")]
    answer = OFFER.replace("8 0 101", "0 101").replace("a=rtpmap:8 PCMA/8000\r\n", "")
    ok = reply(
        invite2,
        200,
        "OK",
        to_tag="as2",
        extra=("Contact: <sip:1001@192.168.1.1:5060>", "Record-Route: <sip:192.168.1.2;lr>"),
        body=answer,
    )
    (ack2,) = feed(ua, ok, 0.3, source=("192.168.1.1", 5060))
    # §13.2.2.4: ACK for the 2xx: CSeq of the INVITE, the INVITE's credentials, the route set, new branch.
    assert ack2.request.method == "ACK" and ack2.request.cseq.seq == invite2.cseq.seq
    assert ack2.request.headers.get("Proxy-Authorization") == creds
    assert [str(r.uri) for r in ack2.request.routes] == ["sip:192.168.1.2;lr"]
    assert ack2.destination == ("192.168.1.2", 5060)
    (established,) = events(ua)
    assert isinstance(established, CallEstablished) and established.media.codec == "PCMU"
    # A retransmitted 200 gets the same ACK again.
    (ack3,) = feed(ua, ok, 0.8, source=("192.168.1.1", 5060))
    assert ack3.request == ack2.request


def test_outbound_rejected_and_timed_out() -> None:
    ua = make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    (first,) = sent(ua)
    feed(ua, reply(first.request, 486, "Busy Here", to_tag="b"), 0.5)
    assert events(ua) == [CallEnded(call_id, "rejected", 486, False)]

    ua = make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    sent(ua)
    while (deadline := ua.get_timer()) is not None:
        ua.handle_timer(deadline)
    assert events(ua) == [CallEnded(call_id, "timeout", 408, False)]  # Timer B, §17.1.1.2


def test_outbound_cancel_waits_for_a_provisional() -> None:
    ua = make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    invite_ = sent(ua)[0].request
    assert ua.hangup(call_id, 0.1)
    assert [s for s in sent(ua) if s.request.method == "CANCEL"] == []  # §9.1: not before a provisional
    (cancel,) = [s for s in feed(ua, reply(invite_, 180, "Ringing", to_tag="r"), 0.2) if s.request.method == "CANCEL"]
    assert cancel.request.top_via.branch == invite_.top_via.branch  # §9.1: same branch as the INVITE
    feed(ua, reply(cancel.request, 200, "OK"), 0.3)
    feed(ua, reply(invite_, 487, "Request Terminated", to_tag="r"), 0.4)
    progress, ended = events(ua)
    assert isinstance(progress, OutboundCallProgress) and ended == CallEnded(call_id, "cancel", 487, True)


def answered_call(ua: UserAgent) -> tuple[str, SipRequest, bytes]:
    """An outbound call answered by 192.168.1.1 with a 200 carrying PCMU; returns the call, INVITE and 200."""
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    invite_ = sent(ua)[0].request
    answer = OFFER.replace("8 0 101", "0").replace("a=rtpmap:8 PCMA/8000\r\n", "")
    ok = reply(invite_, 200, "OK", to_tag="as1", extra=("Contact: <sip:1001@192.168.1.1>",), body=answer)
    feed(ua, ok, 0.3, source=("192.168.1.1", 5060))
    assert [type(e) for e in events(ua)] == [CallEstablished]
    return call_id, invite_, ok


def test_outbound_2xx_without_an_answer_is_acked_then_ended() -> None:
    ua = make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    invite_ = sent(ua)[0].request
    out = feed(ua, reply(invite_, 200, "OK", to_tag="z", extra=("Contact: <sip:1001@192.168.1.1>",)), 0.3)
    ack, bye = (s.request for s in out)
    assert (ack.method, bye.method) == ("ACK", "BYE")  # §13.2.1: no answer, no session
    feed(ua, reply(bye, 200, "OK"), 0.4)
    assert events(ua) == [CallEnded(call_id, "error", 200, True)]


def test_a_second_fork_is_acked_and_ended() -> None:
    ua = make_ua()
    call_id, invite_, _ = answered_call(ua)
    fork = reply(invite_, 200, "OK", to_tag="fork2", extra=("Contact: <sip:1001@192.168.1.3>",), body=OFFER)
    out = feed(ua, fork, 0.5, source=("192.168.1.3", 5060))
    # §13.2.2.4: every 2xx is acknowledged; we keep one dialog, so the other one gets a BYE.
    assert [(s.request.method, s.request.to.tag, s.destination) for s in out] == [
        ("ACK", "fork2", ("192.168.1.3", 5060)),
        ("BYE", "fork2", ("192.168.1.3", 5060)),
    ]
    assert events(ua) == []
    assert ua.hangup(call_id, 1.0)  # the first dialog is untouched


def test_2xx_after_the_invite_transaction_ended_is_acked_again() -> None:
    ua = make_ua()
    call_id, invite_, ok = answered_call(ua)
    sent(ua)
    while (deadline := ua.get_timer()) is not None:
        ua.handle_timer(deadline)  # Timer M (RFC 6026) ends the INVITE client transaction
    (ack,) = feed(ua, ok, 40.0, source=("192.168.1.1", 5060))
    assert ack.request.method == "ACK" and ack.request.cseq.seq == invite_.cseq.seq
    assert events(ua) == []


def test_cancel_that_loses_the_race_to_a_2xx_ends_with_bye() -> None:
    ua = make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    invite_ = sent(ua)[0].request
    feed(ua, reply(invite_, 183, "Session Progress", to_tag="r"), 0.1)
    ua.hangup(call_id, 0.2)
    (cancel,) = sent(ua)
    assert cancel.request.method == "CANCEL"
    ok = reply(invite_, 200, "OK", to_tag="r", extra=("Contact: <sip:1001@192.168.1.1>",), body=OFFER)
    ack, bye = (s.request for s in feed(ua, ok, 0.3))
    assert (ack.method, bye.method) == ("ACK", "BYE")  # §9.1: the call was answered, so end it
    feed(ua, reply(bye, 200, "OK"), 0.4)
    assert events(ua)[-1] == CallEnded(call_id, "cancel", 200, True)


def test_cancel_without_a_final_response_gives_up_after_64_t1() -> None:
    ua = make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    invite_ = sent(ua)[0].request
    feed(ua, reply(invite_, 180, "Ringing", to_tag="r"), 0.1)
    ua.hangup(call_id, 1.0)
    cancel = sent(ua)[0].request
    feed(ua, reply(cancel, 200, "OK"), 1.1)
    events(ua)
    while (deadline := ua.get_timer()) is not None and deadline <= 1.0 + 64 * T1:
        ua.handle_timer(deadline)
    assert events(ua) == [CallEnded(call_id, "cancel", 408, True)]  # §9.1


def test_tcp_requests_are_answered_on_their_connection() -> None:
    ua = make_ua()
    source = ("192.168.1.50", 51234)  # an ephemeral client port, and no rport in the Via
    ua.receive(invite(via="192.168.1.50:5060"), source, "tcp", 0.0)
    out = ua.datagrams_to_send()
    assert [(o.destination, o.transport) for o in out] == [(source, "TCP")]  # §18.2.2: same connection
    events(ua)
    ua.accept("c1@phone", "192.0.2.10", 20000, 0.1)
    ok = parse_message(ua.datagrams_to_send()[0].data)
    assert isinstance(ok, SipResponse)
    ack = message(
        "ACK sip:sipagent@192.0.2.10:5060 SIP/2.0",
        [
            "Via: SIP/2.0/TCP 192.168.1.50:5060;branch=z9hG4bKt1",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            f"To: <sip:agent@192.0.2.10>;tag={ok.to.tag}",
            "Call-ID: c1@phone",
            "CSeq: 1 ACK",
        ],
    )
    ua.receive(ack, source, "TCP", 0.2)
    ua.hangup("c1@phone", 1.0)
    (bye,) = ua.datagrams_to_send()
    bye_request = parse_message(bye.data)
    assert isinstance(bye_request, SipRequest) and bye_request.top_via.transport == "TCP"
    assert (bye.destination, bye.transport) == (source, "TCP")


def test_body_that_is_not_sdp_is_415() -> None:
    ua = make_ua()
    text = invite().replace(b"Content-Type: application/sdp", b"Content-Type: application/isup")
    final = feed(ua, text)[-1].response
    assert final.status == 415 and final.headers.get("Accept") == "application/sdp"  # §8.2.3


# --- send_request for other components --------------------------------------------------------------------


def test_send_request_reports_responses_and_timeouts_by_request_id() -> None:
    ua = make_ua()

    def register(cseq: int) -> SipRequest:
        rows = [
            ("From", "<sip:agent@192.168.1.1>;tag=r1"),
            ("To", "<sip:agent@192.168.1.1>"),
            ("Call-ID", "reg1"),
            ("CSeq", f"{cseq} REGISTER"),
            ("Contact", ua.contact),
            ("Expires", "600"),
        ]
        return SipRequest("REGISTER", SipUri(host="192.168.1.1"), Headers(rows))

    tx = ua.send_request(register(1), 0.0)
    (out,) = sent(ua)
    assert out.destination == ("192.168.1.1", 5060) and out.request.top_via.branch == tx.branch
    feed(ua, reply(out.request, 200, "OK", to_tag="reg"), 0.1, source=("192.168.1.1", 5060))
    (answered,) = events(ua)
    assert isinstance(answered, RequestAnswered) and answered.request_id == tx.branch and answered.status == 200

    tx2 = ua.send_request(register(2), 1.0, destination=("192.168.1.1", 5080))
    assert sent(ua)[0].destination == ("192.168.1.1", 5080)
    while (deadline := ua.get_timer()) is not None:
        ua.handle_timer(deadline)
    assert events(ua) == [RequestFailed(tx2.branch, "timeout")]  # Timer F


# --- two of our user agents back to back ----------------------------------------------------------------


def test_back_to_back_call_and_bye_from_the_caller() -> None:
    net, uac, uas = pair()
    call_id = uac.dial("sip:agent@192.0.2.10", "192.0.2.20", 30000, 0.0)
    net.flush()
    (incoming,) = net.seen[US]
    assert isinstance(incoming, IncomingCall) and incoming.call_id == call_id
    uas.ring(call_id, 0.1)
    net.flush()
    uas.accept(call_id, "192.0.2.10", 20000, 0.2)
    net.run(1.0)
    caller = [e for e in net.seen[CALLER] if isinstance(e, CallEstablished)]
    callee = [e for e in net.seen[US] if isinstance(e, CallEstablished)]
    assert len(caller) == 1 and len(callee) == 1
    assert caller[0].media.remote_port == 20000 and callee[0].media.remote_port == 30000
    assert caller[0].media.codec == callee[0].media.codec
    uac.hangup(call_id, 5.0)
    net.run(40.0)
    assert of_type(net.seen[CALLER], CallEnded) == [CallEnded(call_id, "bye", 200, True)]
    assert of_type(net.seen[US], CallEnded) == [CallEnded(call_id, "bye", None, False)]
    assert uac.stats.get("internal_errors", 0) == 0 and uas.stats.get("internal_errors", 0) == 0


def test_back_to_back_bye_from_the_callee() -> None:
    net, uac, uas = pair()
    call_id = uac.dial("sip:agent@192.0.2.10", "192.0.2.20", 30000, 0.0)
    net.flush()
    uas.accept(call_id, "192.0.2.10", 20000, 0.1)
    net.run(1.0)
    uas.hangup(call_id, 2.0)
    net.run(40.0)
    assert of_type(net.seen[US], CallEnded) == [CallEnded(call_id, "bye", 200, True)]
    assert of_type(net.seen[CALLER], CallEnded) == [CallEnded(call_id, "bye", None, False)]


def test_back_to_back_cancel() -> None:
    net, uac, uas = pair()
    call_id = uac.dial("sip:agent@192.0.2.10", "192.0.2.20", 30000, 0.0)
    net.flush()
    uas.ring(call_id, 0.1)
    net.flush()
    uac.hangup(call_id, 1.0)
    net.run(40.0)
    assert of_type(net.seen[CALLER], CallEnded) == [CallEnded(call_id, "cancel", 487, True)]
    assert of_type(net.seen[US], CallEnded) == [CallEnded(call_id, "cancel", 487, False)]


def test_back_to_back_survives_lost_and_duplicated_datagrams() -> None:
    lost: set[str] = set()

    def drop_first(src: Address, msg: SipMessage) -> bool:
        # Lose the first copy of the INVITE, of the 200 and of the ACK.
        key = msg.method if isinstance(msg, SipRequest) else str(msg.status)  # type: ignore[attr-defined]
        if key in ("INVITE", "200", "ACK") and key not in lost:
            lost.add(key)
            return True
        return False

    net, uac, uas = pair()
    net.drop = drop_first
    net.duplicate = lambda src, msg: True  # and every datagram that gets through arrives twice
    call_id = uac.dial("sip:agent@192.0.2.10", "192.0.2.20", 30000, 0.0)
    net.run(0.4)
    assert net.seen.get(US, []) == []
    net.run(1.0)  # Timer A resends the INVITE at T1
    assert [type(e) for e in net.seen[US]] == [IncomingCall]
    uas.accept(call_id, "192.0.2.10", 20000, 1.0)
    net.run(10.0)
    assert len(of_type(net.seen[CALLER], CallEstablished)) == 1
    assert len(of_type(net.seen[US], CallEstablished)) == 1
    assert net.methods(CALLER).count("ACK") >= 2  # the ACK was lost once, so the 200 came again
    uac.hangup(call_id, 20.0)
    net.run(60.0)
    assert len(of_type(net.seen[CALLER], CallEnded)) == 1 and len(of_type(net.seen[US], CallEnded)) == 1


def test_back_to_back_digest_from_outside_the_allowed_networks() -> None:
    server = DigestServer("agent", {"caller": "pw"}.get, b"s" * 16)
    net, uac, uas = pair(digest_server=server, allowed_networks=(LAN,))
    client = DigestClient("caller", "pw")
    call_id = uac.dial("sip:agent@192.0.2.10", "192.0.2.20", 30000, 0.0, credentials=client)
    net.flush()
    assert "401" in net.methods(US)
    assert [type(e) for e in net.seen[US]] == [IncomingCall]
    uas.accept(call_id, "192.0.2.10", 20000, 0.5)
    net.run(2.0)
    assert len(of_type(net.seen[CALLER], CallEstablished)) == 1


def test_back_to_back_without_ack_the_callee_gives_up_and_byes() -> None:
    net, uac, uas = pair()
    net.drop = lambda src, msg: isinstance(msg, SipRequest) and msg.method == "ACK"
    call_id = uac.dial("sip:agent@192.0.2.10", "192.0.2.20", 30000, 0.0)
    net.flush()
    uas.accept(call_id, "192.0.2.10", 20000, 0.0)
    net.run(100.0)
    assert of_type(net.seen[US], CallEnded) == [CallEnded(call_id, "timeout", 200, True)]
    assert of_type(net.seen[CALLER], CallEnded) == [CallEnded(call_id, "bye", None, False)]


# --- robustness ------------------------------------------------------------------------------------------

_SEED_MESSAGES = [
    invite(),
    invite(body=""),
    in_dialog("BYE", Established("c1@phone", "t", "ph1", SipResponse(200)), 2, branch="z9hG4bKf1"),
    in_dialog(
        "INFO",
        Established("c1@phone", "t", "ph1", SipResponse(200)),
        3,
        branch="z9hG4bKf2",
        body="Signal=5\r\nDuration=160\r\n",
        content_type="application/dtmf-relay",
    ),
    in_dialog(
        "NOTIFY",
        Established("c1@phone", "t", "ph1", SipResponse(200)),
        4,
        branch="z9hG4bKf3",
        body="SIP/2.0 200 OK\r\n",
        content_type="message/sipfrag",
        extra=("Event: refer",),
    ),
    message(
        "OPTIONS sip:agent@192.0.2.10 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKo9;rport",
            "Max-Forwards: 70",
            "From: <sip:q@pbx>;tag=q",
            "To: <sip:agent@192.0.2.10>",
            "Call-ID: q9",
            "CSeq: 1 OPTIONS",
        ],
    ),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEED_MESSAGES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "line", "header"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        else:
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            if kind == "line":
                lines.insert(index, lines[draw(st.integers(0, len(lines) - 1))])  # a duplicated line
            else:
                name = lines[index].split(b":", 1)[0]
                lines[index] = name + b": " + draw(st.text(max_size=20)).encode("utf-8", "surrogatepass")
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


def well_formed(data: bytes) -> None:
    """What we send parses, except error responses, which echo the peer's Via, From, To, Call-ID, CSeq as they
    came (§8.2.6.2) even when the error is in one of those."""
    try:
        parse_message(data)
    except RemoteProtocolError:
        assert data[8:9] in (b"4", b"5"), data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=4))
def test_mutated_requests_never_break_the_user_agent(inputs: list[bytes]) -> None:
    ua = make_ua()
    call = establish(ua)
    assert call.local_tag
    for i, data in enumerate(inputs):
        ua.receive(data.replace(b";tag=t\r\n", f";tag={call.local_tag}\r\n".encode()), PHONE, "UDP", 1.0 + i)
        for out in ua.datagrams_to_send():
            well_formed(out.data)
        events(ua)
    while (deadline := ua.get_timer()) is not None and deadline < 200:
        ua.handle_timer(deadline)
        for out in ua.datagrams_to_send():
            well_formed(out.data)
    assert ua.stats.get("internal_errors", 0) == 0


def test_header_read_on_demand_that_is_malformed_gets_400() -> None:
    ua = make_ua()
    out = feed(ua, invite(extra=("Require: 100rel foo",)))  # not a token list: found when Require is read
    final = out[-1].response
    assert final.status == 400 and "Require" in final.reason
    out = feed(ua, invite("c2@phone", branch="z9hG4bKrr", extra=("Record-Route: <sip:p1;lr",)), 0.1)
    assert out[-1].response.status == 400 and "Record-Route" in out[-1].response.reason
    assert events(ua) == [] and ua.stats.get("internal_errors", 0) == 0


def test_a_bug_behind_a_request_is_contained_and_answered_500(monkeypatch: pytest.MonkeyPatch) -> None:
    ua = make_ua()

    def broken(*args: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(ua._inbound, "on_invite", broken)
    out = feed(ua, invite())
    assert statuses(out) == [100, 500]
    assert ua.stats["internal_errors"] == 1
    monkeypatch.setattr(ua._core.table, "handle_timer", broken)
    ua.handle_timer(1.0)
    assert ua.stats["internal_errors"] == 2


def test_commands_on_calls_in_the_wrong_state() -> None:
    ua = make_ua()
    assert not ua.ring("nope", 0.0) and not ua.accept("nope", "192.0.2.10", 20000, 0.0)
    assert not ua.hangup("nope", 0.0) and not ua.transfer("nope", "sip:x@192.0.2.1", 0.0)
    call = establish(ua)
    assert not ua.ring(call.call_id, 1.0) and not ua.accept(call.call_id, "192.0.2.10", 20000, 1.0)
    assert not ua.reject(call.call_id, 486, 1.0)
    with pytest.raises(LocalProtocolError):
        ua.reject(call.call_id, 200, 1.0)  # a rejection is 3xx-6xx
    with pytest.raises(LocalProtocolError):
        ua.transfer(call.call_id, "not a uri", 1.0)
    with pytest.raises(LocalProtocolError):
        ua.dial("mailto:someone", "192.0.2.10", 20000, 1.0)
    with pytest.raises(LocalProtocolError):
        ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 0, 1.0)
    feed(ua, invite("c2@phone", branch="z9hG4bKc2"))
    with pytest.raises(LocalProtocolError):
        ua.accept("c2@phone", "192.0.2.10", 70000, 1.0)


def test_accept_from_another_address_family_than_the_offer_is_488() -> None:
    ua = make_ua()
    feed(ua, invite())
    events(ua)
    assert not ua.accept("c1@phone", "2001:db8::10", 20000, 0.1)
    assert statuses(sent(ua)) == [488]
    assert events(ua) == [CallEnded("c1@phone", "error", 488, True)]


def test_challenges_we_cannot_or_should_not_answer_end_the_call() -> None:
    basic = 'Proxy-Authenticate: Basic realm="pbx"'
    digest = 'Proxy-Authenticate: Digest realm="pbx", nonce="n1", algorithm=MD5'
    for challenges in ((basic,), (digest,)):
        ua = make_ua()
        call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0, credentials=DigestClient("a", "b"))
        request = sent(ua)[0].request
        if challenges == (digest,):
            request = finals(feed(ua, reply(request, 407, "Auth", to_tag="t", extra=challenges), 0.1))[-1].request
            assert request.cseq.seq == 2
        # A Basic challenge cannot be answered; the same Digest nonce refused twice means a wrong password.
        feed(ua, reply(request, 407, "Auth", to_tag="t", extra=challenges), 0.2)
        assert events(ua) == [CallEnded(call_id, "rejected", 407, False)]


def test_transport_errors_fail_the_transactions_at_once() -> None:
    ua = make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    sent(ua)
    ua.transport_error(("192.168.1.1", 5060), 0.1)  # §17.1.4: no need to wait for Timer B
    assert events(ua) == [CallEnded(call_id, "error", 408, False)]
    feed(ua, invite())
    events(ua)
    ua.transport_error(PHONE, 0.2)  # the caller's connection broke before we answered
    assert events(ua) == [CallEnded("c1@phone", "error", None, False)]
    assert not ua.accept("c1@phone", "192.0.2.10", 20000, 0.3)
    assert ua.stats.get("internal_errors", 0) == 0


_RESPONSE_TEMPLATES = [
    (100, "Trying", ()),
    (180, "Ringing", ("Contact: <sip:1001@192.168.1.1>",)),
    (183, "Session Progress", ("Contact: <sip:1001@192.168.1.1>",)),
    (200, "OK", ("Contact: <sip:1001@192.168.1.1>", "Record-Route: <sip:192.168.1.2;lr>")),
    (407, "Proxy Authentication Required", ('Proxy-Authenticate: Digest realm="pbx", nonce="n", qop="auth"',)),
    (486, "Busy Here", ()),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_RESPONSE_TEMPLATES), st.data()), min_size=1, max_size=4))
def test_mutated_responses_never_break_the_user_agent(
    script: list[tuple[tuple[int, str, tuple[str, ...]], st.DataObject]],
) -> None:
    ua = make_ua()
    ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0, credentials=DigestClient("a", "b"))
    invite_ = sent(ua)[0].request
    for i, ((status, reason, extra), data) in enumerate(script):
        body = OFFER if status in (183, 200) else ""
        clean = reply(invite_, status, reason, to_tag="t1" if status > 100 else None, extra=extra, body=body)
        mutation = data.draw(st.sampled_from(["none", "flip", "cut", "header"]))
        raw = bytearray(clean)
        pos = data.draw(st.integers(0, len(raw) - 1))
        if mutation == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif mutation == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 30))]
        elif mutation == "header":
            lines = bytes(raw).split(b"\r\n")
            index = data.draw(st.integers(1, len(lines) - 1))
            name = lines[index].split(b":", 1)[0]
            lines[index] = name + b": " + data.draw(st.text(max_size=20)).encode("utf-8", "surrogatepass")
            raw = bytearray(b"\r\n".join(lines))
        ua.receive(bytes(raw), ("192.168.1.1", 5060), "UDP", 0.1 * (i + 1))
        for out in ua.datagrams_to_send():
            well_formed(out.data)
        events(ua)
    ua.hangup(next(iter([invite_.call_id])), 1.0)
    while (deadline := ua.get_timer()) is not None and deadline < 200:
        ua.handle_timer(deadline)
        for out in ua.datagrams_to_send():
            well_formed(out.data)
    assert ua.stats.get("internal_errors", 0) == 0


def test_send_request_keeps_a_via_the_caller_built() -> None:
    ua = make_ua()
    rows = [
        ("Via", "SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bKregister1"),
        ("From", "<sip:agent@192.168.1.1>;tag=r1"),
        ("To", "<sip:agent@192.168.1.1>"),
        ("Call-ID", "reg2"),
        ("CSeq", "7 REGISTER"),
    ]
    tx = ua.send_request(SipRequest("REGISTER", SipUri(host="192.168.1.1"), Headers(rows)), 0.0)
    (out,) = sent(ua)
    assert tx.branch == "z9hG4bKregister1" and out.request.top_via.host == "198.51.100.7"
    assert out.request.max_forwards == 70 and out.request.headers.get("User-Agent") == "sipagent"


def test_public_address_goes_into_via_contact_and_warning() -> None:
    ua = make_ua(public_address="198.51.100.44", public_port=15060, user="bot")
    assert ua.contact == "<sip:bot@198.51.100.44:15060>"
    ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    invite_ = sent(ua)[0].request
    assert invite_.top_via.sent_by == "198.51.100.44:15060" and invite_.top_via.has_rport
    assert str(invite_.contact) == "<sip:bot@198.51.100.44:15060>"


def test_status_line_with_a_bare_cr_is_dropped_not_fatal() -> None:
    ua = make_ua()
    ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    invite_ = sent(ua)[0].request
    broken = reply(invite_, 180, "Ring\ring", to_tag="t")  # CR is not allowed in a reason phrase (§25.1)
    assert feed(ua, broken, 0.1) == [] and events(ua) == []
    assert ua.stats["malformed_dropped"] == 1 and ua.stats.get("internal_errors", 0) == 0


def test_ack_that_reuses_the_invite_branch_still_establishes() -> None:
    ua = make_ua()
    feed(ua, invite())
    events(ua)
    ua.accept("c1@phone", "192.0.2.10", 20000, 0.1)
    ok = sent(ua)[0].response
    # RFC 2543-era phones send the 2xx ACK with the INVITE's branch: the transaction passes it up (RFC 6026).
    ack = message(
        "ACK sip:sipagent@192.0.2.10:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bKinv1",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@192.168.1.1>;tag=ph1',
            f"To: <sip:agent@192.0.2.10>;tag={ok.to.tag}",
            "Call-ID: c1@phone",
            "CSeq: 1 ACK",
        ],
    )
    feed(ua, ack, 0.2)
    assert [type(e) for e in events(ua)] == [CallEstablished]
    feed(ua, ack.replace(b"z9hG4bKinv1", b"z9hG4bKzzz").replace(b"c1@phone", b"gone"), 0.3)
    assert ua.stats["stray_acks"] == 1  # an ACK for no dialog is dropped (§17.2.3)


def test_config_is_checked_and_sources_must_be_ip_literals() -> None:
    for bad in ({"transport": "SCTP"}, {"local_port": 0}, {"max_calls": 0}, {"retry_after": -1}):
        with pytest.raises(LocalProtocolError):
            UaConfig("192.0.2.10", **bad)  # type: ignore[arg-type]
    assert UaConfig("192.0.2.10").allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert UaConfig("2001:db8::1", transport="tcp").contact == "<sip:sipagent@[2001:db8::1]:5060;transport=tcp>"
    ua = make_ua()
    assert statuses(feed(ua, invite(), source=("phone.example.com", 5060)))[-1] == 403
    assert ua.new_tag() != ua.new_tag() and ua.new_call_id() != ua.new_call_id()


def test_supported_extensions_are_announced_and_accepted() -> None:
    ua = make_ua(extensions=("replaces",))
    feed(ua, invite(extra=("Require: replaces",)))
    assert [type(e) for e in events(ua)] == [IncomingCall]
    ua.accept("c1@phone", "192.0.2.10", 20000, 0.1)
    assert sent(ua)[0].response.supported == ["replaces"]


def test_via_maddr_and_tel_targets() -> None:
    ua = make_ua()
    out = feed(ua, invite(via="192.168.1.50:5070;maddr=192.168.1.60"))
    assert out[0].destination == ("192.168.1.60", 5070)  # §18.2.2: maddr first
    with pytest.raises(LocalProtocolError):
        ua.dial("tel:+15551234567", "192.0.2.10", 20010, 1.0)  # no host to send to
    ua.dial("tel:+15551234567", "192.0.2.10", 20010, 1.0, destination=("192.168.1.1", 5060))
    (first,) = [s for s in sent(ua) if isinstance(s.message, SipRequest)]
    assert first.destination == ("192.168.1.1", 5060) and first.request.from_.uri.host == "192.168.1.1"  # type: ignore[union-attr]


def test_reinvite_with_a_body_that_is_not_sdp_is_415() -> None:
    ua = make_ua()
    call = establish(ua)
    isup = in_dialog("INVITE", call, 2, branch="z9hG4bKisup", body="x", content_type="application/isup")
    assert statuses(finals(feed(ua, isup, 1.0))) == [415]


def test_refer_answered_481_ends_the_call() -> None:
    ua = make_ua()
    call = establish(ua)
    ua.transfer(call.call_id, "sip:1002@192.168.1.1", 2.0)
    (refer,) = sent(ua)
    feed(ua, reply(refer.request, 481, "Call/Transaction Does Not Exist"), 2.1)
    assert events(ua) == [
        TransferProgress(call.call_id, 481, "Call/Transaction Does Not Exist", True),
        CallEnded(call.call_id, "error", 481, False),  # §12.2.1.2: the peer lost the dialog
    ]
