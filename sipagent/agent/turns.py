"""Turn-taking: who has the floor, as pure policy on an injected clock.

Sans-I/O: every input is a method call carrying ``now`` (seconds, the call's loop clock) and returns the commands
the agent must carry out, in order. Nothing here awaits, sleeps or reads a clock; timers are exposed as
``get_timer()`` / ``handle_timer(now)`` like aioquic's connection.

Rule 1: an input is first *classified* into a :class:`TurnInput` (a VAD offset with no recognizer turn open is
``NOISE_ENDED``; an empty end of turn is ``EMPTY_END``; acknowledgements about an utterance that is no longer
active are dropped). Rule 2: the pair (state, input) is looked up in ``TRANSITIONS``; a missing pair is an illegal
transition and raises :class:`TurnError` before anything changes. The handlers then only emit commands.

Beyond the four conversational states there are two closing ones: CLOSING (a must-deliver line such as the goodbye
or the transfer announcement is being spoken; the caller cannot interrupt it) and ENDED (HangUp or Transfer was
issued; every further input is ignored). Modelling them as states keeps barge-in and timers out of the closing
line by construction instead of by flags.

At most one agent utterance (greeting, reply, reprompt, line) is active at a time: every command that starts one is
preceded, in the same command list, by the CancelReply of the one it replaces.

Policy:

* Barge-in: the caller's voice counts from the start of its run of voiced frames (single unvoiced frames bridged)
  once the VAD has confirmed an onset; when it has been held ``min_barge_in_ms`` while an interruptible utterance
  is audible, FlushAudio and CancelReply come out of that same input. Shorter noises change nothing.
* Caller words while the agent has the floor that did not amount to a barge-in (a cough, "mm-hm") are dropped,
  transcript included. A committed reply that is not audible yet is not cancelled by the caller's voice: it
  answers a turn that has ended, and is interrupted as soon as it is audible if the caller is still talking.
* Speculation: EAGER_END_OF_TURN starts a reply that must not play; TURN_RESUMED (or the caller's held voice)
  cancels it; END_OF_TURN commits it when the words are the same, else cancels it and starts one on the final
  transcript. An empty final transcript commits the guess: the caller did speak, and it is all we have.
* Silence: ``reprompt_after_s`` in LISTENING brings a Reprompt, ``max_reprompts`` of them in a row a goodbye.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sipagent.errors import SipAgentError
from sipagent.providers.base import SttEvent, SttEventKind

__all__ = [
    "TRANSITIONS", "CancelReason", "CancelReply", "Command", "CommitReply", "EndReason", "FlushAudio", "Greet",
    "HangUp", "Line", "Reprompt", "SayGoodbye", "SayLine", "StartReply", "Transfer", "TurnConfig", "TurnError",
    "TurnInput", "TurnState", "TurnTaking",
]

_EPS = 1e-6  # float slack when comparing frame times that are sums of 0.02
_FRAME_S = 0.02
_NON_WORD = re.compile(r"[^\w']+")


def _words(text: str) -> list[str]:
    # Eager and final transcripts of cloud engines may differ in case and punctuation only.
    return _NON_WORD.sub(" ", text.lower()).split()


class TurnError(SipAgentError):
    """The turn machine was driven in a way its contract forbids (a bug in the caller, not in the call)."""


class TurnState(enum.Enum):
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    """An agent utterance is being prepared (speculatively or for real) and is not audible yet."""
    AGENT_SPEAKING = "agent_speaking"
    CLOSING = "closing"
    ENDED = "ended"


class TurnInput(enum.Enum):
    START = "start"
    VAD_ONSET = "vad_onset"
    VAD_OFFSET = "vad_offset"
    NOISE_ENDED = "noise_ended"
    """VAD offset while USER_SPEAKING with no recognizer turn open: it was not speech after all."""
    BARGE_IN = "barge_in"
    """Caller voice held for ``min_barge_in_ms`` while an interruptible utterance is active."""
    START_OF_TURN = "start_of_turn"
    TRANSCRIPT = "transcript"
    EAGER_END = "eager_end"
    TURN_RESUMED = "turn_resumed"
    END_OF_TURN = "end_of_turn"
    EMPTY_END = "empty_end"
    SPEECH_STARTED = "speech_started"
    SPEECH_FINISHED = "speech_finished"
    REPLY_CLOSES = "reply_closes"
    """The active reply ends the call (hang up, or transfer to the configured operator) once played."""
    REPLY_NEEDS_OPERATOR = "reply_needs_operator"
    REPROMPT_DUE = "reprompt_due"
    SILENCE_LIMIT = "silence_limit"
    MAX_DURATION = "max_duration"
    CLOSING_TIMEOUT = "closing_timeout"
    OPERATOR_REQUESTED = "operator_requested"
    OPERATOR_MISSING = "operator_missing"
    DIGIT = "digit"


class Line(enum.Enum):
    NO_OPERATOR = "no_operator"
    TRANSFER = "transfer"


class EndReason(enum.Enum):
    GOODBYE = "goodbye"
    """The reply policy said goodbye."""
    SILENCE = "silence"
    MAX_DURATION = "max_duration"


CancelReason = Literal["barge_in", "resumed", "restart", "interrupted", "timeout"]


@dataclass(frozen=True, slots=True)
class Greet:
    turn_id: int


@dataclass(frozen=True, slots=True)
class StartReply:
    turn_id: int
    text: str
    """The caller's transcript to answer."""
    speculative: bool
    """Prepare but do not play until CommitReply (started on EAGER_END_OF_TURN)."""


