"""REGISTER client against a fake registrar built on DigestServer, in virtual time.

Every REGISTER goes through serialisation and :func:`parse_message` before the registrar sees it, so the
checks are made on what would be on the wire. The registrar verifies credentials with DigestServer (and one
test recomputes an MD5 digest with hashlib from RFC 7616 §3.4.1), so our digests are checked independently.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.sip.auth import DigestCredentials, DigestServer, VerifyResult
from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.headers import parse_via
from sipagent.sip.keepalive import KeepAlive, KeepAliveMode, same_address
from sipagent.sip.message import SipRequest, SipResponse, make_response
from sipagent.sip.parser import PING, parse_message
from sipagent.sip.registration import (
    ContactAddress,
    Registration,
    RegistrationConfig,
    RegistrationEvent,
    RegistrationFailed,
    RegistrationState,
    RegistrationSucceeded,
    Unregistered,
)
from sipagent.sip.transaction import MAGIC_COOKIE
from sipagent.sip.uri import NameAddress, SipUri, parse_uri

pytestmark = pytest.mark.unit

LOCAL = ContactAddress("10.0.0.5", 5062)
PUBLIC = ("192.0.2.77", 40123)  # TEST-NET-1: a NAT's outside address, never contacted
Script = Callable[[SipRequest], SipResponse | None]


def config(**kwargs: object) -> RegistrationConfig:
    base = RegistrationConfig(registrar=parse_uri("sip:pbx.test"), user="2000", password="secret", contact=LOCAL)
    return replace(base, **kwargs)  # type: ignore[arg-type]


def wire(request: SipRequest) -> SipRequest:
    parsed = parse_message(request.serialize())
    assert isinstance(parsed, SipRequest)
    return parsed


@dataclass
class FakeRegistrar:
    """A registrar (§10.3) with Digest (DigestServer), Min-Expires, NAT rewriting of the Via, and overrides."""

    users: dict[str, str] = field(default_factory=lambda: {"2000": "secret"})
    proxy: bool = False  # challenge as a proxy: 407 / Proxy-Authenticate
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    nonce_lifetime: float = 3600.0
    min_expires: int | None = None
    max_expires: int = 7200
    nat: tuple[str, int] | None = None  # the source address the registrar sees
    script: list[Script] = field(default_factory=list)
    bindings: dict[str, tuple[SipUri, float]] = field(default_factory=dict)
    requests: list[SipRequest] = field(default_factory=list)
    verdicts: list[VerifyResult] = field(default_factory=list)
    salts: int = 0

    def __post_init__(self) -> None:
        self.reset_server(b"k" * 32)

    def reset_server(self, secret: bytes) -> None:
        def salt() -> str:
            self.salts += 1
            return f"s{self.salts}"

        self.server = DigestServer(
            "pbx.test", self.users.get, secret, self.nonce_lifetime, self.algorithms, salt_factory=salt
        )

    def handle(self, request: SipRequest, now: float) -> SipResponse:
        req = wire(request)
        self.requests.append(req)
        if self.script and (scripted := self.script.pop(0)(req)) is not None:
            return self._via(scripted)
        verdict = self._authenticate(req, now)
        if verdict is not VerifyResult.OK:
            status, header = (407, "Proxy-Authenticate") if self.proxy else (401, "WWW-Authenticate")
            challenges = self.server.challenge(now, stale=verdict is VerifyResult.STALE)
            return self._via(make_response(req, status, headers=[(header, c.serialize()) for c in challenges]))
        aor = str(req.to.uri)
        default = req.expires if req.expires is not None else 3600
        updates = [(c.uri, int(c.param("expires") or default)) for c in req.contacts]
        if self.min_expires is not None and any(0 < e < self.min_expires for _, e in updates):
            return self._via(make_response(req, 423, headers=[("Min-Expires", str(self.min_expires))]))
        for uri, expires in updates:
            assert isinstance(uri, SipUri)
            key = f"{aor}|{uri}"
            if expires == 0:
                self.bindings.pop(key, None)
            else:
                self.bindings[key] = (uri, now + min(expires, self.max_expires))
        listed = [
            (f"<{uri}>;expires={round(until - now)}")
            for key, (uri, until) in self.bindings.items()
            if key.startswith(aor + "|") and until > now
        ]
        return self._via(make_response(req, 200, to_tag="reg1", headers=[("Contact", c) for c in listed]))

    def _authenticate(self, req: SipRequest, now: float) -> VerifyResult:
        header = "Proxy-Authorization" if self.proxy else "Authorization"
        other = "Authorization" if self.proxy else "Proxy-Authorization"
        assert other not in req.headers, f"{other} sent to a {'proxy' if self.proxy else 'registrar'}"
        result = VerifyResult.BAD
        for value in req.headers.get_all(header):
            result = self.server.verify(DigestCredentials.parse(value), "REGISTER", req.body, now,
                                        request_uri=str(req.uri))  # fmt: skip
            self.verdicts.append(result)
        return result

    def _via(self, response: SipResponse) -> SipResponse:
        if self.nat is not None:
            top = parse_via(response.headers.remove_first("Via") or "")[0]
            top = top.with_param("received", self.nat[0]).with_param("rport", str(self.nat[1]))
            response.headers.add("Via", str(top), first=True)
        return response

    def binding_hosts(self) -> set[tuple[str, int | None]]:
        return {(uri.host, uri.port) for uri, _ in self.bindings.values()}


@dataclass
class Link:
    """Drives a Registration against a FakeRegistrar on a virtual clock."""

    reg: Registration
    registrar: FakeRegistrar
    now: float = 0.0
    sent: list[tuple[float, SipRequest]] = field(default_factory=list)
    events: list[tuple[float, RegistrationEvent]] = field(default_factory=list)
    keepalives: list[tuple[float, bytes | SipRequest]] = field(default_factory=list)
    answer_options: bool = True

    def pump(self) -> None:
        while out := self.reg.requests_to_send():
            assert len(out) == 1
            self.sent.append((self.now, out[0].request))
            self.reg.receive_response(self.registrar.handle(out[0].request, self.now), self.now)
        for item in self.reg.keepalives_to_send():
            self.keepalives.append((self.now, item))
            if isinstance(item, SipRequest) and self.answer_options:
                self.reg.receive_response(make_response(wire(item), 200), self.now)
        while (event := self.reg.next_event()) is not None:
            self.events.append((self.now, event))

    def start(self) -> None:
        self.reg.start(self.now)
        self.pump()

    def run_until(self, until: float) -> None:
        while (deadline := self.reg.get_timer()) is not None and deadline <= until:
            assert deadline >= self.now, "a timer in the past"
            self.now = deadline
            self.reg.handle_timer(self.now)
            self.pump()
        self.now = until

    def options(self) -> list[tuple[float, SipRequest]]:
        return [(t, item) for t, item in self.keepalives if isinstance(item, SipRequest)]

    def registers(self) -> list[SipRequest]:
        return [r for _, r in self.sent if r.method == "REGISTER"]

    def of(self, kind: type[RegistrationEvent]) -> list[RegistrationEvent]:
        return [e for _, e in self.events if isinstance(e, kind)]


class SeqRandom(random.Random):
    """A seeded Random whose random() can be pinned, to check the jitter bounds exactly."""

    def __init__(self, fixed: float | None = None) -> None:
        super().__init__(1234)
        self.fixed = fixed

    def random(self) -> float:
        return self.fixed if self.fixed is not None else super().random()


def link(cfg: RegistrationConfig | None = None, registrar: FakeRegistrar | None = None, **rng: float) -> Link:
    return Link(Registration(cfg or config(), SeqRandom(rng.get("fixed"))), registrar or FakeRegistrar())


# ---------------------------------------------------------------- authentication


def test_401_with_qop_auth_then_200() -> None:
    lk = link()
    lk.start()
    first, second = lk.registers()
    assert "Authorization" not in first.headers
    creds = DigestCredentials.parse(second.headers.get("Authorization") or "")
    assert (creds.qop, creds.nc, creds.algorithm, creds.uri) == ("auth", 1, "SHA-256", "sip:pbx.test")
    assert lk.registrar.verdicts == [VerifyResult.OK]
    [event] = lk.of(RegistrationSucceeded)
    assert isinstance(event, RegistrationSucceeded) and event.expires == 600
    assert lk.reg.state is RegistrationState.REGISTERED and lk.reg.registered(lk.now)
    # §10.2: one Call-ID, CSeq + 1, To/From the AOR (From tagged, To not), no user part in the Request-URI.
    assert first.call_id == second.call_id
    assert (first.cseq.seq + 1, "REGISTER") == (second.cseq.seq, second.cseq.method)
    for req in (first, second):
        assert str(req.uri) == "sip:pbx.test" and req.to.tag is None and req.from_.tag == first.from_.tag
        assert str(req.to.uri) == str(req.from_.uri) == "sip:2000@pbx.test"
        via = req.top_via
        assert via.has_rport and (via.branch or "").startswith(MAGIC_COOKIE) and via.sent_by == "10.0.0.5:5062"
        assert str(req.contact) == "<sip:2000@10.0.0.5:5062>;expires=600" and req.expires == 600
    assert first.top_via.branch != second.top_via.branch  # §8.1.1.7: a new transaction each time


def test_md5_digest_matches_an_independent_computation() -> None:
    lk = link(registrar=FakeRegistrar(algorithms=("MD5",)))
    lk.start()
    c = DigestCredentials.parse(lk.registers()[1].headers.get("Authorization") or "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    # RFC 7616 §3.4.1 with qop=auth: H(H(A1):nonce:nc:cnonce:qop:H(A2)).
    ha1, ha2 = md5("2000:pbx.test:secret"), md5("REGISTER:sip:pbx.test")
    assert c.response == md5(f"{ha1}:{c.nonce}:{c.nc:08x}:{c.cnonce}:auth:{ha2}")
    assert lk.of(RegistrationSucceeded)


def test_407_answered_with_proxy_authorization() -> None:
    lk = link(registrar=FakeRegistrar(proxy=True))
    lk.start()
    assert len(lk.registers()) == 2 and "Proxy-Authorization" in lk.registers()[1].headers
    assert lk.registrar.verdicts == [VerifyResult.OK] and lk.of(RegistrationSucceeded)


def test_auth_user_differs_from_the_account_user() -> None:
    lk = link(config(auth_user="acct-77"), FakeRegistrar(users={"acct-77": "secret"}))
    lk.start()
    second = lk.registers()[1]
    assert DigestCredentials.parse(second.headers.get("Authorization") or "").username == "acct-77"
    assert second.from_.uri == second.to.uri == parse_uri("sip:2000@pbx.test")
    assert lk.registrar.verdicts == [VerifyResult.OK] and lk.of(RegistrationSucceeded)


def test_wrong_password_stops_after_one_retry_and_backs_off() -> None:
    lk = link(config(password="wrong"))
    lk.start()
    assert len(lk.registers()) == 2 and lk.registrar.verdicts == [VerifyResult.BAD]
    [failed] = lk.of(RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.status == 403
    assert 30 * 0.8 <= failed.retry_in <= 30 * 1.2 and lk.reg.state is RegistrationState.WAITING
    lk.run_until(failed.retry_in - 0.001)
    assert len(lk.registers()) == 2  # nothing before the back-off ends
    lk.run_until(failed.retry_in)
    third = lk.registers()[2]
    assert "Authorization" not in third.headers  # the refused nonce was forgotten: start from a challenge


def test_stale_nonce_is_retried_with_the_new_nonce() -> None:
    lk = link(registrar=FakeRegistrar(nonce_lifetime=100.0))
    lk.start()
    lk.run_until(600)
    refresh = lk.registers()[2:]
    assert len(refresh) == 2  # the pre-authorised refresh, then the answer to the stale challenge
    old, new = (DigestCredentials.parse(r.headers.get("Authorization") or "") for r in refresh)
    assert old.nc == 2 and new.nc == 1 and old.nonce != new.nonce
    assert lk.registrar.verdicts == [VerifyResult.OK, VerifyResult.STALE, VerifyResult.OK]
    assert not lk.of(RegistrationFailed) and len(lk.of(RegistrationSucceeded)) == 2


def test_refresh_before_expiry_reuses_the_nonce_with_increasing_nc() -> None:
    lk = link()
    lk.start()
    lk.run_until(1800)
    times = [t for t, r in lk.sent if r.method == "REGISTER"]
    ncs = [DigestCredentials.parse(r.headers.get("Authorization") or "").nc for r in lk.registers()[1:]]
    # One REGISTER per refresh (pre-authorised, no 401), every one after half the grant and before expiry.
    assert ncs == list(range(1, len(ncs) + 1)) and len(ncs) >= 3
    for before, after in zip(times[1:], times[2:], strict=False):
        assert 300 <= after - before < 600
    assert after - before == max(600 / 2, 600 - 40)  # the documented rule with the default margin
    assert lk.registrar.verdicts == [VerifyResult.OK] * len(ncs)
    assert all(isinstance(e, RegistrationSucceeded) for _, e in lk.events)


def test_rejected_preauthorisation_falls_back_to_a_fresh_challenge() -> None:
    lk = link()
    lk.start()
    lk.registrar.reset_server(b"n" * 32)  # the registrar restarted: our nonce means nothing now
    lk.run_until(600)
    refresh = lk.registers()[2:]
    assert len(refresh) == 2 and lk.registrar.verdicts[-2:] == [VerifyResult.BAD, VerifyResult.OK]
    assert not lk.of(RegistrationFailed)


# ---------------------------------------------------------------- expiry, redirects, NAT


def test_423_interval_too_brief_retries_with_min_expires() -> None:
    lk = link(registrar=FakeRegistrar(min_expires=3600))
    lk.start()
    assert [r.expires for r in lk.registers()] == [600, 600, 3600]
    [ok] = lk.of(RegistrationSucceeded)
    assert isinstance(ok, RegistrationSucceeded) and ok.expires == 3600
    lk.run_until(3600)
    assert lk.registers()[-1].expires == 3600  # the refresh keeps the larger interval


def test_granted_expiry_comes_from_our_contact_and_shapes_the_refresh() -> None:
    lk = link(config(keepalive="none"), FakeRegistrar(max_expires=120))
    lk.start()
    [ok] = lk.of(RegistrationSucceeded)
    assert isinstance(ok, RegistrationSucceeded) and ok.expires == 120
    assert lk.reg.get_timer() == 80  # max(120 / 2, 120 - 40)
    lk.reg.handle_timer(79.9)
    assert lk.reg.requests_to_send() == []


def test_redirect_is_followed_once() -> None:
    other = "sip:reg2.test:5070"
    moved = [lambda r: make_response(r, 302, headers=[("Contact", f"<{other}>")])] * 2
    lk = link(registrar=FakeRegistrar(script=list(moved)))
    lk.start()
    first, second = lk.registers()
    assert str(second.uri) == other and first.call_id == second.call_id
    [failed] = lk.of(RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.status == 302
    lk.run_until(failed.retry_in)
    assert str(lk.registers()[2].uri) == "sip:pbx.test"  # the next attempt starts at the configured registrar


def test_nat_public_address_is_discovered_and_registered() -> None:
    lk = link(registrar=FakeRegistrar(nat=PUBLIC))
    lk.start()
    regs = lk.registers()
    assert len(regs) == 3  # 401, 200 showing our public address, the re-REGISTER
    contacts = regs[2].contacts
    assert str(contacts[0]) == "<sip:2000@192.0.2.77:40123>;expires=600"
    assert str(contacts[1]) == "<sip:2000@10.0.0.5:5062>;expires=0"  # the unreachable binding goes
    assert lk.registrar.binding_hosts() == {PUBLIC}
    [ok] = lk.of(RegistrationSucceeded)
    assert isinstance(ok, RegistrationSucceeded) and ok.public_address_seen == PUBLIC
    lk.run_until(600)
    assert str(lk.registers()[-1].contacts[0]).startswith("<sip:2000@192.0.2.77:40123>")
    assert len(lk.registers()[-1].contacts) == 1


def test_no_reregistration_when_the_public_address_is_ours() -> None:
    lk = link(registrar=FakeRegistrar(nat=("10.0.0.5", 5062)))
    lk.start()
    assert len(lk.registers()) == 2
    [ok] = lk.of(RegistrationSucceeded)
    assert isinstance(ok, RegistrationSucceeded) and ok.public_address_seen == ("10.0.0.5", 5062)


# ---------------------------------------------------------------- failures


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    for fixed, factor in ((0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)):
        always_500: list[Script] = [lambda r: make_response(r, 500)] * 12
        lk = link(registrar=FakeRegistrar(script=list(always_500)), fixed=fixed)
        lk.start()
        lk.run_until(20_000)
        delays = [e.retry_in for e in lk.of(RegistrationFailed) if isinstance(e, RegistrationFailed)]
        nominal = [min(1800.0, 30.0 * 2**i) for i in range(len(delays))]
        assert len(delays) >= 8
        assert delays == pytest.approx([n * factor for n in nominal], rel=1e-5)
        times = [t for t, _ in lk.sent][: len(delays) + 1]
        assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx(delays)


def test_jitter_spreads_retries_within_twenty_percent() -> None:
    lk = link(registrar=FakeRegistrar(script=[lambda r: make_response(r, 503)] * 40))
    lk.start()
    lk.run_until(40_000)
    delays = [e.retry_in for e in lk.of(RegistrationFailed) if isinstance(e, RegistrationFailed)]
    nominal = [min(1800.0, 30.0 * 2**i) for i in range(len(delays))]
    ratios = [d / n for d, n in zip(delays, nominal, strict=True)]
    assert all(0.8 <= r <= 1.2 for r in ratios) and len(set(ratios)) > 1


def test_503_retry_after_is_honoured() -> None:
    busy: list[Script] = [lambda r: make_response(r, 503, headers=[("Retry-After", "120 (maintenance)")])]
    lk = link(registrar=FakeRegistrar(script=busy))
    lk.start()
    [failed] = lk.of(RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and (failed.status, failed.retry_in) == (503, 120.0)
    lk.run_until(120)
    assert [t for t, _ in lk.sent] == [0.0, 120.0, 120.0] and lk.of(RegistrationSucceeded)


def test_timeout_and_transport_error_back_off() -> None:
    reg = Registration(config(), SeqRandom(0.5))
    reg.start(0.0)
    [out] = reg.requests_to_send()
    reg.request_failed(32.0, "Timer F", request=out.request)
    failed = reg.next_event()
    assert failed == RegistrationFailed(408, "Timer F", 30.0) and reg.get_timer() == 62.0
    reg.handle_timer(62.0)
    [again] = reg.requests_to_send()
    reg.request_failed(62.5, "connection refused", status=503)
    assert reg.next_event() == RegistrationFailed(503, "connection refused", 60.0)
    reg.request_failed(63.0, "late duplicate", request=again.request)  # nothing outstanding: ignored
    assert reg.next_event() is None and reg.requests_to_send() == []


def test_stray_and_provisional_responses_are_ignored() -> None:
    reg = Registration(config(), SeqRandom())
    reg.start(0.0)
    [out] = reg.requests_to_send()
    req = wire(out.request)
    reg.receive_response(make_response(req, 100), 0.1)
    stale = make_response(req, 200)
    stale.headers.set("CSeq", f"{req.cseq.seq - 1} REGISTER")
    reg.receive_response(stale, 0.2)
    assert reg.next_event() is None and reg.state is RegistrationState.REGISTERING
    assert req.contact is not None
    reg.receive_response(make_response(req, 200, headers=[("Contact", f"<{req.contact.uri}>;expires=60")]), 0.3)
    assert reg.next_event() == RegistrationSucceeded(60, (reg_contact(req, 60),), None)


def reg_contact(req: SipRequest, expires: int) -> NameAddress:
    assert req.contact is not None
    return NameAddress(None, req.contact.uri, (("expires", str(expires)),))


# ---------------------------------------------------------------- stop


def test_stop_unregisters_with_expires_zero() -> None:
    lk = link()
    lk.start()
    assert lk.registrar.bindings
    lk.reg.stop(lk.now)
    lk.pump()
    last = lk.registers()[-1]
    assert last.expires == 0 and str(last.contact) == "<sip:2000@10.0.0.5:5062>;expires=0"
    assert "Authorization" in last.headers and lk.registrar.verdicts[-1] is VerifyResult.OK
    assert lk.registrar.bindings == {}
    assert lk.of(Unregistered) == [Unregistered(200)] and lk.reg.state is RegistrationState.STOPPED
    assert lk.reg.get_timer() is None


def test_stop_waits_for_the_outstanding_register() -> None:
    reg_ = FakeRegistrar()
    reg = Registration(config(), SeqRandom())
    reg.start(0.0)
    [first] = reg.requests_to_send()
    reg.stop(0.5)
    assert reg.requests_to_send() == []  # §10.2: never two REGISTERs outstanding
    reg.receive_response(reg_.handle(first.request, 1.0), 1.0)  # the 401 is answered with the un-REGISTER
    [unreg] = reg.requests_to_send()
    assert unreg.request.expires == 0 and "Authorization" in unreg.request.headers
    reg.receive_response(reg_.handle(unreg.request, 1.0), 1.0)
    assert reg.next_event() == Unregistered(200) and reg_.bindings == {}


def test_stop_before_any_binding_sends_nothing() -> None:
    lk = link(config(password="wrong"))
    lk.start()
    lk.reg.stop(lk.now)
    lk.pump()
    assert len(lk.registers()) == 2 and lk.of(Unregistered) == [Unregistered(None)]


# ---------------------------------------------------------------- keep-alives


def test_crlf_keepalives_every_20_to_25_seconds_while_registered() -> None:
    lk = link()
    lk.start()
    lk.run_until(300)
    times = [t for t, item in lk.keepalives if item == PING]
    assert len(times) == len(lk.keepalives) >= 300 // 25
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(20 <= g <= 25 for g in gaps) and len(set(gaps)) > 1  # RFC 5626 §4.4.1: 80-100 %
    lk.reg.stop(lk.now)
    lk.pump()
    lk.run_until(400)
    assert max(t for t, _ in lk.keepalives) <= 300


def test_flow_timer_sets_the_keepalive_interval() -> None:
    flow = [("Flow-Timer", "60"), ("Expires", "600")]
    lk = link(registrar=FakeRegistrar(script=[lambda r: None, lambda r: make_response(r, 200, headers=flow)]))
    lk.start()
    lk.run_until(500)
    gaps = [b - a for a, b in zip([0.0, *[t for t, _ in lk.keepalives]], [t for t, _ in lk.keepalives], strict=False)]
    assert gaps and all(48 <= g <= 60 for g in gaps)


def test_options_keepalives_one_at_a_time_and_timeout_reregisters() -> None:
    lk = link(config(keepalive="options"))
    lk.start()
    lk.run_until(100)
    pings = [wire(item) for _, item in lk.options()]
    assert len(pings) == len(lk.keepalives) >= 4 and all(p.method == "OPTIONS" for p in pings)
    assert pings[0].call_id != lk.registers()[0].call_id and str(pings[0].uri) == "sip:pbx.test"
    assert [p.cseq.seq for p in pings] == list(range(1, len(pings) + 1))
    lk.answer_options = False
    lk.run_until(200)
    unanswered = [item for t, item in lk.options() if t > 100]
    assert len(unanswered) == 1  # no second OPTIONS while the first is in flight
    sent = len(lk.registers())
    lk.reg.request_failed(lk.now, "Timer F", request=unanswered[0])
    lk.pump()
    assert len(lk.registers()) == sent + 1 and lk.of(RegistrationFailed) == []


def test_keepalive_none_sends_nothing() -> None:
    lk = link(config(keepalive="none"))
    lk.start()
    lk.run_until(500)
    assert lk.keepalives == [] and lk.reg.get_timer() == pytest.approx(560)


# ---------------------------------------------------------------- config and routing


def test_outbound_proxy_gets_a_loose_route_and_the_datagrams() -> None:
    reg = Registration(config(outbound_proxy=parse_uri("sip:edge.test:5080")), SeqRandom())
    reg.start(0.0)
    [out] = reg.requests_to_send()
    assert (out.destination.host, out.destination.port, out.destination.transport) == ("edge.test", 5080, "udp")
    assert out.request.headers.get("Route") == "<sip:edge.test:5080;lr>" and str(out.request.uri) == "sip:pbx.test"


def test_tcp_contact_and_default_ports() -> None:
    reg = Registration(config(contact=ContactAddress("10.0.0.5", 5062, "tcp"), domain="example.org"), SeqRandom())
    reg.start(0.0)
    [out] = reg.requests_to_send()
    assert out.destination.port == 5060 and out.request.top_via.transport == "TCP"
    assert str(out.request.contact) == "<sip:2000@10.0.0.5:5062;transport=tcp>;expires=600"
    assert str(out.request.to.uri) == "sip:2000@example.org"


@pytest.mark.parametrize(
    "bad",
    [
        {"expires": 0},
        {"user": ""},
        {"keepalive": "stun"},
        {"retry_jitter": 1.0},
        {"registrar": parse_uri("tel:+1")},
        {"registrar": parse_uri("sip:pbx.test;transport=tcp")},
        {"contact": ContactAddress("10.0.0.5", 5062, "sctp")},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        config(**bad)


# ---------------------------------------------------------------- property


STATUSES = [100, 180, 200, 202, 301, 302, 401, 403, 404, 407, 408, 423, 480, 486, 500, 503, 600, 603]
ACTIONS = st.one_of(
    st.tuples(st.just("respond"), st.sampled_from(STATUSES), st.booleans(), st.booleans()),
    st.tuples(st.just("timer"), st.just(0), st.booleans(), st.booleans()),
    st.tuples(st.just("fail"), st.sampled_from([408, 503]), st.booleans(), st.booleans()),
    st.tuples(st.just("stop"), st.just(0), st.booleans(), st.booleans()),
    st.tuples(st.just("start"), st.just(0), st.booleans(), st.booleans()),
)


def scripted_response(server: DigestServer, req: SipRequest, status: int, now: float, flag: bool) -> SipResponse:
    headers: list[tuple[str, str]] = []
    if status in (401, 407) and flag:
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        headers += [(name, c.serialize()) for c in server.challenge(now, stale=now > 50)]
    elif status in (200, 202) and flag and req.contact is not None:
        headers.append(("Contact", f"<{req.contact.uri}>;expires=30"))
    elif status in (301, 302) and flag:
        headers.append(("Contact", "<sip:other.test>"))
    elif status == 423 and flag:
        headers.append(("Min-Expires", "1200"))
    elif status == 503 and flag:
        headers.append(("Retry-After", "5"))
    response = make_response(req, status)
    if status < 300 and flag:
        top = parse_via(response.headers.remove_first("Via") or "")[0].with_param("received", "192.0.2.9")
        response.headers.add("Via", str(top.with_param("rport", "9999")), first=True)
    for name, value in headers:
        response.headers.add(name, value)
    return response


@settings(max_examples=300, deadline=None)
@given(st.lists(ACTIONS, max_size=40), st.sampled_from(["crlf", "options", "none"]), st.integers(0, 2**32))
def test_any_sequence_never_raises_and_keeps_one_register_outstanding(
    actions: list[tuple[str, int, bool, bool]], mode: str, seed: int
) -> None:
    server = DigestServer("pbx.test", {"2000": "secret"}.get, b"p" * 32)
    reg = Registration(config(keepalive=mode, expires=60), random.Random(seed))
    now, outstanding, call_ids, last_seq = 0.0, None, set(), 0
    reg.start(now)
    for action, status, flag, later in actions:
        for out in reg.requests_to_send():
            assert outstanding is None, "a second REGISTER while one is outstanding"
            req = wire(out.request)
            outstanding = req
            call_ids.add(req.call_id)
            assert req.cseq.seq > last_seq
            last_seq = req.cseq.seq
        for item in reg.keepalives_to_send():
            assert item == PING or (isinstance(item, SipRequest) and item.method == "OPTIONS")
        while reg.next_event() is not None:
            pass
        # Never stuck: unless stopped, either a REGISTER is in flight or a timer will send the next one.
        if outstanding is None and reg.state is not RegistrationState.STOPPED:
            assert reg.state in (RegistrationState.REGISTERED, RegistrationState.WAITING)
            assert reg.get_timer() is not None
        else:
            assert (reg.state is RegistrationState.STOPPED) == (outstanding is None)
        if later:
            now += 7.5
        if action == "respond" and outstanding is not None:
            reg.receive_response(scripted_response(server, outstanding, status, now, flag), now)
            if status >= 200:
                outstanding = None
        elif action == "fail" and outstanding is not None:
            reg.request_failed(now, "failure", status=status, request=outstanding if flag else None)
            outstanding = None
        elif action == "timer":
            deadline = reg.get_timer()
            if deadline is not None:
                now = max(now, deadline)
                reg.handle_timer(now)
        elif action == "stop":
            reg.stop(now)
        elif action == "start":
            reg.start(now)
    assert len(call_ids) <= 1


# ---------------------------------------------------------------- odd registrars


def ok_with(*headers: tuple[str, str]) -> Script:
    return lambda r: make_response(r, 200, headers=list(headers))


@pytest.mark.parametrize(
    ("headers", "granted"),
    [
        # Our Contact without an expires parameter (another device's has one): the Expires header counts.
        ((("Contact", "<sip:2000@10.9.9.9>;expires=100"), ("Contact", "<sip:2000@10.0.0.5:5062>"),
          ("Contact", "<urn:x-device:7>;expires=5"), ("Expires", "300")), 300),
        ((("Contact", "<sip:2000@10.0.0.5:5062;transport=udp;x=1>;expires=90"),), 90),  # rewritten params
        ((("Contact", "<sip:2000@10.0.0.5:5062;expires=60"), ("Expires", "90")), 90),  # unreadable Contact
        ((("Expires", "soon"),), 600),  # nothing readable: what we asked for
    ],
)  # fmt: skip
def test_granted_expiry_fallbacks(headers: tuple[tuple[str, str], ...], granted: int) -> None:
    lk = link(registrar=FakeRegistrar(script=[lambda r: None, ok_with(*headers)]))
    lk.start()
    [ok] = lk.of(RegistrationSucceeded)
    assert isinstance(ok, RegistrationSucceeded) and ok.expires == granted


def test_a_2xx_that_keeps_no_binding_is_a_failure() -> None:
    ours = ("Contact", "<sip:2000@10.0.0.5:5062>;expires=0")
    lk = link(registrar=FakeRegistrar(script=[lambda r: None, ok_with(ours)]))
    lk.start()
    [failed] = lk.of(RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.status == 200 and not lk.reg.registered(lk.now)


def test_challenges_we_cannot_answer_fail() -> None:
    basic = [lambda r: make_response(r, 401, headers=[("WWW-Authenticate", 'Basic realm="pbx.test"')])]
    lk = link(registrar=FakeRegistrar(script=list(basic)))
    lk.start()
    [failed] = lk.of(RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.status == 401 and len(lk.registers()) == 1


def test_a_basic_challenge_next_to_a_digest_one_is_skipped() -> None:
    registrar = FakeRegistrar()
    digest = registrar.server.challenge(0.0)[0].serialize()
    both = [("WWW-Authenticate", 'Basic realm="pbx.test"'), ("WWW-Authenticate", digest)]
    registrar.script = [lambda r: make_response(r, 401, headers=both)]
    lk = link(registrar=registrar)
    lk.start()
    assert len(lk.registers()) == 2 and lk.registrar.verdicts == [VerifyResult.OK] and lk.of(RegistrationSucceeded)


def test_endless_stale_challenges_give_up() -> None:
    registrar = FakeRegistrar()

    def stale(r: SipRequest) -> SipResponse:
        return make_response(r, 401, headers=[("WWW-Authenticate", registrar.server.challenge(0, True)[0].serialize())])

    registrar.script = [stale] * 20
    lk = link(registrar=registrar)
    lk.start()
    [failed] = lk.of(RegistrationFailed)
    assert isinstance(failed, RegistrationFailed) and failed.status == 500 and len(lk.registers()) == 6


def test_bad_retry_after_and_bad_min_expires_use_the_backoff() -> None:
    script: list[Script] = [
        lambda r: make_response(r, 503, headers=[("Retry-After", "soon")]),
        lambda r: make_response(r, 423, headers=[("Min-Expires", "30")]),  # not above what we asked
    ]
    lk = link(registrar=FakeRegistrar(script=script), fixed=0.5)
    lk.start()
    lk.run_until(30)
    failures = [(e.status, e.retry_in) for e in lk.of(RegistrationFailed) if isinstance(e, RegistrationFailed)]
    assert failures == [(503, 30.0), (423, 60.0)]


def test_malformed_responses_are_ignored() -> None:
    reg = Registration(config(), SeqRandom())
    reg.start(0.0)
    [out] = reg.requests_to_send()
    headless = make_response(wire(out.request), 200)
    headless.headers.remove("CSeq")
    reg.receive_response(headless, 1.0)
    no_via = make_response(wire(out.request), 200)
    no_via.headers.remove("Via")
    reg.receive_response(no_via, 1.0)  # RFC 3581 needs the Via; without one there is simply nothing to learn
    ok = reg.next_event()
    assert isinstance(ok, RegistrationSucceeded) and ok.public_address_seen is None


def test_keepalives_stop_when_the_binding_lapses() -> None:
    lk = link(config(keepalive="options"))
    lk.start()
    lk.registrar.script = [lambda r: make_response(r, 500)] * 50
    lk.run_until(700)
    assert lk.reg.state is RegistrationState.WAITING and not lk.reg.registered(lk.now)
    assert max(t for t, _ in lk.keepalives) < 600
    sent = len(lk.registers())
    _, in_flight = lk.options()[-1]
    lk.reg.request_failed(lk.now, "Timer F", request=in_flight)
    lk.pump()
    assert len(lk.registers()) == sent  # only a registered binding is refreshed early


def test_contact_property_and_instance_id_and_no_user_agent() -> None:
    uuid = "urn:uuid:00000000-0000-4000-8000-000000000001"
    reg = Registration(config(instance_id=uuid, user_agent=None, display_name="Desk"), SeqRandom())
    # RFC 5626 §4.1: +sip.instance is a quoted "<URN>" header parameter of the Contact.
    assert str(reg.contact) == f'<sip:2000@10.0.0.5:5062>;expires=600;+sip.instance="<{uuid}>"'
    reg.start(0.0)
    [out] = reg.requests_to_send()
    req = wire(out.request)
    assert "User-Agent" not in req.headers and req.from_.display_name == "Desk"
    assert req.contact is not None and req.contact.param("+sip.instance") == reg.contact.param("+sip.instance")


def test_keepalive_schedule_helpers() -> None:
    ka = KeepAlive("crlf", 10.0, lambda: 0.0, "c1")
    assert ka.interval == 10.0 and not ka.running
    ka.start(0.0)
    assert ka.running and ka.get_timer() == 8.0
    with pytest.raises(LocalProtocolError):
        ka.interval = 0
    with pytest.raises(LocalProtocolError):
        KeepAlive(cast(KeepAliveMode, "stun"), 10.0, lambda: 0.0, "c1")
    bad = SipResponse(200, "OK")
    assert not ka.receive_response(bad)
    assert same_address(("PBX.test", 5060), ("pbx.test", 5060)) and same_address(("::1", 1), ("0:0::1", 1))
    assert not same_address(("192.0.2.1", 5060), ("192.0.2.1", 5061))


def test_unregister_refused_or_timed_out_still_ends() -> None:
    lk = link()
    lk.start()
    lk.registrar.users["2000"] = "changed"  # the account's password changed on the PBX meanwhile
    lk.reg.stop(lk.now)
    lk.pump()
    assert [r.expires for r in lk.registers()[2:]] == [0, 0]  # pre-authorised, then a fresh nonce once
    assert lk.of(Unregistered) == [Unregistered(403)] and lk.reg.state is RegistrationState.STOPPED
    # A REGISTER that timed out while stop() waited may have reached the registrar: it is undone anyway.
    reg = Registration(config(), SeqRandom())
    reg.start(0.0)
    [first] = reg.requests_to_send()
    reg.stop(0.1)
    reg.request_failed(32.0, "Timer F", request=first.request)
    [unreg] = reg.requests_to_send()
    assert unreg.request.expires == 0
    reg.request_failed(64.0, "Timer F", request=unreg.request)
    assert reg.next_event() == Unregistered(408) and reg.get_timer() is None
