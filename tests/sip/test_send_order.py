"""Datagrams leave the user agent in the order the core sent them, whichever transaction sent them.

Found by the sipp interop test of CANCEL: the 487 of the (older) INVITE transaction went out before the 200 for
the CANCEL, because queued datagrams were gathered transaction by transaction in creation order. RFC 3261 §9.2
answers the CANCEL first and then the INVITE with 487; a peer that follows the flow strictly (sipp) fails the
call otherwise. Expectations come from §9.2; messages are written as a phone writes them.
"""

from __future__ import annotations

import pytest

from sipagent.sip.events import IncomingCall
from sipagent.sip.message import SipResponse
from sipagent.sip.parser import parse_message
from sipagent.sip.policy import UaConfig
from sipagent.sip.useragent import UserAgent

pytestmark = pytest.mark.unit

PHONE = ("127.0.0.1", 5062)
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


def _request(method: str, body: str = "") -> bytes:
    rows = [
        f"{method} sip:agent@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKorder1",
        "Max-Forwards: 70",
        "From: <sip:alice@127.0.0.1:5062>;tag=a1",
        "To: <sip:agent@127.0.0.1:5060>",
        "Call-ID: order@phone",
        f"CSeq: 1 {method}",
        "Contact: <sip:alice@127.0.0.1:5062>",
    ]
    if body:
        rows.append("Content-Type: application/sdp")
    rows.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(rows) + "\r\n\r\n" + body).encode()


def _responses(ua: UserAgent) -> list[tuple[int, str]]:
    out = []
    for item in ua.datagrams_to_send():
        message = parse_message(item.data)
        assert isinstance(message, SipResponse)
        out.append((message.status, message.cseq.method))
    return out


@pytest.mark.parametrize("rung", [False, True])
def test_cancel_is_answered_before_the_invites_487(rung: bool) -> None:
    ua = UserAgent(UaConfig("127.0.0.1", 5060), 0.0)
    ua.receive(_request("INVITE", OFFER), PHONE, "UDP", 0.0)
    assert isinstance(ua.next_event(), IncomingCall)
    if rung:
        ua.ring("order@phone", 0.1)
    ua.datagrams_to_send()  # 100 Trying and 180 Ringing, not under test
    ua.receive(_request("CANCEL"), PHONE, "UDP", 0.2)
    assert _responses(ua) == [(200, "CANCEL"), (487, "INVITE")]
