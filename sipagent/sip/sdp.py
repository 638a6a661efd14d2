"""Session descriptions (RFC 8866): a lenient parser, a canonical serialiser and typed views of media lines.

The parser takes what real peers send: LF or CRLF, trailing blanks, session-level fields out of order, multicast
TTL suffixes, no ``t=``, and malformed values of known attributes (a=rtpmap, a=ptime, ...), which the typed views
then ignore. It rejects with :class:`RemoteProtocolError` (status hint 400), naming the line, anything that is not
``<letter>=<value>`` or whose v, o, c, b, t or m field or attribute name is malformed. The serialiser writes the
RFC 8866 §5 field order with CRLF, so ``parse_sdp(serialize_sdp(d)) == d``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from sipagent.sip.errors import RemoteProtocolError

__all__ = [
    "STATIC_PAYLOAD_TYPES", "Attribute", "Bandwidth", "Connection", "Direction", "MediaDescription", "Origin",
    "RtcpAttribute", "RtpMap", "SessionDescription", "Timing", "parse_sdp", "serialize_sdp",
]


class Direction(StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, *, send: bool, recv: bool) -> Direction:
        if send:
            return cls.SENDRECV if recv else cls.SENDONLY
        return cls.RECVONLY if recv else cls.INACTIVE


@dataclass(frozen=True, slots=True)
class Origin:
    username: str
    session_id: int
    session_version: int
    address: str
    addr_type: str = "IP4"
    net_type: str = "IN"


@dataclass(frozen=True, slots=True)
class Connection:
    address: str
    addr_type: str = "IP4"
    net_type: str = "IN"
    # RFC 8866 §5.7: IP4 multicast may carry /ttl[/count]; IP6 multicast only /count.
    ttl: int | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Bandwidth:
    kind: str
    value: int


@dataclass(frozen=True, slots=True)
class Timing:
    start: int
    stop: int
    repeats: tuple[str, ...] = ()  # r= lines kept verbatim: nothing here schedules sessions


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    value: str | None = None  # None for a property flag such as a=rtcp-mux


@dataclass(frozen=True, slots=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1  # RFC 8866 §6.6: omitted audio channels means one


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    port: int
    address: str | None = None
    addr_type: str | None = None
    net_type: str | None = None


# RFC 3551 §6 table 4: static audio payload types usable without a=rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, 1), (3, "GSM", 8000, 1), (4, "G723", 8000, 1), (5, "DVI4", 8000, 1),
        (6, "DVI4", 16000, 1), (7, "LPC", 8000, 1), (8, "PCMA", 8000, 1), (9, "G722", 8000, 1),
        (10, "L16", 44100, 2), (11, "L16", 44100, 1), (12, "QCELP", 8000, 1), (13, "CN", 8000, 1),
        (14, "MPA", 90000, 1), (15, "G728", 8000, 1), (16, "DVI4", 11025, 1), (17, "DVI4", 22050, 1),
        (18, "G729", 8000, 1),
    )
}

_DIRECTIONS = frozenset(d.value for d in Direction)


def _attr_values(attributes: tuple[Attribute, ...], name: str) -> tuple[str, ...]:
    # Attribute names are compared case-insensitively: peers disagree on case and nothing is lost.
    name = name.lower()
    return tuple(a.value or "" for a in attributes if a.name.lower() == name)


def _direction(attributes: tuple[Attribute, ...]) -> Direction | None:
    for a in attributes:
        if a.value is None and a.name.lower() in _DIRECTIONS:
            return Direction(a.name.lower())
    return None


def _number(text: str, low: int = 0, high: int | None = None) -> int | None:
    # The length cap keeps int() away from CPython's 4300-digit limit and its ValueError.
    if not text.isascii() or not text.isdigit() or len(text) > 40:
        return None
    value = int(text)
    return None if value < low or (high is not None and value > high) else value


def _int(text: str, what: str, low: int = 0, high: int | None = None) -> int:
    value = _number(text, low, high)
    if value is None:
        raise RemoteProtocolError(f"SDP {what}: {text[:40]!r} is not a number in range")
    return value


@dataclass(frozen=True, slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    title: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    def values(self, name: str) -> tuple[str, ...]:
        return _attr_values(self.attributes, name)

    def has(self, name: str) -> bool:
        return bool(self.values(name))

    # The typed views below skip a malformed value as if it were absent (RFC 8866 §5.13 ignores what it cannot
    # understand): RFC 4475 itself sends "a=rtpmap:31 LPC", and one bad line must not fail a whole call.

    @property
    def payload_types(self) -> tuple[int, ...]:
        return tuple(pt for f in self.formats if (pt := _number(f, 0, 127)) is not None)

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        result: dict[int, RtpMap] = {}
        for value in self.values("rtpmap"):
            if (rtpmap := _parse_rtpmap(value)) is not None:
                result.setdefault(rtpmap.payload_type, rtpmap)
        return result

    def codec(self, payload_type: int) -> RtpMap | None:
        """The a=rtpmap of a payload type, else its RFC 3551 static assignment."""
        return self.rtpmaps.get(payload_type) or STATIC_PAYLOAD_TYPES.get(payload_type)

    @property
    def fmtps(self) -> dict[int, str]:
        result: dict[int, str] = {}
        for value in self.values("fmtp"):
            fmt, _, params = value.partition(" ")
            # Non-RTP formats (e.g. t38) have non-numeric fmtp keys: they are not ours to read.
            if (pt := _number(fmt, 0, 127)) is not None:
                result.setdefault(pt, params.strip())
        return result

    def fmtp(self, payload_type: int) -> str | None:
        return self.fmtps.get(payload_type)

    @property
    def ptime(self) -> int | None:
        return _packet_time(self.values("ptime"))

    @property
    def maxptime(self) -> int | None:
        return _packet_time(self.values("maxptime"))

    @property
    def direction(self) -> Direction | None:
        return _direction(self.attributes)

    @property
    def rtcp(self) -> RtcpAttribute | None:
        values = self.values("rtcp")
        # RFC 3605 §2.1: a=rtcp:<port> [<nettype> <addrtype> <connection-address>]
        parts = values[0].split() if values else []
        port = _number(parts[0], 0, 65535) if len(parts) in (1, 4) else None
        if port is None:
            return None
        if len(parts) == 1:
            return RtcpAttribute(port)
        return RtcpAttribute(port, parts[3], parts[2], parts[1])

    @property
    def rtcp_mux(self) -> bool:
        return self.has("rtcp-mux")


def _parse_rtpmap(value: str) -> RtpMap | None:
    # RFC 8866 §6.6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
    pt_text, _, rest = value.strip().partition(" ")
    parts = rest.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        return None
    pt = _number(pt_text, 0, 127)
    rate = _number(parts[1], 1)
    channels = _number(parts[2], 1) if len(parts) == 3 else 1
    if pt is None or rate is None or channels is None:
        return None
    return RtpMap(pt, parts[0], rate, channels)


def _packet_time(values: tuple[str, ...]) -> int | None:
    if not values:
        return None
    try:
        ms = float(values[0])
    except ValueError:
        return None
    # Some peers write 20.0; a packet time is whole milliseconds for every codec we speak.
    return max(1, round(ms)) if math.isfinite(ms) and 0 < ms <= 60_000 else None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin: Origin
    name: str = "-"
    info: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timings: tuple[Timing, ...] = (Timing(0, 0),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    def values(self, name: str) -> tuple[str, ...]:
        return _attr_values(self.attributes, name)

    @property
    def direction(self) -> Direction | None:
        return _direction(self.attributes)

    def media_direction(self, media: MediaDescription) -> Direction:
        # RFC 8866 §6.7: media level overrides session level; the default is sendrecv.
        return media.direction or self.direction or Direction.SENDRECV

    def media_connection(self, media: MediaDescription) -> Connection | None:
        # RFC 8866 §5.7: a media-level c= overrides the session-level one.
        return media.connections[0] if media.connections else self.connection


_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
_SESSION_ONCE = "vosiuczk"  # session fields that RFC 8866 §5 allows at most once
_MEDIA_FIELDS = "icbka"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 8866 §5.13 makes UTF-8 the default; older peers put Latin-1 in s=/i=.
        return data.decode("latin-1")


def parse_sdp(data: bytes | str) -> SessionDescription:
    text = data if isinstance(data, str) else _decode(data)
    if "\x00" in text:
        raise RemoteProtocolError("SDP contains a NUL character")
    lines = [line.rstrip(" \t") for line in _LINE_BREAK.split(text)]
    lines = [line for line in lines if line]
    if not lines or lines[0] != "v=0":
        first = lines[0] if lines else ""
        raise RemoteProtocolError(f"SDP must start with v=0, got {first[:40]!r}")
    session: dict[str, str] = {"v": "0"}
    multi: dict[str, list[str]] = {"e": [], "p": [], "b": [], "a": []}
    timings: list[tuple[str, list[str]]] = []
    media: list[tuple[str, list[tuple[str, str]]]] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise RemoteProtocolError(f"SDP line {line[:40]!r} is not <type>=<value>")
        letter, value = line[0], line[2:]
        if letter == "m":
            media.append((value, []))
        elif media:
            if letter not in _MEDIA_FIELDS:
                raise RemoteProtocolError(f"SDP line {line[:40]!r} is not allowed in a media description")
            media[-1][1].append((letter, value))
        elif letter in multi:
            multi[letter].append(value)
        elif letter == "t":
            timings.append((value, []))
        elif letter == "r":
            if not timings:
                raise RemoteProtocolError(f"SDP line {line[:40]!r} comes before any t= line")
            timings[-1][1].append(value)
        elif letter in _SESSION_ONCE:
            if letter in session:
                raise RemoteProtocolError(f"SDP line {line[:40]!r} repeats a {letter}= field")
            session[letter] = value
        else:
            # RFC 8866 §5: a description with a type letter we do not understand must be ignored whole.
            raise RemoteProtocolError(f"SDP line {line[:40]!r} has an unknown type letter")
    if "o" not in session:
        raise RemoteProtocolError("SDP has no o= line")
    c = session.get("c")
    return SessionDescription(
        origin=_parse_origin(session["o"]),
        name=session.get("s", ""),
        info=session.get("i"),
        uri=session.get("u"),
        emails=tuple(multi["e"]),
        phones=tuple(multi["p"]),
        connection=None if c is None else _parse_connection(c),
        bandwidths=tuple(_parse_bandwidth(b) for b in multi["b"]),
        timings=tuple(_parse_timing(t, r) for t, r in timings),
        zone=session.get("z"),
        key=session.get("k"),
        attributes=tuple(_parse_attribute(a) for a in multi["a"]),
        media=tuple(_parse_media(m, fields) for m, fields in media),
    )


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise RemoteProtocolError(f"SDP o={value[:60]}: expected 6 fields")
    user, sess_id, version, net, addr_type, address = parts
    return Origin(user, _int(sess_id, "o= session id"), _int(version, "o= session version"), address, addr_type, net)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise RemoteProtocolError(f"SDP c={value[:60]}: expected <nettype> <addrtype> <address>")
    net, addr_type, address = parts
    if addr_type not in ("IP4", "IP6"):
        return Connection(address, addr_type, net)
    host, *suffix = address.split("/")
    if not host or len(suffix) > (2 if addr_type == "IP4" else 1):
        raise RemoteProtocolError(f"SDP c={value[:60]}: malformed connection address")
    numbers: list[int | None] = [_int(s, "c= multicast suffix", 1) for s in suffix]
    if addr_type == "IP6":
        numbers.insert(0, None)
    ttl, count = (numbers + [None, None])[:2]
    return Connection(host, addr_type, net, ttl, count)


def _parse_bandwidth(value: str) -> Bandwidth:
    kind, sep, amount = value.partition(":")
    if not sep or not _TOKEN.match(kind):
        raise RemoteProtocolError(f"SDP b={value[:60]}: expected <bwtype>:<bandwidth>")
    return Bandwidth(kind, _int(amount, "b= bandwidth"))


def _parse_timing(value: str, repeats: list[str]) -> Timing:
    parts = value.split()
    if len(parts) != 2:
        raise RemoteProtocolError(f"SDP t={value[:60]}: expected <start> <stop>")
    return Timing(_int(parts[0], "t= start"), _int(parts[1], "t= stop"), tuple(repeats))


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not _TOKEN.match(name):
        raise RemoteProtocolError(f"SDP a={value[:60]}: attribute name is not a token")
    return Attribute(name, rest if sep else None)


def _parse_media(value: str, fields: list[tuple[str, str]]) -> MediaDescription:
    # RFC 8866 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    parts = value.split()
    if len(parts) < 4 or not _TOKEN.match(parts[0]):
        raise RemoteProtocolError(f"SDP m={value[:60]}: expected <media> <port> <proto> <fmt>...")
    port_text, slash, count_text = parts[1].partition("/")
    port = _int(port_text, f"m={parts[0]} port", 0, 65535)
    count = _int(count_text, f"m={parts[0]} port count", 1) if slash else None
    if not all(_TOKEN.match(p) for p in parts[2].split("/")):
        raise RemoteProtocolError(f"SDP m={value[:60]}: malformed transport protocol")
    once: dict[str, str] = {}
    conns: list[Connection] = []
    bws: list[Bandwidth] = []
    attrs: list[Attribute] = []
    for letter, field in fields:
        if letter == "c":
            conns.append(_parse_connection(field))
        elif letter == "b":
            bws.append(_parse_bandwidth(field))
        elif letter == "a":
            attrs.append(_parse_attribute(field))
        elif letter in once:
            raise RemoteProtocolError(f"SDP m={parts[0]} repeats its {letter}= field")
        else:
            once[letter] = field
    return MediaDescription(
        parts[0], port, parts[2], tuple(parts[3:]), count, once.get("i"), tuple(conns), tuple(bws),
        once.get("k"), tuple(attrs),
    )


def _connection_line(c: Connection) -> str:
    suffix = "".join(f"/{n}" for n in (c.ttl, c.count) if n is not None)
    return f"c={c.net_type} {c.addr_type} {c.address}{suffix}"


def _attribute_line(a: Attribute) -> str:
    return f"a={a.name}" if a.value is None else f"a={a.name}:{a.value}"


def serialize_sdp(sd: SessionDescription) -> bytes:
    o = sd.origin
    lines = [
        "v=0",
        f"o={o.username} {o.session_id} {o.session_version} {o.net_type} {o.addr_type} {o.address}",
        # RFC 8866 §5.3: "s= " (one space) is the way to say that a session has no name.
        f"s={sd.name or ' '}",
    ]
    lines += [f"{k}={v}" for k, v in (("i", sd.info), ("u", sd.uri)) if v is not None]
    lines += [f"e={e}" for e in sd.emails] + [f"p={p}" for p in sd.phones]
    if sd.connection is not None:
        lines.append(_connection_line(sd.connection))
    lines += [f"b={b.kind}:{b.value}" for b in sd.bandwidths]
    for t in sd.timings:
        lines.append(f"t={t.start} {t.stop}")
        lines += [f"r={r}" for r in t.repeats]
    lines += [f"{k}={v}" for k, v in (("z", sd.zone), ("k", sd.key)) if v is not None]
    lines += [_attribute_line(a) for a in sd.attributes]
    for m in sd.media:
        port = f"{m.port}/{m.port_count}" if m.port_count is not None else str(m.port)
        lines.append(f"m={m.media} {port} {m.proto} {' '.join(m.formats)}")
        if m.title is not None:
            lines.append(f"i={m.title}")
        lines += [_connection_line(c) for c in m.connections]
        lines += [f"b={b.kind}:{b.value}" for b in m.bandwidths]
        if m.key is not None:
            lines.append(f"k={m.key}")
        lines += [_attribute_line(a) for a in m.attributes]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
