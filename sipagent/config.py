"""Settings: the only module that reads the environment.

Precedence, lowest first: defaults < TOML file (``--config``) < environment (``SIPAGENT_*``, nested with
``__``) < command-line options. The result is a frozen :class:`Settings` handed to everything else.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sipagent.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SipSettings(_Frozen):
    bind: str = "0.0.0.0"
    """Address the SIP transports listen on."""
    port: int = Field(5060, ge=0, le=65535)
    """0 picks a free port (tests, several endpoints on one machine)."""
    transports: tuple[Literal["udp", "tcp"], ...] = ("udp", "tcp")
    public_address: str | None = None
    """Address advertised in Contact/SDP when behind NAT; default: the bound address or the route's."""
    user_agent: str = "sipagent"
    allowed_networks: tuple[str, ...] = (
        "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",
    )
    """Sources whose INVITEs are accepted without a challenge (RFC 1918 + loopback by default)."""
    inbound_user: str | None = None
    """With ``inbound_password``: callers outside ``allowed_networks`` may call after a digest challenge."""
    inbound_password: SecretStr | None = None
    max_calls: int = Field(50, ge=1)
    ring_ms: int = Field(0, ge=0)
    """Send 180 Ringing and wait this long before answering (0: answer at once)."""
    codecs: tuple[Literal["PCMU", "PCMA"], ...] = ("PCMU", "PCMA")
    prefer_offerer_order: bool = True

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


class RegisterSettings(_Frozen):
    registrar: str | None = None
    """Registrar URI, e.g. ``sip:pbx.example.com``; unset: no registration."""
    username: str | None = None
    auth_user: str | None = None
    """Digest user when it differs from the account user."""
    password: SecretStr | None = None
    expires: int = Field(600, ge=30)


class RtpSettings(_Frozen):
    port_min: int = Field(20000, ge=1024, le=65534)
    port_max: int = Field(20999, ge=1025, le=65535)
    jitter_min_ms: int = Field(20, ge=0)
    jitter_start_ms: int = Field(40, ge=0)
    jitter_max_ms: int = Field(200, ge=20)
    media_timeout_s: float = Field(30.0, gt=0)
    rtcp_interval_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _range(self) -> RtpSettings:
        if self.port_min % 2:
            raise ValueError("rtp port_min must be even (RFC 3550 §11: RTP on even ports)")
        if self.port_max <= self.port_min:
            raise ValueError("rtp port_max must be above port_min")
        if not self.jitter_min_ms <= self.jitter_start_ms <= self.jitter_max_ms:
            raise ValueError("jitter bounds must satisfy min <= start <= max")
        return self


class AgentSettings(_Frozen):
    name: str = "assistant"
    record_dir: Path | None = None
    script: Path | None = None
    """The assistant's reply script (TOML); default: config/agent-script.toml of this checkout."""
    operator_uri: str | None = None
    """Where "talk to a human" and DTMF 0 transfer the caller (REFER); unset: the agent says none is set."""
    reprompt_s: float = Field(8.0, gt=0)
    max_reprompts: int = Field(2, ge=0)
    max_call_s: float = Field(600.0, gt=0)
    min_barge_in_ms: int = Field(120, ge=20)
    """Caller speech must last this long over the agent to interrupt it (coughs and clicks do not)."""
    greeting_interruptible: bool = True
    workers: int = Field(1, ge=1)
    """Worker processes for the offline speech engines, shared by every call."""


