"""Lexical rules shared by the SIP message layer (RFC 3261 §25.1): tokens, quoted strings, parameters, lists.

Parameters are kept as an ordered tuple of ``(name, value)`` pairs, ``value`` being ``None`` for a bare
flag such as ``;lr``. Names compare case-insensitively (§7.3.1, §19.1.4); the helpers here do that.
Header parameter values are kept *raw*: a quoted value keeps its quotes, so that serialising gives back what
the peer meant (``+sip.audio="TRUE"`` and ``+sip.audio=TRUE`` differ in RFC 3840). :func:`unquote` reads one.
"""

from __future__ import annotations

import re

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "Params",
    "bounded_int",
    "format_params",
    "get_param",
    "has_param",
    "is_token",
    "parse_params",
    "quote",
    "read_quoted",
    "remove_param",
    "set_param",
    "skip_ws",
    "split_header_values",
    "unquote",
]

Params = tuple[tuple[str, str | None], ...]

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN_RE = re.compile(f"[{TOKEN_CHARS}]+")
# gen-value = token / host / quoted-string (§25.1); "host" adds ':' and brackets for IPv6 references, and
# RFC 5118 §4.5 asks us to take an unbracketed IPv6 address in Via received=, hence ':' outside brackets too.
_VALUE_RE = re.compile(f"[{TOKEN_CHARS}:\\[\\]/]+")
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_LIST_SPECIALS = re.compile(r'[",<>\\]')
# quoted-pair may escape any octet but CR and LF (§25.1); qdtext excludes '"', '\' and controls but HTAB.
_NEEDS_PAIR = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def bounded_int(digits: str) -> int:
    """The value of an ASCII digit string, capped at 10**20 so that absurd lengths stay cheap.

    ``int()`` refuses strings over 4300 digits (a ValueError the parsers must not leak); every SIP number
    we read has a limit far below the cap, so a capped value still fails its range check.
    """
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 20 else 10**20


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


def skip_ws(text: str, pos: int) -> int:
    """Index of the first character at or after ``pos`` that is neither SP nor HTAB."""
    end = len(text)
    while pos < end and text[pos] in " \t":
        pos += 1
    return pos


def read_quoted(text: str, pos: int, what: str) -> tuple[str, int]:
    """Read the quoted-string starting at ``text[pos] == '"'``: its unescaped content and the index after it."""
    end = len(text)
    i = pos + 1
    while i < end:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return _QUOTED_PAIR.sub(r"\1", text[pos + 1 : i]), i + 1
        i += 1
    raise RemoteProtocolError(f"{what}: unterminated quoted string")


def quote(text: str) -> str:
    """``text`` as a quoted-string, escaping what qdtext cannot carry."""
    if "\r" in text or "\n" in text:
        raise LocalProtocolError("a quoted string cannot carry CR or LF")
    return '"' + _NEEDS_PAIR.sub(lambda m: "\\" + m.group(), text) + '"'


def unquote(value: str) -> str:
    """The content of a raw parameter value: quotes removed and quoted-pairs resolved, if it was quoted."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value (§7.3.1), ignoring commas inside quotes and ``<...>``.

    Elements are stripped of surrounding whitespace and empty elements are dropped, as RFC 7230 §7 asks of
    list recipients; a quote or bracket left open swallows the rest, for the element parser to reject.
    """
    if "," not in value:
        stripped = value.strip(" \t")
        return [stripped] if stripped else []
    items: list[str] = []
    start = 0
    escaped_until = -1
    in_quotes = in_angle = False
    for match in _LIST_SPECIALS.finditer(value):  # only these characters change the state
        i = match.start()
        if i < escaped_until:
            continue
        ch = match.group()
        if in_quotes:
            if ch == "\\":
                escaped_until = i + 2
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            items.append(value[start:i])
            start = i + 1
    items.append(value[start:])
    return [item for item in (raw.strip(" \t") for raw in items) if item]


def parse_params(text: str, what: str) -> Params:
    """Parse ``*( SEMI generic-param )`` (§25.1), with optional whitespace around ';' and '='.

    ``text`` is empty or starts (after whitespace) with ';'. Values stay raw (quoted ones keep their quotes).
    """
    params: list[tuple[str, str | None]] = []
    end = len(text)
    i = skip_ws(text, 0)
    while i < end:
        if text[i] != ";":
            raise RemoteProtocolError(f"{what}: expected ';' before {text[i : i + 16]!r}")
        i = skip_ws(text, i + 1)
        name = TOKEN_RE.match(text, i)
        if name is None:
            raise RemoteProtocolError(f"{what}: empty or invalid parameter name at {text[i : i + 16]!r}")
        i = skip_ws(text, name.end())
        value: str | None = None
        if i < end and text[i] == "=":
            i = skip_ws(text, i + 1)
            if i < end and text[i] == '"':
                _, after = read_quoted(text, i, what)
                value = text[i:after]
                i = after
            else:
                raw = _VALUE_RE.match(text, i)
                if raw is None:
                    raise RemoteProtocolError(f"{what}: parameter {name.group()!r} has no valid value")
                value = raw.group()
                i = raw.end()
            i = skip_ws(text, i)
        params.append((name.group(), value))
    return tuple(params)


def format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def has_param(params: Params, name: str) -> bool:
    key = name.lower()
    return any(n.lower() == key for n, _ in params)


def get_param(params: Params, name: str) -> str | None:
    """Value of the first parameter called ``name``; ``None`` when absent or valueless (see :func:`has_param`)."""
    key = name.lower()
    for n, value in params:
        if n.lower() == key:
            return value
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    """``params`` with ``name`` set to ``value``: replaced in place if present, appended otherwise."""
    key = name.lower()
    if not has_param(params, name):
        return (*params, (name, value))
    out: list[tuple[str, str | None]] = []
    done = False
    for n, v in params:
        if n.lower() == key:
            if not done:
                out.append((n, value))
                done = True
            continue
        out.append((n, v))
    return tuple(out)


def remove_param(params: Params, name: str) -> Params:
    key = name.lower()
    return tuple((n, v) for n, v in params if n.lower() != key)
