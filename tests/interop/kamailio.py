"""kamailio as a peer: an in-memory registrar and record-routing stateful proxy on one loopback port.

The configuration is written per instance. Digest authentication (``auth``) checks each REGISTER against a fixed
password per user with ``pv_www_authenticate``; ``qop`` adds qop="auth" to the challenge (RFC 2617 §3.2.1,
RFC 3261 §22.4); ``auth_calls`` also challenges INVITEs from our users with 407 (RFC 3261 §22.3). These switch
with ``-A`` defines, so one template serves every combination. Requests are relayed only to loopback targets.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.interop.procs import (
    LOOPBACK,
    PeerError,
    PeerProcess,
    free_port,
    sip_options_ping,
    udp_port_bound,
    wait_until,
)

__all__ = ["Kamailio", "kamailio_config"]

_MODULES = ("tm", "sl", "rr", "pv", "maxfwd", "usrloc", "registrar", "textops", "siputils", "xlog", "sanity",
            "ctl", "auth")
_SAFE = re.compile(r"[A-Za-z0-9._~+-]+")

_ROUTES = r"""
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (!sanity_check()) { xlog("L_WARN", "SANITY-FAILED $rm from $si:$sp\n"); exit; }
    xlog("L_INFO", "REQUEST $rm $ru from $si:$sp call-id $ci\n");
    # Keep-alive and the harness's readiness probe (RFC 3261 §11).
    if (is_method("OPTIONS") && uri == myself && $rU == $null) { options_reply(); exit; }
    if (has_totag()) { route(WITHINDLG); exit; }
    if (is_method("CANCEL")) { if (t_check_trans()) { route(RELAY); } exit; }
    # Absorb retransmissions of requests whose transaction exists (the ACK of a 2xx is end-to-end).
    if (!is_method("ACK")) { t_check_trans(); }
    remove_hf("Route");
    if (is_method("REGISTER")) { route(REGISTRAR); exit; }
#!ifdef REGISTRAR_ONLY
    sl_send_reply("403", "Registrar Only");
    exit;
#!endif
#!ifdef WITH_AUTH_CALLS
    if (is_method("INVITE")) { route(CALLER_AUTH); }
#!endif
    # Stay in the path of the dialog: in-dialog requests then come back here (RFC 3261 §16.6 step 4).
    if (is_method("INVITE")) { record_route(); }
    if ($rU == $null) { sl_send_reply("484", "Address Incomplete"); exit; }
    if (uri == myself) { route(LOCATION); exit; }
    # Only ever relay to loopback: the tests must never send traffic off the machine.
    if ($rd =~ "^127\.") { route(RELAY); exit; }
    sl_send_reply("403", "Loopback Only");
    exit;
}

route[WITHINDLG] {
    # RFC 3261 §16.12: follow the Route set we put ourselves in with record_route().
    if (loose_route()) { xlog("L_INFO", "LOOSE-ROUTE $rm $ru\n"); route(RELAY); exit; }
    if (is_method("ACK")) { if (t_check_trans()) { route(RELAY); } exit; }
    sl_send_reply("404", "Not Here");
    exit;
}

route[PASSWORD] {
    # Unknown users get a random password nobody knows.
    $var(password) = "@UNKNOWN_USER_PASSWORD@";
@PASSWORD_CHECKS@}

route[REGISTRAR] {
#!ifdef WITH_AUTH
    route(PASSWORD);
    if (!pv_www_authenticate("$td", "$var(password)", "0")) {
        xlog("L_INFO", "CHALLENGE REGISTER $tu\n");
#!ifdef WITH_QOP
        www_challenge("$td", "1");
#!else
        www_challenge("$td", "0");
#!endif
        exit;
    }
    consume_credentials();
#!endif
    if (!save("location")) { sl_reply_error(); exit; }
    xlog("L_INFO", "REGISTERED $tu contact $ct\n");
    exit;
}

#!ifdef WITH_AUTH_CALLS
route[CALLER_AUTH] {
    route(PASSWORD);
    if (!pv_proxy_authenticate("$fd", "$var(password)", "0")) {
        xlog("L_INFO", "CHALLENGE INVITE $fu\n");
#!ifdef WITH_QOP
        proxy_challenge("$fd", "1");
#!else
        proxy_challenge("$fd", "0");
#!endif
        exit;
    }
    consume_credentials();
}
#!endif

route[LOCATION] {
    if (!lookup("location")) {
        xlog("L_INFO", "NOT-FOUND $ru\n");
        t_newtran();
        t_reply("404", "Not Found");
        exit;
    }
    xlog("L_INFO", "LOCATED $ru\n");
    route(RELAY);
}

