"""The SDP offer/answer model (RFC 3264) for an audio endpoint speaking G.711 at 8 kHz and RFC 4733 events.

Pure functions over :class:`SessionDescription` values: :func:`answer_offer` for an offer received (INVITE,
re-INVITE, UPDATE), :func:`make_offer` and :func:`accept_answer` for an offer we send (outbound INVITE, or the
200 OK of an INVITE without a body, whose answer then comes in the ACK). :class:`LocalSession` owns the o= line
across a dialog so that the version moves only when our description changes (RFC 3264 §8).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from random import Random

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.sdp import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
)

__all__ = [
    "AnswerResult",
    "AudioCapabilities",
    "LocalSession",
    "MediaNotAcceptable",
    "NegotiatedMedia",
    "NoCommonCodec",
    "accept_answer",
    "answer_offer",
    "make_offer",
]

# The codecs this endpoint can encode and decode, with their RFC 3551 static payload types.
_CODECS = {"PCMU": 0, "PCMA": 8}
_CLOCK_RATE = 8000
_TELEPHONE_EVENT = "telephone-event"
# RFC 4733 §2.5.1: we offer this number and these events (DTMF 0-15 and flash 16) on outbound offers.
_OFFER_EVENT_PT = 101
_OFFER_EVENTS = "0-16"
_PROTO = "RTP/AVP"  # no SRTP and no RTCP feedback: SAVP, SAVPF and AVPF streams are refused


def _address_type(address: str) -> str:
    # RFC 8866 §5.7 also allows a host name there; a name is taken as IPv4.
    return "IP6" if ":" in address else "IP4"


def _is_unspecified(address: str) -> bool:
    # RFC 3264 §8.4 (from RFC 2543): c=0.0.0.0 means "send me nothing"; "::" is its IPv6 twin.
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


class MediaNotAcceptable(RemoteProtocolError):
    """No offered stream can be used (488 Not Acceptable Here, RFC 3261 §13.3.1.4)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_hint=488)


class NoCommonCodec(MediaNotAcceptable):
    """An audio stream was usable but shares no codec with us."""


