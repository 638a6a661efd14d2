"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-I/O.

Works on header *values* (``Digest realm="x", nonce="y", ...``), a method, a Request-URI string and body
bytes; it knows nothing of message classes. Time comes in as ``now``; randomness (cnonces, nonce salts) comes
from injected factories so that tests are deterministic.

    DigestChallenge     WWW-Authenticate / Proxy-Authenticate value
    DigestCredentials   Authorization / Proxy-Authorization value
    DigestClient        answers challenges, counts nonce uses, decides whether a retry can succeed
    DigestServer        stateless HMAC nonces, verification with expiry and nonce-count replay protection
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ALGORITHMS",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestServer",
    "VerifyResult",
    "compute_response",
]

# RFC 7616 §3.2 (MD5, SHA-256, SHA-512-256 and their -sess variants); RFC 8760 registers them for SIP.
ALGORITHMS: tuple[str, ...] = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess")
_CANONICAL = {name.lower(): name for name in ALGORITHMS}
_HASHLIB_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_QOPS = ("auth", "auth-int")

_TOKEN_CHARS = r"A-Za-z0-9!%*_+`'~.\-"
_TOKEN = re.compile(f"[{_TOKEN_CHARS}]+")
_SCHEME = re.compile(rf"[ \t]*([{_TOKEN_CHARS}]+)(?:[ \t]+|$)")
# One auth-param (RFC 7235 §2.1): name, '=', then a quoted-string with backslash escapes or a bare value.
# Bare values are looser than RFC tokens (anything up to whitespace, ',' or '"') because real peers send
# unquoted URIs and base64 nonces; names stay strict tokens.
_PARAM = re.compile(rf'([{_TOKEN_CHARS}]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^ \t,"]+))[ \t]*', re.S)
_UNESCAPE = re.compile(r"\\(.)", re.S)
# CR/LF and other controls never belong in a header value; refusing them also blocks header injection.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NC = re.compile(r"[0-9A-Fa-f]{8}")

_Extra = tuple[tuple[str, str], ...]


# SHA-512/256 depends on the OpenSSL build.
_SUPPORTED = frozenset(a for a in ALGORITHMS if _HASHLIB_NAMES[a.removesuffix("-sess")] in hashlib.algorithms_available)


def _canonical_algorithm(name: str) -> str:
    return _CANONICAL.get(name.lower(), name)


def _parse_params(value: str, what: str) -> dict[str, str]:
    if _CONTROL.search(value):
        raise RemoteProtocolError(f"{what}: control character in header value")
    scheme = _SCHEME.match(value)
    if scheme is None or scheme.group(1).lower() != "digest":
        found = scheme.group(1) if scheme else value[:20]
        raise RemoteProtocolError(f"{what}: scheme {found!r} is not Digest")
    params: dict[str, str] = {}
    pos, end = scheme.end(), len(value)
    while True:
        while pos < end and value[pos] in " \t,":  # empty list elements are allowed (RFC 7230 §7)
            pos += 1
        if pos >= end:
            return params
        param = _PARAM.match(value, pos)
        if param is None:
            raise RemoteProtocolError(f"{what}: malformed parameter at offset {pos}: {value[pos : pos + 20]!r}")
        name = param.group(1).lower()
        if name in params:
            # RFC 7235 §2.1: each parameter name MUST only occur once per challenge.
            raise RemoteProtocolError(f"{what}: parameter {name!r} repeated")
        quoted = param.group(2)
        params[name] = _UNESCAPE.sub(r"\1", quoted) if quoted is not None else param.group(3)
        pos = param.end()
        if pos < end and value[pos] != ",":
            raise RemoteProtocolError(f"{what}: expected ',' after parameter {name!r} at offset {pos}")


