"""Turn-taking machine: every transition of the table, barge-in timing, speculative replies, reprompts, closing,
DTMF, and random input sequences (hypothesis) that never break its invariants. Time is virtual throughout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipagent.agent.turns import (
    TRANSITIONS,
    CancelReply,
    Command,
    CommitReply,
    EndReason,
    FlushAudio,
    Greet,
    HangUp,
    Line,
    Reprompt,
    SayGoodbye,
    SayLine,
    StartReply,
    Transfer,
    TurnConfig,
    TurnError,
    TurnInput,
    TurnState,
    TurnTaking,
)
from sipagent.providers.base import SttEvent, SttEventKind

pytestmark = pytest.mark.unit

HOURS = "what are your opening hours"
OPERATOR = "sip:operator@127.0.0.1"
FRAME = 0.02
L, U, T, A, C, E = TurnState


def ev(kind: SttEventKind, text: str = "") -> SttEvent:
    return SttEvent(kind, text)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def tick(self, seconds: float = FRAME) -> float:
        self.now += seconds
        return self.now


# -- scenarios that bring a machine into each state -------------------------------------------------------------

def listening(m: TurnTaking, c: Clock) -> None:
    assert m.start(c.now) == [Greet(1)]
    m.on_agent_speech_started(1, c.tick())
    m.on_agent_speech_finished(1, c.tick())
    assert m.state is L


def user_speaking(m: TurnTaking, c: Clock) -> None:
    listening(m, c)
    m.on_vad_onset(c.now, c.tick(0.06))
    assert m.state is U


def thinking(m: TurnTaking, c: Clock) -> None:
    user_speaking(m, c)
    m.on_stt_event(ev(SttEventKind.START_OF_TURN), c.tick())
    m.on_vad_offset(c.now, c.tick(0.4))
    assert m.on_stt_event(ev(SttEventKind.END_OF_TURN, HOURS), c.tick()) == [StartReply(2, HOURS, False)]
    assert m.state is T


def speculating(m: TurnTaking, c: Clock) -> None:
    user_speaking(m, c)
    m.on_stt_event(ev(SttEventKind.START_OF_TURN), c.tick())
    assert m.on_stt_event(ev(SttEventKind.EAGER_END_OF_TURN, HOURS), c.tick()) == [StartReply(2, HOURS, True)]
    assert m.state is T


def agent_speaking(m: TurnTaking, c: Clock) -> None:
    thinking(m, c)
    m.on_agent_speech_started(2, c.tick())
    assert m.state is A


def closing(m: TurnTaking, c: Clock) -> None:
    thinking(m, c)
    m.on_reply_action(2, "hangup", c.tick())
    assert m.state is C


def ended(m: TurnTaking, c: Clock) -> None:
    closing(m, c)
    assert m.on_agent_speech_finished(2, c.tick()) == [HangUp(EndReason.GOODBYE)]
    assert m.state is E


SCENARIOS: dict[TurnState, Callable[[TurnTaking, Clock], None]] = {
    L: listening, U: user_speaking, T: thinking, A: agent_speaking, C: closing, E: ended,
}


# -- how to produce each classified input ---------------------------------------------------------------------

def drive(m: TurnTaking, c: Clock, what: TurnInput) -> list[Command]:
    now = c.tick()
    match what:
        case TurnInput.START:
            return m.start(now)
        case TurnInput.VAD_ONSET:
            return m.on_vad_onset(now - 0.06, now)  # 60 ms held: below the barge-in minimum
        case TurnInput.VAD_OFFSET:
            if m.state is U:
                m.on_stt_event(ev(SttEventKind.START_OF_TURN), now)  # a recognizer turn is open
            return m.on_vad_offset(now - 0.4, now)
        case TurnInput.NOISE_ENDED:
            return m.on_vad_offset(now - 0.4, now)
        case TurnInput.BARGE_IN:
            return m.on_vad_onset(now - 0.2, now)
        case TurnInput.START_OF_TURN:
            return m.on_stt_event(ev(SttEventKind.START_OF_TURN), now)
        case TurnInput.TRANSCRIPT:
            return m.on_stt_event(ev(SttEventKind.PARTIAL, "what are"), now)
        case TurnInput.EAGER_END:
            return m.on_stt_event(ev(SttEventKind.EAGER_END_OF_TURN, "goodbye"), now)
        case TurnInput.TURN_RESUMED:
            return m.on_stt_event(ev(SttEventKind.TURN_RESUMED), now)
        case TurnInput.END_OF_TURN:
            return m.on_stt_event(ev(SttEventKind.END_OF_TURN, "goodbye"), now)
        case TurnInput.EMPTY_END:
            return m.on_stt_event(ev(SttEventKind.END_OF_TURN, ""), now)
        case TurnInput.SPEECH_STARTED:
            assert m.active_turn is not None
            return m.on_agent_speech_started(m.active_turn, now)
        case TurnInput.SPEECH_FINISHED:
            assert m.active_turn is not None
            return m.on_agent_speech_finished(m.active_turn, now)
        case TurnInput.REPLY_CLOSES:
            assert m.active_turn is not None
            return m.on_reply_action(m.active_turn, "hangup", now)
        case TurnInput.REPLY_NEEDS_OPERATOR:
            assert m.active_turn is not None
            return m.on_reply_action(m.active_turn, "transfer", now)
        case TurnInput.OPERATOR_REQUESTED | TurnInput.OPERATOR_MISSING:
            return m.on_dtmf("0", now)
        case TurnInput.DIGIT:
            return m.on_dtmf("5", now)
        case _:  # the timers
            deadline = m.get_timer()
            assert deadline is not None
            c.now = max(c.now, deadline)
            return m.handle_timer(c.now)


def config_for(what: TurnInput) -> TurnConfig:
    return TurnConfig(
        operator_uri=OPERATOR if what is TurnInput.OPERATOR_REQUESTED else None,
        max_call_s=5.0 if what is TurnInput.MAX_DURATION else None,  # every scenario is over by t = 5 s
        max_reprompts=0 if what is TurnInput.SILENCE_LIMIT else 2,
    )


TABLE = [(state, what, nxt) for state, row in TRANSITIONS.items() for what, nxt in row.items()]


@pytest.mark.parametrize(("state", "what", "expected"), TABLE, ids=[f"{s.name}-{i.name}" for s, i, _ in TABLE])
def test_every_transition_of_the_table(state: TurnState, what: TurnInput, expected: TurnState) -> None:
    m, c = TurnTaking(config_for(what)), Clock()
    if what is not TurnInput.START:
        # Barge-in and resumption in THINKING concern a speculative reply; everything else a committed one.
        speculative = state is T and what in (TurnInput.BARGE_IN, TurnInput.TURN_RESUMED)
        (speculating if speculative else SCENARIOS[state])(m, c)
    drive(m, c, what)
    assert m.last_input is what
    assert m.state is expected


def test_every_state_is_reachable_and_ended_absorbs_everything() -> None:
    targets = {nxt for row in TRANSITIONS.values() for nxt in row.values()}
    assert targets | {L} == set(TurnState)
    m, c = TurnTaking(TurnConfig(operator_uri=OPERATOR)), Clock()
    ended(m, c)
    assert m.on_vad_onset(c.now - 1, c.tick()) == [] and m.on_dtmf("0", c.tick()) == []
    assert m.on_stt_event(ev(SttEventKind.END_OF_TURN, HOURS), c.tick()) == [] and m.get_timer() is None


def test_illegal_inputs_raise_before_changing_anything() -> None:
    m, c = TurnTaking(), Clock()
    listening(m, c)
    with pytest.raises(TurnError, match="twice"):
        m.start(c.tick())
    speculating(fresh := TurnTaking(), c)
    with pytest.raises(TurnError, match="speculative"):
        fresh.on_agent_speech_started(2, c.tick())  # a speculative reply must be committed before it is heard
    assert fresh.state is T and fresh.active_turn == 2


# -- barge-in ---------------------------------------------------------------------------------------------------

def test_barge_in_within_the_same_input_flushes_first() -> None:
    m, c = TurnTaking(), Clock()
    agent_speaking(m, c)
    now = c.tick()
    # An onset whose speech began 140 ms ago (> min_barge_in_ms) decides at once, in this very call.
    assert m.on_vad_onset(now - 0.14, now) == [FlushAudio(), CancelReply(2, "barge_in")]
    assert m.state is U and m.active_turn is None


def frames(m: TurnTaking, c: Clock, pattern: str) -> list[tuple[float, list[Command]]]:
    """Feed 20 ms frames ('v' voiced, '.' not), confirming the VAD onset on the third voiced frame as
    webrtcvad's hysteresis does (60 ms of voice, dated at the first voiced frame)."""
    out = []
    first: float | None = None
    voiced = 0
    for mark in pattern:
        now = c.tick()
        commands = m.on_vad_frame(mark == "v", now)
        if mark == "v":
            voiced += 1
            first = now - FRAME if first is None else first
            if voiced == 3:
                assert first is not None
                commands += m.on_vad_onset(first, now)
        out.append((now, commands))
    return out


