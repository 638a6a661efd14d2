"""A REGISTER client for one binding (RFC 3261 §10.2, RFC 3581, RFC 5626 keep-alives), sans-I/O.

Theory of operation. :class:`Registration` builds complete REGISTER requests (top Via with ``rport`` and a
fresh branch included) and reads the final responses the UA routes back from their client transactions; it
never sees bytes or sockets, and every method that cares about time takes ``now``. At most one REGISTER is
outstanding at any time (§10.2: no new registration before the previous one got a final response or timed
out); every REGISTER of the binding shares one Call-ID and the CSeq goes up by one each time (§10.2).

- 401/407: answered with Authorization / Proxy-Authorization while :meth:`DigestClient.should_retry` says a
  retry can help (first challenge, stale nonce, a reused nonce dropped by the server); a rejection of fresh
  credentials means a wrong password: :class:`RegistrationFailed` with 403 and the back-off. Refreshes are
  pre-authorised with the last nonce and the next nonce count (RFC 7616 §3.4), which saves a round trip.
- 423: retried at once with the Min-Expires asked for (§10.2.8). 3xx: the first Contact is tried once.
- 2xx: the expiry granted is the ``expires`` of the Contact that is ours, else the Expires header (§10.2.4).
  The refresh goes out at ``max(expires / 2, expires - refresh_margin)``: 40 s before expiry by default, more
  than Timer F (64*T1 = 32 s), so even a refresh that needs every retransmission lands before the binding
  lapses; half-way for short expiries, so a short grant is not refreshed in a tight loop.
- NAT (RFC 3581 §4): the ``received``/``rport`` of our Via in the 2xx is our address as the registrar sees
  it. When it differs from our Contact, the binding would be unreachable, so we re-register at once with
  that public address and drop the old Contact in the same request (expires=0, §10.2.2).
- Failures (timeout as 408, transport error as 503 per §8.1.3.1, 5xx, 4xx, 6xx) back off exponentially:
  ``retry_base`` doubling up to ``retry_max``, each delay jittered by ±``retry_jitter`` (the RFC 5626 §4.5
  shape); a Retry-After is honoured as given (§20.33).
- :meth:`stop` removes our Contact with expires=0 (never ``*``, which would also remove the AOR's other
  devices, §10.2.2), then reports :class:`Unregistered`.
"""

from __future__ import annotations

import random as _random
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

from sipagent.sip.auth import DigestChallenge, DigestClient, DigestCredentials
from sipagent.sip.errors import RemoteProtocolError
from sipagent.sip.headers import Via
from sipagent.sip.keepalive import KeepAlive, host_key, same_address, via_public_address
from sipagent.sip.message import Headers, SipRequest, SipResponse
from sipagent.sip.registration_types import (
    ContactAddress,
    Destination,
    OutgoingRequest,
    RandomSource,
    RegistrationConfig,
    RegistrationEvent,
    RegistrationFailed,
    RegistrationState,
    RegistrationSucceeded,
    Unregistered,
)
from sipagent.sip.transaction import new_branch
from sipagent.sip.uri import NameAddress, SipUri

__all__ = [
    "ContactAddress",
    "Destination",
    "OutgoingRequest",
    "RandomSource",
    "Registration",
    "RegistrationConfig",
    "RegistrationEvent",
    "RegistrationFailed",
    "RegistrationState",
    "RegistrationSucceeded",
    "Unregistered",
]

_MAX_ROUNDS = 6  # REGISTERs per attempt (challenges, 423, 3xx, NAT): a server looping us gets a failure
_MAX_NAT_ROUNDS = 2  # a registrar reporting a new address every time must not keep us re-registering
_T = TypeVar("_T")


