"""The endpoint: owns the SIP transport, the user agent core, the registration, the RTP port pool, the media
clock and the calls. asyncio lives here and in the transports; every protocol decision is in the cores.

Every call is a task in the endpoint's task group. ``async with Endpoint(settings)`` starts listening (and
answers OPTIONS from then on); leaving it hangs up every call, un-registers and closes the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from rtp.transport import MediaClock, PortPool, Timer
from sipagent.agent.base import AgentFactory
from sipagent.agent.echo import EchoAgent
from sipagent.call import Call, CallControl
from sipagent.config import Settings
from sipagent.errors import SipAgentError
from sipagent.log import get_logger
from sipagent.metrics import Metrics, MetricsServer
from sipagent.sip.auth import DigestClient, DigestServer
from sipagent.sip.events import (
    CallEnded,
    IncomingCall,
    Outgoing,
    RequestAnswered,
    RequestFailed,
    UaEvent,
)
from sipagent.sip.offeranswer import AudioCapabilities, LocalSession, answer_offer
from sipagent.sip.policy import UaConfig
from sipagent.sip.registration import (
    ContactAddress,
    Registration,
    RegistrationConfig,
    RegistrationFailed,
    RegistrationSucceeded,
    Unregistered,
)
from sipagent.sip.uri import parse_uri
from sipagent.sip.useragent import UserAgent
from sipagent.transport import SendFailed, SipTransport

_WILDCARDS = ("0.0.0.0", "::", "")


class EndpointError(SipAgentError):
    """The endpoint cannot start (port in use, bad address)."""


def route_address(peer: str, fallback: str) -> str:
    """Our address on the route towards ``peer``: what a caller can send media to when we listen on all
    interfaces. A connected UDP socket only asks the kernel's routing table; no packet is sent."""
    try:
        family = socket.AF_INET6 if ":" in peer else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return fallback