@pytest.mark.parametrize("min_ms", [60, 120, 200])
def test_barge_in_fires_on_the_frame_that_completes_min_barge_in(min_ms: int) -> None:
    m, c = TurnTaking(TurnConfig(min_barge_in_ms=min_ms)), Clock()
    agent_speaking(m, c)
    start = c.now
    decided = [(now, cmds) for now, cmds in frames(m, c, "v" * 20) if cmds]
    assert len(decided) == 1
    now, commands = decided[0]
    assert commands == [FlushAudio(), CancelReply(2, "barge_in")]
    # The voice began at `start`; the decision comes with the frame ending min_ms later (not before the onset is
    # confirmed, 60 ms in).
    assert now - start == pytest.approx(max(min_ms, 60) / 1000)


@pytest.mark.parametrize("voiced_ms", [80, 100])
def test_a_short_noise_below_the_minimum_does_not_interrupt(voiced_ms: int) -> None:
    # 80 ms and 100 ms are the voiced spans webrtcvad reports for a click and a 50 ms noise burst (vad.py notes).
    m, c = TurnTaking(), Clock()
    agent_speaking(m, c)
    results = frames(m, c, "v" * (voiced_ms // 20) + "." * 25)
    assert all(cmds == [] for _, cmds in results)
    assert m.on_vad_offset(c.now - 0.4, c.tick()) == []
    assert m.state is A and m.active_turn == 2


def test_single_unvoiced_frames_inside_speech_are_bridged_but_a_gap_restarts_the_count() -> None:
    m, c = TurnTaking(), Clock()
    agent_speaking(m, c)
    start = c.now
    decided = [now for now, cmds in frames(m, c, "vvv.vvvvvv") if cmds]
    assert decided and decided[0] - start == pytest.approx(0.12)
    m2, c2 = TurnTaking(), Clock()
    agent_speaking(m2, c2)
    start = c2.now
    # Three voiced, a 40 ms gap (held voice broken), then the count starts again from the fourth voiced frame.
    decided = [now for now, cmds in frames(m2, c2, "vvv..vvvvvvvv") if cmds]
    assert decided and decided[0] - start == pytest.approx(0.10 + 0.12)


def test_the_greeting_can_be_made_uninterruptible() -> None:
    m, c = TurnTaking(TurnConfig(greeting_interruptible=False)), Clock()
    m.start(c.now)
    m.on_agent_speech_started(1, c.tick())
    assert all(cmds == [] for _, cmds in frames(m, c, "v" * 50))
    assert m.state is A
    interruptible, c2 = TurnTaking(), Clock()
    interruptible.start(c2.now)
    interruptible.on_agent_speech_started(1, c2.tick())
    assert any(cmds == [FlushAudio(), CancelReply(1, "barge_in")] for _, cmds in frames(interruptible, c2, "v" * 10))


def test_a_committed_reply_is_not_cancelled_before_it_is_audible_then_interrupted_at_once() -> None:
    m, c = TurnTaking(), Clock()
    thinking(m, c)
    assert all(cmds == [] for _, cmds in frames(m, c, "v" * 10))  # the caller talks while the reply is prepared
    assert m.state is T
    m.on_agent_speech_started(2, c.tick())
    assert m.on_vad_frame(True, c.tick()) == [FlushAudio(), CancelReply(2, "barge_in")]


def test_words_while_the_agent_speaks_without_a_barge_in_are_ignored() -> None:
    m, c = TurnTaking(), Clock()
    agent_speaking(m, c)
    for kind, text in [(SttEventKind.START_OF_TURN, ""), (SttEventKind.FINAL, "no"), (SttEventKind.END_OF_TURN, "no")]:
        assert m.on_stt_event(ev(kind, text), c.tick()) == []
    assert m.state is A and m.active_turn == 2


# -- speculative replies ----------------------------------------------------------------------------------------

def test_speculative_reply_is_cancelled_when_the_caller_resumes_then_committed() -> None:
    m, c = TurnTaking(), Clock()
    speculating(m, c)
    assert m.on_stt_event(ev(SttEventKind.TURN_RESUMED), c.tick()) == [CancelReply(2, "resumed")]
    assert m.state is U
    assert m.on_stt_event(ev(SttEventKind.EAGER_END_OF_TURN, HOURS), c.tick()) == [StartReply(3, HOURS, True)]
    # Case and punctuation aside, the final transcript is the guess: the prepared reply is committed, not redone.
    assert m.on_stt_event(ev(SttEventKind.END_OF_TURN, "What are your opening hours?"), c.tick()) == [CommitReply(3)]
    assert m.state is T
    assert m.on_agent_speech_started(3, c.tick()) == [] and m.state is A


def test_speculative_reply_is_restarted_when_the_final_transcript_differs() -> None:
    m, c = TurnTaking(), Clock()
    speculating(m, c)
    final = "what are your opening hours on sunday"
    assert m.on_stt_event(ev(SttEventKind.END_OF_TURN, final), c.tick()) == [
        CancelReply(2, "restart"), StartReply(3, final, False)]


def test_speculation_can_be_switched_off() -> None:
    m, c = TurnTaking(TurnConfig(speculative=False)), Clock()
    user_speaking(m, c)
    assert m.on_stt_event(ev(SttEventKind.EAGER_END_OF_TURN, HOURS), c.tick()) == []
    assert m.on_stt_event(ev(SttEventKind.END_OF_TURN, HOURS), c.tick()) == [StartReply(2, HOURS, False)]


def test_a_noise_that_is_not_a_turn_returns_to_listening_and_rearms_the_silence_timer() -> None:
    m, c = TurnTaking(), Clock()
    user_speaking(m, c)
    assert m.get_timer() is not None and m.get_timer() == TurnConfig().max_call_s
    m.on_vad_offset(c.now, c.tick(0.5))
    assert m.state is L and m.get_timer() == pytest.approx(c.now + TurnConfig().reprompt_after_s)


# -- timers -----------------------------------------------------------------------------------------------------

def play(m: TurnTaking, c: Clock, turn_id: int) -> list[Command]:
    assert m.on_agent_speech_started(turn_id, c.tick()) == []
    return m.on_agent_speech_finished(turn_id, c.tick(1.0))


def test_reprompts_after_silence_then_goodbye_and_hang_up() -> None:
    cfg = TurnConfig(reprompt_after_s=8.0, max_reprompts=2, max_call_s=None)
    m, c = TurnTaking(cfg), Clock()
    listening(m, c)
    for attempt, turn_id in [(1, 2), (2, 3)]:
        deadline = m.get_timer()
        assert deadline == pytest.approx(c.now + 8.0)
        assert m.handle_timer(deadline - 0.001) == []  # not a moment early
        c.now = deadline
        assert m.handle_timer(c.now) == [Reprompt(turn_id, attempt)]
        assert play(m, c, turn_id) == [] and m.state is L
    c.now = m.get_timer() or 0.0
    assert m.handle_timer(c.now) == [SayGoodbye(4, EndReason.SILENCE)]
    assert m.state is C
    assert play(m, c, 4) == [HangUp(EndReason.SILENCE)]
    assert m.state is E and m.get_timer() is None


def test_a_caller_turn_resets_the_reprompt_count() -> None:
    m, c = TurnTaking(TurnConfig(max_reprompts=1, max_call_s=None)), Clock()
    listening(m, c)
    c.now = m.get_timer() or 0.0
    assert m.handle_timer(c.now) == [Reprompt(2, 1)]
    play(m, c, 2)
    m.on_stt_event(ev(SttEventKind.END_OF_TURN, HOURS), c.tick())
    play(m, c, 3)
    c.now = m.get_timer() or 0.0
    assert m.handle_timer(c.now) == [Reprompt(4, 1)]


def test_maximum_call_duration_interrupts_says_goodbye_and_hangs_up() -> None:
    m, c = TurnTaking(TurnConfig(max_call_s=60.0)), Clock()
    agent_speaking(m, c)
    assert m.get_timer() == 60.0
    c.now = 60.0
    assert m.handle_timer(c.now) == [FlushAudio(), CancelReply(2, "interrupted"),
                                      SayGoodbye(3, EndReason.MAX_DURATION)]
    m.on_agent_speech_started(3, c.tick())
    assert all(cmds == [] for _, cmds in frames(m, c, "v" * 20))  # the goodbye cannot be interrupted
    assert m.on_agent_speech_finished(3, c.tick()) == [HangUp(EndReason.MAX_DURATION)]


def test_a_closing_line_that_never_plays_out_still_ends_the_call() -> None:
    m, c = TurnTaking(TurnConfig(closing_timeout_s=20.0)), Clock()
    closing(m, c)
    m.on_agent_speech_started(2, c.tick())
    deadline = m.get_timer()
    assert deadline == pytest.approx(c.now - FRAME + 20.0)
    assert m.handle_timer(deadline or 0.0) == [FlushAudio(), CancelReply(2, "timeout"), HangUp(EndReason.GOODBYE)]


# -- actions and DTMF -------------------------------------------------------------------------------------------

def test_a_goodbye_reply_hangs_up_only_after_it_played_out() -> None:
    m, c = TurnTaking(), Clock()
    closing(m, c)
    assert m.on_agent_speech_started(2, c.tick()) == []
    assert all(cmds == [] for _, cmds in frames(m, c, "v" * 20))
    assert m.on_agent_speech_finished(2, c.tick()) == [HangUp(EndReason.GOODBYE)]


def test_operator_digit_transfers_after_the_announcement() -> None:
    m, c = TurnTaking(TurnConfig(operator_uri=OPERATOR)), Clock()
    agent_speaking(m, c)
    assert m.on_dtmf("0", c.tick()) == [FlushAudio(), CancelReply(2, "interrupted"), SayLine(3, Line.TRANSFER)]
    assert m.state is C
    assert play(m, c, 3) == [Transfer(OPERATOR)]


def test_operator_digit_without_an_operator_says_so_and_the_call_goes_on() -> None:
    m, c = TurnTaking(), Clock()
    listening(m, c)
    assert m.on_dtmf("0", c.tick()) == [SayLine(2, Line.NO_OPERATOR)]
    assert play(m, c, 2) == [] and m.state is L
    assert m.on_dtmf("7", c.tick()) == [] and m.state is L


def test_a_transfer_reply_without_an_operator_is_replaced_by_the_no_operator_line() -> None:
    m, c = TurnTaking(), Clock()
    thinking(m, c)
    assert m.on_reply_action(2, "transfer", c.tick()) == [CancelReply(2, "interrupted"), SayLine(3, Line.NO_OPERATOR)]
    with_operator, c2 = TurnTaking(TurnConfig(operator_uri=OPERATOR)), Clock()
    thinking(with_operator, c2)
    assert with_operator.on_reply_action(2, "transfer", c2.tick()) == []
    assert play(with_operator, c2, 2) == [Transfer(OPERATOR)]


def test_acknowledgements_of_a_cancelled_utterance_are_ignored() -> None:
    m, c = TurnTaking(), Clock()
    agent_speaking(m, c)
    m.on_vad_onset(c.now - 0.2, c.tick())
    assert m.on_agent_speech_finished(2, c.tick()) == [] and m.on_reply_action(2, "hangup", c.tick()) == []
    assert m.state is U


def test_config_is_checked() -> None:
    for bad in ({"reprompt_after_s": 0}, {"max_call_s": -1.0}, {"barge_in_gap_ms": 0}, {"max_reprompts": -1}):
        with pytest.raises(ValueError, match="TurnConfig"):
            TurnConfig(**bad)  # type: ignore[arg-type]


# -- property: any input sequence keeps the invariants -----------------------------------------------------------

TEXTS = ["", HOURS, "goodbye"]
STEP = st.one_of(
    st.tuples(st.just("frame"), st.booleans()),
    st.tuples(st.just("onset"), st.integers(0, 300)),
    st.tuples(st.just("offset"), st.just(0)),
    st.tuples(st.just("stt"), st.sampled_from(list(SttEventKind)), st.sampled_from(TEXTS)),
    st.tuples(st.just("dtmf"), st.sampled_from("05#")),
    st.tuples(st.sampled_from(["started", "finished", "hangup", "transfer"]), st.integers(0, 5)),
    st.tuples(st.just("timer"), st.just(0)),
    st.tuples(st.just("wait"), st.floats(0.0, 10.0)),
)


class Model:
    """What a correct agent knows from the commands: the active utterance, which are speculative or audible."""

    def __init__(self) -> None:
        self.active: int | None = None
        self.issued: list[int] = []
        self.replies: set[int] = set()
        self.speculative: set[int] = set()
        self.audible: set[int] = set()
        self.ended = False

    def apply(self, commands: list[Command]) -> None:
        for command in commands:
            assert not self.ended, f"{command} after the call ended"
            match command:
                case FlushAudio():
                    assert self.active in self.audible
                case CancelReply(turn_id=turn_id):
                    assert turn_id == self.active
                    self.active = None
                case CommitReply(turn_id=turn_id):
                    assert turn_id == self.active and turn_id in self.speculative
                    self.speculative.discard(turn_id)
                case HangUp() | Transfer():
                    self.ended = True
                case Greet(turn_id=i) | StartReply(turn_id=i) | Reprompt(turn_id=i) | SayGoodbye(turn_id=i) \
                        | SayLine(turn_id=i):
                    assert self.active is None, f"two active utterances: {self.active} and {i}"
                    self.active = i
                    self.issued.append(i)
                    if isinstance(command, StartReply):
                        self.replies.add(i)
                        if command.speculative:
                            self.speculative.add(i)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEP, max_size=80), operator=st.booleans(), greeting_interruptible=st.booleans(),
       speculative=st.booleans(), reprompts=st.integers(0, 2))