class Registration:
    """The REGISTER client of one AOR and Contact; see the module notes for the behaviour."""

    def __init__(self, config: RegistrationConfig, rng: RandomSource | None = None) -> None:
        self.config = config
        self._rng: RandomSource = rng if rng is not None else _random.SystemRandom()
        self._digest = DigestClient(config.auth_user or config.user, config.password, lambda: self._hex(16))
        self.call_id = self._hex(12)
        self._tag = self._hex(6)
        self._cseq = 0
        r = config.registrar
        self._registrar = SipUri(r.scheme, None, None, r.host, r.port, r.params)
        self._target = self._registrar
        self._redirected = False
        self._expires = config.expires
        self._address = config.public_address or (config.contact.host, config.contact.port)
        self._stale_contacts: list[SipUri] = []
        self._state = RegistrationState.IDLE
        self._deadline: float | None = None
        self._outstanding: SipRequest | None = None
        self._requested = 0  # the expiry the last REGISTER asked for
        self._sent: list[DigestCredentials] = []
        self._realms: dict[str, bool] = {}  # realm -> answered with Proxy-Authorization
        self._rounds = self._failures = self._nat_rounds = 0
        self._bound_until: float | None = None
        self._public_seen: tuple[str, int] | None = None
        self._stopping = False
        self._outgoing: list[OutgoingRequest] = []
        self._events: deque[RegistrationEvent] = deque()
        self._keepalive = KeepAlive(config.keepalive, config.keepalive_interval, self._rng.random, self._hex(12))

    # --- public API -----------------------------------------------------------------------------------

    @property
    def state(self) -> RegistrationState:
        return self._state

    def registered(self, now: float) -> bool:
        """Whether the registrar holds a binding of ours that has not expired."""
        return self._bound_until is not None and now < self._bound_until

    @property
    def contact(self) -> NameAddress:
        """The Contact we register now (with the public address once discovered)."""
        return self._contact(self._contact_uri(), self._expires)

    @property
    def destination(self) -> Destination:
        hop = self.config.outbound_proxy or self._target
        transport = self.config.contact.transport.lower()
        default = 5061 if transport in ("tls", "wss") or hop.scheme == "sips" else 5060
        return Destination(hop.host, hop.port if hop.port is not None else default, transport)

    def start(self, now: float) -> None:
        if self._state not in (RegistrationState.IDLE, RegistrationState.STOPPED):
            return
        self._target, self._redirected, self._failures = self._registrar, False, 0
        self._attempt(now)

    def stop(self, now: float) -> None:
        """Remove our binding (Contact expires=0); :class:`Unregistered` follows."""
        if self._stopping or self._state is RegistrationState.STOPPED:
            return
        self._stopping, self._deadline = True, None
        self._keepalive.stop()
        self._state = RegistrationState.UNREGISTERING
        if self._outstanding is not None:
            return  # §10.2: one at a time; the un-REGISTER follows its final response
        if self.registered(now):
            self._attempt(now)
        else:
            self._finish(None)

    def requests_to_send(self) -> list[OutgoingRequest]:
        out, self._outgoing = self._outgoing, []
        return out

    def keepalives_to_send(self) -> list[bytes | SipRequest]:
        """CRLF CRLF pings (bytes) or OPTIONS requests, all for :attr:`destination`."""
        return self._keepalive.to_send()

    def next_event(self) -> RegistrationEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._deadline, self._keepalive.get_timer()) if d is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline and self._outstanding is None:
            self._deadline = None
            self._attempt(now)
        self._keepalive.poll(now, self.registered(now), self._options)

    def receive_response(self, response: SipResponse, now: float) -> None:
        """A response from the client transaction of a request we produced; others are ignored."""
        if self._keepalive.receive_response(response):
            return
        try:
            call_id, cseq = response.call_id, response.cseq
        except RemoteProtocolError:
            return
        if self._outstanding is None or call_id != self.call_id or cseq.seq != self._cseq or response.status < 200:
            return
        self._outstanding = None
        status = response.status
        if status in (401, 407):
            self._on_challenge(response, now)
        elif self._stopping:
            self._on_final_while_stopping(status, now)
        elif status < 300:
            self._on_success(response, now)
        elif status < 400:
            self._on_redirect(response, now)
        elif status == 423:
            self._on_interval_too_brief(response, now)
        else:
            self._fail(now, status, response.reason, _retry_after(response))

    def request_failed(
        self, now: float, reason: str = "timeout", *, status: int = 408, request: SipRequest | None = None
    ) -> None:
        """The transaction of ``request`` (default: the outstanding REGISTER) timed out (408) or the transport
        failed (pass 503), as §8.1.3.1 treats them."""
        if request is not None and self._keepalive.request_failed(request):
            # RFC 5626 §4.4.1: an unanswered keep-alive means the flow is gone; re-register over a new one.
            if self._state is RegistrationState.REGISTERED:
                self._deadline = None
                self._attempt(now)
            return
        if self._outstanding is None or (request is not None and not _same_request(request, self._outstanding)):
            return
        self._outstanding = None
        if self._stopping:
            self._on_final_while_stopping(status, now)
        else:
            self._fail(now, status, reason)

    # --- responses ------------------------------------------------------------------------------------

    def _on_success(self, response: SipResponse, now: float) -> None:
        contacts = tuple(c for c in _contacts(response) if not c.is_star)
        mine = self._contact_uri()
        granted = self._granted(response, contacts, mine)
        if granted > 0:
            self._bound_until = now + granted
        public = via_public_address(response)
        if public is not None:
            self._public_seen = public
            if (
                self.config.discover_public_address
                and self.config.public_address is None
                and not same_address(public, self._address)
                and self._nat_rounds < _MAX_NAT_ROUNDS
            ):
                self._nat_rounds += 1
                self._stale_contacts.append(mine)
                self._address = public
                self._retry(now)
                return
        if granted <= 0:
            self._fail(now, response.status, "the registrar kept no binding for our Contact")
            return
        self._stale_contacts.clear()
        self._failures = self._nat_rounds = 0
        self._state = RegistrationState.REGISTERED
        self._deadline = now + max(granted / 2, granted - self.config.refresh_margin)
        flow_timer = _int_or_none(response.headers.get("Flow-Timer"))
        if flow_timer:  # RFC 5626 §5.4: the edge proxy's own idea of how often it needs a keep-alive
            self._keepalive.interval = flow_timer
        self._keepalive.start(now)
        self._events.append(RegistrationSucceeded(granted, contacts, self._public_seen))

    def _granted(self, response: SipResponse, contacts: Iterable[NameAddress], mine: SipUri) -> int:
        for contact in contacts:
            if isinstance(contact.uri, SipUri) and _same_binding(contact.uri, mine):
                expires = _int_or_none(contact.param("expires"))
                if expires is not None:
                    return expires
        header = _try(lambda: response.expires, None)
        return header if header is not None else self._requested

    def _on_challenge(self, response: SipResponse, now: float) -> None:
        offered: dict[DigestChallenge, bool] = {}
        for name, proxy in (("WWW-Authenticate", False), ("Proxy-Authenticate", True)):
            for value in response.headers.get_all(name):
                try:
                    offered.setdefault(DigestChallenge.parse(value), proxy)
                except RemoteProtocolError:
                    continue  # another scheme, or garbage: answer what we can
        chosen = self._digest.choose(offered)
        if not chosen:
            self._fail(now, response.status, f"{response.reason}: no Digest challenge we can answer")
            return
        if not all(self._digest.should_retry(challenge, self._sent) for challenge in chosen):
            # Fresh credentials refused without stale=true: the password (or auth user) is wrong. Forget the
            # nonces so that the next attempt starts from a fresh challenge.
            self._digest.forget()
            self._realms.clear()
            self._fail(now, 403, f"credentials refused ({response.status} {response.reason})")
            return
        for challenge in chosen:
            self._realms[challenge.realm] = offered[challenge]
        self._retry(now, chosen)

    def _on_redirect(self, response: SipResponse, now: float) -> None:
        targets = [c.uri for c in _contacts(response) if isinstance(c.uri, SipUri)]
        targets = [uri for uri in targets if uri.scheme in ("sip", "sips")]
        if self._redirected or not targets:
            self._fail(now, response.status, f"{response.reason}: no further registrar to try")
            return
        first = targets[0]
        self._target = SipUri(first.scheme, None, None, first.host, first.port, first.params)
        self._redirected = True
        self._retry(now)

    def _on_interval_too_brief(self, response: SipResponse, now: float) -> None:
        minimum = _try(lambda: response.min_expires, None)
        if minimum is None or minimum <= self._requested:
            self._fail(now, 423, f"{response.reason}: no usable Min-Expires")
            return
        self._expires = minimum  # §10.2.8: and keep it for the refreshes too
        self._retry(now)

    def _on_final_while_stopping(self, status: int, now: float) -> None:
        if self._requested == 0:
            self._finish(status)  # the un-REGISTER's own answer
        elif self.registered(now) or status < 300 or status == 408:
            self._attempt(now)  # the REGISTER in flight at stop() may have bound us: remove that binding
        else:
            self._finish(None)  # it failed and nothing else is bound

    def _fail(self, now: float, status: int, reason: str, retry_after: float | None = None) -> None:
        if self._stopping:
            self._finish(status)
            return
        self._failures += 1
        if retry_after is None:
            nominal = min(self.config.retry_max, self.config.retry_base * 2.0 ** min(self._failures - 1, 60))
            retry_after = nominal * (1.0 + self.config.retry_jitter * (2.0 * self._rng.random() - 1.0))
        self._target, self._redirected = self._registrar, False  # a redirect holds for one attempt
        self._state = RegistrationState.WAITING
        self._deadline = now + retry_after
        self._events.append(RegistrationFailed(status, reason, retry_after))

    def _finish(self, status: int | None) -> None:
        self._stopping = False
        self._state = RegistrationState.STOPPED
        self._deadline = self._bound_until = None
        self._keepalive.stop()
        self._events.append(Unregistered(status))

    # --- requests -------------------------------------------------------------------------------------

    def _attempt(self, now: float) -> None:
        self._rounds = 0
        self._retry(now)

    def _retry(self, now: float, challenges: Iterable[DigestChallenge] = ()) -> None:
        self._rounds += 1
        if self._rounds > _MAX_ROUNDS:
            self._fail(now, 500, f"gave up after {_MAX_ROUNDS} REGISTERs in one attempt")
            return
        expires = 0 if self._stopping else self._expires
        uri = self._target
        self._cseq += 1
        to = NameAddress(self.config.display_name, self.config.aor)
        headers = self._headers("REGISTER", self.call_id, self._cseq, to)
        headers.add("Contact", str(self._contact(self._contact_uri(), expires)))
        for stale in self._stale_contacts:
            headers.add("Contact", str(NameAddress(None, stale, (("expires", "0"),))))
        headers.add("Expires", str(expires))
        fresh = {c.realm: self._digest.authorize(c, "REGISTER", str(uri)) for c in challenges}
        self._sent = []
        for realm, proxy in self._realms.items():
            # Realms not challenged this time are pre-authorised with their last nonce (RFC 3261 §22.3).
            credentials = fresh.get(realm) or self._digest.authorize_again(realm, "REGISTER", str(uri))
            # Never None: a realm enters _realms when it was answered, and leaves with the client's nonces.
            if credentials is not None:  # pragma: no branch
                self._sent.append(credentials)
                headers.add("Proxy-Authorization" if proxy else "Authorization", credentials.serialize())
        request = SipRequest("REGISTER", uri, headers)
        self._outstanding, self._requested = request, expires
        if not self._stopping:
            self._state = RegistrationState.REGISTERING
        self._outgoing.append(OutgoingRequest(request, self.destination))

    def _options(self, seq: int) -> SipRequest:
        headers = self._headers("OPTIONS", self._keepalive.call_id, seq, NameAddress(None, self._target))
        headers.add("Accept", "application/sdp")
        return SipRequest("OPTIONS", self._target, headers)

    def _headers(self, method: str, call_id: str, seq: int, to: NameAddress) -> Headers:
        contact = self.config.contact
        branch = new_branch(self._randbytes)
        via = Via(contact.transport, contact.host, contact.port, (("rport", None), ("branch", branch)))
        headers = Headers([("Via", str(via)), ("Max-Forwards", "70")])
        proxy = self.config.outbound_proxy
        if proxy is not None:
            headers.add("Route", str(NameAddress(None, proxy if proxy.has_param("lr") else proxy.with_param("lr"))))
        aor = NameAddress(self.config.display_name, self.config.aor)
        headers.add("From", str(aor.with_tag(self._tag)))
        headers.add("To", str(to))
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{seq} {method}")
        if self.config.user_agent:
            headers.add("User-Agent", self.config.user_agent)
        return headers

    def _contact_uri(self) -> SipUri:
        transport = self.config.contact.transport.lower()
        params = () if transport == "udp" else (("transport", transport),)
        host, port = self._address
        return SipUri("sip", self.config.user, None, host, port, params)

    def _contact(self, uri: SipUri, expires: int) -> NameAddress:
        params: tuple[tuple[str, str | None], ...] = (("expires", str(expires)),)
        if self.config.instance_id:
            params += (("+sip.instance", f'"<{self.config.instance_id}>"'),)
        return NameAddress(None, uri, params)

    def _randbytes(self, n: int) -> bytes:
        return self._rng.getrandbits(8 * n).to_bytes(n, "big")

    def _hex(self, n: int) -> str:
        return self._randbytes(n).hex()


