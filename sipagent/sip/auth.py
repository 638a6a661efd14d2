"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760): the client and server, sans-I/O.

Works on header *values*, a method, a Request-URI string and body bytes (see :mod:`sipagent.sip.digest` for the
values and the hash); it knows nothing of message classes. Time comes in as ``now``; randomness (cnonces, nonce
salts) comes from injected factories so that tests are deterministic.

    DigestClient        answers challenges, counts nonce uses, decides whether a retry can succeed
    DigestServer        stateless HMAC nonces, verification with expiry and nonce-count replay protection
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from sipagent.sip.digest import (
    ALGORITHMS,
    QOPS,
    SUPPORTED_ALGORITHMS,
    DigestChallenge,
    DigestCredentials,
    canonical_algorithm,
    compute_response,
    digest_hash,
)
from sipagent.sip.errors import RemoteProtocolError

__all__ = [
    "ALGORITHMS",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestServer",
    "VerifyResult",
    "compute_response",
]


def _choose_qop(offered: tuple[str, ...]) -> str | None:
    # qop=auth whenever offered: auth-int would tie the credentials to one body. RFC 3261 §22.4 requires
    # clients to support both, so auth-int is used when it is the only option.
    for qop in QOPS:
        if qop in offered:
            return qop
    return None


def _default_cnonce() -> str:
    return secrets.token_hex(16)


_DEFAULT_PREFERENCE = ("SHA-512-256", "SHA-512-256-sess", "SHA-256", "SHA-256-sess", "MD5", "MD5-sess")