def test_random_inputs_never_break_the_rules(steps: list[tuple[object, ...]], operator: bool,
                                             greeting_interruptible: bool, speculative: bool, reprompts: int) -> None:
    cfg = TurnConfig(operator_uri=OPERATOR if operator else None, greeting_interruptible=greeting_interruptible,
                     speculative=speculative, max_reprompts=reprompts, max_call_s=120.0)
    m, c, model = TurnTaking(cfg), Clock(), Model()
    model.apply(m.start(c.now))
    for step in steps:
        kind = step[0]
        now = c.tick()
        commands: list[Command]
        if kind == "frame":
            commands = m.on_vad_frame(bool(step[1]), now)
        elif kind == "onset":
            commands = m.on_vad_onset(now - int(step[1]) / 1000, now)  # type: ignore[call-overload]
        elif kind == "offset":
            commands = m.on_vad_offset(now, now)
        elif kind == "stt":
            commands = m.on_stt_event(SttEvent(step[1], str(step[2])), now)  # type: ignore[arg-type]
        elif kind == "dtmf":
            commands = m.on_dtmf(str(step[1]), now)
        elif kind == "timer":
            deadline = m.get_timer()
            c.now = now = max(now, deadline or now)
            commands = m.handle_timer(now)
        elif kind == "wait":
            c.now += float(step[1])  # type: ignore[arg-type]
            commands = []
        else:
            # The agent acknowledges an utterance it was told about: the active one or a stale one, never a
            # speculative reply that was not committed, and reports actions only for replies.
            choices = [i for i in model.issued if i not in model.speculative]
            if kind in ("hangup", "transfer"):
                choices = [i for i in choices if i in model.replies]
            if not choices:
                continue
            turn_id = choices[int(step[1]) % len(choices)]  # type: ignore[call-overload]
            if kind == "started":
                commands = m.on_agent_speech_started(turn_id, now)
                if turn_id == model.active:
                    model.audible.add(turn_id)
            elif kind == "finished":
                was_active = turn_id == model.active
                commands = m.on_agent_speech_finished(turn_id, now)
                if was_active:
                    model.active = None
            else:
                commands = m.on_reply_action(turn_id, kind, now)  # type: ignore[arg-type]
        model.apply(commands)
        assert m.active_turn == model.active
        assert m.state in TRANSITIONS
        assert (m.state is E) == model.ended
        if m.state in (L, U):
            assert m.active_turn is None
        elif m.state in (T, A, C):
            assert m.active_turn is not None
        if m.state is A:
            assert m.active_turn in model.audible
