"""The ``assistant`` agent: listens with a speech recognizer, answers from the reply policy, speaks with TTS.

Two lanes (STYLE §10). Control decisions come out of the pure :class:`~sipagent.agent.turns.TurnTaking` machine
and are carried out at once, on the loop, in the call that produced them: a barge-in decided in ``on_audio``
flushes the speech buffer before ``on_audio`` returns, so at most the frame already with the pacer still plays.
Data (transcripts, reply text, TTS audio) flows through one task per agent utterance, cancelled on barge-in.

Every utterance is tracked by its turn id with the speech-buffer sample span of each sentence (STYLE §11), so on
a barge-in ``speech.played_samples`` tells which words the caller heard, and only those enter the history.

Clocks: frames carry the media clock's ``now``; timers and "played out" checks run per frame in ``on_audio`` (the
agent's clock never stops: concealed frames arrive too); asynchronous events read ``clock()`` (``loop.time``).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rtp.g711 import ulaw_decode_array
from rtp.jitter import FrameStatus
from rtp.resample import StreamResampler
from sipagent.agent.base import CallContext
from sipagent.agent.script import Reply, Script
from sipagent.agent.turns import (
    CancelReply,
    Command,
    CommitReply,
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
    TurnTaking,
)
from sipagent.agent.vad import VadConfig, VadEventKind, VoiceActivityDetector
from sipagent.media import AGENT_RATE, Pcm
from sipagent.providers.base import AudioChunk, SpeechToText, SttEventKind, SttStream, TextToSpeech, TtsStream
from sipagent.providers.errors import ProviderError
from sipagent.providers.llm import (
    END_CALL,
    TRANSFER_TO_HUMAN,
    LanguageModel,
    LlmStream,
    ScriptLanguageModel,
    TextDelta,
    UserTurn,
)
from sipagent.providers.llm import Message as LlmMessage
from sipagent.providers.offline.stt import OfflineSpeechToText, SphinxSttConfig
from sipagent.providers.offline.tts import OfflineTextToSpeech, OfflineTtsConfig
from sipagent.providers.offline.worker import WorkerPool

__all__ = ["APOLOGY", "DEFAULT_SCRIPT", "AssistantAgent", "AssistantConfig", "AssistantFactory", "Message",
           "SentenceCutter", "make_assistant_factory", "make_default_factory"]

DEFAULT_SCRIPT = Path(__file__).resolve().parents[2] / "config" / "agent-script.toml"
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"[,;:]\s+")
APOLOGY = "Sorry, I'm having trouble answering right now. Could you say that again?"
"""Spoken when the language model fails or times out before saying anything; the call goes on listening."""
_TOOL_ACTIONS: dict[str, Literal["hangup", "transfer"]] = {END_CALL.name: "hangup", TRANSFER_TO_HUMAN.name: "transfer"}
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "no", "vs", "etc", "e.g", "i.e"})


class SentenceCutter:
    """Cuts streamed text (LLM deltas) into sentences as soon as each is complete, so TTS can start on the first.

    A sentence ends at ``.``, ``!`` or ``?`` followed by white space (so "3.5" and a delta that stops right after
    the full stop wait for more text), except after a common abbreviation. Text running past ``clause_chars``
    without an end is cut after its last comma, semicolon or colon, and past ``max_chars`` at its last space, so
    a long first sentence does not hold back the first audio.
    """

    def __init__(self, *, clause_chars: int = 160, max_chars: int = 240) -> None:
        self._buffer = ""
        self._clause_chars = clause_chars
        self._max_chars = max_chars

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        pieces: list[str] = []
        while (piece := self._next()) is not None:
            if piece:
                pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        rest, self._buffer = " ".join(self._buffer.split()), ""
        return [rest] if rest else []

    def _next(self) -> str | None:
        text = self._buffer
        for match in _SENTENCE_END.finditer(text):
            words = text[: match.start()].split()
            if words and words[-1].lower().rstrip(".") in _ABBREVIATIONS and text[match.start()] == ".":
                continue
            return self._cut(match.end())
        if len(text) <= self._clause_chars:
            return None
        window = text[: self._max_chars]
        clauses = [m.end() for m in _CLAUSE_END.finditer(window) if m.start() >= self._clause_chars // 4]
        if clauses:
            return self._cut(clauses[-1])
        if len(text) > self._max_chars and (space := window.rfind(" ")) > 0:
            return self._cut(space + 1)
        return None

    def _cut(self, end: int) -> str:
        piece, self._buffer = self._buffer[:end], self._buffer[end:]
        return " ".join(piece.split())


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["caller", "agent"]
    text: str
    interrupted: bool = False
    """For the agent: cut short by a barge-in (``text`` is what was played)."""


@dataclass(frozen=True, slots=True)
class AssistantConfig:
    script_path: Path = DEFAULT_SCRIPT
    turns: TurnConfig = field(default_factory=TurnConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    """The loop-side VAD (barge-in onset); the recognizer runs its own for turn ends."""
    stt: SphinxSttConfig = field(default_factory=SphinxSttConfig)
    """Offline recognizer settings; its phrases and fillers are replaced by the script's."""
    tts: OfflineTtsConfig = field(default_factory=OfflineTtsConfig)
    workers: int = 1
    """Offline engine worker processes shared by every call."""