def _quote(value: str, name: str) -> str:
    if _CONTROL.search(value):
        raise LocalProtocolError(f"digest parameter {name!r} contains a control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bare_or_quoted(value: str, name: str) -> str:
    return value if _TOKEN.fullmatch(value) else _quote(value, name)


def _render(fields: list[tuple[str, str | None, bool]], extra: _Extra, known: frozenset[str]) -> str:
    """``(name, value, always quoted)`` triples, then the extras; None values are left out."""
    for name, _ in extra:
        if not _TOKEN.fullmatch(name) or name.lower() in known:
            raise LocalProtocolError(f"extra digest parameter name {name!r} is not a token or clashes with a field")
    return "Digest " + ", ".join(
        f"{name}={_quote(value, name) if quoted else _bare_or_quoted(value, name)}"
        for name, value, quoted in [*fields, *((name, value, False) for name, value in extra)]
        if value is not None
    )


def _extras(params: dict[str, str], known: frozenset[str]) -> _Extra:
    return tuple((name, value) for name, value in params.items() if name not in known)


def _required(params: dict[str, str], name: str, what: str) -> str:
    value = params.get(name)
    if value is None:
        raise RemoteProtocolError(f"{what}: missing {name}")
    return value


_CHALLENGE_KEYS = frozenset({"realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain", "userhash"})


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One Digest challenge (a WWW-Authenticate or Proxy-Authenticate header value, RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    """qop options offered, lower case; empty means an RFC 2069 server."""
    opaque: str | None = None
    stale: bool = False
    domain: tuple[str, ...] = ()
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()
    """Unknown parameters (e.g. charset), names lower case, kept so that serialize() reproduces them."""

    @classmethod
    def parse(cls, value: str) -> DigestChallenge:
        what = "digest challenge"
        params = _parse_params(value, what)
        qop = params.get("qop", "")
        domain = params.get("domain", "").strip(" \t")
        return cls(
            realm=_required(params, "realm", what),
            nonce=_required(params, "nonce", what),
            # A missing algorithm means MD5 (RFC 7616 §3.3); names compare case-insensitively.
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=tuple(option.strip(" \t").lower() for option in qop.split(",") if option.strip(" \t")),
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            domain=tuple(re.split(r"[ \t]+", domain)) if domain else (),
            userhash=params.get("userhash", "").lower() == "true",
            extra=_extras(params, _CHALLENGE_KEYS),
        )

    def serialize(self) -> str:
        fields = [
            ("realm", self.realm, True),
            ("nonce", self.nonce, True),
            ("algorithm", self.algorithm, False),
            ("qop", ",".join(self.qop) or None, True),
            ("opaque", self.opaque, True),
            ("stale", "true" if self.stale else None, False),
            ("domain", " ".join(self.domain) or None, True),
            ("userhash", "true" if self.userhash else None, False),
        ]
        return _render(fields, self.extra, _CHALLENGE_KEYS)


_CREDENTIAL_KEYS = frozenset(
    {"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop", "nc", "userhash"}
)


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """One Digest answer (an Authorization or Proxy-Authorization header value, RFC 7616 §3.4)."""

    username: str
    """The auth user, or H(user:realm) when userhash is true (RFC 7616 §3.4.4)."""
    realm: str
    nonce: str
    uri: str
    """The digest-uri; in SIP it MUST equal the Request-URI (RFC 3261 §22.4)."""
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> DigestCredentials:
        what = "digest credentials"
        params = _parse_params(value, what)
        qop = params.get("qop")
        nc_text = params.get("nc")
        if nc_text is not None and not _NC.fullmatch(nc_text):
            raise RemoteProtocolError(f"{what}: nc {nc_text!r} is not 8 hex digits")
        if qop is not None:
            # RFC 7616 §3.4: cnonce and nc MUST be sent when qop is.
            _required(params, "cnonce", what)
            _required(params, "nc", what)
        return cls(
            username=_required(params, "username", what),
            realm=_required(params, "realm", what),
            nonce=_required(params, "nonce", what),
            uri=_required(params, "uri", what),
            response=_required(params, "response", what),
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            cnonce=params.get("cnonce"),
            opaque=params.get("opaque"),
            qop=qop.lower() if qop is not None else None,
            nc=int(nc_text, 16) if nc_text is not None else None,
            userhash=params.get("userhash", "").lower() == "true",
            extra=_extras(params, _CREDENTIAL_KEYS),
        )

    def serialize(self) -> str:
        # RFC 7616 §3.4: algorithm, qop and nc are bare tokens, the other values quoted strings.
        if self.nc is not None and not 0 <= self.nc <= 0xFFFFFFFF:
            raise LocalProtocolError(f"digest nc {self.nc} does not fit 8 hex digits")
        fields = [
            ("username", self.username, True),
            ("realm", self.realm, True),
            ("nonce", self.nonce, True),
            ("uri", self.uri, True),
            ("response", self.response, True),
            ("algorithm", self.algorithm, False),
            ("cnonce", self.cnonce, True),
            ("opaque", self.opaque, True),
            ("qop", self.qop, False),
            ("nc", None if self.nc is None else f"{self.nc:08x}", False),
            ("userhash", "true" if self.userhash else None, False),
        ]
        return _render(fields, self.extra, _CREDENTIAL_KEYS)


def _hash(algorithm: str, data: str | bytes) -> str:
    # surrogatepass: a peer's garbage must hash to garbage, never raise (a lone surrogate is not valid UTF-8).
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.new(_HASHLIB_NAMES[algorithm.removesuffix("-sess")], raw).hexdigest()


def compute_response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest of RFC 7616 §3.4.1; ``username`` is the plain user even when userhash is used."""
    if algorithm not in _SUPPORTED:
        raise LocalProtocolError(f"digest algorithm {algorithm!r} is not supported")
    if qop is not None and (qop not in _QOPS or nc is None or cnonce is None):
        raise LocalProtocolError(f"digest qop {qop!r} needs nc and cnonce and must be one of {_QOPS}")
    ha1 = _hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        # RFC 7616 §3.4.2: the session variant binds H(A1) to this nonce and cnonce.
        if cnonce is None:
            raise LocalProtocolError(f"digest algorithm {algorithm} needs a cnonce, hence a qop")
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + _hash(algorithm, body)  # RFC 7616 §3.4.3
    ha2 = _hash(algorithm, a2)
    if qop is None:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")  # RFC 2069 compatibility (RFC 2617 §3.2.2.1)
    return _hash(algorithm, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


def _choose_qop(offered: tuple[str, ...]) -> str | None:
    # qop=auth whenever offered: auth-int would tie the credentials to one body. RFC 3261 §22.4 requires
    # clients to support both, so auth-int is used when it is the only option.
    for qop in _QOPS:
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
        self._preference = tuple(_canonical_algorithm(a) for a in algorithms if _canonical_algorithm(a) in _SUPPORTED)
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
        username = _hash(algorithm, f"{self.username}:{realm}") if challenge.userhash else self.username
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
        self.algorithms = tuple(_canonical_algorithm(a) for a in algorithms)
        if not self.algorithms or any(a not in _SUPPORTED for a in self.algorithms):
            raise ValueError(f"algorithms {algorithms!r} must be a non-empty subset of {sorted(_SUPPORTED)}")
        self.qop = tuple(qop)
        if any(q not in _QOPS for q in self.qop):
            raise ValueError(f"qop {qop!r} must be a subset of {_QOPS}")
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