class LogSettings(_Frozen):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json_output: bool = False
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Serve Prometheus metrics on ``GET /metrics`` at this TCP port (0: a free one); unset: no server."""
    metrics_bind: str = "127.0.0.1"
    """Address of the metrics server: loopback unless a scraper elsewhere needs it."""


class ProviderSettings(_Frozen):
    """Cloud engines per role; a role whose key is unset runs on its offline engine (the script for the LLM).

    The keys and URLs are also read from the providers' standard variables (DEEPGRAM_API_KEY, OPENAI_API_KEY,
    CARTESIA_API_KEY, OPENAI_BASE_URL, SIPAGENT_DEEPGRAM_URL, SIPAGENT_CARTESIA_URL); SIPAGENT_PROVIDERS__* wins.
    """

    deepgram_api_key: SecretStr | None = None
    deepgram_url: str | None = None
    """A Flux server other than Deepgram's (``ws://host:port``: on-prem, or a test double)."""
    eot_threshold: float = Field(0.7, ge=0.5, le=1.0)
    eager_eot_threshold: float | None = Field(0.5, ge=0.3, le=0.9)
    """None: no EagerEndOfTurn, so no speculative replies."""
    eot_timeout_ms: int = Field(5000, ge=500, le=60000)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_api: Literal["responses", "chat"] = "responses"
    """``chat`` for Chat-Completions-only servers (Ollama, llama.cpp, vLLM)."""
    openai_model: str = "gpt-4.1-mini"
    openai_timeout_s: float = Field(10.0, gt=0)
    instructions: str = (
        "You are a friendly phone assistant. Answer in one or two short spoken sentences, without lists or markup."
    )
    cartesia_api_key: SecretStr | None = None
    cartesia_url: str | None = None
    cartesia_voice_id: str | None = None
    """Required with a Cartesia key: the id of a voice in your Cartesia account."""
    cartesia_model_id: str = "sonic-3"


# Standard variable -> providers key: the names each vendor's own tools read, so one export serves both.
_STANDARD_ENV = {
    "DEEPGRAM_API_KEY": "deepgram_api_key", "OPENAI_API_KEY": "openai_api_key", "CARTESIA_API_KEY": "cartesia_api_key",
    "OPENAI_BASE_URL": "openai_base_url", "SIPAGENT_DEEPGRAM_URL": "deepgram_url",
    "SIPAGENT_CARTESIA_URL": "cartesia_url",
}


class _StandardEnvSource(PydanticBaseSettingsSource):
    """The vendors' standard variables as a ``providers`` section, below SIPAGENT_PROVIDERS__* and above the file."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {key: os.environ[name] for name, key in _STANDARD_ENV.items() if os.environ.get(name)}
        return {"providers": found} if found else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIPAGENT_", env_nested_delimiter="__", frozen=True, extra="forbid",
    )
    sip: SipSettings = SipSettings()
    registration: RegisterSettings = RegisterSettings()
    rtp: RtpSettings = RtpSettings()
    agent: AgentSettings = AgentSettings()
    log: LogSettings = LogSettings()
    providers: ProviderSettings = ProviderSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win; pydantic-settings deep-merges them, so a nested key set on the command
        # line overrides only that key of the environment's or the file's section.
        file_source = _FileSource(settings_cls, _FILE_DATA.get(settings_cls, {}))
        return (init_settings, env_settings, _StandardEnvSource(settings_cls), file_source)


class _FileSource(PydanticBaseSettingsSource):
    """The parsed TOML file as a settings source (lowest priority above the defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


# Parsed file per settings class: set by load_settings just for the duration of one construction.
_FILE_DATA: dict[type[BaseSettings], dict[str, Any]] = {}


def _read_toml(config_file: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{config_file}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{config_file}: is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_file}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file}: invalid TOML: {exc}") from None


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings from defaults, an optional TOML file, the environment and CLI overrides.

    ``overrides`` is nested like the file (``{"sip": {"port": 5070}}``). Raises :class:`ConfigError`
    with a one-line message naming the file (or the environment) and the problem.
    """
    data = _read_toml(config_file) if config_file is not None else {}
    _FILE_DATA[Settings] = data
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        source = str(config_file) if config_file is not None else "settings"
        raise ConfigError(f"{source}: {where}: {err['msg']}") from None
    finally:
        _FILE_DATA.pop(Settings, None)


__all__ = [
    "AgentSettings", "LogSettings", "ProviderSettings", "RegisterSettings", "RtpSettings", "Settings", "SipSettings",
    "load_settings",
]
