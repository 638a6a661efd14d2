"""Staying reachable behind NAT: keep-alives (RFC 5626 §4.4) and our address as the server sees it (RFC 3581).

A NAT keeps a UDP mapping only while packets flow through it, and many drop an idle one after 30 to 60 s
(RFC 5626 §3.5). A UA behind one that only sends a REGISTER every few minutes stops receiving calls between
refreshes; a small packet every 25 s keeps the mapping, and over TCP it also finds a dead connection long
before the next refresh would. Two kinds of keep-alive:

    crlf     the RFC 5626 §4.4.1 ping, CRLF CRLF; over UDP one datagram of those four bytes, which RFC 3261
             receivers ignore (see :func:`~sipagent.sip.parser.is_keepalive`)
    options  an OPTIONS request to the registrar: any final answer, even 405 or 401, proves the path works

Each gap is drawn uniformly between 80 % and 100 % of the interval, as RFC 5626 §4.4.1 asks: UAs behind one NAT
that booted together would otherwise stay in step and burst together.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Literal, TypeAlias

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.message import SipRequest, SipResponse
from sipagent.sip.parser import PING

__all__ = ["KEEPALIVE_MODES", "KeepAlive", "KeepAliveMode", "host_key", "same_address", "via_public_address"]

KeepAliveMode: TypeAlias = Literal["crlf", "options", "none"]
KEEPALIVE_MODES: tuple[KeepAliveMode, ...] = ("crlf", "options", "none")

_MIN_FRACTION = 0.8  # RFC 5626 §4.4.1: between 80 % and 100 % of the recommended interval


class KeepAlive:
    """The keep-alives of one flow: when they are due, and at most one OPTIONS in flight.

    ``random`` returns a float in [0, 1); ``call_id`` is the Call-ID of the OPTIONS pings, which the owner
    builds (:meth:`poll` calls ``build_options(cseq)``) because it knows the From, Via and route.
    """

    def __init__(self, mode: KeepAliveMode, interval: float, random: Callable[[], float], call_id: str) -> None:
        if mode not in KEEPALIVE_MODES:
            raise LocalProtocolError(f"keep-alive mode {mode!r} is not one of {KEEPALIVE_MODES}")
        self.mode = mode
        self.call_id = call_id
        self._random = random
        self._interval = 0.0
        self.interval = interval
        self._deadline: float | None = None
        self._seq = 0
        self._in_flight: int | None = None
        self._out: list[bytes | SipRequest] = []

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        if not seconds > 0:
            raise LocalProtocolError(f"keep-alive interval must be positive, not {seconds}")
        self._interval = seconds

    @property
    def running(self) -> bool:
        return self._deadline is not None

    def start(self, now: float) -> None:
        """Arm the first deadline (a schedule already running keeps its own); mode "none" never runs."""
        if self._deadline is None and self.mode != "none":
            self._deadline = now + self._gap()

    def stop(self) -> None:
        self._deadline = self._in_flight = None

    def get_timer(self) -> float | None:
        return self._deadline

    def poll(self, now: float, alive: bool, build_options: Callable[[int], SipRequest]) -> None:
        """Queue a keep-alive when one is due; ``alive`` False (no binding left to keep) stops the schedule."""
        if self._deadline is None or now < self._deadline:
            return
        if not alive:
            self.stop()
            return
        # Counted from now, not from the missed deadline: a late wake-up must not cause a burst.
        self._deadline = now + self._gap()
        if self.mode == "crlf":
            self._out.append(PING)
        elif self._in_flight is None:  # an OPTIONS still unanswered covers this period too
            self._seq += 1
            self._in_flight = self._seq
            self._out.append(build_options(self._seq))

    def to_send(self) -> list[bytes | SipRequest]:
        out, self._out = self._out, []
        return out

    def receive_response(self, response: SipResponse) -> bool:
        """True when ``response`` answers one of our OPTIONS (and is thereby consumed)."""
        try:
            ours = response.call_id == self.call_id and response.cseq.method == "OPTIONS"
            seq = response.cseq.seq
        except RemoteProtocolError:
            return False
        if ours and seq == self._in_flight and response.status >= 200:
            self._in_flight = None
        return ours

    def request_failed(self, request: SipRequest) -> bool:
        """True when ``request`` was our OPTIONS: the flow is dead (RFC 5626 §4.4.1), the owner re-registers."""
        if request.method != "OPTIONS" or request.headers.get("Call-ID") != self.call_id:
            return False
        self._in_flight = None
        return True

    def _gap(self) -> float:
        return self._interval * (_MIN_FRACTION + (1.0 - _MIN_FRACTION) * self._random())


def via_public_address(response: SipResponse, default_port: int = 5060) -> tuple[str, int] | None:
    """Our (host, port) as the server saw it: the top Via's ``received`` and ``rport`` (RFC 3581 §4).

    ``None`` when the server added neither (it does not do RFC 3581, or the Via is unreadable). A server that
    sets only ``received`` (no rport support) leaves the port as we wrote it in the Via.
    """
    try:
        via = response.top_via
    except RemoteProtocolError:
        return None
    if via.received is None and via.rport is None:
        return None
    port = via.rport if via.rport is not None else via.port
    return via.received or via.host, port if port is not None else default_port


def host_key(host: str) -> object:
    try:
        return ipaddress.ip_address(host)  # "::1" and "0::1" are one address (RFC 5954 §3)
    except ValueError:
        return host.lower()


def same_address(a: tuple[str, int], b: tuple[str, int]) -> bool:
    return host_key(a[0]) == host_key(b[0]) and a[1] == b[1]
