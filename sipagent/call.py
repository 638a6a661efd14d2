"""One call: its SIP dialog (by Call-ID in the user agent), its RTP stream and its agent, as one task.

The endpoint starts :meth:`Call.run` in its task group on ``IncomingCall`` (or after ``dial``) and feeds it
the user agent's events for this Call-ID. Whatever ends the call (BYE, CANCEL, media timeout, the agent
hanging up, an error, shutdown), the ``finally`` of ``run`` closes the media (RTCP BYE, ports back to the
pool) and cancels the agent's task, so nothing outlives the call.

From its establishment the call keeps a :class:`CallRecorder`: with ``agent.record_dir`` set it writes the call's
stereo WAV and JSONL timeline (SIP events here, the agent's through ``CallContext.timeline``); either way it
gives the figures of the one summary line logged at the end and of the endpoint's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from rtp.dtmf import DigitEnded
from rtp.g711 import CODECS_BY_NAME
from rtp.jitter import FrameStatus
from rtp.session import MediaTimeout, RemoteBye, SessionConfig, SessionEvent
from rtp.transport import MediaClock, MediaStream, PortPool
from sipagent.agent.base import Agent, AgentFactory, CallContext
from sipagent.config import Settings
from sipagent.media import CallAudio, Pcm
from sipagent.recording import CallFigures, CallRecorder
from sipagent.sip.events import CallEnded, CallEstablished, DtmfReceived, MediaUpdated, TransferProgress
from sipagent.sip.offeranswer import NegotiatedMedia
from sipagent.sip.sdp import Direction


class CallControl:
    """What a call may ask of the endpoint's user agent; each method flushes the SIP transport."""

    def __init__(self, accept: Callable[[str, str, int], bool], ring: Callable[[str], bool],
                 hangup: Callable[[str], bool], transfer: Callable[[str, str], bool],
                 reject: Callable[[str, int], bool]) -> None:
        self.accept = accept
        self.ring = ring
        self.hangup = hangup
        self.transfer = transfer
        self.reject = reject


