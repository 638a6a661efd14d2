"""kamailio as registrar and record-routing proxy with digest authentication (qop=auth), our endpoint as the
registered user 2000, sipp as the caller through the proxy.

Witnesses: kamailio's location table (``kamcmd ul.lookup``) and its request log (LOOSE-ROUTE lines show an
in-dialog request followed the route set, RFC 3261 §16.12), sipp's verdict and message trace, and the user-agent
events of our endpoint. kamailio checks every REGISTER against a password and rejects a reused nonce count
(RFC 2617 §3.2.2), so a binding in its table proves our digest answers were right.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sipagent.agent.base import AgentFactory
from sipagent.endpoint import Endpoint
from sipagent.sip.events import CallEnded, IncomingCall
from tests.interop.endpoint import (
    FRAMES_PER_SECOND,
    HangUpAfter,
    WatchedEndpoint,
    endpoint_settings,
    keep_agents,
    running_endpoint,
)
from tests.interop.peers import Kamailio, Sipp, require_peer

pytestmark = pytest.mark.interop


@contextlib.asynccontextmanager
async def registered_endpoint(proxy: Kamailio, username: str, password: str, auth_user: str | None = None,
                              agent_factory: AgentFactory | None = None) -> AsyncIterator[WatchedEndpoint]:
    registration: dict[str, Any] = {"registrar": f"sip:{proxy.address}", "username": username, "password": password}
    if auth_user is not None:
        registration["auth_user"] = auth_user
    settings = endpoint_settings(registration=registration)
    async with running_endpoint(agent_factory, settings, record_messages=True) as ep:
        try:
            async with asyncio.timeout(5.0):
                await ep.registered()
        except TimeoutError:
            raise AssertionError(f"no registration within 5 s\n{proxy.log[-3000:]}") from None
        yield ep


def _digest_params(header: str) -> dict[str, str]:
    return {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header)}


def _assert_digest_with_qop(ep: WatchedEndpoint, user: str, password: str) -> None:
    """Our answer to the registrar's first challenge, recomputed with RFC 2617 §3.2.2.1 (qop=auth):
    response = MD5(MD5(user:realm:password):nonce:nc:cnonce:auth:MD5(REGISTER:uri))."""
    challenge = ep.messages("received", "SIP/2.0 401")[0]
    offered = _digest_params(challenge.headers.get("WWW-Authenticate") or "")
    assert offered["qop"] == "auth", offered
    [_, answered, *_] = ep.messages("sent", "REGISTER")
    answer = _digest_params(answered.headers.get("Authorization") or "")
    assert (answer["username"], answer["realm"], answer["nonce"]) == (user, offered["realm"], offered["nonce"])
    assert answer["qop"] == "auth" and answer["nc"] == "00000001" and answer["cnonce"], answer
    ha1 = hashlib.md5(f"{user}:{offered['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{answer['uri']}".encode()).hexdigest()
    parts = [ha1, offered["nonce"], answer["nc"], answer["cnonce"], "auth", ha2]
    assert answer["response"] == hashlib.md5(":".join(parts).encode()).hexdigest()


def _proxy_uri(proxy: Kamailio) -> re.Pattern[str]:
    return re.compile(rf"<sip:127\.0\.0\.1:{proxy.port};lr[;>]")  # kamailio adds ;ftag=


async def _assert_registered(proxy: Kamailio, ep: Endpoint, user: str) -> None:
    contacts = await proxy.registered_contacts(user)
    assert [c for c in contacts if f"@127.0.0.1:{ep.sip_port}" in c], (contacts, proxy.log[-3000:])


async def test_register_with_qop_then_call_through_the_proxy_and_caller_hangs_up(tmp_path: Path) -> None:
    require_peer("sipp", "kamailio")
    async with Kamailio(auth=True, qop=True, users={"2000": "secret"}, workdir=tmp_path / "kamailio") as proxy:
        async with registered_endpoint(proxy, "2000", "secret") as ep:
            # The first REGISTER was challenged (qop="auth" in the challenge), the second accepted.
            await proxy.wait_for_log(r"CHALLENGE REGISTER sip:2000@")
            await proxy.wait_for_log(r"REGISTERED sip:2000@")
            await _assert_registered(proxy, ep, "2000")
            _assert_digest_with_qop(ep, "2000", "secret")
            caller = await Sipp("uac_via_proxy", proxy.address, service="2000", duration_ms=500,
                                workdir=tmp_path / "uac").run()
            await ep.settled()
            await proxy.wait_for_log(r"LOOSE-ROUTE BYE")
        # Leaving the endpoint un-registers (RFC 3261 §10.2.2: Expires 0), answered with a fresh digest.
        assert await proxy.registered_contacts("2000") == [], proxy.log[-3000:]
    assert caller.returncode == 0, caller.explain() + proxy.log[-3000:]
    proxy_uri = _proxy_uri(proxy)
    # The proxy record-routed the INVITE (§16.6 step 4), and our 200 echoed the Record-Route (§12.1.1).
    [incoming] = ep.seen(IncomingCall)
    assert proxy_uri.search(", ".join(incoming.invite.headers.get_all("Record-Route", split=False)))
    [ok] = [m for m in caller.received("SIP/2.0 200") if m.method == "INVITE"]
    assert proxy_uri.search(", ".join(ok.headers("Record-Route"))), ok.text
    # sipp's BYE went to our Contact through the route set; we took it as the end of the call.
    [bye] = caller.sent("BYE")
    assert bye.start_line.startswith(f"BYE sip:2000@127.0.0.1:{ep.sip_port}")
    assert proxy_uri.search(", ".join(bye.headers("Route"))), bye.text
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local) == ("bye", False)


async def test_call_through_the_proxy_and_the_endpoint_hangs_up(tmp_path: Path) -> None:
    require_peer("sipp", "kamailio")
    agents, factory = keep_agents(lambda context: HangUpAfter(context, FRAMES_PER_SECOND))

    async with Kamailio(auth=True, qop=True, users={"2000": "secret"}, workdir=tmp_path / "kamailio") as proxy:
        async with registered_endpoint(proxy, "2000", "secret", agent_factory=factory) as ep:
            caller = await Sipp("uac_wait_bye", proxy.address, service="2000", workdir=tmp_path / "uac").run()
            await ep.settled()
            # Our BYE carried the route set (§12.2.1.1) and the proxy routed it on (§16.12).
            await proxy.wait_for_log(r"LOOSE-ROUTE BYE")
    assert caller.returncode == 0, caller.explain() + proxy.log[-3000:]
    [bye] = caller.received("BYE")
    # The BYE goes to sipp's Contact (the remote target) and reached it through the proxy (top Via).
    assert re.match(r"BYE sip:sipp@127\.0\.0\.1:\d+", bye.start_line), bye.text
    assert f"127.0.0.1:{proxy.port}" in bye.headers("Via")[0], bye.text
    assert len(bye.headers("Via")) >= 2, bye.text  # the proxy's Via above ours
    [agent] = agents
    assert agent.calls >= FRAMES_PER_SECOND
    [ended] = ep.seen(CallEnded)
    assert (ended.reason, ended.local, ended.status) == ("bye", True, 200)


async def test_register_with_an_auth_user_other_than_the_account_user(tmp_path: Path) -> None:
    require_peer("kamailio")
    # kamailio looks the password up by the digest username ($au) and binds the To user ($tu): only "alice" has a
    # password here, so a binding for 2000 can only come from a digest answered as alice (RFC 3261 §22.4).
    async with Kamailio(auth=True, qop=True, users={"alice": "wonderland"}, workdir=tmp_path / "kamailio") as proxy:
        async with registered_endpoint(proxy, "2000", "wonderland", auth_user="alice") as ep:
            await proxy.wait_for_log(r"CHALLENGE REGISTER sip:2000@")
            await _assert_registered(proxy, ep, "2000")
            _assert_digest_with_qop(ep, "alice", "wonderland")
            assert await proxy.registered_contacts("alice") == []