@dataclass(frozen=True, slots=True)
class CommitReply:
    turn_id: int


@dataclass(frozen=True, slots=True)
class CancelReply:
    turn_id: int
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class FlushAudio:
    """Drop every agent sample not yet sent, now (barge-in)."""


@dataclass(frozen=True, slots=True)
class Reprompt:
    turn_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class SayGoodbye:
    turn_id: int
    reason: EndReason


@dataclass(frozen=True, slots=True)
class SayLine:
    turn_id: int
    line: Line


@dataclass(frozen=True, slots=True)
class HangUp:
    reason: EndReason


@dataclass(frozen=True, slots=True)
class Transfer:
    target: str


Command = (Greet | StartReply | CommitReply | CancelReply | FlushAudio | Reprompt | SayGoodbye | SayLine | HangUp
           | Transfer)


@dataclass(frozen=True, slots=True)
class TurnConfig:
    min_barge_in_ms: int = 120
    """Caller voice must be held this long before it interrupts the agent. webrtcvad's hangover stretches a click
    to 80 ms of voiced frames and a 50 ms noise burst to 100 ms (measured), so 120 ms rejects both while a word
    still interrupts 60 ms after the VAD confirms its onset."""
    barge_in_gap_ms: int = 40
    """An unvoiced run this long breaks the held voice (single unvoiced frames inside speech are bridged)."""
    greeting_interruptible: bool = True
    speculative: bool = True
    """Start replies on EAGER_END_OF_TURN (commit or restart on END_OF_TURN)."""
    reprompt_after_s: float = 8.0
    max_reprompts: int = 2
    """Reprompts in a row before the agent says goodbye and hangs up."""
    max_call_s: float | None = 600.0
    closing_timeout_s: float = 20.0
    """Hang up (or transfer) anyway if a closing line has not played out by then."""
    operator_digit: str = "0"
    operator_uri: str | None = None
    """Transfer target for the operator digit and the "talk to a human" intent; None: say there is none."""

    def __post_init__(self) -> None:
        if self.min_barge_in_ms < 0 or self.barge_in_gap_ms <= 0:
            raise ValueError("TurnConfig: min_barge_in_ms must be >= 0 and barge_in_gap_ms > 0")
        if self.reprompt_after_s <= 0 or self.max_reprompts < 0 or self.closing_timeout_s <= 0:
            raise ValueError("TurnConfig: reprompt_after_s and closing_timeout_s must be > 0, max_reprompts >= 0")
        if self.max_call_s is not None and self.max_call_s <= 0:
            raise ValueError("TurnConfig: max_call_s must be > 0 (or None)")


_L, _U, _T, _A, _C, _E = TurnState
_I = TurnInput

# Rule 2: the whole of turn-taking as data. Inputs a state does not list are illegal there.
_CALLER_INPUTS_IGNORED = (_I.VAD_ONSET, _I.VAD_OFFSET, _I.START_OF_TURN, _I.TRANSCRIPT, _I.EAGER_END,
                          _I.TURN_RESUMED, _I.END_OF_TURN, _I.EMPTY_END, _I.DIGIT)
