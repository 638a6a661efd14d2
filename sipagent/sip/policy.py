"""The user agent's configuration and the policy decisions that need no state: methods, admission, Digest.

Admission of an inbound INVITE is a toll-fraud guard: a caller from an allowed network (the PBX, the LAN)
is trusted; anyone else must pass Digest authentication when a :class:`DigestServer` is configured, and
gets 403 otherwise. OPTIONS is answered for everyone (PBX qualify pings come from wherever the PBX is).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from sipagent.sip.auth import DigestChallenge, DigestClient, DigestCredentials, DigestServer, VerifyResult
from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.message import Headers, SipRequest, SipResponse
from sipagent.sip.offeranswer import AudioCapabilities
from sipagent.sip.timers import TimerConfig
from sipagent.sip.uri import format_host, parse_uri

__all__ = [
    "ALLOWED_METHODS",
    "DIALOG_METHODS",
    "KNOWN_METHODS",
    "UaConfig",
    "authenticate",
    "source_allowed",
    "unsupported_options",
    "with_credentials",
]

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY")
"""What we put in Allow (§20.5): the methods this UA accepts."""
DIALOG_METHODS = frozenset({"BYE", "INFO", "UPDATE", "REFER", "NOTIFY"})
"""Allowed methods that only make sense inside a dialog: outside one they get 481 (§12.2.2)."""
KNOWN_METHODS = frozenset({*ALLOWED_METHODS, "PRACK", "MESSAGE", "SUBSCRIBE", "PUBLISH", "REGISTER"})
"""Methods we recognise but refuse with 405 (§8.2.1); anything else is 501 (§21.5.2)."""

_Network = IPv4Network | IPv6Network


def _default_networks() -> tuple[_Network, ...]:
    return (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, slots=True)
class UaConfig:
    """Everything the user agent needs to know about itself; built once by the endpoint from the settings.

    ``local_address``/``local_port``/``transport`` are where the SIP socket listens; ``public_address`` and
    ``public_port`` replace them in Via and Contact behind a NAT. ``credentials`` answer challenges to
    requests we send inside inbound calls (BYE, REFER); outbound calls use the ones given to ``dial``.
    ``symmetric`` sends requests inside a dialog without a route set back to the address the peer used
    (like Asterisk's rewrite_contact), since a NATed phone's Contact is often unreachable.
    """

    local_address: str
    local_port: int = 5060
    transport: str = "UDP"
    public_address: str | None = None
    public_port: int | None = None
    user: str = "sipagent"
    display_name: str | None = None
    user_agent: str = "sipagent"
    capabilities: AudioCapabilities = field(default_factory=AudioCapabilities)
    allowed_networks: tuple[_Network, ...] = field(default_factory=_default_networks)
    digest_server: DigestServer | None = None
    credentials: DigestClient | None = None
    max_calls: int = 50
    retry_after: int = 30
    extensions: tuple[str, ...] = ()
    symmetric: bool = True
    timers: TimerConfig = field(default_factory=lambda: TimerConfig(trying_delay=0.0))

    def __post_init__(self) -> None:
        if self.transport.upper() not in ("UDP", "TCP", "TLS"):
            raise LocalProtocolError(f"transport {self.transport!r} is not UDP, TCP or TLS")
        for port in (self.local_port, self.public_port):
            if port is not None and not 0 < port <= 65535:
                raise LocalProtocolError(f"port {port} is out of range")
        if self.max_calls < 1 or self.retry_after < 0:
            raise LocalProtocolError("max_calls must be at least 1 and retry_after not negative")

    @property
    def sent_by(self) -> str:
        """host:port for our Via and Contact (§18.1.1), the public one when set."""
        host = format_host(self.public_address or self.local_address)
        return f"{host}:{self.public_port or self.local_port}"

    @property
    def contact(self) -> str:
        transport = "" if self.transport.upper() == "UDP" else f";transport={self.transport.lower()}"
        return f"<sip:{self.user}@{self.sent_by}{transport}>"


def source_allowed(config: UaConfig, host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in config.allowed_networks)


def unsupported_options(request: SipRequest, supported: Sequence[str]) -> list[str]:
    """§8.2.2.3: the Require option tags we do not support (for 420 with Unsupported)."""
    known = {tag.lower() for tag in supported}
    return [tag for tag in request.require if tag.lower() not in known]


def authenticate(server: DigestServer, request: SipRequest, now: float) -> list[tuple[str, str]] | None:
    """None when the request carries valid credentials; otherwise the WWW-Authenticate rows of a 401.

    A stale nonce gets a challenge with ``stale=true`` (RFC 7616 §3.3) so the client retries silently;
    wrong credentials get a fresh challenge, which the client's retry rule turns into a final failure.
    """
    stale = False
    for value in request.headers.get_all("Authorization", split=False):
        try:
            credentials = DigestCredentials.parse(value)
        except RemoteProtocolError:
            continue
        if credentials.realm != server.realm or not _same_uri(credentials.uri, request):
            continue
        result = server.verify(credentials, request.method, request.body, now)
        if result is VerifyResult.OK:
            return None
        stale = stale or result is VerifyResult.STALE
    return [("WWW-Authenticate", challenge.serialize()) for challenge in server.challenge(now, stale=stale)]


def _same_uri(text: str, request: SipRequest) -> bool:
    # §22.4: digest-uri must be the Request-URI; compared as URIs, since our str() may escape differently.
    try:
        return parse_uri(text).equivalent(request.uri)
    except RemoteProtocolError:
        return False


def _challenges(response: SipResponse) -> list[DigestChallenge]:
    name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    found = []
    for value in response.headers.get_all(name, split=False):
        try:
            found.append(DigestChallenge.parse(value))
        except RemoteProtocolError:
            continue  # another scheme, or garbage: look at the next one
    return found


def with_credentials(request: SipRequest, response: SipResponse, client: DigestClient, cseq: int) -> SipRequest | None:
    """§22.2/§22.3: ``request`` again with CSeq ``cseq`` and answers to the 401/407's challenges, no Via.

    ``None`` when no challenge can be answered or answering cannot help (the client's retry rule: a
    second rejection of the same credentials is final), which stops challenge loops.
    """
    header = "Authorization" if response.status == 401 else "Proxy-Authorization"
    sent = []
    for value in request.headers.get_all(header, split=False):
        try:
            sent.append(DigestCredentials.parse(value))
        except RemoteProtocolError:
            continue
    chosen = [c for c in client.choose(_challenges(response)) if client.should_retry(c, sent)]
    if not chosen:
        return None
    realms = {c.realm for c in chosen}
    headers = Headers()
    for name, value in request.headers:
        key = name.lower()
        if key in ("via", "v", "cseq"):
            continue
        if key == header.lower() and any(s.realm in realms and s.serialize() == value for s in sent):
            continue  # replaced below; credentials for other realms (other proxies) stay
        headers.add(name, value)
    headers.add("CSeq", f"{cseq} {request.method}")
    uri = str(request.uri)
    for challenge in chosen:
        headers.add(header, client.authorize(challenge, request.method, uri, request.body).serialize())
    return SipRequest(request.method, request.uri, headers, request.body)
