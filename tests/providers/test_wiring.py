"""The cloud providers wired into the assistant: settings pick each role's engine from the environment, and a whole
caller turn runs through the real SDKs against the local fakes (Flux hears the caller, OpenAI answers, Cartesia
speaks 8 kHz mu-law that must reach the call's 16 kHz speech buffer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from rtp.jitter import FrameStatus
from sipagent.agent.assistant import APOLOGY, DEFAULT_SCRIPT, AssistantAgent, AssistantConfig
from sipagent.agent.base import CallContext
from sipagent.agent.script import Script
from sipagent.agent.turns import TurnConfig
from sipagent.config import Settings, load_settings
from sipagent.endpoint import Endpoint
from sipagent.log import get_logger
from sipagent.media import AGENT_RATE, FRAME_SAMPLES, SpeechBuffer
from sipagent.providers.base import AudioChunk
from sipagent.providers.llm import ScriptLanguageModel
from sipagent.providers.registry import build_providers
from tests.providers.fakes.cartesia import TONE_HZ, FakeCartesia
from tests.providers.fakes.flux import FakeFlux
from tests.providers.fakes.openai_server import FakeOpenAI, FakeReply

pytestmark = [pytest.mark.aio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # deepgram-sdk

QUESTION = "what are your opening hours"
ENV = ("DEEPGRAM_API_KEY", "OPENAI_API_KEY", "CARTESIA_API_KEY", "OPENAI_BASE_URL", "SIPAGENT_DEEPGRAM_URL",
       "SIPAGENT_CARTESIA_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


class Offline:
    """Stands in for an offline engine: the wiring must hand it over untouched, and these tests never use it."""


def offline_providers(settings: Settings) -> Any:
    return build_providers(settings, offline_stt=Offline(), offline_tts=Offline(),  # type: ignore[arg-type]
                           script=Script.load(DEFAULT_SCRIPT))


def test_standard_env_vars_pick_the_cloud_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("CARTESIA_API_KEY", "ca-secret")
    monkeypatch.setenv("SIPAGENT_DEEPGRAM_URL", "ws://127.0.0.1:9001")
    monkeypatch.setenv("SIPAGENT_CARTESIA_URL", "ws://127.0.0.1:9002")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9003/v1")
    monkeypatch.setenv("SIPAGENT_PROVIDERS__CARTESIA_VOICE_ID", "voice-1")
    settings = load_settings()
    p = settings.providers
    assert p.deepgram_api_key is not None and p.deepgram_api_key.get_secret_value() == "dg-secret"
    assert (p.deepgram_url, p.cartesia_url, p.openai_base_url) == (
        "ws://127.0.0.1:9001", "ws://127.0.0.1:9002", "http://127.0.0.1:9003/v1")
    assert "secret" not in repr(settings)
    providers = offline_providers(settings)
    assert providers.roles == {"stt": "deepgram", "tts": "cartesia", "llm": "openai"}
    assert providers.stt.url == "ws://127.0.0.1:9001" and providers.stt.api_key == "dg-secret"
    assert providers.tts.voice_id == "voice-1" and providers.tts.capabilities.encoding == "mulaw"
    assert str(providers.llm._client.base_url) == "http://127.0.0.1:9003/v1/"


def test_prefixed_variable_wins_and_chat_api_is_selectable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-standard")
    monkeypatch.setenv("SIPAGENT_PROVIDERS__OPENAI_API_KEY", "sk-prefixed")
    monkeypatch.setenv("SIPAGENT_PROVIDERS__OPENAI_API", "chat")
    settings = load_settings()
    assert settings.providers.openai_api_key is not None
    assert settings.providers.openai_api_key.get_secret_value() == "sk-prefixed"
    providers = offline_providers(settings)
    assert providers.roles == {"stt": "offline", "tts": "offline", "llm": "openai-chat"}
    assert isinstance(providers.stt, Offline) and isinstance(providers.tts, Offline)


def test_no_keys_everything_offline_and_one_start_up_line(monkeypatch: pytest.MonkeyPatch) -> None:
    providers = offline_providers(load_settings())
    assert providers.roles == {"stt": "offline", "tts": "offline", "llm": "offline"}
    assert isinstance(providers.llm, ScriptLanguageModel)

    class Factory:
        roles = providers.roles

        def __call__(self, context: CallContext) -> Any:
            raise AssertionError("no call is made")

    async def start_and_stop() -> None:
        async with Endpoint(load_settings(overrides={"sip": {"bind": "127.0.0.1", "port": 0,
                                                             "transports": ["udp"]}}), Factory()):
            pass

    with capture_logs() as logs:
        asyncio.run(start_and_stop())
    lines = [e for e in logs if e["event"] == "agent engines"]
    assert len(lines) == 1 and {k: lines[0][k] for k in ("stt", "tts", "llm")} == providers.roles


# -- a whole turn through the fakes ----------------------------------------------------------------------------


class Fakes:
    def __init__(self) -> None:
        self.flux = FakeFlux(transcripts=(QUESTION, "and on sunday"))
        self.openai = FakeOpenAI()
        self.cartesia = FakeCartesia()

    def transcripts(self) -> list[str]:
        return [r["transcript"] for c in self.cartesia.contexts.values() for r in c.requests if r.get("transcript")]


@pytest_asyncio.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fakes]:
    f = Fakes()
    await f.flux.start()
    await f.openai.start()
    await f.cartesia.start()
    monkeypatch.setenv("DEEPGRAM_API_KEY", f.flux.api_key)
    monkeypatch.setenv("OPENAI_API_KEY", f.openai.api_key)
    monkeypatch.setenv("CARTESIA_API_KEY", f.cartesia.api_key)
    monkeypatch.setenv("SIPAGENT_DEEPGRAM_URL", f.flux.url)
    monkeypatch.setenv("OPENAI_BASE_URL", f.openai.base_url)
    monkeypatch.setenv("SIPAGENT_CARTESIA_URL", f.cartesia.url)
    monkeypatch.setenv("SIPAGENT_PROVIDERS__CARTESIA_VOICE_ID", "voice-test")
    yield f
    await f.flux.stop()
    await f.openai.close()
    await f.cartesia.stop()


class Line:
    """A fake call on a fast media clock: each tick the pacer sends one agent frame and the agent hears one."""

    def __init__(self, fakes: Fakes, fallback_tts: Any = None) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.pushes: list[tuple[int, np.ndarray]] = []  # (timeline length at the push, audio)
        self.speech = SpeechBuffer()
        push = self.speech.push

        def recorded_push(pcm: np.ndarray) -> None:
            self.pushes.append((len(self.entries), pcm.copy()))
            push(pcm)

        self.speech.push = recorded_push  # type: ignore[method-assign]
        self.now = 100.0
        context = CallContext(call_id="call-wiring", caller="sip:a@127.0.0.1", called="sip:b@127.0.0.1",
                              speech=self.speech, hangup=lambda: None, transfer=lambda uri: None,
                              log=get_logger(call_id="call-wiring"),
                              timeline=lambda kind, **f: self.entries.append((kind, f)))
        self.providers = offline_providers(load_settings())
        assert self.providers.roles == {"stt": "deepgram", "tts": "cartesia", "llm": "openai"}
        config = AssistantConfig(turns=TurnConfig(max_call_s=None, reprompt_after_s=600))
        p = self.providers
        self.agent = AssistantAgent(context, p.stt, p.tts, Script.load(DEFAULT_SCRIPT), config,
                                    clock=lambda: self.now, llm=p.llm,
                                    fallback_tts=fallback_tts)
        self.task = asyncio.create_task(self.agent.run())

    def find(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [f for k, f in self.entries if k == kind and all(f.get(key) == v for key, v in match.items())]

    async def tick(self, pcm: np.ndarray | None = None) -> None:
        # The fast media clock: 20 ms of virtual time per ~2 ms of real time, so network replies interleave.
        self.now += FRAME_SAMPLES / AGENT_RATE
        self.speech.pop()
        self.agent.on_audio(pcm if pcm is not None else np.zeros(FRAME_SAMPLES, np.int16), self.now, FrameStatus.NORMAL)
        await asyncio.sleep(0.002)

    async def until(self, done: Callable[[], bool], limit: int = 3000) -> None:
        for _ in range(limit):
            if done():
                return
            await self.tick()
        raise AssertionError("the awaited condition never came")

    async def say(self, seconds: float = 0.6) -> None:
        t = np.arange(round(seconds * AGENT_RATE)) / AGENT_RATE
        tone = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
        for frame in tone.reshape(-1, FRAME_SAMPLES):
            await self.tick(frame)

    def reply_audio(self, turn_id: int) -> np.ndarray:
        start = next(i for i, (k, f) in enumerate(self.entries) if k == "reply_start" and f["turn_id"] == turn_id)
        return np.concatenate([pcm for at, pcm in self.pushes if at > start])

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.providers.tts.aclose()
        await self.providers.llm.aclose()


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum)) * AGENT_RATE / len(pcm)


async def test_a_caller_turn_through_flux_openai_and_cartesia(fakes: Fakes) -> None:
    answer = ("We're open from nine ", "to five. ", "See you soon!")
    fakes.openai.responses.append(FakeReply(deltas=answer))
    line = Line(fakes)
    try:
        await line.until(lambda: bool(line.find("reply_end")))  # the greeting, spoken by Cartesia
        greeting = len(fakes.transcripts())
        assert " ".join(fakes.transcripts()) == line.agent._script.greeting
        await line.say()
        await line.until(lambda: bool(line.find("reply_end", turn_id=2)))
    finally:
        await line.close()
    request = fakes.openai.posted("/v1/responses")[0].body
    assert request["input"][-1] == {"role": "user", "content": QUESTION}
    assert fakes.transcripts()[greeting:] == ["We're open from nine to five.", "See you soon!"]
    audio = line.reply_audio(2)
    # Oracle: the fake's tone lasts seconds_per_char per character of each sentence; decoded from 8 kHz mu-law and
    # resampled, it must be that long at 16 kHz (within the resampler's filter delay) and still a 440 Hz tone.
    chars = sum(len(t) for t in fakes.transcripts()[greeting:])
    assert abs(len(audio) - chars * fakes.cartesia.seconds_per_char * AGENT_RATE) <= 2 * FRAME_SAMPLES
    assert abs(dominant_hz(audio) - TONE_HZ) < 5
    assert line.agent.history[-2].text == QUESTION and line.agent.history[-1].text == "".join(answer)


async def test_llm_failure_is_an_apology_and_the_next_turn_works(fakes: Fakes) -> None:
    fakes.openai.responses.extend([FakeReply(status=500), FakeReply(deltas=("Sundays we are closed.",))])
    line = Line(fakes)
    try:
        await line.until(lambda: bool(line.find("reply_end")))
        await line.say()
        await line.until(lambda: bool(line.find("reply_end", turn_id=2)))
        assert line.find("llm_error", turn_id=2) and " ".join(fakes.transcripts()).endswith(APOLOGY)
        assert len(line.reply_audio(2)) > 0
        await line.say()
        await line.until(lambda: bool(line.find("reply_end", turn_id=3)))
    finally:
        await line.close()
    assert fakes.transcripts()[-1] == "Sundays we are closed."
    second = fakes.openai.posted("/v1/responses")[1].body
    assert second["input"][-1] == {"role": "user", "content": "and on sunday"}
    assert {"role": "assistant", "content": APOLOGY} in second["input"]


async def test_end_call_tool_says_goodbye_and_hangs_up(fakes: Fakes) -> None:
    fakes.openai.responses.append(FakeReply(deltas=("Goodbye, and thanks for calling.",),
                                            function_call=("end_call", {})))
    line = Line(fakes)
    try:
        await line.until(lambda: bool(line.find("reply_end")))
        await line.say()
        await line.until(lambda: bool(line.find("hangup")))
    finally:
        await line.close()
    assert line.find("reply_action", turn_id=2, action="hangup")
    assert line.find("hangup")[0]["reason"] == "goodbye"
    assert fakes.transcripts()[-1] == "Goodbye, and thanks for calling."


class ToneVoice:
    """The offline voice's stand-in: 16 kHz int16 at a constant level, 10 ms per character, one chunk per sentence."""

    def __init__(self) -> None:
        self.spoken: list[str] = []

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.spoken.append(text)
        return _OneChunk(AudioChunk(np.full(len(text) * 160, 1000, np.int16), AGENT_RATE))


class _OneChunk:
    def __init__(self, chunk: AudioChunk) -> None:
        self._chunk: AudioChunk | None = chunk

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> AudioChunk:
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    def cancel(self) -> None:
        self._chunk = None

    async def aclose(self) -> None:
        self._chunk = None


async def test_a_failing_cloud_voice_falls_back_to_the_offline_voice(fakes: Fakes) -> None:
    broken = f"This sentence says {fakes.cartesia.error_trigger} to the voice."
    fakes.openai.responses.append(FakeReply(deltas=(broken + " ", "Then it goes on.")))
    voice = ToneVoice()
    line = Line(fakes, fallback_tts=voice)
    try:
        await line.until(lambda: bool(line.find("reply_end")))
        assert voice.spoken == []  # the greeting was Cartesia's
        await line.say()
        await line.until(lambda: bool(line.find("reply_end", turn_id=2)))
    finally:
        await line.close()
    assert line.find("tts_fallback", turn_id=2)
    assert voice.spoken == [broken, "Then it goes on."]  # the rest of that utterance stays on the offline voice
    assert len(line.reply_audio(2)) == sum(len(t) * 160 for t in voice.spoken)
