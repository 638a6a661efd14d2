"""Errors of the sipagent package.

    SipAgentError
    ├── ConfigError          a bad config file, environment variable or option (one-line message)
    └── CaptureInputError    re-exported from rtp.errors for CLI handling

Protocol errors of the SIP core live in :mod:`sipagent.sip.errors`; media errors in :mod:`rtp.errors`.
"""

from __future__ import annotations


class SipAgentError(Exception):
    """Base of every error sipagent raises on purpose."""


class ConfigError(SipAgentError):
    """The configuration cannot be used; the message names the file or variable and the problem."""


__all__ = ["ConfigError", "SipAgentError"]