route[RELAY] {
    if (!t_relay()) { sl_reply_error(); }
    exit;
}
"""


def kamailio_config(port: int, users: Mapping[str, str], domain: str, ctl_socket: Path) -> str:
    """The configuration text; behaviour is then chosen with the defines WITH_AUTH, WITH_QOP, WITH_AUTH_CALLS,
    REGISTRAR_ONLY."""
    for text in (*users, *users.values(), domain):
        if not _SAFE.fullmatch(text):
            raise ValueError(f"kamailio user, password or domain {text!r} must match {_SAFE.pattern}")
    header = [
        "#!KAMAILIO",
        "debug=2",
        "log_stderror=yes",
        "children=2",
        "tcp_children=1",
        "auto_aliases=no",
        f"listen=udp:{LOOPBACK}:{port}",
        f"listen=tcp:{LOOPBACK}:{port}",
    ]
    if domain != LOOPBACK:
        header.append(f'alias="{domain}"')
    header += [f'loadmodule "{name}.so"' for name in _MODULES]
    header += [
        'modparam("usrloc", "db_mode", 0)',  # memory only: registrations vanish with the process
        f'modparam("ctl", "binrpc", "unix:{ctl_socket}")',
        f'modparam("auth", "secret", "{secrets.token_hex(16)}")',  # nonces are signed with it
        # With qop the client counts its uses of a nonce (nc); have kamailio reject a count that does not grow
        # (RFC 2617 §3.2.2), so a client reusing nc=00000001 with a cached nonce is caught.
        "#!ifdef WITH_QOP",
        'modparam("auth", "nonce_count", 1)',
        "#!endif",
    ]
    passwords = "".join(f'    if ($au == "{user}") {{ $var(password) = "{password}"; }}\n'
                        for user, password in users.items())
    routes = _ROUTES.replace("@UNKNOWN_USER_PASSWORD@", secrets.token_hex(16)).replace("@PASSWORD_CHECKS@", passwords)
    return "\n".join(header) + "\n" + routes


class Kamailio:
    """A kamailio process; ``registrar_and_proxy=False`` makes it a registrar only (other requests get 403)."""

    def __init__(self, *, registrar_and_proxy: bool = True, auth: bool = False, qop: bool = True,
                 auth_calls: bool = False, users: Mapping[str, str] | None = None, domain: str = LOOPBACK,
                 port: int | None = None, workdir: Path | None = None, startup_timeout: float = 5.0) -> None:
        self.registrar_and_proxy, self.auth, self.qop, self.auth_calls = registrar_and_proxy, auth, qop, auth_calls
        self.users = dict(users if users is not None else {"2000": "secret"})
        self.domain = domain
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self._workdir = workdir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: PeerProcess | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def uri(self, user: str) -> str:
        """Where to send a request for ``user``: the proxy's own address, so no peer ever needs DNS."""
        return f"sip:{user}@{self.address}"

    def aor(self, user: str) -> str:
        """The address-of-record of ``user`` in the proxy's domain (for To/From of a REGISTER)."""
        return f"sip:{user}@{self.domain}"

    @property
    def log(self) -> str:
        return self._process.output if self._process is not None else ""

    async def wait_for_log(self, pattern: str, within: float = 2.0) -> str:
        """The first log line part matching ``pattern``; the script logs REQUEST, CHALLENGE, REGISTERED, LOCATED,
        NOT-FOUND and LOOSE-ROUTE lines with the method and URI."""
        if self._process is None:
            raise PeerError("kamailio is not running")
        return (await self._process.wait_for_output(pattern, within))[0]

    @property
    def directory(self) -> Path:
        if self._workdir is None:
            raise PeerError("kamailio has no working directory before it starts")
        return self._workdir

    def defines(self) -> list[str]:
        names = [name for name, on in (("WITH_AUTH", self.auth or self.auth_calls), ("WITH_QOP", self.qop),
                                       ("WITH_AUTH_CALLS", self.auth_calls),
                                       ("REGISTRAR_ONLY", not self.registrar_and_proxy)) if on]
        return [arg for name in names for arg in ("-A", name)]

    async def __aenter__(self) -> Kamailio:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kamailio-")
            self._workdir = Path(self._tmp.name)
        run = self._workdir
        try:
            run.mkdir(parents=True, exist_ok=True)
            config = run / "kamailio.cfg"
            config.write_text(kamailio_config(self.port, self.users, self.domain, run / "ctl.sock"))
            # -DD: stay in the foreground (workers are still forked); -E: log to stderr; -Y: runtime dir, not /run.
            argv = ["kamailio", "-f", str(config), "-DD", "-E", "-Y", str(run), "-P", str(run / "kamailio.pid"),
                    "-m", "64", "-M", "8", *self.defines()]
            self._process = PeerProcess("kamailio", argv, run)
            await self._process.start()
            await wait_until(lambda: udp_port_bound(self.port), f"kamailio to bind {self.address}",
                             self.startup_timeout, self._process)
            await wait_until(self._answers, f"kamailio at {self.address} to answer OPTIONS", self.startup_timeout,
                             self._process)
        except BaseException:
            await self._close()
            raise
        return self

    async def _answers(self) -> bool:
        return await sip_options_ping(self.port) == 200

    async def rpc(self, *args: str) -> str:
        """Output of ``kamcmd`` over the control socket in the run directory."""
        process = await asyncio.create_subprocess_exec(
            "kamcmd", "-s", f"unix:{self.directory / 'ctl.sock'}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 5.0)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        text = output.decode(errors="replace")
        if process.returncode != 0:
            raise PeerError(f"kamcmd {' '.join(args)} exited with {process.returncode}: {text}")
        return text

    async def registered_contacts(self, user: str) -> list[str]:
        """Contact URIs bound to ``user`` in the location table; empty when none is."""
        try:
            text = await self.rpc("ul.lookup", "location", f"s:{user}")
        except PeerError as error:
            if "not found" in str(error).lower():
                return []
            raise
        return re.findall(r"^\s*Address:\s*(\S+)", text, re.MULTILINE)

    async def _close(self) -> None:
        try:
            if self._process is not None:
                await self._process.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self._close()