@dataclass(frozen=True, slots=True)
class AudioCapabilities:
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    prefer_offerer_order: bool = True
    ptime: int = 20
    telephone_event: bool = True
    rtcp_mux: bool = True

    def __post_init__(self) -> None:
        unknown = [c for c in self.codecs if c.upper() not in _CODECS]
        if not self.codecs or unknown or len({c.upper() for c in self.codecs}) != len(self.codecs):
            raise LocalProtocolError(f"audio codecs must be distinct names among {sorted(_CODECS)}: {self.codecs}")
        if not 10 <= self.ptime <= 200 or self.ptime % 10:
            raise LocalProtocolError(f"ptime {self.ptime} ms is not a multiple of 10 ms in 10..200")


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The audio stream both sides agreed on; payload types are those the remote wants to receive."""

    media_index: int
    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    rtcp_mux: bool
    codec: str
    payload_type: int
    clock_rate: int
    telephone_event_pt: int | None
    telephone_event_fmtp: str | None
    remote_ptime: int | None
    local_direction: Direction
    # The remote's direction as it takes effect: an RFC 2543 hold (c=0.0.0.0) cannot receive.
    remote_direction: Direction
    on_hold: bool


@dataclass(frozen=True, slots=True)
class AnswerResult:
    answer: SessionDescription
    media: NegotiatedMedia


class LocalSession:
    """Our o= line for one dialog: a fixed session id and a version bumped only when the SDP changes."""

    __slots__ = ("_id", "_last", "_name", "_username", "_version")

    def __init__(self, session_id: int, *, version: int | None = None, username: str = "-", name: str = "-") -> None:
        if session_id < 0 or (version is not None and version < 0) or not username or " " in username:
            raise LocalProtocolError("o= needs a non-negative id and version and a username without spaces")
        self._id = session_id
        # RFC 8866 §5.2 only asks for a number that increases; starting at the id is common practice.
        self._version = session_id if version is None else version
        self._username = username
        self._name = name
        self._last: SessionDescription | None = None

    @classmethod
    def random(cls, rng: Random | None = None, *, username: str = "-", name: str = "-") -> LocalSession:
        # 62 bits keeps id and version inside a signed 64-bit integer for peers that parse them as such.
        session_id = rng.getrandbits(62) if rng is not None else secrets.randbits(62)
        return cls(session_id, username=username, name=name)

    @property
    def session_id(self) -> int:
        return self._id

    @property
    def version(self) -> int:
        return self._version

    def describe(self, address: str, media: Iterable[MediaDescription]) -> SessionDescription:
        family = _address_type(address)
        sd = SessionDescription(
            origin=Origin(self._username, self._id, self._version, address, family),
            name=self._name,
            connection=Connection(address, family),
            media=tuple(media),
        )
        # RFC 3264 §8: a changed description gets version + 1; an unchanged one repeats the version.
        if self._last is not None and sd != self._last:
            self._version += 1
            sd = replace(sd, origin=replace(sd.origin, session_version=self._version))
        self._last = sd
        return sd


@dataclass(frozen=True, slots=True)
class _Choice:
    codec: RtpMap
    event: RtpMap | None
    event_fmtp: str | None


def _choose(m: MediaDescription, local: AudioCapabilities, fallback: MediaDescription | None = None) -> _Choice | None:
    ours = [c.upper() for c in local.codecs]
    offered: list[RtpMap] = []
    event: RtpMap | None = None
    for pt in m.payload_types:
        rtpmap = m.codec(pt) or (fallback.codec(pt) if fallback is not None else None)
        if rtpmap is None or rtpmap.clock_rate != _CLOCK_RATE or rtpmap.channels != 1:
            continue
        name = rtpmap.encoding.upper()  # RFC 4855 §3: encoding names are case-insensitive
        if name == _TELEPHONE_EVENT.upper():
            event = event or rtpmap
        elif name in ours:
            offered.append(replace(rtpmap, encoding=name))
    if not offered:
        return None
    if not local.prefer_offerer_order:
        offered.sort(key=lambda r: ours.index(r.encoding))
    if not local.telephone_event:
        event = None
    fmtp = None if event is None else m.fmtp(event.payload_type)
    return _Choice(offered[0], event, fmtp)


def _remote_endpoint(sd: SessionDescription, index: int) -> Connection:
    c = sd.media_connection(sd.media[index])
    if c is None:
        raise RemoteProtocolError(f"SDP m-line {index + 1} ({sd.media[index].media}) has no c= line")
    return c


def _negotiate(
    sd: SessionDescription, index: int, choice: _Choice, ours: Direction, mux: bool, remote_c: Connection
) -> NegotiatedMedia:
    m = sd.media[index]
    direction = sd.media_direction(m)
    if _is_unspecified(remote_c.address):
        direction = Direction.of(send=direction.sends, recv=False)
    if mux:
        rtcp = (remote_c.address, m.port)  # RFC 5761 §5.1.1
    elif (attr := m.rtcp) is not None:
        rtcp = (attr.address or remote_c.address, attr.port)  # RFC 3605 §2.1
    else:
        rtcp = (remote_c.address, m.port + 1)  # RFC 3550 §11
    event = choice.event
    return NegotiatedMedia(
        media_index=index,
        remote_address=remote_c.address,
        remote_port=m.port,
        remote_rtcp_address=rtcp[0],
        remote_rtcp_port=rtcp[1],
        rtcp_mux=mux,
        codec=choice.codec.encoding,
        payload_type=choice.codec.payload_type,
        clock_rate=choice.codec.clock_rate,
        telephone_event_pt=None if event is None else event.payload_type,
        telephone_event_fmtp=choice.event_fmtp,
        remote_ptime=m.ptime,
        local_direction=Direction.of(send=ours.sends and direction.receives, recv=ours.receives and direction.sends),
        remote_direction=direction,
        on_hold=not direction.receives,
    )


def _audio_media(
    port: int, proto: str, codecs: Iterable[RtpMap], event: RtpMap | None, event_fmtp: str | None, ptime: int,
    mux: bool, direction: Direction,
) -> MediaDescription:
    formats: list[str] = []
    attrs: list[Attribute] = []
    for codec in (*codecs, *(() if event is None else (event,))):
        formats.append(str(codec.payload_type))
        attrs.append(Attribute("rtpmap", f"{codec.payload_type} {codec.encoding}/{codec.clock_rate}"))
    if event is not None and event_fmtp is not None:
        attrs.append(Attribute("fmtp", f"{event.payload_type} {event_fmtp}"))
    attrs.append(Attribute("ptime", str(ptime)))
    if mux:
        attrs.append(Attribute("rtcp-mux"))
    attrs.append(Attribute(direction.value))
    return MediaDescription("audio", port, proto, tuple(formats), attributes=tuple(attrs))


def answer_offer(
    offer: SessionDescription,
    local: AudioCapabilities,
    address: str,
    port: int,
    session: LocalSession,
    *,
    direction: Direction = Direction.SENDRECV,
) -> AnswerResult:
    """Answer an offer per RFC 3264 §6: one audio stream accepted, every other m-line refused with port 0.

    ``direction`` is what we want (sendonly while we hold the call); the answer narrows it to the offer.
    """
    family = _address_type(address)
    accepted: tuple[int, _Choice, Connection] | None = None
    codec_mismatch = False
    for index, m in enumerate(offer.media):
        # §6: a stream offered with port 0 stays refused; the other streams are not audio we can carry.
        if m.port == 0 or m.media.lower() != "audio" or m.proto.upper() != _PROTO:
            continue
        if m.has("rtcp-mux-only") and not local.rtcp_mux:
            continue  # RFC 8858 §4.2: such a stream can only be refused by an endpoint that cannot mux
        remote_c = _remote_endpoint(offer, index)
        if remote_c.addr_type != family and not _is_unspecified(remote_c.address):
            continue  # the offerer's media address is not reachable from our address family
        choice = _choose(m, local)
        if choice is None:
            codec_mismatch = True
            continue
        accepted = (index, choice, remote_c)
        break  # one audio stream is all we carry: the rest are refused below
    if accepted is None:
        if codec_mismatch:
            raise NoCommonCodec(f"no offered audio codec is one of {', '.join(local.codecs)} at 8000 Hz")
        raise MediaNotAcceptable(f"no usable {family} {_PROTO} audio stream in the offer")
    index, choice, remote_c = accepted
    mux = local.rtcp_mux and offer.media[index].rtcp_mux
    negotiated = _negotiate(offer, index, choice, direction, mux, remote_c)
    media = []
    for i, m in enumerate(offer.media):
        if i == index:
            # §6.1: reuse the offered payload type numbers, and state our direction explicitly.
            media.append(
                _audio_media(port, m.proto, [choice.codec], choice.event, choice.event_fmtp, local.ptime, mux,
                             negotiated.local_direction)
            )
        else:
            # §6: a refused stream keeps its media type and protocol, port 0, formats ignored.
            media.append(MediaDescription(m.media, 0, m.proto, m.formats))
    return AnswerResult(session.describe(address, media), negotiated)


def make_offer(
    local: AudioCapabilities,
    address: str,
    port: int,
    session: LocalSession,
    *,
    direction: Direction = Direction.SENDRECV,
) -> SessionDescription:
    """One audio stream with our codecs in preference order, telephone-event 101 and, if wanted, rtcp-mux."""
    codecs = [RtpMap(_CODECS[c.upper()], c.upper(), _CLOCK_RATE) for c in local.codecs]
    event = RtpMap(_OFFER_EVENT_PT, _TELEPHONE_EVENT, _CLOCK_RATE) if local.telephone_event else None
    media = _audio_media(port, _PROTO, codecs, event, _OFFER_EVENTS, local.ptime, local.rtcp_mux, direction)
    return session.describe(address, [media])


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """Check an answer against the offer we sent (RFC 3264 §6, §7) and describe the agreed audio stream."""
    if len(answer.media) != len(offer.media):
        raise RemoteProtocolError(f"SDP answer has {len(answer.media)} m-lines, the offer had {len(offer.media)}")
    ours = [i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0]
    if not ours:
        raise LocalProtocolError("the offer has no active audio stream")
    index = ours[0]
    om, am = offer.media[index], answer.media[index]
    if am.media != om.media or am.proto.upper() != om.proto.upper():
        raise RemoteProtocolError(f"SDP answer m-line {index + 1} is {am.media} {am.proto}, not {om.media} {om.proto}")
    if am.port == 0:
        raise MediaNotAcceptable("the answer refused our audio stream (port 0)")
    offered = {r.encoding.upper() for pt in om.payload_types if (r := om.codec(pt)) is not None}
    caps = AudioCapabilities(
        codecs=tuple(c for c in _CODECS if c in offered) or tuple(_CODECS),
        telephone_event=_TELEPHONE_EVENT.upper() in offered,
    )
    # §7: the answer's payload numbers are what the answerer receives, so we send with those; a missing
    # a=rtpmap for a dynamic number falls back to what we offered under that number.
    choice = _choose(am, caps, fallback=om)
    if choice is None or choice.codec.encoding not in offered:
        raise NoCommonCodec("the answer names no audio codec that we offered")
    remote_c = _remote_endpoint(answer, index)
    mux = om.rtcp_mux and am.rtcp_mux
    return _negotiate(answer, index, choice, offer.media_direction(om), mux, remote_c)
