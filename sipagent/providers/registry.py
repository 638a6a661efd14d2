"""Which engine plays each role: a cloud provider when its key is set, else the offline engine.

Roles: ``stt`` (Deepgram Flux, else the offline recognizer), ``tts`` (Cartesia, else the offline voice) and ``llm``
(OpenAI Responses or Chat Completions, else the reply script behind :class:`ScriptLanguageModel`). The choice is
made once at start-up from the settings; the keys never leave the engines (nothing here logs them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sipagent.agent.script import Script
from sipagent.config import Settings
from sipagent.providers.base import SpeechToText, TextToSpeech
from sipagent.providers.llm import LanguageModel, ScriptLanguageModel

__all__ = ["Engine", "Providers", "Role", "build_providers"]

Role = Literal["stt", "tts", "llm"]
Engine = Literal["deepgram", "cartesia", "openai", "openai-chat", "offline"]


@dataclass(frozen=True, slots=True)
class Providers:
    stt: SpeechToText
    tts: TextToSpeech
    llm: LanguageModel
    roles: Mapping[Role, Engine]


def build_providers(settings: Settings, *, offline_stt: SpeechToText, offline_tts: TextToSpeech,
                    script: Script) -> Providers:
    """The engines for every call; raises ProviderConfigError for a cloud role that is set up wrong."""
    p = settings.providers
    stt: SpeechToText = offline_stt
    tts: TextToSpeech = offline_tts
    llm: LanguageModel = ScriptLanguageModel(script)
    roles: dict[Role, Engine] = {"stt": "offline", "tts": "offline", "llm": "offline"}
    # The SDKs are imported only for the roles that use them: an offline endpoint needs none of them installed.
    if p.deepgram_api_key is not None:
        from sipagent.providers.deepgram import DeepgramFluxStt

        stt = DeepgramFluxStt(p.deepgram_api_key.get_secret_value(), url=p.deepgram_url,
                              eot_threshold=p.eot_threshold, eager_eot_threshold=p.eager_eot_threshold,
                              eot_timeout_ms=p.eot_timeout_ms)
        roles["stt"] = "deepgram"
    if p.cartesia_api_key is not None:
        from sipagent.providers.cartesia import CartesiaTts

        # 8 kHz mu-law is what a PCMU call sends anyway: the smallest stream, and the voice is tuned for it.
        tts = CartesiaTts(p.cartesia_api_key.get_secret_value(), url=p.cartesia_url, model_id=p.cartesia_model_id,
                          voice_id=p.cartesia_voice_id or "", encoding="pcm_mulaw", sample_rate=8000)
        roles["tts"] = "cartesia"
    if p.openai_api_key is not None:
        from sipagent.providers.openai_llm import OpenAIChatModel, OpenAIResponsesModel

        model_class = OpenAIResponsesModel if p.openai_api == "responses" else OpenAIChatModel
        llm = model_class(p.openai_api_key.get_secret_value(), base_url=p.openai_base_url, model=p.openai_model,
                          instructions=p.instructions, timeout=p.openai_timeout_s)
        roles["llm"] = "openai" if p.openai_api == "responses" else "openai-chat"
    return Providers(stt, tts, llm, roles)
