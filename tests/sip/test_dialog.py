"""Dialog state (RFC 3261 §12) on its own, and the dialog rules the user agent applies (§12.2.2, §14.2).

Expectations follow the RFC's text: §12.1.1 and §12.1.2 for what a dialog holds on each side, §12.2.1.1
for the Request-URI and Route of requests inside it (loose and strict routers), §12.2.2 for CSeq order.
"""

from __future__ import annotations

import pytest

from sipagent.sip.dialog import Dialog
from sipagent.sip.errors import LocalProtocolError
from sipagent.sip.events import CallEnded, IncomingCall
from sipagent.sip.message import SipRequest, SipResponse
from sipagent.sip.parser import parse_message
from sipagent.sip.uri import NameAddress, SipUri
from tests.sip import test_useragent as h

pytestmark = pytest.mark.unit

INVITE = (
    "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKp2\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1\r\n"
    "Max-Forwards: 69\r\n"
    "Record-Route: <sip:p2.example.com;lr>\r\n"
    "Record-Route: <sip:p1.example.com;lr>\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.1:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)
OK = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1\r\n"
    "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:bob@192.0.2.4>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def parsed_request(text: str) -> SipRequest:
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def parsed_response(text: str) -> SipResponse:
    message = parse_message(text.encode())
    assert isinstance(message, SipResponse)
    return message


def test_uas_dialog_state_per_12_1_1() -> None:
    dialog = Dialog.as_uas(parsed_request(INVITE), "a6c85cf")
    assert dialog.id.call_id == "a84b4c76e66710"
    assert (dialog.local_tag, dialog.remote_tag) == ("a6c85cf", "1928301774")
    assert dialog.remote_target == SipUri(user="alice", host="192.0.2.1", port=5060)
    # The route set is the Record-Route list in order; the remote sequence number is the INVITE's.
    assert [r.uri.host for r in dialog.route_set] == ["p2.example.com", "p1.example.com"]  # type: ignore[union-attr]
    assert dialog.remote_seq == 314159 and dialog.local_seq is None
    assert dialog.local_uri == NameAddress("Bob", SipUri(user="bob", host="biloxi.example.com"))
    assert dialog.early and not dialog.secure


def test_uac_dialog_state_per_12_1_2() -> None:
    request = parsed_request(
        INVITE.replace("Record-Route: <sip:p2.example.com;lr>\r\n", "").replace(
            "Record-Route: <sip:p1.example.com;lr>\r\n", ""
        )
    )
    dialog = Dialog.as_uac(request, parsed_response(OK))
    assert (dialog.local_tag, dialog.remote_tag) == ("1928301774", "a6c85cf")
    assert dialog.remote_target == SipUri(user="bob", host="192.0.2.4")
    # Reversed on the caller's side: the proxy nearest to us comes first.
    assert [r.uri.host for r in dialog.route_set] == ["p1.example.com", "p2.example.com"]  # type: ignore[union-attr]
    assert dialog.local_seq == 314159 and dialog.remote_seq is None and not dialog.early


def test_request_in_dialog_with_loose_routes() -> None:
    dialog = Dialog.as_uas(parsed_request(INVITE), "a6c85cf")
    bye = dialog.build_request("BYE")
    # §12.2.1.1: Request-URI = remote target; Route = route set; From/To swap roles with our tag in From.
    assert bye.uri == dialog.remote_target
    assert [str(r) for r in bye.routes] == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.from_.tag == "a6c85cf" and bye.to.tag == "1928301774"
    assert bye.from_.uri == SipUri(user="bob", host="biloxi.example.com")
    assert bye.cseq.seq == 1 and dialog.build_request("INFO").cseq.seq == 2  # an empty counter starts anywhere
    ack = dialog.build_request("ACK", cseq=7)
    assert ack.cseq.seq == 7 and dialog.local_seq == 2  # ACK/CANCEL reuse a number and do not count


def test_request_in_dialog_with_a_strict_router() -> None:
    dialog = Dialog(
        call_id="c", local_tag="l", remote_tag="r",
        local_uri=NameAddress(None, SipUri(user="me", host="192.0.2.10")),
        remote_uri=NameAddress(None, SipUri(user="you", host="192.0.2.20")),
        remote_target=SipUri(user="you", host="192.0.2.20", port=5070),
        route_set=[NameAddress(None, SipUri(host="strict.example.com", params=(("maddr", "10.0.0.1"),))),
                   NameAddress(None, SipUri(host="loose.example.com", params=(("lr", None),)))],
    )  # fmt: skip
    request = dialog.build_request("BYE")
    # §12.2.1.1: the strict router goes in the Request-URI (without maddr, Table 1 of §19.1.1), the rest of
    # the route set in Route and the remote target last.
    assert request.uri == SipUri(host="strict.example.com")
    assert [str(r.uri) for r in request.routes] == ["sip:loose.example.com;lr", "sip:you@192.0.2.20:5070"]


def test_remote_cseq_order_and_matching() -> None:
    dialog = Dialog.as_uas(parsed_request(INVITE), "a6c85cf")
    in_dialog = INVITE.replace("To: Bob <sip:bob@biloxi.example.com>", "To: <sip:bob@biloxi.example.com>;tag=a6c85cf")
    later = parsed_request(in_dialog.replace("314159 INVITE", "314160 INVITE"))
    earlier = parsed_request(in_dialog.replace("314159 INVITE", "314158 INVITE"))
    assert dialog.matches(later)
    assert not dialog.matches(parsed_request(INVITE))  # no To tag
    assert dialog.check_remote_seq(later) and dialog.remote_seq == 314160
    assert not dialog.check_remote_seq(earlier)  # §12.2.2: lower than the last one is out of order
    ack = parsed_request(in_dialog.replace("INVITE sip", "ACK sip").replace("314159 INVITE", "1 ACK"))
    assert dialog.check_remote_seq(ack) and dialog.remote_seq == 314160


def test_target_refresh_and_confirmation() -> None:
    request = parsed_request(INVITE)
    early = Dialog.as_uac(request, parsed_response(OK.replace("200 OK", "180 Ringing")))
    assert early.early
    final = parsed_response(OK.replace("Contact: <sip:bob@192.0.2.4>", "Contact: <sip:bob@192.0.2.44:5062>"))
    early.confirm(final)
    assert not early.early and early.remote_target == SipUri(user="bob", host="192.0.2.44", port=5062)
    no_contact = parsed_response(OK.replace("Contact: <sip:bob@192.0.2.4>\r\n", ""))
    early.refresh_target(no_contact)  # no Contact: the target stays
    assert early.remote_target.port == 5062


def test_cseq_space_is_32_bits() -> None:
    dialog = Dialog.as_uas(parsed_request(INVITE), "x")
    dialog.local_seq = 2**32 - 1
    with pytest.raises(LocalProtocolError):
        dialog.next_cseq()


# --- the rules as the user agent applies them -----------------------------------------------------------


def test_offer_while_the_first_is_unanswered_is_500_with_retry_after() -> None:
    ua = h.make_ua()
    h.feed(ua, h.invite())
    h.events(ua)
    ua.ring("c1@phone", 0.1)
    tag = h.sent(ua)[0].response.to.tag or ""
    early = h.Established("c1@phone", tag, "ph1", SipResponse(180))
    update = h.in_dialog("UPDATE", early, 2, branch="z9hG4bKu1", body=h.offer_with("sendonly"))
    (out,) = h.feed(ua, update, 0.2)
    # §14.2 / RFC 3311 §5.2: 500 with a Retry-After between 0 and 10 seconds.
    retry = out.response.retry_after
    assert out.response.status == 500 and retry is not None and 0 <= retry.seconds <= 10


def test_offer_while_ours_is_pending_is_491() -> None:
    ua = h.make_ua()
    h.feed(ua, h.invite(body=""))  # delayed offer: our offer goes in the 200, the answer in the ACK
    h.events(ua)
    ua.accept("c1@phone", "192.0.2.10", 20000, 0.1)
    tag = h.sent(ua)[0].response.to.tag or ""
    call = h.Established("c1@phone", tag, "ph1", SipResponse(200))
    update = h.in_dialog("UPDATE", call, 2, branch="z9hG4bKu2", body=h.offer_with("sendonly"))
    assert h.statuses(h.feed(ua, update, 0.2)) == [491]


def test_bye_in_the_early_dialog_ends_the_unanswered_invite() -> None:
    ua = h.make_ua()
    h.feed(ua, h.invite())
    h.events(ua)
    ua.ring("c1@phone", 0.1)
    tag = h.sent(ua)[0].response.to.tag or ""
    early = h.Established("c1@phone", tag, "ph1", SipResponse(180))
    out = h.feed(ua, h.in_dialog("BYE", early, 2, branch="z9hG4bKb1"), 0.5)
    assert sorted((s.response.status, s.response.cseq.method) for s in out) == [(200, "BYE"), (487, "INVITE")]
    assert h.events(ua) == [CallEnded("c1@phone", "bye", None, False)]


def test_request_with_wrong_from_tag_is_not_in_the_dialog() -> None:
    ua = h.make_ua()
    call = h.establish(ua)
    stranger = h.Established(call.call_id, call.local_tag, "someone-else", call.answer)
    assert h.statuses(h.feed(ua, h.in_dialog("BYE", stranger, 5, branch="z9hG4bKw1"), 2.0)) == [481]
    assert h.events(ua) == []


def test_second_invite_with_the_same_call_id_is_a_merged_request() -> None:
    ua = h.make_ua()
    h.feed(ua, h.invite())
    assert [type(e) for e in h.events(ua)] == [IncomingCall]
    out = h.feed(ua, h.invite(branch="z9hG4bKother", from_tag="ph1"), 0.1)  # forked copy via another path
    assert h.statuses(out)[-1] == 482  # §8.2.2.2


def test_strict_router_in_the_route_set_takes_our_bye() -> None:
    ua = h.make_ua()
    call = h.establish(ua, extra=("Record-Route: <sip:10.9.9.9:5080>",))
    ua.hangup(call.call_id, 2.0)
    (bye,) = h.sent(ua)
    # A strict router is the Request-URI and thus the next hop; the remote target goes into Route.
    assert bye.request.uri == SipUri(host="10.9.9.9", port=5080) and bye.destination == ("10.9.9.9", 5080)
    assert str(bye.request.routes[-1].uri) == "sip:alice@192.168.1.50:5060;ob"


def test_caller_side_route_set_is_the_reversed_record_route() -> None:
    ua = h.make_ua()
    call_id = ua.dial("sip:1001@192.168.1.1", "192.0.2.10", 20010, 0.0)
    (first,) = h.sent(ua)
    answer = h.OFFER.replace("8 0 101", "8")
    ok = h.reply(
        first.request,
        200,
        "OK",
        to_tag="x1",
        body=answer,
        extra=("Record-Route: <sip:10.0.0.2;lr>, <sip:10.0.0.1;lr>", "Contact: <sip:1001@192.168.1.1>"),
    )
    (ack,) = h.feed(ua, ok, 0.5, source=("10.0.0.1", 5060))
    assert [str(r.uri) for r in ack.request.routes] == ["sip:10.0.0.1;lr", "sip:10.0.0.2;lr"]
    assert ack.destination == ("10.0.0.1", 5060)
    h.events(ua)
    ua.hangup(call_id, 1.0)
    (bye,) = h.sent(ua)
    assert bye.request.uri == SipUri(user="1001", host="192.168.1.1") and bye.destination == ("10.0.0.1", 5060)
    assert bye.request.cseq.seq == first.request.cseq.seq + 1  # §12.2.1.1: the next local number
