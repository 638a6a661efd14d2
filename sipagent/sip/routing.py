"""Where messages go: the received/rport stamp (RFC 3581), response routing (§18.2.2), request next hops (§8.1.2).

No DNS here: a next hop is the host and port written in the Route or Request-URI. An IP literal is ready for
a socket; a host name is handed to the transport as it is, which resolves it (RFC 3263 is the transport's
business, not the core's).
"""

from __future__ import annotations

from sipagent.sip.errors import LocalProtocolError, RemoteProtocolError
from sipagent.sip.events import Address
from sipagent.sip.headers import Via, header_key, parse_via
from sipagent.sip.message import Headers, SipRequest
from sipagent.sip.uri import SipUri

__all__ = [
    "RELIABLE_TRANSPORTS",
    "default_port",
    "is_reliable",
    "next_hop",
    "response_destination",
    "stamp_via",
    "uri_address",
]

RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})


def is_reliable(transport: str) -> bool:
    return transport.upper() in RELIABLE_TRANSPORTS


def default_port(scheme: str, transport: str) -> int:
    # §19.1.2: 5060 for sip over UDP/TCP, 5061 for sips or TLS.
    return 5061 if scheme == "sips" or transport.upper() == "TLS" else 5060


def stamp_via(headers: Headers, source: Address) -> tuple[Headers, Via | None]:
    """``headers`` with ``received`` added and ``rport`` filled on the top Via (RFC 3581 §4), and that Via.

    The Via is ``None`` when there is none or it is unreadable (the headers then come back unchanged).
    RFC 3261 §18.2.1 adds ``received`` only when sent-by differs from the source; RFC 3581 §4 makes it
    mandatory whenever ``rport`` is present. We always add it: it costs a few bytes and a NATed peer that
    forgot ``rport`` still learns its public address. Retransmissions from the same source get the same
    stamp, so RFC 2543 transaction matching (which compares whole Vias) still works.
    """
    rows = list(headers)
    index = next((i for i, (name, _) in enumerate(rows) if header_key(name) == "via"), None)
    if index is None:
        return headers, None
    try:
        vias = parse_via(rows[index][1])
    except RemoteProtocolError:  # a response then goes straight back to the source
        return headers, None
    top = vias[0].with_param("received", source[0])
    if top.has_rport:
        top = top.with_param("rport", str(source[1]))
    vias[0] = top
    rows[index] = (rows[index][0], ", ".join(str(via) for via in vias))
    return Headers(rows), top


def response_destination(via: Via | None, source: Address, transport: str) -> Address:
    """§18.2.2 with RFC 3581 §4: where a response to a request with this (stamped) top Via goes."""
    if via is None or is_reliable(transport):
        return source  # reliable: back on the connection the request came in on
    if via.maddr:
        return via.maddr, via.port or default_port("sip", via.transport)
    if via.has_rport:
        # RFC 3581 §4: to the source address and port, which is what crosses a NAT back to the client.
        return via.received or source[0], via.rport or source[1]
    return via.received or via.host, via.port or default_port("sip", via.transport)


def uri_address(uri: SipUri, transport: str) -> Address:
    """The host and port a SIP URI points at (maddr first, §19.1.1); tel URIs have none."""
    if uri.scheme == "tel":
        raise LocalProtocolError(f"{uri} has no host: give the request a destination (an outbound proxy)")
    return uri.param("maddr") or uri.host, uri.port or default_port(uri.scheme, transport)


def next_hop(request: SipRequest, transport: str) -> Address:
    """§8.1.2: the first Route when it is a loose router, else the Request-URI (strict routing puts the
    next hop there, §12.2.1.1)."""
    routes = request.routes
    if routes and isinstance(routes[0].uri, SipUri) and routes[0].uri.has_param("lr"):
        return uri_address(routes[0].uri, transport)
    return uri_address(request.uri, transport)
