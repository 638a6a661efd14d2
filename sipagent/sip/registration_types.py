"""What a REGISTER client is configured with and what it reports (RFC 3261 §10.2), as plain values.

:class:`sipagent.sip.registration.Registration` takes a :class:`RegistrationConfig` and emits the events
defined here; they live apart so that settings and the endpoint can use them without the state machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.keepalive import KEEPALIVE_MODES, KeepAliveMode
from sipagent.sip.message import SipRequest
from sipagent.sip.uri import NameAddress, SipUri

__all__ = [
    "ContactAddress",
    "Destination",
    "OutgoingRequest",
    "RandomSource",
    "RegistrationConfig",
    "RegistrationEvent",
    "RegistrationFailed",
    "RegistrationState",
    "RegistrationSucceeded",
    "Unregistered",
]

_TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")


class RandomSource(Protocol):
    """What is needed of :class:`random.Random` (tests pass a seeded one)."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class ContactAddress:
    """Where we listen: the host and port of our Contact and Via, and the transport we send on."""

    host: str
    port: int
    transport: str = "udp"


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    registrar: SipUri
    """``sip:host[:port][;transport=...]``; any user part is dropped from the Request-URI (§10.2)."""
    user: str
    """The AOR's user part (the extension, e.g. ``2000``), also the user of our Contact."""
    password: str
    contact: ContactAddress
    domain: str | None = None
    """The AOR's host; the registrar's host when not given."""
    auth_user: str | None = None
    """The Digest username when it differs from ``user`` (common on hosted PBXs)."""
    display_name: str | None = None
    expires: int = 600
    public_address: tuple[str, int] | None = None
    """A known public (host, port) to advertise in the Contact; turns discovery off."""
    discover_public_address: bool = True
    """Re-register with the Via received/rport address when it differs from the Contact (RFC 3581)."""
    user_agent: str | None = "sipagent"
    keepalive: KeepAliveMode = "crlf"
    keepalive_interval: float = 25.0
    outbound_proxy: SipUri | None = None
    """A first hop to send through (a loose Route is added, §8.1.2)."""
    instance_id: str | None = None
    """``urn:uuid:...``: sent as the Contact's ``+sip.instance`` (RFC 5626 §4.1) when given."""
    refresh_margin: float = 40.0
    retry_base: float = 30.0
    retry_max: float = 1800.0
    retry_jitter: float = 0.2

    def __post_init__(self) -> None:
        transport = self.contact.transport.lower()
        asked = (self.registrar.param("transport") or transport).lower()
        checks = (
            (self.registrar.scheme not in ("sip", "sips"), f"registrar scheme {self.registrar.scheme!r} is not sip(s)"),
            (not self.user, "user must not be empty"),
            (self.expires < 1, f"expires {self.expires} must be at least 1 (0 is what stop() sends)"),
            (self.keepalive not in KEEPALIVE_MODES, f"keepalive {self.keepalive!r} is not one of {KEEPALIVE_MODES}"),
            (not self.keepalive_interval > 0, "keepalive_interval must be positive"),
            (transport not in _TRANSPORTS, f"transport {self.contact.transport!r} is unknown"),
            (asked != transport, f"the registrar URI asks for {asked}, but the contact uses {transport}"),
            (not 0 < self.retry_base <= self.retry_max, "retry_base must be positive and at most retry_max"),
            (not 0 <= self.retry_jitter < 1, "retry_jitter must be in [0, 1)"),
            (not self.refresh_margin >= 0, "refresh_margin must not be negative"),
        )
        problems = [message for bad, message in checks if bad]
        if problems:
            raise LocalProtocolError("registration config: " + "; ".join(problems))

    @property
    def aor(self) -> SipUri:
        return SipUri(self.registrar.scheme, self.user, None, self.domain or self.registrar.host)


@dataclass(frozen=True, slots=True)
class Destination:
    """The next hop of a request: send it there over ``transport`` (no RFC 3263 SRV look-up is made here)."""

    host: str
    port: int
    transport: str


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    request: SipRequest
    destination: Destination


@dataclass(frozen=True, slots=True)
class RegistrationSucceeded:
    expires: int
    """Seconds the registrar granted our Contact."""
    contacts: tuple[NameAddress, ...]
    """Every binding of the AOR that the 2xx listed (§10.3 step 8), ours and other devices'."""
    public_address_seen: tuple[str, int] | None
    """Our address as the registrar saw it (Via received/rport), when it said."""


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    status: int
    """The final status; 408 for a timeout, 503 for a transport error, 403 when credentials were refused."""
    reason: str
    retry_in: float
    """Seconds until the next attempt, which the registration makes by itself."""


@dataclass(frozen=True, slots=True)
class Unregistered:
    status: int | None
    """The un-REGISTER's final status (2xx: the binding is gone); ``None`` when no binding needed removing."""


RegistrationEvent: TypeAlias = RegistrationSucceeded | RegistrationFailed | Unregistered


class RegistrationState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"  # a REGISTER is outstanding (first, refresh, retry)
    REGISTERED = "registered"  # waiting for the refresh time
    WAITING = "waiting"  # backing off after a failure
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"