class DigestClient:
    """Answers Digest challenges for one auth user (which may differ from the account's user part)."""

    def __init__(
        self,
        username: str,
        password: str,
        cnonce_factory: Callable[[], str] = _default_cnonce,
        *,
        algorithms: Sequence[str] = _DEFAULT_PREFERENCE,
        max_nonces: int = 32,
    ) -> None:
        self.username = username
        self._password = password
        self._cnonce_factory = cnonce_factory
        # The order is the preference. RFC 8760 §2.4 says to take the topmost supported challenge "unless a
        # local policy dictates otherwise"; ours is strength first, because the challenge is not integrity
        # protected and an on-path attacker could reorder it to put MD5 on top (RFC 8760 §3). A compliant UAS
        # lists its most preferred first (§2.3), so both rules agree in practice; ties keep the topmost.
        wanted = (canonical_algorithm(a) for a in algorithms)
        self._preference = tuple(a for a in wanted if a in SUPPORTED_ALGORITHMS)
        self._max_nonces = max_nonces
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._latest: dict[str, DigestChallenge] = {}

    def supports(self, challenge: DigestChallenge) -> bool:
        if challenge.algorithm not in self._preference:
            return False
        qop = _choose_qop(challenge.qop)
        if challenge.qop and qop is None:
            return False  # only unknown qop values offered
        # A -sess hash needs a cnonce, which RFC 2617 §3.2.2 forbids sending without qop.
        return qop is not None or not challenge.algorithm.endswith("-sess")

    def choose(self, challenges: Iterable[DigestChallenge]) -> list[DigestChallenge]:
        """The best supported challenge per realm, realms in first-seen order (RFC 3261 §22.3: one per proxy)."""
        best: dict[str, DigestChallenge] = {}
        for challenge in challenges:
            if not self.supports(challenge):
                continue
            current = best.get(challenge.realm)
            if current is None or self._rank(challenge) < self._rank(current):
                best[challenge.realm] = challenge
        return list(best.values())

    def authorize(self, challenge: DigestChallenge, method: str, uri: str, body: bytes = b"") -> DigestCredentials:
        if not self.supports(challenge):
            raise RemoteProtocolError(
                f"digest challenge: cannot answer algorithm {challenge.algorithm!r} with qop {challenge.qop!r}"
            )
        key = (challenge.realm, challenge.nonce)
        nc = self._counts.pop(key, 0) + 1  # a new nonce starts again at 1 (RFC 7616 §3.4)
        self._counts[key] = nc
        while len(self._counts) > self._max_nonces:
            self._counts.popitem(last=False)
        self._latest[challenge.realm] = challenge
        qop = _choose_qop(challenge.qop)
        cnonce = self._cnonce_factory() if qop is not None else None
        sent_nc = nc if qop is not None else None
        realm, nonce, algorithm = challenge.realm, challenge.nonce, challenge.algorithm
        response = compute_response(
            algorithm, self.username, realm, self._password, nonce, method, uri, qop=qop, nc=sent_nc, cnonce=cnonce,
            body=body,
        )  # fmt: skip
        # RFC 7616 §3.4.4: with userhash the name on the wire is H(user:realm), hiding the auth user.
        username = digest_hash(algorithm, f"{self.username}:{realm}") if challenge.userhash else self.username
        return DigestCredentials(
            username, realm, nonce, uri, response, algorithm, cnonce, challenge.opaque, qop, sent_nc, challenge.userhash
        )

    def authorize_all(
        self, challenges: Iterable[DigestChallenge], method: str, uri: str, body: bytes = b""
    ) -> list[DigestCredentials]:
        return [self.authorize(challenge, method, uri, body) for challenge in self.choose(challenges)]

    def authorize_again(self, realm: str, method: str, uri: str, body: bytes = b"") -> DigestCredentials | None:
        """Pre-authorise a new request (e.g. a REGISTER refresh) with the last nonce of ``realm``, counting up."""
        challenge = self._latest.get(realm)
        return None if challenge is None else self.authorize(challenge, method, uri, body)

    def should_retry(self, challenge: DigestChallenge, sent: Sequence[DigestCredentials] = ()) -> bool:
        """Whether answering ``challenge`` can help, given the credentials the challenged request carried."""
        if not self.supports(challenge):
            return False
        previous = next((c for c in sent if c.realm == challenge.realm), None)
        if previous is None:
            return True
        if challenge.stale:
            # RFC 7616 §3.3: stale means our digest was right and only the nonce aged. A stale challenge with
            # the very nonce we used is a broken server; refusing it stops the loop.
            return challenge.nonce != previous.nonce
        # Rejected for this realm and not stale: the password is wrong (RFC 7616 §3.3), unless we had reused
        # an older nonce (nc > 1) that the server may have dropped without saying stale. That retry uses the
        # new nonce at nc=1, so a further rejection lands here with nc == 1 and stops.
        return previous.nonce != challenge.nonce and (previous.nc or 1) > 1

    def forget(self, realm: str | None = None) -> None:
        """Drop cached nonces (all, or one realm's), e.g. after credentials were refused."""
        for key in [k for k in self._counts if realm is None or k[0] == realm]:
            del self._counts[key]
        if realm is None:
            self._latest.clear()
        else:
            self._latest.pop(realm, None)

    def _rank(self, challenge: DigestChallenge) -> int:
        return self._preference.index(challenge.algorithm)


class VerifyResult(enum.Enum):
    OK = "ok"
    STALE = "stale"
    """The digest was right but the nonce expired: re-challenge with stale=true (RFC 7616 §3.3)."""
    BAD = "bad"


def _default_salt() -> str:
    return secrets.token_hex(8)


