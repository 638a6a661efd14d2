"""The narrow streaming interfaces every speech provider implements, and the values they exchange.

Audio inside the agent is 20 ms frames of 16 kHz mono int16 PCM (320 samples). Times in events are seconds of
stream audio counted from the first pushed sample, so they are exact whatever the transport delay; the pipeline
maps them onto the call's clock.

Speech to text::

    stream = await stt.open(call_id)
    stream.push(frame)                      # never blocks; called once per 20 ms frame
    async for event in stream.events():     # PARTIAL, FINAL and the turn events, in order
        ...
    await stream.close()

Text to speech::

    tts_stream = tts.synthesize("Hello, thanks for calling.")
    async for chunk in tts_stream:          # AudioChunk(pcm, sample_rate, encoding) as soon as each is ready
        ...
    tts_stream.cancel()                     # barge-in: no chunk is yielded after this returns
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "AudioChunk",
    "AudioEncoding",
    "Int16Array",
    "SpeechToText",
    "SttCapabilities",
    "SttEvent",
    "SttEventKind",
    "SttStream",
    "TextToSpeech",
    "TtsCapabilities",
    "TtsStream",
]

Int16Array = npt.NDArray[np.int16]
AudioEncoding = Literal["pcm16", "mulaw"]


class SttEventKind(enum.Enum):
    PARTIAL = "partial"
    """Interim hypothesis of the utterance in progress; later ones replace earlier ones."""
    FINAL = "final"
    """The settled transcript of one utterance."""
    START_OF_TURN = "start_of_turn"
    """The caller started speaking."""
    EAGER_END_OF_TURN = "eager_end_of_turn"
    """The caller has probably finished: a reply may be prepared speculatively (it may be followed by TURN_RESUMED)."""
    TURN_RESUMED = "turn_resumed"
    """The caller went on speaking after EAGER_END_OF_TURN: drop the speculative reply."""
    END_OF_TURN = "end_of_turn"
    """The caller has finished; ``text`` is the whole turn's transcript."""


@dataclass(frozen=True, slots=True)
class SttEvent:
    kind: SttEventKind
    text: str = ""
    """Transcript so far (PARTIAL, EAGER_END_OF_TURN) or settled (FINAL, END_OF_TURN); empty for the others."""
    start: float = 0.0
    """Start of the speech the event is about, in seconds of stream audio."""
    end: float = 0.0
    """End of the audio the event covers (for START_OF_TURN, where the onset was confirmed)."""
    confidence: float | None = None
    """The engine's confidence in ``text`` in [0, 1], when it reports one."""


@dataclass(frozen=True, slots=True)
class SttCapabilities:
    partials: bool
    """Emits PARTIAL events."""
    turn_events: bool
    """Emits START_OF_TURN and END_OF_TURN, so the pipeline may skip its own end-of-turn policy."""
    eager_end_of_turn: bool
    """Emits EAGER_END_OF_TURN and TURN_RESUMED."""


class SttStream(Protocol):
    def push(self, frame: Int16Array) -> None:
        """Queue one frame of 16 kHz int16 audio; never blocks (a stream that falls behind drops and counts)."""

    def events(self) -> AsyncIterator[SttEvent]:
        """The stream's events in order; ends after ``close()``, raises ``ProviderError`` if the engine fails."""

    async def close(self) -> None:
        """Release the stream; an utterance in progress is abandoned."""


class SpeechToText(Protocol):
    @property
    def capabilities(self) -> SttCapabilities: ...

    async def start(self) -> None:
        """Prepare the engine (load models, open pools); idempotent."""

    async def open(self, call_id: str) -> SttStream: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AudioChunk:
    pcm: npt.NDArray[np.int16] | npt.NDArray[np.uint8]
    """Mono samples: int16 for ``pcm16``, G.711 mu-law bytes (uint8) for ``mulaw``."""
    sample_rate: int
    encoding: AudioEncoding = "pcm16"

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


@dataclass(frozen=True, slots=True)
class TtsCapabilities:
    sample_rate: int
    encoding: AudioEncoding
    streaming: bool
    """Chunks arrive while later text is still being synthesized (else one chunk per request)."""


class TtsStream(Protocol):
    def __aiter__(self) -> AsyncIterator[AudioChunk]: ...

    async def __anext__(self) -> AudioChunk: ...

    def cancel(self) -> None:
        """Stop now: no chunk is yielded after this returns, and the engine stops working on the text."""

    async def aclose(self) -> None: ...


class TextToSpeech(Protocol):
    @property
    def capabilities(self) -> TtsCapabilities: ...

    async def start(self) -> None:
        """Prepare the engine (load voices, open pools); idempotent."""

    def synthesize(self, text: str) -> TtsStream:
        """Start synthesizing ``text``; work begins at the first ``__anext__``."""

    async def aclose(self) -> None: ...
