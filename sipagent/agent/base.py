"""What an agent sees of its call, and what the endpoint expects of an agent.

The endpoint builds one agent per answered call with a :class:`CallContext`. Audio arrives on the loop in
``on_audio`` every 20 ms (16 kHz int16, 320 samples): it must return in microseconds, so heavy work goes to
the agent's own task (``run``) or to worker processes. The agent speaks by pushing 16 kHz PCM into
``context.speech``; ``context.speech.flush()`` silences the line from the next frame (barge-in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rtp.jitter import FrameStatus
from sipagent.media import Pcm, SpeechBuffer


@dataclass(slots=True)
class CallContext:
    call_id: str
    caller: str
    """The caller's URI (From), for logs and personas."""
    called: str
    """The called URI (To / Request-URI user): which line or persona was dialled."""
    speech: SpeechBuffer
    hangup: Callable[[], None]
    """Ask the endpoint to end the call (BYE) once the speech buffer has played out."""
    transfer: Callable[[str], None]
    """Blind transfer to a SIP URI (REFER)."""
    log: Any
    record_dir: Path | None = None
    timeline: Callable[..., None] = field(default=lambda *a, **k: None)
    """``timeline(kind, **fields)``: one entry in the call's JSONL timeline (no-op without recording)."""


class Agent(Protocol):
    def on_audio(self, pcm: Pcm, now: float, status: FrameStatus) -> None: ...

    def on_dtmf(self, digit: str, now: float) -> None: ...

    async def run(self) -> None:
        """The agent's own work for the whole call; cancelled when the call ends."""


AgentFactory = Callable[[CallContext], Agent]

__all__ = ["Agent", "AgentFactory", "CallContext"]