class DigestServer:
    """Challenges and verifies Digest credentials for one realm (a UAS answering unknown peers, test registrars).

    Nonces are ``<issued ms hex>.<salt>.<HMAC>``: stateless, so any nonce we issued can be checked and aged
    without storage. Only nonce counts are stored, in a bounded map (see ``verify``).
    """

    def __init__(
        self,
        realm: str,
        credentials_lookup: Callable[[str], str | None],
        nonce_secret: bytes,
        nonce_lifetime: float = 300.0,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        *,
        qop: Sequence[str] = ("auth",),
        salt_factory: Callable[[], str] = _default_salt,
        max_tracked_nonces: int = 4096,
    ) -> None:
        if not nonce_secret or max_tracked_nonces < 1:
            raise ValueError("nonce_secret must not be empty and max_tracked_nonces must be positive")
        self.algorithms = tuple(canonical_algorithm(a) for a in algorithms)
        if not self.algorithms or any(a not in SUPPORTED_ALGORITHMS for a in self.algorithms):
            raise ValueError(f"algorithms {algorithms!r} must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}")
        self.qop = tuple(qop)
        if any(q not in QOPS for q in self.qop):
            raise ValueError(f"qop {qop!r} must be a subset of {QOPS}")
        if not self.qop and any(a.endswith("-sess") for a in self.algorithms):
            raise ValueError("-sess algorithms need a qop (RFC 2617 §3.2.2)")
        self.realm = realm
        self._lookup = credentials_lookup
        self._secret = nonce_secret
        self._lifetime = nonce_lifetime
        self._salt_factory = salt_factory
        self._max_tracked = max_tracked_nonces
        self._last_nc: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._forgotten_before = float("-inf")

    def challenge(self, now: float, stale: bool = False) -> list[DigestChallenge]:
        """One challenge per algorithm, most preferred first (RFC 8760 §2.3), sharing one fresh nonce."""
        nonce = self._make_nonce(now)
        return [
            DigestChallenge(realm=self.realm, nonce=nonce, algorithm=algorithm, qop=self.qop, stale=stale)
            for algorithm in self.algorithms
        ]

    def verify(
        self, credentials: DigestCredentials, method: str, body: bytes, now: float, *, request_uri: str | None = None
    ) -> VerifyResult:
        """Check an answer; pass ``request_uri`` to also require uri == Request-URI (RFC 3261 §22.4)."""
        c = credentials
        if c.realm != self.realm or c.algorithm not in self.algorithms or c.userhash:
            return VerifyResult.BAD  # we never offer userhash, so a hashed name cannot be ours
        if request_uri is not None and c.uri != request_uri:
            return VerifyResult.BAD
        issued = self._issued_at(c.nonce)
        if issued is None:
            return VerifyResult.BAD
        if self.qop:
            if c.qop not in self.qop or c.nc is None or c.cnonce is None:
                return VerifyResult.BAD
        elif c.qop is not None:
            return VerifyResult.BAD
        password = self._lookup(c.username)
        if password is None:
            return VerifyResult.BAD
        expected = compute_response(
            c.algorithm, c.username, c.realm, password, c.nonce, method, c.uri, qop=c.qop, nc=c.nc, cnonce=c.cnonce,
            body=body,
        )  # fmt: skip
        if not hmac.compare_digest(expected.encode(), c.response.lower().encode("utf-8", "replace")):
            return VerifyResult.BAD
        # Age is judged only after the digest proved right, so stale=true tells the client its password is
        # good. A nonce from the future means our clock restarted: stale too, so the client retries at once.
        if not issued <= now <= issued + self._lifetime:
            return VerifyResult.STALE
        return self._count(c.nonce, issued, c.nc)

    def _count(self, nonce: str, issued: float, nc: int | None) -> VerifyResult:
        if nc is None:
            return VerifyResult.OK  # RFC 2069 mode: no nonce count, replays are bounded by the lifetime only
        known = self._last_nc.pop(nonce, None)
        if known is None:
            if issued <= self._forgotten_before:
                # We may have dropped this nonce's count to bound memory, so a replay could pass unnoticed;
                # a stale answer makes the client move to a fresh nonce at no cost to the user.
                return VerifyResult.STALE
        elif nc <= known[1]:
            self._last_nc[nonce] = known
            return VerifyResult.BAD  # RFC 7616 §3.4: nc must increase with each request on a nonce
        self._last_nc[nonce] = (issued, nc)
        while len(self._last_nc) > self._max_tracked:
            _, (dropped_issued, _) = self._last_nc.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, dropped_issued)
        return VerifyResult.OK

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]

    def _make_nonce(self, now: float) -> str:
        # Floored, so a nonce is never dated after the moment it was issued.
        payload = f"{math.floor(now * 1000):x}.{self._salt_factory()}"
        return f"{payload}.{self._mac(payload)}"

    def _issued_at(self, nonce: str) -> float | None:
        payload, _, mac = nonce.rpartition(".")
        if not payload or not hmac.compare_digest(self._mac(payload).encode(), mac.encode("utf-8", "replace")):
            return None
        return int(payload.partition(".")[0], 16) / 1000.0
