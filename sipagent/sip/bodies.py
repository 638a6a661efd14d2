"""Small bodies the user agent reads: DTMF in SIP INFO, and the message/sipfrag of a REFER's NOTIFY.

``application/dtmf-relay`` (Cisco's, used by Asterisk, FreeSWITCH, MicroSIP...) is ``Signal=5`` and
``Duration=160`` lines; ``application/dtmf`` carries the bare key. Neither is an RFC; RFC 6086 §1 calls them
legacy INFO usages, which is why they are accepted without an Info-Package header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DtmfKey", "SipFragStatus", "parse_dtmf", "parse_sipfrag"]

# RFC 4733 §3.2 event codes 0-16, which some peers write as numbers in Signal= (10 for *, 11 for #).
_EVENT_KEYS = "0123456789*#ABCD"
_KEYS = frozenset(_EVENT_KEYS) | {"!"}  # '!' is hook flash in dtmf-relay
_FIELD = re.compile(r"^[ \t]*([A-Za-z-]+)[ \t]*=[ \t]*(\S*)[ \t]*$")
_STATUS_LINE = re.compile(r"SIP/2\.0[ \t]+([1-6][0-9]{2})(?:[ \t]+(.*))?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DtmfKey:
    digit: str
    duration_ms: int | None


def _key(text: str) -> str | None:
    value = text.strip().upper()
    if value.isdigit() and value.isascii() and len(value) <= 2 and int(value) <= 16:
        number = int(value)
        return "!" if number == 16 else _EVENT_KEYS[number]
    return value if value in _KEYS else None


def parse_dtmf(content_type: str, body: bytes) -> DtmfKey | None:
    """The key in an INFO body of ``content_type`` (lower case ``type/subtype``), or ``None`` if there is none."""
    text = body.decode("utf-8", "replace")
    if content_type == "application/dtmf":
        digit = _key(text)
        return None if digit is None else DtmfKey(digit, None)
    if content_type != "application/dtmf-relay":
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match is not None:
            fields.setdefault(match.group(1).lower(), match.group(2))
    digit = _key(fields.get("signal", ""))
    if digit is None:
        return None
    duration = fields.get("duration", "")
    ok = duration.isascii() and duration.isdigit() and len(duration) <= 6
    return DtmfKey(digit, int(duration) if ok else None)


@dataclass(frozen=True, slots=True)
class SipFragStatus:
    status: int
    reason: str


def parse_sipfrag(body: bytes) -> SipFragStatus | None:
    """RFC 3420's fragment as RFC 3515 §2.4.5 uses it: only its first line, a Status-Line, matters."""
    first = body.decode("utf-8", "replace").lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    match = _STATUS_LINE.fullmatch(first.strip(" \t"))
    if match is None:
        return None
    return SipFragStatus(int(match.group(1)), (match.group(2) or "").strip())