class Call:
    def __init__(self, call_id: str, *, settings: Settings, control: CallControl, pool: PortPool,
                 clock: MediaClock, agent_factory: AgentFactory, media_address: str, caller: str, called: str,
                 log: Any, inbound: bool = True) -> None:
        self.call_id = call_id
        self.settings = settings
        self.control = control
        self.pool = pool
        self.clock = clock
        self.agent_factory = agent_factory
        self.media_address = media_address
        self.caller = caller
        self.called = called
        self.inbound = inbound
        self.log = log.bind(call_id=call_id)
        self.ended = asyncio.Event()
        self.end_reason = "unknown"
        self.stream: MediaStream | None = None
        self.agent: Agent | None = None
        self._established = asyncio.Event()
        self._wants_hangup = asyncio.Event()
        self._media: NegotiatedMedia | None = None
        self._audio: CallAudio | None = None
        self._recorder: CallRecorder | None = None
        self._ended_recorded = False
        self.figures: CallFigures | None = None
        """Set when the media closes: what the summary line and the metrics report."""
        self.packets_lost = 0

    # -- events from the user agent ---------------------------------------------------------------------

    def on_sip_event(self, event: object) -> None:
        match event:
            case CallEstablished(media=media):
                self._apply_media(media)
                self._established.set()
                remote = f"{media.remote_address}:{media.remote_port}"
                self.log.info("call established", codec=media.codec, remote=remote,
                              direction=str(media.local_direction))
                self._start_recording(codec=media.codec, remote=remote, inbound=self.inbound, caller=self.caller,
                                      called=self.called)
            case MediaUpdated(media=media):
                self._apply_media(media)
                remote = f"{media.remote_address}:{media.remote_port}"
                self.log.info("media updated", hold=media.on_hold, direction=str(media.local_direction),
                              remote=remote)
                self._record("media_updated", hold=media.on_hold, direction=str(media.local_direction),
                             remote=remote)
            case DtmfReceived(digit=digit):
                self._dtmf(digit)
            case TransferProgress(status=status, final=final):
                self.log.info("transfer progress", status=status, final=final)
                self._record("transfer_progress", status=status, final=final)
                if final and 200 <= status < 300:
                    self._wants_hangup.set()
            case CallEnded(reason=reason, status=status, local=local):
                self.end_reason = reason
                self.log.info("call ended", reason=reason, status=status, local=local)
                self._record_end(reason=reason, status=status, local=local)
                self.ended.set()

    def _apply_media(self, media: NegotiatedMedia) -> None:
        self._media = media
        stream = self.stream
        if stream is None:
            return
        if media.remote_port == 0 or media.remote_address in ("0.0.0.0", "::"):
            remote_rtp = remote_rtcp = None  # RFC 3264 §8.4 old-style hold: send nothing there
        else:
            remote_rtp = (media.remote_address, media.remote_port)
            remote_rtcp = (media.remote_rtcp_address, media.remote_rtcp_port)
        stream.session.set_remote(remote_rtp, remote_rtcp)
        stream.sending = media.local_direction in (Direction.SENDRECV, Direction.SENDONLY)
        receiving = media.local_direction in (Direction.SENDRECV, Direction.RECVONLY)
        stream.session.set_hold(not receiving or media.on_hold, self.clock.loop.time())

    def _dtmf(self, digit: str) -> None:
        if self.agent is not None:
            self.agent.on_dtmf(digit, self.clock.loop.time())
        self.log.info("dtmf", digit=digit)
        self._record("dtmf", digit=digit)

    # -- recording ------------------------------------------------------------------------------------------

    def _start_recording(self, **fields: Any) -> None:
        """The call clock starts with the establishment (a re-established dialog keeps the first recorder)."""
        if self._recorder is None:
            start = self.clock.loop.time()
            try:
                self._recorder = CallRecorder(self.settings.agent.record_dir, self.call_id, start)
            except OSError as exc:  # a full or read-only disk must not fail the call: keep only the figures
                self.log.error("cannot record the call", error=str(exc))
                self._recorder = CallRecorder(None, self.call_id, start)
            self._recorder.event("established", start, **fields)
            if self._recorder.path is not None:
                self.log.info("recording", path=str(self._recorder.path))

    def _record(self, kind: str, **fields: Any) -> None:
        """One timeline entry at the loop's time: also ``CallContext.timeline`` for the agent."""
        if self._recorder is not None:
            self._recorder.event(kind, self.clock.loop.time(), **fields)

    def _record_end(self, **fields: Any) -> None:
        if not self._ended_recorded:
            self._ended_recorded = True
            self._record("ended", **fields)

    def _on_agent_sent(self, pcm: Pcm | None, now: float) -> None:
        if self._recorder is not None:
            self._recorder.on_agent(pcm, now)

    # -- media events ---------------------------------------------------------------------------------------

    def _on_media_event(self, event: SessionEvent) -> None:
        match event:
            case MediaTimeout(silent_for=silent):
                self.log.info("media timeout", silent_s=round(silent, 1))
                self.end_reason = "media-timeout"
                self._wants_hangup.set()
            case RemoteBye():
                self.log.info("rtcp bye")
            case DigitEnded(digit=digit):
                self._dtmf(digit)

    def _on_audio(self, pcm: Pcm, now: float, status: FrameStatus) -> None:
        if self._recorder is not None:
            self._recorder.on_caller(pcm, now)
        if self.agent is not None:
            self.agent.on_audio(pcm, now, status)

    # -- the call's task ------------------------------------------------------------------------------------

    async def run(self, offer_media: NegotiatedMedia | None = None) -> None:
        """An inbound call: open the media, answer (after ringing), then serve until the call ends."""
        try:
            await self._open_media(offer_media)
            await self._answer()
        except BaseException:
            await self._close_media()
            raise
        await self._serve()

    async def run_outbound(self) -> None:
        """An outbound call whose media is open and whose INVITE is out: serve once answered."""
        await self._serve()

    async def _serve(self) -> None:
        agent_task: asyncio.Task[None] | None = None
        try:
            await _first(self.ended.wait(), self._established.wait(), self._wants_hangup.wait())
            if self.ended.is_set() or not self._established.is_set():
                return
            self.agent = self.agent_factory(self._context())
            agent_task = asyncio.create_task(self.agent.run(), name=f"agent {self.call_id}")
            await _first(self._wants_hangup.wait(), self.ended.wait(), agent_task)
            if agent_task.done() and not agent_task.cancelled() and agent_task.exception() is not None:
                self.log.error("agent failed", error=repr(agent_task.exception()))
        finally:
            if not self.ended.is_set():
                self.control.hangup(self.call_id)
            if agent_task is not None and not agent_task.done():
                agent_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await agent_task
            await self._close_media()

    async def _close_media(self) -> None:
        stream, self.stream = self.stream, None
        if stream is None:
            return
        stats = stream.session.stats()
        await stream.aclose(self.end_reason)
        now = self.clock.loop.time()
        figures = CallFigures(0.0, 0, (), 0, ())
        if self._recorder is not None:
            # A local hang-up's CallEnded may come after this (the BYE's answer): the timeline ends here anyway.
            self._record_end(reason=self.end_reason, local=not self.ended.is_set())
            figures = self._recorder.close(now)
        self.figures, self.packets_lost = figures, stats.lost
        self.log.info("call summary", reason=self.end_reason, duration_s=figures.duration_s, turns=figures.turns,
                      response_ms_p50=figures.response_ms_p50, barge_ins=figures.barge_ins,
                      received=stats.received, lost=stats.lost, jitter_ms=round(stats.jitter_ms, 1),
                      sent=stats.packets_sent, concealed=stats.concealed_frames, late=stats.late,
                      malformed=stats.malformed)

    async def _open_media(self, media: NegotiatedMedia | None) -> None:
        codec = CODECS_BY_NAME.get(media.codec if media else "PCMU", CODECS_BY_NAME["PCMU"])
        rtp = self.settings.rtp
        config = SessionConfig(
            codec=codec, payload_type=media.payload_type if media else None,
            telephone_event_pt=media.telephone_event_pt if media else None,
            jitter_min_ms=rtp.jitter_min_ms, jitter_start_ms=rtp.jitter_start_ms, jitter_max_ms=rtp.jitter_max_ms,
            rtcp_interval=rtp.rtcp_interval_s, media_timeout=rtp.media_timeout_s,
        )
        self._audio = CallAudio(self._on_audio, codec.clock_rate, on_sent=self._on_agent_sent)
        self.stream = await MediaStream.open(self.pool, self.clock, config, sink=self._audio.sink,
                                             source=self._audio.source, on_event=self._on_media_event)
        if media is not None:
            self._apply_media(media)

    async def _answer(self) -> None:
        assert self.stream is not None
        ring_ms = self.settings.sip.ring_ms
        if ring_ms:
            self.control.ring(self.call_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ring_ms / 1000):
                    await self.ended.wait()  # a CANCEL while ringing ends the wait early
            if self.ended.is_set():
                return
        self.control.accept(self.call_id, self.media_address, self.stream.transport.rtp_port)

    def _context(self) -> CallContext:
        assert self._audio is not None
        return CallContext(
            call_id=self.call_id, caller=self.caller, called=self.called, speech=self._audio.speech,
            hangup=self._wants_hangup.set, transfer=self._transfer,
            log=self.log, record_dir=self._recorder.path if self._recorder else None, timeline=self._record,
        )

    @property
    def was_established(self) -> bool:
        return self._established.is_set()

    def _transfer(self, target: str) -> None:
        self.log.info("transfer requested", target=target)
        if not self.control.transfer(self.call_id, target):
            self.log.warning("transfer not possible: the call is gone")

    def close(self) -> None:
        """Shutdown: hang up (BYE or CANCEL); run() ends when the user agent reports the call ended."""
        if not self.ended.is_set():
            self._wants_hangup.set()


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of several awaitables completes, then cancel the waits this call created (tasks
    passed in, like the agent's, are left running for their owner)."""
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future, wait in zip(futures, waits, strict=True):
            if future is not wait:
                future.cancel()


__all__ = ["Call", "CallControl"]
