"""SIP, SIPS and tel URIs (RFC 3261 §19.1 and §25.1, RFC 3966) and other schemes kept opaque.

Representation choices:

- Components are stored *unescaped* (``%41`` becomes ``A``, once: RFC 4475 §3.1.1.3 says ``value%2541``
  means ``value%41``, never ``valueA``); ``str()`` escapes again what each component may not carry raw.
  Bytes that are not UTF-8 survive as surrogate escapes, so any URI read can be written back.
- IPv6 hosts are stored *without* brackets (``host="2001:db8::1"``), ready for a socket address; ``str()``
  adds them. RFC 3261's ABNF admits ``2001:db8:::192.0.2.1`` and RFC 5118 §4.10 asks us to tolerate it, so
  that one form is read as its RFC 4291 spelling with two colons. A bracket is never a port separator:
  ``[2001:db8::10:5070]`` is an address without a port (RFC 5118 §4.3).
- Parameter names keep the peer's case; look-ups and :meth:`SipUri.equivalent` ignore it.
- ``tel:`` URIs reuse :class:`SipUri`: ``user`` holds the telephone-subscriber, ``host`` is empty.
- Any other scheme becomes an :class:`AbsoluteUri`; :func:`parse_uri` refuses those with 416 (§21.4.13)
  while :func:`parse_any_uri` accepts them, as header fields must (RFC 4475 §3.3.4).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import quote as _pct_quote
from urllib.parse import unquote as _pct_unquote

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.syntax import (
    Params,
    format_params,
    get_param,
    has_param,
    is_token,
    parse_params,
    quote,
    read_quoted,
    remove_param,
    set_param,
    skip_ws,
)

__all__ = [
    "CONTACT_STAR",
    "SUPPORTED_SCHEMES",
    "AbsoluteUri",
    "NameAddress",
    "SipUri",
    "Uri",
    "format_host",
    "parse_any_uri",
    "parse_host_port",
    "parse_name_addr",
    "parse_uri",
]

SUPPORTED_SCHEMES = ("sip", "sips", "tel")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# §25.1 user-unreserved; '#' and non-ASCII are not allowed raw but real phones send them ("*97#"), and
# reading them costs nothing since we escape them on the way out.
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/#]|[^\x00-\x7f]|{_ESC})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
_PARAMCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+")
_HEADERCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*")
_TEL_NUMBER = re.compile(rf"(?:[0-9A-Fa-f*#+\-.()]|{_ESC})+")
_OPAQUE = re.compile(r"[^\s\x00-\x1f\x7f<>\"]+")
# §25.1 domainlabel, plus '_': not legal in host names, but seen in private DNS names that peers use.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_NUMERIC = re.compile(r"[0-9.]+")
_THREE_COLONS = re.compile(r":::(?=[0-9]{1,3}(?:\.[0-9]{1,3}){3}$)")
# What each component may carry unescaped, beyond the letters, digits and "_.-~" that quote() always keeps.
_SAFE_USER = "!*'()&=+$,;?/"
_SAFE_PASSWORD = "!*'()&=+$,"
_SAFE_PARAM = "!*'()[]/:&+$"
_SAFE_HEADER = "!*'()[]/?:+$"
_SAFE_TEL = "*+-.()"
# §19.1.4: these parameters must match when either URI has them; others only when both do.
_MUST_MATCH = frozenset({"user", "ttl", "method", "maddr", "transport"})
_TEL_VISUAL = str.maketrans("", "", "-.()")


def _escape(text: str, safe: str) -> str:
    return _pct_quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def _unescape(text: str) -> str:
    return _pct_unquote(text, encoding="utf-8", errors="surrogateescape") if "%" in text else text


def _ipv6(text: str) -> str | None:
    """``text`` as an IPv6 address to store, or ``None`` when it is not one."""
    fixed = _THREE_COLONS.sub("::", text)
    if "%" in fixed:  # zone identifiers have no place in a SIP host (RFC 5954 §4.1 grammar)
        return None
    try:
        ipaddress.IPv6Address(fixed)
    except ValueError:
        return None
    return fixed


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _valid_host(host: str) -> bool:
    if ":" in host:
        return _ipv6(host) == host
    if _NUMERIC.fullmatch(host):  # a toplabel starts with a letter, so all-digit hosts must be IPv4
        return _is_ipv4(host)
    return _HOSTNAME.fullmatch(host) is not None


def format_host(host: str) -> str:
    """``host`` as it appears in a URI or Via: IPv6 addresses get their brackets."""
    return f"[{host}]" if ":" in host else host


def parse_host_port(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host [":" port]`` (§25.1 hostport); IPv6 references lose their brackets."""
    if text.startswith("["):
        close = text.find("]")
        host = _ipv6(text[1:close]) if close > 0 else None
        if host is None:
            raise RemoteProtocolError(f"{what}: invalid IPv6 reference {text!r}")
        after = text[close + 1 :].strip(" \t")
    else:
        host, sep, port_text = text.partition(":")
        host = host.strip(" \t")
        after = ":" + port_text if sep else ""
        if not host or not _valid_host(host):
            raise RemoteProtocolError(f"{what}: invalid host {host!r}")
    if not after:
        return host, None
    digits = after[1:].strip(" \t")
    if not after.startswith(":") or not digits.isdigit() or not digits.isascii() or len(digits) > 5:
        raise RemoteProtocolError(f"{what}: invalid port {after!r}")
    port = int(digits)
    if port > 65535:
        raise RemoteProtocolError(f"{what}: port {port} is out of range")
    return host, port