def _try(read: Callable[[], _T], default: _T) -> _T:
    """An optional header, or ``default`` when the peer wrote it badly (§8.1.3.1: we are lenient on input)."""
    try:
        return read()
    except RemoteProtocolError:
        return default


def _int_or_none(text: str | None) -> int | None:
    text = (text or "").strip(" \t")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def _same_request(a: SipRequest, b: SipRequest) -> bool:
    # The UA may hand back a copy (or the transaction's own object): Call-ID and CSeq identify a REGISTER.
    return a.headers.get("Call-ID") == b.headers.get("Call-ID") and a.headers.get("CSeq") == b.headers.get("CSeq")


def _contacts(response: SipResponse) -> list[NameAddress]:
    try:
        return response.contacts
    except RemoteProtocolError:
        return []


def _retry_after(response: SipResponse) -> float | None:
    value = _try(lambda: response.retry_after, None)
    # At least a second: a server answering "Retry-After: 0" every time must not get a tight loop.
    return None if value is None else max(1.0, float(value.seconds))


def _same_binding(theirs: SipUri, mine: SipUri) -> bool:
    # §10.3 step 7 compares with §19.1.4 rules; registrars also rewrite parameters, so user, host and port
    # decide when the strict comparison fails.
    return theirs.equivalent(mine) or (
        theirs.user == mine.user and (theirs.port or 5060) == (mine.port or 5060)
        and host_key(theirs.host) == host_key(mine.host)
    )  # fmt: skip
