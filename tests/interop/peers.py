"""The interop harness in one import: real third-party SIP peers on 127.0.0.1, run from asyncio tests.

Peers: :class:`Sipp` (scenarios in ``tests/interop/scenarios``), :class:`Kamailio` (registrar and record-routing
proxy, optional digest auth), :class:`Baresip` (a softphone with a WAV microphone and recordings) and
:class:`Tshark` (capture on ``lo``). Each is an async context manager that starts the program, waits until it
is ready (a bound socket, a log line or a SIP answer, against a deadline) and always stops it on the way out,
killing its process group if it will not stop.

``require_peer`` skips a test when a program is missing, or fails it when CI demands peers
(SIPAGENT_REQUIRE_PEERS=1, see ``tests/conftest.py``).
"""

from __future__ import annotations

from tests.conftest import require_root, require_tool
from tests.interop.audio import (
    FRAME,
    RATE,
    read_wav,
    similarity,
    speech_like,
    tone_bursts,
    ulaw_decode,
    ulaw_encode,
    write_rtp_pcap,
    write_wav,
)
from tests.interop.baresip import Baresip, Recordings
from tests.interop.kamailio import Kamailio, kamailio_config
from tests.interop.procs import (
    LOOPBACK,
    PeerError,
    PeerProcess,
    free_port,
    free_ports,
    require_loopback,
    sip_options_ping,
    udp_port_bound,
    wait_until,
)
from tests.interop.sipp import SCENARIOS, SipMessage, Sipp, SippResult, parse_message_trace
from tests.interop.tshark import RtpStream, Tshark, parse_rtp_streams, rtp_streams

__all__ = [
    "FRAME",
    "LOOPBACK",
    "RATE",
    "SCENARIOS",
    "Baresip",
    "Kamailio",
    "PeerError",
    "PeerProcess",
    "Recordings",
    "RtpStream",
    "SipMessage",
    "Sipp",
    "SippResult",
    "Tshark",
    "free_port",
    "free_ports",
    "kamailio_config",
    "parse_message_trace",
    "parse_rtp_streams",
    "read_wav",
    "require_loopback",
    "require_peer",
    "require_root",
    "require_tool",
    "rtp_streams",
    "similarity",
    "sip_options_ping",
    "speech_like",
    "tone_bursts",
    "udp_port_bound",
    "ulaw_decode",
    "ulaw_encode",
    "wait_until",
    "write_rtp_pcap",
    "write_wav",
]

_PROGRAMS = {"sipp": ("sipp",), "kamailio": ("kamailio", "kamcmd"), "baresip": ("baresip",), "tshark": ("tshark",)}


def require_peer(*names: str) -> None:
    """``require_tool`` for each program a peer needs ("sipp", "kamailio", "baresip", "tshark")."""
    for name in names:
        for program in _PROGRAMS.get(name, (name,)):
            require_tool(program)
