"""One RTP stream pair of a call, sans-I/O: latching, RTP/RTCP receive, jitter buffer, DTMF, outbound frames,
RTCP reports and the media timeout. Bytes and ``now`` in; frames, packets and events out.

Latching (symmetric RTP, RFC 4961): the SDP names where the peer wants media, but behind NAT the packets come
from elsewhere. The first valid packet of the negotiated payload types fixes the source; from then on we send
to that address and ignore every other source (a stray or spoofed stream must not hijack the call). A new
offer (re-INVITE) calls :meth:`RtpSession.set_remote`, which unlatches.

The receive path is defensive by construction: any datagram either becomes audio/DTMF or is counted in
:class:`SessionStats` (malformed, foreign source, unknown payload type); nothing raises out of ``receive``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from rtp.dtmf import DigitEnded, DigitStarted, DtmfReceiver, DtmfSender
from rtp.errors import PacketError
from rtp.g711 import Codec
from rtp.jitter import JitterBuffer, JitterFrame
from rtp.pacer import OutboundStream
from rtp.packet import RtpPacket, build_rtp, is_rtcp
from rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    serialize_compound,
)
from rtp.seqnum import seq_add, ts_add
from rtp.stats import ReceiverStats

Address = tuple[str, int]

COMFORT_NOISE_PT = 13  # RFC 3389: carries no audio for us; the jitter buffer conceals the gap.


@dataclass(frozen=True, slots=True)
class SessionConfig:
    codec: Codec
    """The negotiated audio codec (payload type as offered/answered)."""
    payload_type: int | None = None
    """Payload type number on the wire when it differs from the codec's static one."""
    telephone_event_pt: int | None = None
    cname: str = "sipagent"
    ptime_ms: int = 20
    jitter_min_ms: int = 20
    jitter_start_ms: int = 40
    jitter_max_ms: int = 200
    rtcp_interval: float = 5.0
    media_timeout: float = 30.0
    send_silence: bool = True
    """Continuous packets between utterances (many PBXs and NATs expect them); False for DTX."""

    @property
    def wire_payload_type(self) -> int:
        return self.codec.payload_type if self.payload_type is None else self.payload_type


@dataclass(frozen=True, slots=True)
class SourceLatched:
    address: Address
    ssrc: int


@dataclass(frozen=True, slots=True)
class RemoteBye:
    """The peer's RTCP BYE (RFC 3550 §6.6): its stream ended, not necessarily the call."""

    ssrc: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    silent_for: float


SessionEvent = SourceLatched | RemoteBye | MediaTimeout | DigitStarted | DigitEnded


@dataclass(frozen=True, slots=True)
class SessionStats:
    received: int
    expected: int
    lost: int
    jitter_ms: float
    late: int
    duplicate: int
    reordered: int
    concealed_frames: int
    jitter_delay_ms: float
    malformed: int
    foreign: int
    unknown_payload: int
    rtcp_received: int
    packets_sent: int
    octets_sent: int
    rtt_ms: float | None


@dataclass(slots=True)
class _Counters:
    malformed: int = 0
    foreign: int = 0
    unknown_payload: int = 0
    rtcp_received: int = 0
    rtt: float | None = None
    peer_sr: tuple[int, float] | None = field(default=None)  # (LSR middle 32 bits, our arrival time)