def _host_key(host: str) -> object:
    # RFC 5954 §3: an IP address in text compares by value (so "::1" equals "0:0:0:0:0:0:0:1").
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return host.lower()


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of a scheme we do not interpret (``http:``, ``urn:``, ``isbn:``...), kept verbatim."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return "*" if self.scheme == "*" else f"{self.scheme}:{self.opaque}"

    def equivalent(self, other: Uri) -> bool:
        return isinstance(other, AbsoluteUri) and (self.scheme.lower(), self.opaque) == (
            other.scheme.lower(),
            other.opaque,
        )


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI with unescaped components (see the module notes).

    ``host`` is required for sip/sips (IPv6 without brackets); ``params`` are URI parameters in order,
    ``None`` for a flag such as ``lr``; ``headers`` are the ``?name=value`` pairs. ``==`` compares fields,
    :meth:`equivalent` applies the RFC's comparison rules.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        scheme = self.scheme.lower()
        if scheme != self.scheme:
            object.__setattr__(self, "scheme", scheme)
        if self.host.startswith("[") and self.host.endswith("]"):
            object.__setattr__(self, "host", self.host[1:-1])
        if scheme == "tel":
            if not self.user or self.host or self.port is not None or self.password is not None or self.headers:
                raise LocalProtocolError("a tel URI has a number in 'user' and no host, port, password or headers")
            return
        if scheme not in ("sip", "sips"):
            raise LocalProtocolError(f"SipUri scheme must be one of {SUPPORTED_SCHEMES}, not {self.scheme!r}")
        if not _valid_host(self.host):
            raise LocalProtocolError(f"invalid SIP URI host {self.host!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise LocalProtocolError(f"SIP URI port {self.port} is out of range")
        if self.user == "" or (self.user is None and self.password is not None):
            raise LocalProtocolError("the user part must be None or non-empty, and a password needs a user")

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = ["tel:", _escape(self.user or "", _SAFE_TEL)]
        else:
            out = [self.scheme, ":"]
            if self.user is not None:
                out.append(_escape(self.user, _SAFE_USER))
                if self.password is not None:
                    out += [":", _escape(self.password, _SAFE_PASSWORD)]
                out.append("@")
            out.append(format_host(self.host))
            if self.port is not None:
                out.append(f":{self.port}")
        for name, value in self.params:
            out += [";", _escape(name, _SAFE_PARAM)]
            if value is not None:
                out += ["=", _escape(value, _SAFE_PARAM)]
        if self.headers:
            out.append("?")
            out.append("&".join(f"{_escape(n, _SAFE_HEADER)}={_escape(v, _SAFE_HEADER)}" for n, v in self.headers))
        return "".join(out)

    @property
    def host_port(self) -> str:
        """``host[:port]`` with IPv6 brackets, as in a Via sent-by or a Host-like context."""
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        return _replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        return _replace(self, params=remove_param(self.params, name))

    def equivalent(self, other: Uri) -> bool:
        """URI equality of RFC 3261 §19.1.4 (tel: RFC 3966 §4), not the field-by-field ``==``."""
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        if self.scheme == "tel":
            return _tel_key(self) == _tel_key(other)
        if (self.user, self.password, self.port) != (other.user, other.password, other.port):
            return False
        if _host_key(self.host) != _host_key(other.host):
            return False
        mine, theirs = _param_map(self.params), _param_map(other.params)
        for name in mine.keys() | theirs.keys():
            if name in mine and name in theirs:
                if mine[name] != theirs[name]:
                    return False
            elif name in _MUST_MATCH:
                return False
        # §19.1.4: header components are never ignored and must all match.
        return sorted((n.lower(), v) for n, v in self.headers) == sorted((n.lower(), v) for n, v in other.headers)


Uri: TypeAlias = SipUri | AbsoluteUri


def _replace(uri: SipUri, *, params: Params) -> SipUri:
    return SipUri(uri.scheme, uri.user, uri.password, uri.host, uri.port, params, uri.headers)


def _param_map(params: Params) -> dict[str, str | None]:
    return {name.lower(): None if value is None else value.lower() for name, value in params}


def _tel_key(uri: SipUri) -> tuple[str, dict[str, str | None]]:
    # RFC 3966 §4: visual separators do not count; parameters must all match, names and values ignoring case.
    return (uri.user or "").translate(_TEL_VISUAL).lower(), _param_map(uri.params)


def parse_uri(text: str) -> SipUri:
    """Parse a ``sip:``, ``sips:`` or ``tel:`` URI; any other scheme raises 416 (§8.2.2.1)."""
    uri = parse_any_uri(text)
    if isinstance(uri, AbsoluteUri):
        raise RemoteProtocolError(f"unsupported URI scheme {uri.scheme!r}", status_hint=416)
    return uri


def parse_any_uri(text: str) -> Uri:
    """Parse any absolute URI: SIP, SIPS and tel are interpreted, other schemes kept as :class:`AbsoluteUri`."""
    scheme, colon, rest = text.partition(":")
    if not colon:
        raise RemoteProtocolError(f"URI {text[:40]!r} has no scheme")
    if _SCHEME.fullmatch(scheme) is None:
        raise RemoteProtocolError(f"URI scheme {scheme[:20]!r} is not valid")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if _OPAQUE.fullmatch(rest) is None:
        raise RemoteProtocolError(f"{scheme} URI has an empty or invalid body")
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    # '@' cannot appear unescaped after the userinfo (§25.1), so the first one ends it, even when the user
    # part holds ';' or '?' (RFC 4475 §3.1.1.2, §3.1.1.9).
    user = password = None
    userinfo, at, hostpart = rest.partition("@")
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        if _USER.fullmatch(user_text) is None:
            raise RemoteProtocolError(f"SIP URI user part {user_text[:40]!r} is empty or invalid")
        if colon and _PASSWORD.fullmatch(password_text) is None:
            raise RemoteProtocolError("SIP URI password is invalid")
        user = _unescape(user_text)
        password = _unescape(password_text) if colon else None
    else:
        hostpart = rest
    cut = len(hostpart)
    for sep in ";?":
        found = hostpart.find(sep)
        if 0 <= found < cut:
            cut = found
    host, port = parse_host_port(hostpart[:cut], "SIP URI")
    if any(ch in hostpart[:cut] for ch in " \t"):
        raise RemoteProtocolError("SIP URI host part contains whitespace")
    param_text, qmark, header_text = hostpart[cut:].partition("?")
    params = _parse_uri_params(param_text)
    headers: list[tuple[str, str]] = []
    if qmark:
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq or _HEADERCHARS.fullmatch(name) is None or _HEADERCHARS.fullmatch(value) is None:
                raise RemoteProtocolError(f"SIP URI header {item[:40]!r} is invalid")
            headers.append((_unescape(name), _unescape(value)))
    return SipUri(scheme, user, password, host, port, params, tuple(headers))


def _parse_uri_params(text: str) -> Params:
    if not text:
        return ()
    params: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        if _PARAMCHARS.fullmatch(name) is None:
            raise RemoteProtocolError(f"URI parameter {item[:40]!r} is empty or invalid")
        if eq and value and _PARAMCHARS.fullmatch(value) is None:
            raise RemoteProtocolError(f"URI parameter {name[:40]!r} has an invalid value")
        params.append((_unescape(name), _unescape(value) if eq else None))
    return tuple(params)


def _parse_tel(rest: str) -> SipUri:
    number, _, param_text = rest.partition(";")
    if _TEL_NUMBER.fullmatch(number) is None:
        raise RemoteProtocolError(f"tel URI number {number[:40]!r} is invalid")
    return SipUri("tel", _unescape(number), params=_parse_uri_params(";" + param_text if param_text else ""))


@dataclass(frozen=True, slots=True)
class NameAddress:
    """A name-addr or addr-spec header value (§20.10): From, To, Contact, Route, Record-Route, Refer-To...

    ``params`` are the *header* parameters (``tag``, ``expires``, ``q``...), raw as in
    :mod:`sipagent.sip.syntax`; URI parameters live in ``uri.params``. ``str()`` always writes the
    name-addr form with angle brackets, which §20.10 allows everywhere and which keeps the two apart.
    """

    display_name: str | None
    uri: Uri
    params: Params = ()

    def __str__(self) -> str:
        if self.is_star:
            return "*"
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def is_star(self) -> bool:
        """True for the ``Contact: *`` of a REGISTER that removes every binding (§10.2.2)."""
        return isinstance(self.uri, AbsoluteUri) and self.uri.scheme == "*"

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> NameAddress:
        return NameAddress(self.display_name, self.uri, set_param(self.params, name, value))

    def without_param(self, name: str) -> NameAddress:
        return NameAddress(self.display_name, self.uri, remove_param(self.params, name))

    def with_tag(self, tag: str) -> NameAddress:
        if not is_token(tag):
            raise LocalProtocolError(f"tag {tag!r} is not a token")
        return self.with_param("tag", tag)


CONTACT_STAR = NameAddress(None, AbsoluteUri("*", ""))
"""The wildcard Contact of §10.2.2; ``str()`` gives ``*``."""


def parse_name_addr(text: str, *, header: str = "address", allow_star: bool = False) -> NameAddress:
    """Parse one name-addr or addr-spec value, with its header parameters.

    Forms: ``"Quoted \\"name\\"" <uri>;p=v``, ``token name <uri>``, ``<uri>``, and the bare addr-spec
    ``uri;p=v`` whose parameters belong to the header (§20.10); ``*`` only with ``allow_star`` (Contact).
    Spaces just inside the angle brackets are tolerated (RFC 4475 §3.1.2.14 allows being liberal there).
    """
    value = text.strip(" \t")
    if value == "*":
        if allow_star:
            return CONTACT_STAR
        raise RemoteProtocolError(f"{header}: '*' is only allowed in Contact")
    display: str | None = None
    if value.startswith('"'):
        display, pos = read_quoted(value, 0, header)
        pos = skip_ws(value, pos)
        if value[pos : pos + 1] != "<":
            raise RemoteProtocolError(f"{header}: a quoted display name must be followed by <URI>")
    else:
        pos = value.find("<")
        if pos < 0:
            return _parse_addr_spec(value, header)
        words = [word for word in re.split(r"[ \t]+", value[:pos]) if word]
        # §25.1 display-name = *(token LWS) / quoted-string: anything else had to be quoted (RFC 4475 §3.1.2.15).
        if not all(is_token(word) for word in words):
            raise RemoteProtocolError(f"{header}: display name {value[:pos].strip()[:40]!r} must be quoted")
        display = " ".join(words) if words else None
    close = value.find(">", pos)
    if close < 0:
        raise RemoteProtocolError(f"{header}: '<' without a closing '>'")
    uri = parse_any_uri(value[pos + 1 : close].strip(" \t"))
    return NameAddress(display, uri, parse_params(value[close + 1 :], header))


def _parse_addr_spec(value: str, header: str) -> NameAddress:
    uri_text, semi, param_text = value.partition(";")
    uri_text = uri_text.rstrip(" \t")
    # §20.10: a URI holding a comma, question mark or semicolon must be in angle brackets; the semicolon case
    # is already settled by reading it as the start of header parameters (RFC 4475 §3.1.2.13, §3.3.12).
    if "?" in uri_text or "," in uri_text:
        raise RemoteProtocolError(f"{header}: a URI with '?' or ',' must be enclosed in <>")
    return NameAddress(None, parse_any_uri(uri_text), parse_params(semi + param_text, header))