_INTERRUPTIONS = {_I.MAX_DURATION: _C, _I.OPERATOR_REQUESTED: _C, _I.OPERATOR_MISSING: _T}
TRANSITIONS: dict[TurnState, dict[TurnInput, TurnState]] = {
    _L: {_I.START: _T, _I.VAD_ONSET: _U, _I.VAD_OFFSET: _L, _I.START_OF_TURN: _U, _I.TRANSCRIPT: _U,
         _I.EAGER_END: _T, _I.TURN_RESUMED: _U, _I.END_OF_TURN: _T, _I.EMPTY_END: _L, _I.DIGIT: _L,
         _I.REPROMPT_DUE: _T, _I.SILENCE_LIMIT: _C, **_INTERRUPTIONS},
    _U: {_I.VAD_ONSET: _U, _I.VAD_OFFSET: _U, _I.NOISE_ENDED: _L, _I.START_OF_TURN: _U, _I.TRANSCRIPT: _U,
         _I.EAGER_END: _T, _I.TURN_RESUMED: _U, _I.END_OF_TURN: _T, _I.EMPTY_END: _L, _I.DIGIT: _U,
         **_INTERRUPTIONS},
    _T: {**{i: _T for i in _CALLER_INPUTS_IGNORED}, _I.BARGE_IN: _U, _I.TURN_RESUMED: _U,
         _I.SPEECH_STARTED: _A, _I.SPEECH_FINISHED: _L, _I.REPLY_CLOSES: _C, _I.REPLY_NEEDS_OPERATOR: _T,
         **_INTERRUPTIONS},
    _A: {**{i: _A for i in _CALLER_INPUTS_IGNORED}, _I.BARGE_IN: _U, _I.SPEECH_FINISHED: _L,
         _I.REPLY_CLOSES: _C, _I.REPLY_NEEDS_OPERATOR: _T, **_INTERRUPTIONS},
    _C: {**{i: _C for i in _CALLER_INPUTS_IGNORED}, _I.SPEECH_STARTED: _C, _I.SPEECH_FINISHED: _E,
         _I.CLOSING_TIMEOUT: _E},
    _E: {},  # absorbing: inputs are dropped before the table is consulted
}


@dataclass(slots=True)
class _Utterance:
    turn_id: int
    text: str
    """The caller's transcript a reply answers ("" for the agent's own lines)."""
    speculative: bool
    interruptible: bool
    audible: bool = False
    after: HangUp | Transfer | None = None
    """What to do once this (closing) utterance has played out."""


