"""Digest authentication values and the request-digest (RFC 3261 §22, RFC 7616, RFC 8760), sans-I/O.

Parses and renders header *values* (``Digest realm="x", nonce="y", ...``) and computes the response hash; the
client and server state machines that use them live in :mod:`sipagent.sip.auth`.

    DigestChallenge     WWW-Authenticate / Proxy-Authenticate value
    DigestCredentials   Authorization / Proxy-Authorization value
    compute_response    the request-digest of RFC 7616 §3.4.1
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["ALGORITHMS", "QOPS", "SUPPORTED_ALGORITHMS", "DigestChallenge", "DigestCredentials", "canonical_algorithm",
           "compute_response", "digest_hash"]

# RFC 7616 §3.2 (MD5, SHA-256, SHA-512-256 and their -sess variants); RFC 8760 registers them for SIP.
ALGORITHMS: tuple[str, ...] = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess")
_CANONICAL = {name.lower(): name for name in ALGORITHMS}
_HASHLIB_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
QOPS = ("auth", "auth-int")

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
SUPPORTED_ALGORITHMS = frozenset(
    a for a in ALGORITHMS if _HASHLIB_NAMES[a.removesuffix("-sess")] in hashlib.algorithms_available
)


def canonical_algorithm(name: str) -> str:
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
            algorithm=canonical_algorithm(params.get("algorithm", "MD5")),
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
            algorithm=canonical_algorithm(params.get("algorithm", "MD5")),
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


def digest_hash(algorithm: str, data: str | bytes) -> str:
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
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise LocalProtocolError(f"digest algorithm {algorithm!r} is not supported")
    if qop is not None and (qop not in QOPS or nc is None or cnonce is None):
        raise LocalProtocolError(f"digest qop {qop!r} needs nc and cnonce and must be one of {QOPS}")
    ha1 = digest_hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        # RFC 7616 §3.4.2: the session variant binds H(A1) to this nonce and cnonce.
        if cnonce is None:
            raise LocalProtocolError(f"digest algorithm {algorithm} needs a cnonce, hence a qop")
        ha1 = digest_hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + digest_hash(algorithm, body)  # RFC 7616 §3.4.3
    ha2 = digest_hash(algorithm, a2)
    if qop is None:
        return digest_hash(algorithm, f"{ha1}:{nonce}:{ha2}")  # RFC 2069 compatibility (RFC 2617 §3.2.2.1)
    return digest_hash(algorithm, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")