class RtpSession:
    """Per-call RTP state. ``now`` is the loop's monotonic clock; ``wallclock`` (Unix seconds) only feeds
    the NTP timestamps of Sender Reports."""

    def __init__(self, config: SessionConfig, remote_rtp: Address | None, remote_rtcp: Address | None,
                 now: float, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self.ssrc = self._rng.getrandbits(32)
        self._remote_rtp = remote_rtp
        self._remote_rtcp = remote_rtcp
        self._latched: Address | None = None
        self._remote_ssrc: int | None = None
        rate = config.codec.clock_rate
        self._frame_samples = rate * config.ptime_ms // 1000
        self._jitter = JitterBuffer(rate, config.ptime_ms, config.jitter_min_ms, config.jitter_start_ms,
                                    config.jitter_max_ms)
        self._rx = ReceiverStats(rate)
        self._dtmf_rx = DtmfReceiver(rate)
        # RFC 3550 §5.1: initial sequence number and timestamp are random (known-plaintext resistance).
        self._out = OutboundStream(self.ssrc, config.wire_payload_type, self._rng.getrandbits(16),
                                   self._rng.getrandbits(32), self._frame_samples,
                                   silence_payload=config.codec.silence, send_silence=config.send_silence)
        self._dtmf_queue: list[bytes] = []
        self._dtmf_ts = 0
        self._dtmf_first: bytes | None = None
        self._sr_sent: tuple[int, float] | None = None
        self._last_send: float | None = None
        self._last_rx = now
        self._on_hold = False
        self._timed_out = False
        self._next_rtcp = now + self._rtcp_delay(initial=True)
        self._n = _Counters()
        self._events: list[SessionEvent] = []

    # -- addressing ---------------------------------------------------------------------------------------

    @property
    def remote_rtp(self) -> Address | None:
        """Where RTP goes: the latched source once there is one, the SDP address before."""
        return self._latched or self._remote_rtp

    @property
    def remote_rtcp(self) -> Address | None:
        if self._remote_rtcp is None:
            return None
        if self._latched is not None and self._remote_rtcp == self._remote_rtp:
            return self._latched  # rtcp-mux: RTCP follows the latched RTP source
        return self._remote_rtcp

    def set_remote(self, remote_rtp: Address | None, remote_rtcp: Address | None) -> None:
        """A new offer/answer: media may move (RFC 3264 §8.3.1), so forget the latch and follow the SDP."""
        if (remote_rtp, remote_rtcp) != (self._remote_rtp, self._remote_rtcp):
            self._latched = None
        self._remote_rtp = remote_rtp
        self._remote_rtcp = remote_rtcp

    def set_hold(self, on_hold: bool, now: float) -> None:
        """While held, the peer legitimately sends nothing: the media timeout pauses and restarts on resume."""
        self._on_hold = on_hold
        self._last_rx = now
        self._timed_out = False

    # -- receive --------------------------------------------------------------------------------------------

    def receive(self, data: bytes, addr: Address, now: float, rtcp_port: bool = False) -> None:
        """One datagram from the RTP port (``rtcp_port`` False; RFC 5761 demux applies) or the RTCP port."""
        if rtcp_port or is_rtcp(data):
            self._receive_rtcp(data, addr, now)
            return
        try:
            packet = RtpPacket.parse(data)
        except PacketError:
            self._n.malformed += 1
            return
        pt = packet.payload_type
        audio = pt == self.config.wire_payload_type
        dtmf = pt == self.config.telephone_event_pt
        if not (audio or dtmf or pt == COMFORT_NOISE_PT):
            self._n.unknown_payload += 1
            return
        if self._latched is None:
            self._latched = addr
            self._remote_ssrc = packet.ssrc
            self._events.append(SourceLatched(addr, packet.ssrc))
        elif addr != self._latched:
            self._n.foreign += 1
            return
        self._last_rx = now
        self._timed_out = False
        if audio:
            self._remote_ssrc = packet.ssrc
            self._rx.update(packet.sequence_number, packet.timestamp, now)
            self._jitter.push(packet, self.config.codec.decode(packet.payload), now)
        elif dtmf:
            try:
                self._events.extend(self._dtmf_rx.feed(packet, now))
            except PacketError:
                self._n.malformed += 1

    def _receive_rtcp(self, data: bytes, addr: Address, now: float) -> None:
        try:
            packets = parse_compound(data)
        except PacketError:
            self._n.malformed += 1
            return
        if self._latched is not None and addr[0] != self._latched[0]:
            self._n.foreign += 1
            return
        self._n.rtcp_received += 1
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._n.peer_sr = (ntp_middle32(packet.ntp_timestamp), now)
                self._note_rtt(packet.reports, now)
            elif isinstance(packet, ReceiverReport):
                self._note_rtt(packet.reports, now)
            elif isinstance(packet, Bye) and (self._remote_ssrc is None or self._remote_ssrc in packet.sources):
                self._events.append(RemoteBye(self._remote_ssrc or 0, packet.reason))

    def _note_rtt(self, reports: tuple[ReportBlock, ...], now: float) -> None:
        for block in reports:
            if block.ssrc == self.ssrc and self._sr_sent is not None:
                sent_mid, sent_at = self._sr_sent
                if block.lsr == sent_mid:
                    # A.8-style: RTT = now - time we sent that SR - the peer's holding time (DLSR, 1/65536 s).
                    self._n.rtt = max(0.0, now - sent_at - block.dlsr / 65536.0)

    # -- playout and send ---------------------------------------------------------------------------------

    def pop_frame(self, now: float) -> JitterFrame:
        """The caller's next 20 ms at the codec rate; call once per media tick."""
        return self._jitter.pop(now)

    def next_packet(self, pcm: np.ndarray | None, now: float) -> bytes | None:
        """The packet for this tick: queued DTMF first (RFC 4733 §2.5.1.1 replaces audio while it lasts),
        else the encoded speech frame, else silence (or nothing in DTX mode). ``pcm`` is int16 at the codec
        rate, one frame long."""
        self._last_send = now
        if self._dtmf_queue:
            payload = self._dtmf_queue.pop(0)
            marker = payload is self._dtmf_first
            packet = build_rtp(self.config.telephone_event_pt or 0, self._out.sequence_number, self._dtmf_ts,
                               self.ssrc, payload, marker)
            self._out.sequence_number = seq_add(self._out.sequence_number, 1)
            self._out.timestamp = ts_add(self._out.timestamp, self._frame_samples)
            self._out.packets_sent += 1
            self._out.octets_sent += len(payload)
            if not self._dtmf_queue:
                self._out.end_talkspurt()
            return packet
        if pcm is None:
            return self._out.next_frame(None)
        return self._out.next_frame(self.config.codec.encode(pcm))

    def skip(self, frames: int) -> None:
        """Slots the pacer skipped after a stall: the timestamp still advances (RFC 3550 §5.1)."""
        self._out.skip(frames)

    def end_talkspurt(self) -> None:
        self._out.end_talkspurt()

    def queue_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Send one RFC 4733 digit over the next ticks (all its packets share the start timestamp)."""
        if self.config.telephone_event_pt is None:
            raise ValueError("the peer did not negotiate telephone-event; send DTMF with SIP INFO instead")
        sender = DtmfSender()
        start = self._out.timestamp if not self._dtmf_queue else self._dtmf_ts
        packets = sender.packets(digit, start, duration_ms, clock_rate=self.config.codec.clock_rate,
                                 ptime_ms=self.config.ptime_ms)
        payloads = [event.serialize() for event, _marker in packets]
        if not self._dtmf_queue:
            self._dtmf_ts = start
            self._dtmf_first = payloads[0]
        self._dtmf_queue.extend(payloads)

    # -- timers ---------------------------------------------------------------------------------------------

    def _rtcp_delay(self, initial: bool = False) -> float:
        # RFC 3550 §6.3.1: randomise over [0.5, 1.5] x the interval so reports of many sessions don't align;
        # §6.2: the first report may go after half the minimum interval.
        interval = self.config.rtcp_interval * (0.5 if initial else 1.0)
        return interval * (0.5 + self._rng.random())

    def get_timer(self) -> float:
        deadline = self._next_rtcp
        if not self._on_hold and not self._timed_out:
            deadline = min(deadline, self._last_rx + self.config.media_timeout)
        dtmf = self._dtmf_rx.get_timer()
        return deadline if dtmf is None else min(deadline, dtmf)

    def handle_timer(self, now: float) -> None:
        self._events.extend(self._dtmf_rx.poll(now))
        silent = now - self._last_rx
        if not self._on_hold and not self._timed_out and silent >= self.config.media_timeout:
            self._timed_out = True
            self._events.append(MediaTimeout(silent))

    def rtcp_due(self, now: float, wallclock: float) -> bytes | None:
        """The compound report (SR or RR, then SDES CNAME, RFC 3550 §6.1) when its time has come."""
        if now < self._next_rtcp:
            return None
        self._next_rtcp = now + self._rtcp_delay()
        return self._report(now, wallclock)

    def bye(self, now: float, wallclock: float, reason: str | None = None) -> bytes:
        """Final compound with BYE (§6.6), sent when the call ends."""
        return self._report(now, wallclock, Bye((self.ssrc,), reason))

    def _report(self, now: float, wallclock: float, tail: RtcpPacket | None = None) -> bytes:
        blocks: tuple[ReportBlock, ...] = ()
        if self._remote_ssrc is not None and self._rx.received:
            lsr, dlsr = 0, 0
            if self._n.peer_sr is not None:
                lsr, got = self._n.peer_sr
                dlsr = int((now - got) * 65536)
            blocks = (self._rx.report_block(self._remote_ssrc, lsr, dlsr),)
        report: RtcpPacket
        if self._last_send is not None:
            ntp = ntp_from_unix(wallclock)
            # The RTP timestamp of "now" on our media clock: last frame's timestamp plus the time since.
            elapsed = int((now - self._last_send) * self.config.codec.clock_rate)
            report = SenderReport(self.ssrc, ntp, ts_add(self._out.timestamp, elapsed - self._frame_samples),
                                  self._out.packets_sent % (1 << 32), self._out.octets_sent % (1 << 32), blocks)
            self._sr_sent = (ntp_middle32(ntp), now)
        else:
            report = ReceiverReport(self.ssrc, blocks)
        packets: list[RtcpPacket] = [report, SourceDescription.for_cname(self.ssrc, self.config.cname)]
        if tail is not None:
            packets.append(tail)
        return serialize_compound(packets)

    # -- outputs ------------------------------------------------------------------------------------------

    def next_event(self) -> SessionEvent | None:
        return self._events.pop(0) if self._events else None

    def stats(self) -> SessionStats:
        jb = self._jitter.stats()
        return SessionStats(
            received=self._rx.received, expected=self._rx.expected, lost=max(self._rx.lost, 0),
            jitter_ms=self._rx.jitter_ms, late=jb.late, duplicate=jb.duplicate, reordered=jb.reordered,
            concealed_frames=jb.concealed_frames, jitter_delay_ms=jb.delay_ms, malformed=self._n.malformed,
            foreign=self._n.foreign, unknown_payload=self._n.unknown_payload,
            rtcp_received=self._n.rtcp_received, packets_sent=self._out.packets_sent,
            octets_sent=self._out.octets_sent, rtt_ms=None if self._n.rtt is None else self._n.rtt * 1000,
        )


__all__ = ["MediaTimeout", "RemoteBye", "RtpSession", "SessionConfig", "SessionEvent", "SessionStats",
           "SourceLatched"]