@dataclass(slots=True)
class _Span:
    text: str
    start: int
    """Position of the sentence's first sample in the speech buffer's stream (``played_samples`` counts in it)."""
    end: int


@dataclass(eq=False, slots=True)
class _Utterance:
    turn_id: int
    kind: str
    committed: bool
    caller_text: str = ""
    text: str = ""
    reply: Reply | None = None
    task: asyncio.Task[None] | None = None
    tts: TtsStream | None = None
    held: list[tuple[int, str, Pcm]] = field(default_factory=list)
    spans: list[_Span] = field(default_factory=list)
    sentences: int = 0
    start: int | None = None
    synthesized: bool = False
    pushed_all: bool = False
    reported: bool = False
    cancelled: bool = False
    resampler: StreamResampler | None = None
    heard_before: tuple[LlmMessage, ...] = ()
    """The history the caller had heard when this reply began (the model's context)."""
    llm: LlmStream | None = None
    action: Literal["hangup", "transfer"] | None = None
    """A call-control tool the model called (LLM replies; script replies carry theirs in ``reply``)."""
    offline_voice: bool = False
    """The cloud voice failed during this utterance: the rest of it is spoken by the offline engine."""


class AssistantAgent:
    """One call's conversational agent; see the module docstring."""

    def __init__(self, context: CallContext, stt: SpeechToText, tts: TextToSpeech, script: Script,
                 config: AssistantConfig | None = None, *, clock: Callable[[], float] | None = None,
                 llm: LanguageModel | None = None, fallback_tts: TextToSpeech | None = None) -> None:
        self.context = context
        self.config = config = config or AssistantConfig()
        self.turns = TurnTaking(config.turns)
        self.history: list[Message] = []
        self._speech = context.speech
        self._stt, self._tts, self._script = stt, tts, script
        # The script answers synchronously (its intent and action known at once): the built-in path is exactly the
        # ScriptLanguageModel's behaviour, so only a real model goes through the streamed path.
        self._llm = None if isinstance(llm, ScriptLanguageModel) else llm
        self._fallback_tts = fallback_tts
        self._log = context.log
        self._timeline = context.timeline
        self._clock = clock or asyncio.get_running_loop().time
        self._vad = VoiceActivityDetector(config.vad)
        self._stream: SttStream | None = None
        self._current: _Utterance | None = None
        self._pending: deque[Command] = deque()
        self._applying = False
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = asyncio.Event()
        self._flushed = 0
        self.outcome: HangUp | Transfer | None = None

    @property
    def synthesizing(self) -> bool:
        """An utterance is due to play but not all of its audio is in the speech buffer yet."""
        current = self._current
        return current is not None and current.committed and not current.pushed_all

    # -- the endpoint's side -----------------------------------------------------------------------------------

    def on_audio(self, pcm: Pcm, now: float, status: FrameStatus) -> None:
        if not self._started:
            return
        try:
            self._on_frame(pcm, now)
        except Exception:  # a bug here must end this call, not the media tick every call shares
            self._log.exception("assistant failed on a frame: hanging up")
            self._started = False
            self.context.hangup()

    def _on_frame(self, pcm: Pcm, now: float) -> None:
        if self._stream is not None:
            self._stream.push(pcm)
        event = self._vad.update(pcm, now)
        commands = self.turns.on_vad_frame(self._vad.voiced, now)
        if event is not None:
            if event.kind is VadEventKind.SPEECH_START:
                self._timeline("speech_start", at=event.at, detected_at=now)
                commands += self.turns.on_vad_onset(event.at, now)
            else:
                self._timeline("speech_end", at=event.at, detected_at=now)
                commands += self.turns.on_vad_offset(event.at, now)
        if commands:
            self._feed(commands, now)
        current = self._current
        if current is not None and current.pushed_all and not len(self._speech):
            self._finished(current, now)
        timer = self.turns.get_timer()
        if timer is not None and now >= timer:
            self._feed(self.turns.handle_timer(now), now)

    def on_dtmf(self, digit: str, now: float) -> None:
        if self._started:
            self._feed(self.turns.on_dtmf(digit, now), now)

    async def run(self) -> None:
        self._started = True
        self._feed(self.turns.start(self._clock()), self._clock())  # greet at once; the recognizer opens meanwhile
        listener: asyncio.Task[None] | None = None
        try:
            self._stream = await self._stt.open(self.context.call_id)
            listener = asyncio.create_task(self._listen(), name=f"stt {self.context.call_id}")
            await self._ended.wait()
        finally:
            for task in (listener, *list(self._tasks)):
                if task is not None:
                    task.cancel()
            if self._current is not None and self._current.tts is not None:
                self._current.tts.cancel()
            if self._stream is not None:
                await self._stream.close()
            if self._llm is not None:
                self._llm.end_call(self.context.call_id)
        if isinstance(self.outcome, Transfer):
            # Returning would end the call (BYE) under the REFER; the endpoint ends it when the transfer completes.
            await asyncio.Event().wait()

    # -- recognizer events -------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        assert self._stream is not None
        try:
            async for event in self._stream.events():
                now = self._clock()
                if event.kind is SttEventKind.FINAL:
                    self._timeline("transcript", text=event.text, start=event.start, end=event.end,
                                   confidence=event.confidence)
                if event.kind is SttEventKind.END_OF_TURN:
                    self._timeline("end_of_turn", text=event.text, start=event.start, end=event.end)
                self._feed(self.turns.on_stt_event(event, now), now)
        except ProviderError as exc:
            self._log.error("speech recognition failed: hanging up", error=str(exc), retryable=exc.retryable)
            self.context.hangup()
            self._ended.set()

    # -- commands ----------------------------------------------------------------------------------------------

    def _feed(self, commands: list[Command], now: float) -> None:
        # Commands raised while carrying out others (an utterance starting, a reply's action) queue behind them,
        # so the machine is never re-entered half-way through a list.
        self._pending.extend(commands)
        if self._applying:
            return
        self._applying = True
        try:
            while self._pending:
                self._apply(self._pending.popleft(), now)
        except BaseException:
            self._pending.clear()
            raise
        finally:
            self._applying = False

    def _apply(self, command: Command, now: float) -> None:
        script = self._script
        match command:
            case FlushAudio():
                self._flushed = self._speech.flush()
            case CancelReply(turn_id=turn_id, reason=reason):
                self._cancel(turn_id, reason, now)
            case Greet(turn_id=turn_id):
                self._begin(_Utterance(turn_id, "greeting", True, text=script.greeting), now)
            case StartReply(turn_id=turn_id, text=text, speculative=speculative):
                utterance = _Utterance(turn_id, "reply", not speculative, caller_text=text)
                self._begin(utterance, now)
            case CommitReply(turn_id=turn_id):
                self._commit(turn_id, now)
            case Reprompt(turn_id=turn_id):
                self._begin(_Utterance(turn_id, "reprompt", True, text=script.reprompt), now)
            case SayGoodbye(turn_id=turn_id):
                self._begin(_Utterance(turn_id, "goodbye", True, text=script.goodbye), now)
            case SayLine(turn_id=turn_id, line=line):
                text = script.transfer if line is Line.TRANSFER else script.no_operator
                self._begin(_Utterance(turn_id, line.value, True, text=text), now)
            case HangUp(reason=reason):
                self._timeline("hangup", reason=reason.value)
                self.outcome = command
                self.context.hangup()
                self._ended.set()
            case Transfer(target=target):
                self._timeline("transfer", target=target)
                self.outcome = command
                self.context.transfer(target)
                self._ended.set()

    def _begin(self, utterance: _Utterance, now: float) -> None:
        self._current = utterance
        if utterance.kind == "reply" and self._llm is not None:
            utterance.heard_before = tuple(
                LlmMessage("user" if m.role == "caller" else "assistant", m.text) for m in self.history if m.text)
        elif utterance.kind == "reply":
            utterance.reply = reply = self._script.reply(utterance.caller_text)
            utterance.text = reply.text
        if utterance.committed:
            self._announce(utterance, now)
        task = asyncio.create_task(self._say(utterance), name=f"say {utterance.turn_id}")
        utterance.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _announce(self, utterance: _Utterance, now: float) -> None:
        if utterance.kind == "reply" and utterance.reply is None:  # an LLM reply: its text is still streaming
            self.history.append(Message("caller", utterance.caller_text))
            self._timeline("reply_start", turn_id=utterance.turn_id, caller=utterance.caller_text, llm=True)
            self._report_action(utterance, now)
        elif utterance.kind == "reply":
            self.history.append(Message("caller", utterance.caller_text))
            reply = utterance.reply
            assert reply is not None
            self._timeline("reply_start", turn_id=utterance.turn_id, caller=utterance.caller_text, text=reply.text,
                           intent=reply.intent, action=reply.action)
            if reply.action is not None and not utterance.reported:
                utterance.reported = True
                self._feed(self.turns.on_reply_action(utterance.turn_id, reply.action, now), now)
        else:
            self._timeline("reply_start", turn_id=utterance.turn_id, line=utterance.kind, text=utterance.text)

    def _report_action(self, utterance: _Utterance, now: float) -> None:
        # Only a committed reply may end the call; a speculative one reports its tool call when committed.
        if utterance.action is not None and utterance.committed and not utterance.reported:
            utterance.reported = True
            self._timeline("reply_action", turn_id=utterance.turn_id, action=utterance.action)
            self._feed(self.turns.on_reply_action(utterance.turn_id, utterance.action, now), now)

    def _commit(self, turn_id: int, now: float) -> None:
        utterance = self._current
        if utterance is None or utterance.turn_id != turn_id:
            return
        utterance.committed = True
        self._announce(utterance, now)  # may replace it (a transfer with no operator): then _push holds back
        held, utterance.held = utterance.held, []
        for index, sentence, pcm in held:
            self._push(utterance, index, sentence, pcm, now)
        if utterance.synthesized:
            self._end(utterance)

    def _cancel(self, turn_id: int, reason: str, now: float) -> None:
        utterance = self._current
        if utterance is None or utterance.turn_id != turn_id:
            return
        self._current = None
        utterance.cancelled = True
        if utterance.tts is not None:
            utterance.tts.cancel()
        if utterance.llm is not None:
            utterance.llm.cancel()
        if utterance.task is not None and utterance.task is not asyncio.current_task():
            utterance.task.cancel()
        if utterance.start is None:
            return
        heard = self._heard(utterance)
        self.history.append(Message("agent", heard, interrupted=True))
        flushed_ms, self._flushed = self._flushed * 1000 // AGENT_RATE, 0
        if reason == "barge_in":
            self._timeline("barge_in", turn_id=turn_id, voice_since=self.turns.voice_since, decided_at=now,
                           flushed_ms=flushed_ms)
        self._timeline("reply_text_heard", turn_id=turn_id, text=heard, full_text=utterance.text, reason=reason)

    def _finished(self, utterance: _Utterance, now: float) -> None:
        self._current = None
        if utterance.start is not None:
            self.history.append(Message("agent", utterance.text))
        self._timeline("reply_end", turn_id=utterance.turn_id)
        self._feed(self.turns.on_agent_speech_finished(utterance.turn_id, now), now)

    # -- speaking ----------------------------------------------------------------------------------------------

    async def _say(self, utterance: _Utterance) -> None:
        cutter = SentenceCutter()
        try:
            async for delta in self._deltas(utterance):
                for sentence in cutter.push(delta):
                    await self._synthesize(utterance, sentence)
            for sentence in cutter.flush():
                await self._synthesize(utterance, sentence)
        except ProviderError as exc:
            # The call goes on: whatever was synthesized plays, and the turn machine hears that it finished.
            self._log.warning("speech synthesis failed", error=str(exc), turn_id=utterance.turn_id)
        except Exception:
            self._log.exception("speaking failed", turn_id=utterance.turn_id)
        if utterance.cancelled:
            return
        utterance.synthesized = True
        if utterance.committed:
            self._end(utterance)

    async def _deltas(self, utterance: _Utterance) -> AsyncIterator[str]:
        if utterance.kind != "reply" or self._llm is None:
            yield utterance.text  # the script answers at once and whole
            return
        turn = UserTurn(utterance.caller_text, self.context.call_id, utterance.heard_before)
        utterance.llm = stream = self._llm.respond(turn)
        try:
            async for item in stream:
                if utterance.cancelled:
                    return
                if isinstance(item, TextDelta):
                    utterance.text += item.text
                    yield item.text
                elif (action := _TOOL_ACTIONS.get(item.name)) is not None and utterance.action is None:
                    utterance.action = action
                    if action == "hangup" and not utterance.text.strip():
                        utterance.text = self._script.goodbye
                        yield utterance.text
                    self._report_action(utterance, self._clock())
        except ProviderError as exc:
            # The caller hears an apology instead of silence, and the turn machine goes back to listening.
            self._log.warning("language model failed", error=str(exc), retryable=exc.retryable,
                              turn_id=utterance.turn_id)
            self._timeline("llm_error", turn_id=utterance.turn_id, error=str(exc))
            if not utterance.text.strip():
                utterance.text = APOLOGY
                yield APOLOGY
        finally:
            await stream.aclose()

    async def _synthesize(self, utterance: _Utterance, sentence: str) -> None:
        index = utterance.sentences
        utterance.sentences += 1
        fallback = self._fallback_tts
        if fallback is None or fallback is self._tts or utterance.offline_voice:
            await self._speak(utterance, index, sentence, fallback if utterance.offline_voice else self._tts)
            return
        try:
            await self._speak(utterance, index, sentence, self._tts)
        except ProviderError as exc:
            # The rest of this utterance is spoken by the offline voice; the next one tries the cloud again.
            self._log.warning("speech synthesis failed: offline voice", error=str(exc), turn_id=utterance.turn_id)
            self._timeline("tts_fallback", turn_id=utterance.turn_id, error=str(exc))
            utterance.offline_voice = True
            if len(utterance.spans) <= index and not any(i == index for i, _, _ in utterance.held):
                await self._speak(utterance, index, sentence, fallback)  # none of it was heard: say it all

    async def _speak(self, utterance: _Utterance, index: int, sentence: str, tts: TextToSpeech | None) -> None:
        assert tts is not None
        stream = tts.synthesize(sentence)
        utterance.tts = stream
        try:
            async for chunk in stream:
                if utterance.cancelled:
                    return
                pcm = self._agent_pcm(utterance, chunk)
                if not utterance.committed:
                    utterance.held.append((index, sentence, pcm))  # speculative: ready, not yet audible
                else:
                    self._push(utterance, index, sentence, pcm, self._clock())
        finally:
            await stream.aclose()

    def _agent_pcm(self, utterance: _Utterance, chunk: AudioChunk) -> Pcm:
        # A cloud voice's 8 kHz mu-law is decoded and resampled to the 16 kHz speech buffer for now; on a PCMU
        # call it could pass straight through to RTP (a later optimisation: it saves two conversions per frame).
        if chunk.encoding == "mulaw":
            pcm = ulaw_decode_array(np.asarray(chunk.pcm, np.uint8))
        else:
            pcm = np.asarray(chunk.pcm, np.int16)
        if chunk.sample_rate == AGENT_RATE:
            return pcm
        if utterance.resampler is None or utterance.resampler.in_rate != chunk.sample_rate:
            utterance.resampler = StreamResampler(chunk.sample_rate, AGENT_RATE)
        return utterance.resampler.process(pcm)

    def _push(self, utterance: _Utterance, index: int, sentence: str, pcm: Pcm, now: float) -> None:
        if not len(pcm) or self.turns.active_turn != utterance.turn_id:
            return  # the turn machine has dropped it; its CancelReply is on the way
        speech = self._speech
        position = speech.played_samples + round(speech.buffered_ms * AGENT_RATE / 1000)
        speech.push(pcm)
        if len(utterance.spans) <= index:
            utterance.spans.append(_Span(sentence, position, position))
        utterance.spans[-1].end = position + len(pcm)
        if utterance.start is None:
            utterance.start = position
            self._timeline("first_tts_audio", turn_id=utterance.turn_id, buffered_ms=speech.buffered_ms)
            self._feed(self.turns.on_agent_speech_started(utterance.turn_id, now), now)

    def _end(self, utterance: _Utterance) -> None:
        if not utterance.pushed_all and self._current is utterance:
            utterance.pushed_all = True
            self._speech.end_utterance()  # pads the last frame: the utterance plays to its end

    def _heard(self, utterance: _Utterance) -> str:
        played = self._speech.played_samples
        words: list[str] = []
        for span in utterance.spans:
            if played >= span.end:
                words += span.text.split()
                continue
            if played > span.start:
                # Within a sentence, words are taken as evenly spread over its samples: a word counts as heard
                # once the samples up to its share have been sent.
                parts = span.text.split()
                words += parts[: len(parts) * (played - span.start) // (span.end - span.start)]
            break
        return " ".join(words)


class AssistantFactory:
    """Builds an :class:`AssistantAgent` per call over one shared pair of offline engines (one worker pool)."""

    def __init__(self, config: AssistantConfig | None = None, pool: WorkerPool | None = None) -> None:
        self.config = config = config or AssistantConfig()
        self.script = Script.load(config.script_path)
        stt_config = replace(config.stt, phrases=self.script.phrases, fillers=self.script.fillers)
        self._owns_pool = pool is None
        self.pool = pool or WorkerPool(config.workers, warm=[
            ("sphinx", {"options": stt_config.decoder_options}),
            (config.tts.engine, config.tts.worker_config()),
        ])
        self.stt: SpeechToText = OfflineSpeechToText(stt_config, pool=self.pool)
        self.tts: TextToSpeech = OfflineTextToSpeech(config.tts, pool=self.pool)
        self.offline_tts = self.tts
        """The voice an utterance falls back to when a cloud voice fails."""
        self.llm: LanguageModel | None = None
        self.roles: dict[str, str] = {"stt": "offline", "tts": "offline", "llm": "offline"}
        self._cloud: list[SpeechToText | TextToSpeech | LanguageModel] = []

    def use(self, stt: SpeechToText, tts: TextToSpeech, llm: LanguageModel | None, roles: Mapping[Any, str]) -> None:
        """Serve every later call with these engines (from ``sipagent.providers.registry``); closed by ``aclose``."""
        self.stt, self.tts, self.llm, self.roles = stt, tts, llm, dict(roles)
        self._cloud = [engine for engine in (stt, tts, llm) if engine is not None
                       and engine is not self.offline_tts and not isinstance(engine, OfflineSpeechToText)]

    async def start(self) -> None:
        """Spawn and warm the workers (idempotent; without it the first call pays for it)."""
        await self.pool.start()

    async def aclose(self) -> None:
        for engine in self._cloud:
            await engine.aclose()
        if self._owns_pool:
            await self.pool.aclose()

    def __call__(self, context: CallContext) -> AssistantAgent:
        return AssistantAgent(context, self.stt, self.tts, self.script, self.config, llm=self.llm,
                              fallback_tts=self.offline_tts)


def make_assistant_factory(config: AssistantConfig | None = None, pool: WorkerPool | None = None) -> AssistantFactory:
    return AssistantFactory(config, pool)


def make_default_factory() -> AssistantFactory:
    """The offline assistant with every default (what ``--agent assistant`` runs without other settings)."""
    return AssistantFactory()