class Endpoint:
    def __init__(self, settings: Settings, agent_factory: AgentFactory | None = None) -> None:
        self.settings = settings
        self.log = get_logger()
        self.agent_factory = agent_factory or self._builtin_agent(settings.agent.name, settings)
        self.calls: dict[str, Call] = {}
        self.ua: UserAgent | None = None
        self.transport: SipTransport[UaEvent] | None = None
        self.registration: Registration | None = None
        self._registration_requests: set[str] = set()
        self._registered = asyncio.Event()
        self._unregistered = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._ready = asyncio.Event()
        self._reg_timer: Timer | None = None
        self.clock: MediaClock | None = None
        self.pool: PortPool | None = None
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None

    @staticmethod
    def _builtin_agent(name: str, settings: Settings | None = None) -> AgentFactory:
        if name == "echo":
            return EchoAgent
        if name == "assistant":
            from sipagent.agent.assistant import AssistantConfig, AssistantFactory
            from sipagent.agent.turns import TurnConfig

            agent = (settings or Settings()).agent
            turns = TurnConfig(min_barge_in_ms=agent.min_barge_in_ms,
                               greeting_interruptible=agent.greeting_interruptible, reprompt_after_s=agent.reprompt_s,
                               max_reprompts=agent.max_reprompts, max_call_s=agent.max_call_s,
                               operator_uri=agent.operator_uri)
            from sipagent.providers.registry import build_providers

            config = AssistantConfig(turns=turns, workers=agent.workers)
            if agent.script is not None:
                config = AssistantConfig(script_path=agent.script, turns=turns, workers=agent.workers)
            factory = AssistantFactory(config)
            p = build_providers(settings or Settings(), offline_stt=factory.stt, offline_tts=factory.tts,
                                script=factory.script)
            factory.use(p.stt, p.tts, p.llm, p.roles)
            return factory
        raise SipAgentError(f"agent: unknown agent {name!r} (known: assistant, echo)")

    # -- the SipCore protocol, delegated to the user agent once it exists -------------------------------------

    def receive(self, data: bytes, source: tuple[str, int], transport: str, now: float) -> None:
        if self.ua is not None:
            self.ua.receive(data, source, transport, now)

    def datagrams_to_send(self) -> Iterable[Outgoing]:
        return self.ua.datagrams_to_send() if self.ua is not None else ()

    def get_timer(self) -> float | None:
        return self.ua.get_timer() if self.ua is not None else None

    def handle_timer(self, now: float) -> None:
        if self.ua is not None:
            self.ua.handle_timer(now)

    def next_event(self) -> UaEvent | None:
        return self.ua.next_event() if self.ua is not None else None

    # -- life cycle -----------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        s = self.settings
        loop = asyncio.get_running_loop()
        roles = getattr(self.agent_factory, "roles", None)
        if roles:
            self.log.info("agent engines", **roles)  # names only: the keys stay inside the engines
        start = getattr(self.agent_factory, "start", None)
        if start is not None:
            await start()  # warm the offline engines now, not on the first call
        self.clock = MediaClock()
        rtp_host = s.sip.bind if s.sip.bind not in _WILDCARDS else ("::" if ":" in s.sip.bind else "0.0.0.0")
        self.pool = PortPool(s.rtp.port_min, s.rtp.port_max, host=rtp_host)
        try:
            self.transport = await SipTransport.start(self, s.sip.bind, s.sip.port, s.sip.transports,
                                                      on_event=self._on_event, on_send_error=self._on_send_error)
        except OSError as exc:
            raise EndpointError(f"cannot listen on {s.sip.bind}:{s.sip.port}: {exc.strerror or exc}") from None
        self.ua = UserAgent(self._ua_config(self.transport.port), now=loop.time())
        if s.log.metrics_port is not None:
            try:
                self.metrics_server = await MetricsServer.start(self.metrics, s.log.metrics_bind, s.log.metrics_port)
            except OSError as exc:
                await self.transport.close()
                raise EndpointError(f"metrics: cannot listen on {s.log.metrics_bind}:{s.log.metrics_port}: "
                                    f"{exc.strerror or exc}") from None
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        if s.registration.registrar:
            self._start_registration()
        self._ready.set()
        self.log.info("endpoint ready", sip=f"{s.sip.bind}:{self.transport.port}", transports=s.sip.transports,
                      rtp_ports=f"{s.rtp.port_min}-{s.rtp.port_max}", agent=s.agent.name,
                      registrar=s.registration.registrar,
                      metrics=self.metrics_server.port if self.metrics_server is not None else None)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            for call in list(self.calls.values()):
                call.close()
            if self.calls:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await asyncio.gather(*(c.ended.wait() for c in self.calls.values()))
            await self._stop_registration()
        finally:
            if self._tasks is not None:
                for call in self.calls.values():
                    call.ended.set()
                await self._tasks.__aexit__(None, None, None)
            if self._reg_timer is not None:
                self._reg_timer.cancel()
            if self.transport is not None:
                await self.transport.close()
            if self.metrics_server is not None:
                await self.metrics_server.aclose()
            if self.clock is not None:
                self.clock.close()
            aclose = getattr(self.agent_factory, "aclose", None)
            if aclose is not None:
                await aclose()
            self.log.info("endpoint stopped")

    async def ready(self) -> None:
        await self._ready.wait()

    @property
    def sip_port(self) -> int:
        assert self.transport is not None
        return self.transport.port

    def _local_address(self, peer: str | None = None) -> str:
        s = self.settings.sip
        if s.public_address:
            return s.public_address
        if s.bind not in _WILDCARDS:
            return s.bind
        fallback = "127.0.0.1"
        return route_address(peer, fallback) if peer else fallback

    def _ua_config(self, port: int) -> UaConfig:
        s = self.settings
        reg = s.registration
        credentials = None
        if reg.password is not None and (reg.auth_user or reg.username):
            credentials = DigestClient(reg.auth_user or reg.username or "", reg.password.get_secret_value())
        digest_server = None
        if s.sip.inbound_user and s.sip.inbound_password is not None:
            password = s.sip.inbound_password.get_secret_value()
            user = s.sip.inbound_user
            digest_server = DigestServer("sipagent", lambda name: password if name == user else None,
                                         secrets.token_bytes(32))
        return UaConfig(
            local_address=self._local_address(self._registrar_host()),
            local_port=port, public_address=s.sip.public_address, user=reg.username or "sipagent",
            user_agent=s.sip.user_agent,
            capabilities=AudioCapabilities(codecs=s.sip.codecs, prefer_offerer_order=s.sip.prefer_offerer_order,
                                           rtcp_mux=False),
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in s.sip.allowed_networks),
            digest_server=digest_server, credentials=credentials, max_calls=s.sip.max_calls,
        )

    def _registrar_host(self) -> str | None:
        registrar = self.settings.registration.registrar
        if not registrar:
            return None
        try:
            return parse_uri(registrar).host
        except Exception:
            return None

    # -- user agent events ----------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self.transport is not None:
            self.transport.flush()

    def _on_send_error(self, failure: SendFailed) -> None:
        if self.ua is not None:
            self.ua.transport_error(failure.destination, asyncio.get_running_loop().time())

    def _on_event(self, event: UaEvent) -> None:
        if isinstance(event, IncomingCall):
            self._incoming(event)
        elif isinstance(event, RequestAnswered | RequestFailed):
            self._registration_response(event)
        else:
            call = self.calls.get(getattr(event, "call_id", ""))
            if call is not None:
                call.on_sip_event(event)
                if isinstance(event, CallEnded):
                    self.calls.pop(event.call_id, None)

    def _control(self) -> CallControl:
        loop = asyncio.get_running_loop()

        def act(method: str, *args: Any) -> bool:
            if self.ua is None:
                return False
            result = bool(getattr(self.ua, method)(*args, loop.time()))
            self._flush()
            return result

        return CallControl(
            accept=lambda cid, addr, port: act("accept", cid, addr, port),
            ring=lambda cid: act("ring", cid),
            hangup=lambda cid: act("hangup", cid),
            transfer=lambda cid, uri: act("transfer", cid, uri),
            reject=lambda cid, status: act("reject", cid, status),
        )

    def _new_call(self, call_id: str, caller: str, called: str, media_address: str, inbound: bool) -> Call:
        assert self.pool is not None and self.clock is not None
        return Call(call_id, settings=self.settings, control=self._control(), pool=self.pool, clock=self.clock,
                    agent_factory=self.agent_factory, media_address=media_address, caller=caller, called=called,
                    log=self.log, inbound=inbound)

    def _incoming(self, event: IncomingCall) -> None:
        assert self._tasks is not None
        media_address = self._local_address(event.source[0])
        media = None
        if event.offer is not None:
            # The UA has already checked the offer; this only tells the media stream the codec and remote.
            with contextlib.suppress(Exception):
                media = answer_offer(event.offer, self.ua.config.capabilities if self.ua else AudioCapabilities(),
                                     media_address, 9, LocalSession(1)).media
        call = self._new_call(event.call_id, str(event.from_.uri), str(event.request_uri), media_address, True)
        self.calls[event.call_id] = call
        self.log.info("incoming call", call_id=event.call_id, source=f"{event.source[0]}:{event.source[1]}")
        self._tasks.create_task(self._run_call(call, media), name=f"call {event.call_id}")

    async def _run_call(self, call: Call, media: Any) -> None:
        failed = False
        try:
            await call.run(media)
        except Exception as exc:  # one broken call must not take the endpoint down
            failed = True
            call.log.error("call failed", error=repr(exc))
            if not call.ended.is_set() and self.ua is not None:
                self.ua.hangup(call.call_id, asyncio.get_running_loop().time())
                self._flush()
        finally:
            self._count_call(call, failed)

    def _count_call(self, call: Call, failed: bool) -> None:
        result = "failed" if failed else "answered" if call.was_established else "unanswered"
        if call.figures is not None:
            self.metrics.observe_call(result, call.figures, call.packets_lost)
        else:
            self.metrics.calls_total.inc(1, result)

    # -- outbound calls ---------------------------------------------------------------------------------------

    async def dial(self, target: str, *, answer_timeout: float = 60.0,
                   agent_factory: AgentFactory | None = None) -> Call:
        """Place a call and run the agent on it; returns once the call has ended."""
        assert self.pool is not None and self.clock is not None and self.ua is not None and self._tasks
        uri = parse_uri(target)
        media_address = self._local_address(uri.host)
        call = self._new_call("", self.ua.contact, target, media_address, inbound=False)
        if agent_factory is not None:
            call.agent_factory = agent_factory
        await call._open_media(None)
        assert call.stream is not None
        loop = asyncio.get_running_loop()
        ua_config = self.ua.config
        call_id = self.ua.dial(target, media_address, call.stream.transport.rtp_port, loop.time(),
                               from_user=self.settings.registration.username, credentials=ua_config.credentials)
        call.call_id = call_id
        call.log = call.log.bind(call_id=call_id)
        self.calls[call_id] = call
        self._flush()

        async def answered_in_time() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(answer_timeout):
                    await call._established.wait()
            if not call._established.is_set() and not call.ended.is_set():
                call.log.info("no answer: cancelling", timeout_s=answer_timeout)
                call.close()

        watchdog = asyncio.ensure_future(answered_in_time())
        failed = True
        try:
            await call.run_outbound()
            failed = False
        finally:
            watchdog.cancel()
            self._count_call(call, failed)
        return call

    # -- registration -----------------------------------------------------------------------------------------

    def _start_registration(self) -> None:
        s = self.settings
        reg = s.registration
        assert self.transport is not None and reg.registrar is not None
        registrar = parse_uri(reg.registrar)
        transport = "tcp" if "tcp" in str(registrar.param("transport") or "").lower() else "udp"
        config = RegistrationConfig(
            registrar=registrar, user=reg.username or "sipagent",
            password=reg.password.get_secret_value() if reg.password else "",
            contact=ContactAddress(self._local_address(registrar.host), self.transport.port, transport),
            auth_user=reg.auth_user, expires=reg.expires, user_agent=s.sip.user_agent,
            public_address=(s.sip.public_address, self.transport.port) if s.sip.public_address else None,
        )
        self.registration = Registration(config)
        self._reg_timer = Timer(self._registration_timer)
        self.registration.start(asyncio.get_running_loop().time())
        self._pump_registration()

    def _registration_timer(self, now: float) -> None:
        if self.registration is not None:
            self.registration.handle_timer(now)
            self._pump_registration()

    def _pump_registration(self) -> None:
        reg, ua, transport = self.registration, self.ua, self.transport
        if reg is None or ua is None or transport is None:
            return
        now = asyncio.get_running_loop().time()
        for out in reg.requests_to_send():
            dest = out.destination
            tx = ua.send_request(out.request, now, (dest.host, dest.port), dest.transport)
            self._registration_requests.add(tx.branch)
        for item in reg.keepalives_to_send():
            dest = reg.destination
            if isinstance(item, bytes):
                transport.send(item, (dest.host, dest.port), dest.transport)
            else:
                tx = ua.send_request(item, now, (dest.host, dest.port), dest.transport)
                self._registration_requests.add(tx.branch)
        while (event := reg.next_event()) is not None:
            match event:
                case RegistrationSucceeded(expires=expires, public_address_seen=public):
                    self.log.info("registered", registrar=self.settings.registration.registrar, expires=expires,
                                  public_address=public)
                    self._registered.set()
                case RegistrationFailed(status=status, reason=reason, retry_in=retry_in):
                    self.log.warning("registration failed", status=status, reason=reason,
                                     retry_in_s=round(retry_in, 1))
                case Unregistered():
                    self.log.info("unregistered")
                    self._unregistered.set()
        if self._reg_timer is not None:
            self._reg_timer.set(reg.get_timer())
        self._flush()

    def _registration_response(self, event: RequestAnswered | RequestFailed) -> None:
        if self.registration is None or event.request_id not in self._registration_requests:
            return
        self._registration_requests.discard(event.request_id)
        now = asyncio.get_running_loop().time()
        if isinstance(event, RequestAnswered):
            if event.status >= 200:
                self.registration.receive_response(event.response, now)
        else:
            self.registration.request_failed(now, event.reason, status=408 if event.reason == "timeout" else 503)
        self._pump_registration()

    async def registered(self) -> None:
        await self._registered.wait()

    async def _stop_registration(self) -> None:
        if self.registration is None or not self._registered.is_set():
            return
        self.registration.stop(asyncio.get_running_loop().time())
        self._pump_registration()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await self._unregistered.wait()


__all__ = ["Endpoint", "EndpointError", "route_address"]
