"""The offline reply policy: the caller's words matched against intents of a TOML script, answered with canned text.

It is the honest stand-in for an LLM on a machine with no network (notes: no usable offline LLM exists on the
registries): deterministic, instant, and able to end or transfer the call. Every intent phrase also feeds the
offline recognizer's grammar, so what the caller is most likely to say is what pocketsphinx decodes best.

Matching, in order: a phrase found word for word inside the transcript (the longest one wins, so "talk to a human
please" beats a shorter overlapping phrase); otherwise the intent with the most keyword hits; otherwise the
fallback line. Ties go to the intent listed first.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sipagent.errors import ConfigError

__all__ = ["Action", "Intent", "Reply", "Script", "normalize"]

Action = Literal["hangup", "transfer"]
_ACTIONS = ("hangup", "transfer")
_NON_WORD = re.compile(r"[^a-z']+")
_LINES = ("greeting", "fallback", "reprompt", "goodbye", "no_operator", "transfer")
_TOP_KEYS = {*_LINES, "fillers", "intents"}
_INTENT_KEYS = {"name", "phrases", "keywords", "answer", "action"}


def normalize(text: str) -> str:
    """Lower-case words of letters and apostrophes, single-spaced (the form the offline recognizer outputs)."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    action: Action | None = None
    """Once the reply has played: end the call, or transfer it to the operator."""
    intent: str | None = None
    """The matched intent's name; None for the fallback."""


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    phrases: tuple[str, ...]
    """Normalized phrases, each also a sentence of the recognizer's grammar."""
    answer: str
    action: Action | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Script:
    greeting: str
    fallback: str
    reprompt: str
    goodbye: str
    """Said before hanging up on silence or at the maximum call duration."""
    no_operator: str
    transfer: str
    """Said before a transfer asked for by DTMF."""
    intents: tuple[Intent, ...]
    fillers: tuple[str, ...] = ()
    """Words the recognizer may hear around a phrase ("um", "please")."""

    @classmethod
    def load(cls, path: Path | str) -> Script:
        """Read and check a script file; any problem is one ``ConfigError`` line naming the file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such agent script file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the agent script: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {' '.join(str(exc).split())}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "agent script") -> Script:
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
        lines = {key: _text(data, key, source) for key in _LINES}
        fillers = _words(data, "fillers", source, required=False)
        raw = data.get("intents")
        if not isinstance(raw, list) or not raw or not all(isinstance(i, dict) for i in raw):
            raise ConfigError(f"{source}: 'intents' must be a non-empty array of tables ([[intents]])")
        intents = tuple(_intent(entry, n, source) for n, entry in enumerate(raw, 1))
        names = [i.name for i in intents]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"{source}: intent name {duplicate!r} is used twice")
        return cls(intents=intents, fillers=fillers, **lines)

    @property
    def phrases(self) -> tuple[str, ...]:
        """Every intent phrase once, in script order: the recognizer's grammar."""
        return tuple(dict.fromkeys(p for intent in self.intents for p in intent.phrases))

    def match(self, text: str) -> Intent | None:
        words = normalize(text).split()
        if not words:
            return None
        padded = f" {' '.join(words)} "
        best: Intent | None = None
        best_len = 0
        for intent in self.intents:
            for phrase in intent.phrases:
                size = phrase.count(" ") + 1
                if size > best_len and f" {phrase} " in padded:
                    best, best_len = intent, size
        if best is not None:
            return best
        present = set(words)
        hits = [(sum(k in present for k in intent.keywords), intent) for intent in self.intents]
        top = max(count for count, _ in hits)
        return next(intent for count, intent in hits if count == top) if top else None

    def reply(self, text: str) -> Reply:
        intent = self.match(text)
        if intent is None:
            return Reply(self.fallback)
        return Reply(intent.answer, intent.action, intent.name)


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return " ".join(value.split())


def _words(data: dict[str, Any], key: str, where: str, *, required: bool) -> tuple[str, ...]:
    value = data.get(key, None if required else [])
    if not isinstance(value, list) or (required and not value) or not all(isinstance(v, str) for v in value):
        need = "a non-empty list" if required else "a list"
        raise ConfigError(f"{where}: {key!r} must be {need} of strings")
    out = tuple(normalize(v) for v in value)
    empty = next((v for v, n in zip(value, out, strict=True) if not n), None)
    if empty is not None:
        raise ConfigError(f"{where}: {key!r} entry {empty!r} has no words (letters and apostrophes only)")
    return tuple(dict.fromkeys(out))


def _intent(entry: dict[str, Any], number: int, source: str) -> Intent:
    name = entry.get("name")
    label = f"intent {name!r}" if isinstance(name, str) and name else f"intent #{number}"
    where = f"{source}: {label}"
    unknown = sorted(set(entry) - _INTENT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_INTENT_KEYS))})")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    action = entry.get("action")
    if action is not None and action not in _ACTIONS:
        raise ConfigError(f"{where}: 'action' must be one of {', '.join(_ACTIONS)}, got {action!r}")
    return Intent(name=name, phrases=_words(entry, "phrases", where, required=True),
                  answer=_text(entry, "answer", where), action=action,
                  keywords=_words(entry, "keywords", where, required=False))
