"""structlog set-up: one line per call event, ``call_id`` bound by the caller, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|api_key|authorization", re.IGNORECASE)
_SECRET_HEADER = re.compile(r"((?:Proxy-)?Authorization\s*:\s*)[^\r\n]*", re.IGNORECASE)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if _SECRET_KEYS.search(key):
            event[key] = "***"
        elif isinstance(event[key], str) and "uthorization" in event[key]:
            event[key] = _SECRET_HEADER.sub(r"\1***", event[key])
    return event


def configure(level: str = "info", json_output: bool = False) -> None:
    """Configure structlog for the process (called once by the CLI)."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("sipagent").bind(**bound)


__all__ = ["configure", "get_logger"]