class TurnTaking:
    """One call's turn-taking policy; see the module docstring for the rules."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        self.config = config = config or TurnConfig()
        self.state = TurnState.LISTENING
        self._active: _Utterance | None = None
        self._ids = 0
        self._started = False
        self._stt_turn_open = False
        self.caller_speaking = False
        """Whether the loop VAD is inside a speech segment (between onset and offset)."""
        self._run_start: float | None = None  # start of the current held run of voiced frames
        self._gap_start: float | None = None
        self._last_frame: float | None = None
        self._min_barge = config.min_barge_in_ms / 1000 - _EPS
        self._gap = config.barge_in_gap_ms / 1000 - _EPS
        self._reprompts = 0
        self.last_input: TurnInput | None = None
        """The latest input as classified (for logs, tests and diagrams)."""
        self._silence_at: float | None = None
        self._max_at: float | None = None
        self._closing_at: float | None = None

    @property
    def active_turn(self) -> int | None:
        return None if self._active is None else self._active.turn_id

    @property
    def voice_since(self) -> float | None:
        """Start of the caller's current held voice (what a barge-in measures), if any."""
        return self._run_start

    # -- inputs -------------------------------------------------------------------------------------------------

    def start(self, now: float) -> list[Command]:
        """The call is answered: greet, and start the call-duration clock."""
        if self._started:
            raise TurnError("start() called twice")
        nxt = self._check(_I.START)
        self._started = True
        if self.config.max_call_s is not None:
            self._max_at = now + self.config.max_call_s
        return self._begin(nxt, now, lambda i: Greet(i), interruptible=self.config.greeting_interruptible)

    def on_vad_frame(self, voiced: bool, now: float) -> list[Command]:
        """Every frame's raw voiced decision: tracks how long the caller's voice has been held."""
        prev, self._last_frame = self._last_frame, now
        if voiced:
            self._gap_start = None
            if self._run_start is None:
                self._run_start = now - _FRAME_S if prev is None else prev
            return self._barge_in(now)
        if self._run_start is not None:
            if self._gap_start is None:
                self._gap_start = now - _FRAME_S if prev is None else prev
            if now - self._gap_start >= self._gap:
                self._run_start = self._gap_start = None
        return []

    def on_vad_onset(self, at: float, now: float) -> list[Command]:
        self.caller_speaking = True
        if self._run_start is None or at < self._run_start:
            self._run_start = at
        return self._input(_I.VAD_ONSET, now) + self._barge_in(now)

    def on_vad_offset(self, at: float, now: float) -> list[Command]:
        self.caller_speaking = False
        self._run_start = self._gap_start = None
        noise = self.state is _U and not self._stt_turn_open
        return self._input(_I.NOISE_ENDED if noise else _I.VAD_OFFSET, now)

    def on_stt_event(self, event: SttEvent, now: float) -> list[Command]:
        kind, text = event.kind, event.text.strip()
        if kind is SttEventKind.START_OF_TURN:
            self._stt_turn_open = True
            return self._input(_I.START_OF_TURN, now)
        if kind is SttEventKind.END_OF_TURN:
            self._stt_turn_open = False
            return self._input(_I.END_OF_TURN if text else _I.EMPTY_END, now, text)
        if kind is SttEventKind.EAGER_END_OF_TURN and text and self.config.speculative:
            return self._input(_I.EAGER_END, now, text)
        if kind is SttEventKind.TURN_RESUMED and (self.state is not _T or self._speculating()):
            return self._input(_I.TURN_RESUMED, now)
        # PARTIAL, FINAL, an empty eager guess, a resumption of a turn nobody speculated on: text only.
        return self._input(_I.TRANSCRIPT, now)

    def on_dtmf(self, digit: str, now: float) -> list[Command]:
        if digit != self.config.operator_digit or self.state in (_C, _E):
            return self._input(_I.DIGIT, now)
        return self._input(_I.OPERATOR_REQUESTED if self.config.operator_uri else _I.OPERATOR_MISSING, now)

    def on_agent_speech_started(self, turn_id: int, now: float) -> list[Command]:
        """The first sample of utterance ``turn_id`` went into the speech buffer."""
        active = self._current(turn_id)
        if active is None or active.audible:
            return []
        return self._input(_I.SPEECH_STARTED, now)

    def on_agent_speech_finished(self, turn_id: int, now: float) -> list[Command]:
        """Utterance ``turn_id`` has played out (or produced no audio at all)."""
        if self._current(turn_id) is None:
            return []
        return self._input(_I.SPEECH_FINISHED, now)

    def on_reply_action(self, turn_id: int, action: Literal["hangup", "transfer"], now: float) -> list[Command]:
        """The (committed) reply ``turn_id`` ends the call once played: hang up, or transfer to the operator."""
        if self._current(turn_id) is None or self.state is _C:
            return []
        if action == "transfer" and not self.config.operator_uri:
            return self._input(_I.REPLY_NEEDS_OPERATOR, now)
        assert self._active is not None
        after = HangUp(EndReason.GOODBYE) if action == "hangup" else Transfer(str(self.config.operator_uri))
        nxt = self._check(_I.REPLY_CLOSES)
        self._active.after = after
        self._active.interruptible = False
        return self._enter(nxt, now, [])

    def get_timer(self) -> float | None:
        state = self.state  # called every frame: no allocations
        if state is _E:
            return None
        if state is _C:
            return self._closing_at
        longest, silence = self._max_at, self._silence_at if state is _L else None
        if longest is None or (silence is not None and silence < longest):
            return silence
        return longest

    def handle_timer(self, now: float) -> list[Command]:
        commands: list[Command] = []
        while (deadline := self.get_timer()) is not None and deadline <= now:
            if self.state is _C:
                commands += self._input(_I.CLOSING_TIMEOUT, now)
            elif self._max_at is not None and self._max_at <= now:
                commands += self._input(_I.MAX_DURATION, now)
            else:
                limit = self._reprompts >= self.config.max_reprompts
                commands += self._input(_I.SILENCE_LIMIT if limit else _I.REPROMPT_DUE, now)
        return commands

    # -- rules --------------------------------------------------------------------------------------------------

    def _check(self, what: TurnInput) -> TurnState:
        nxt = TRANSITIONS[self.state].get(what)
        if nxt is None:
            raise TurnError(f"illegal turn input {what.name} in state {self.state.name}")
        self.last_input = what
        return nxt

    def _current(self, turn_id: int) -> _Utterance | None:
        active = self._active
        if active is None or active.turn_id != turn_id or self.state is _E:
            return None  # stale: the utterance was cancelled or replaced meanwhile
        if active.speculative:
            raise TurnError(f"utterance {turn_id} is a speculative reply that was never committed")
        return active

    def _speculating(self) -> bool:
        return self._active is not None and self._active.speculative

    def _barge_in(self, now: float) -> list[Command]:
        active = self._active
        if (active is None or not active.interruptible or not self.caller_speaking or self._run_start is None
                or now - self._run_start < self._min_barge):
            return []
        # While THINKING only a speculative reply yields to the caller's voice: a committed one answers a turn
        # that has ended, so it plays and is interrupted once audible if the caller is still talking.
        if self.state is _A or (self.state is _T and active.speculative):
            return self._input(_I.BARGE_IN, now)
        return []

    def _input(self, what: TurnInput, now: float, text: str = "") -> list[Command]:
        if self.state is _E:
            return []
        nxt = self._check(what)
        commands: list[Command] = []
        active = self._active
        match what:
            case _I.BARGE_IN:
                commands = self._drop("barge_in")
            case _I.TURN_RESUMED if self.state is _T:
                commands = self._drop("resumed")
            case _I.EAGER_END if self.state in (_L, _U):
                return self._begin(nxt, now, lambda i: StartReply(i, text, True), text=text, speculative=True)
            case _I.END_OF_TURN if self.state in (_L, _U):
                self._reprompts = 0
                return self._begin(nxt, now, lambda i: StartReply(i, text, False), text=text)
            case _I.END_OF_TURN | _I.EMPTY_END if self.state is _T and active is not None and active.speculative:
                self._reprompts = 0
                if what is _I.EMPTY_END or _words(text) == _words(active.text):
                    # The final transcript confirms the guess (an empty final keeps the eager one: it is the only
                    # transcript of speech that did happen).
                    active.speculative = False
                    commands = [CommitReply(active.turn_id)]
                else:
                    commands = self._drop("restart")
                    return self._begin(nxt, now, lambda i: StartReply(i, text, False), commands, text=text)
            case _I.SPEECH_STARTED:
                assert active is not None
                active.audible = True
            case _I.SPEECH_FINISHED:
                assert active is not None
                self._active = None
                if active.after is not None:
                    commands = [active.after]
            case _I.CLOSING_TIMEOUT:
                assert active is not None
                commands = [*self._drop("timeout"), active.after or HangUp(EndReason.GOODBYE)]
            case _I.REPLY_NEEDS_OPERATOR:
                return self._begin(nxt, now, lambda i: SayLine(i, Line.NO_OPERATOR), self._drop("interrupted"))
            case _I.OPERATOR_MISSING:
                return self._begin(nxt, now, lambda i: SayLine(i, Line.NO_OPERATOR), self._drop("interrupted"))
            case _I.OPERATOR_REQUESTED:
                return self._begin(nxt, now, lambda i: SayLine(i, Line.TRANSFER), self._drop("interrupted"),
                                   after=Transfer(str(self.config.operator_uri)))
            case _I.MAX_DURATION:
                return self._begin(nxt, now, lambda i: SayGoodbye(i, EndReason.MAX_DURATION),
                                   self._drop("interrupted"), after=HangUp(EndReason.MAX_DURATION))
            case _I.SILENCE_LIMIT:
                return self._begin(nxt, now, lambda i: SayGoodbye(i, EndReason.SILENCE),
                                   after=HangUp(EndReason.SILENCE))
            case _I.REPROMPT_DUE:
                self._reprompts += 1
                attempt = self._reprompts
                return self._begin(nxt, now, lambda i: Reprompt(i, attempt))
        return self._enter(nxt, now, commands)

    def _drop(self, reason: CancelReason) -> list[Command]:
        active, self._active = self._active, None
        if active is None:
            return []
        cancel = CancelReply(active.turn_id, reason)
        return [FlushAudio(), cancel] if active.audible else [cancel]

    def _begin(self, nxt: TurnState, now: float, make: Callable[[int], Command],
               commands: list[Command] | None = None, *, text: str = "", speculative: bool = False,
               interruptible: bool = True, after: HangUp | Transfer | None = None) -> list[Command]:
        if self._active is not None:
            raise TurnError(f"utterance {self._active.turn_id} is still active")  # a rule above forgot to drop it
        self._ids += 1
        closing = nxt is _C
        self._active = _Utterance(self._ids, text, speculative, interruptible and not closing, after=after)
        return self._enter(nxt, now, [*(commands or []), make(self._ids)])

    def _enter(self, nxt: TurnState, now: float, commands: list[Command]) -> list[Command]:
        prev, self.state = self.state, nxt
        if nxt is _L and prev is not _L:
            self._silence_at = now + self.config.reprompt_after_s
        elif nxt is not _L:
            self._silence_at = None
        if nxt is _C and prev is not _C:
            self._closing_at = now + self.config.closing_timeout_s
        return commands
