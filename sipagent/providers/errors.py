"""Errors of the speech providers: one tree, each error saying whether a retry can help.

    SipAgentError
    └── ProviderError(retryable)
        ├── ProviderConnectionError   the link to the engine failed or dropped (a socket, a worker process): retryable
        ├── ProviderTimeoutError      the engine did not answer in time: retryable
        ├── ProviderStatusError       the engine answered with an error status; retryable for 408, 429, 499 and 5xx
        └── ProviderConfigError       bad settings, missing credentials, an engine that is not installed: not retryable

Third-party exceptions (websockets, httpx, pocketsphinx, ctypes) are translated into these at the provider boundary.
"""

from __future__ import annotations

from sipagent.errors import SipAgentError

__all__ = [
    "ProviderConfigError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderStatusError",
    "ProviderTimeoutError",
]


class ProviderError(SipAgentError):
    """A speech provider failed; ``retryable`` says whether the same request may succeed if sent again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProviderConnectionError(ProviderError):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class ProviderTimeoutError(ProviderError):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class ProviderStatusError(ProviderError):
    """The engine refused the request with ``status`` (an HTTP-like code)."""

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        # 408 timeout, 429 rate limit and 499 client-closed are transient; other 4xx mean the request itself is wrong.
        retryable = status in (408, 429, 499) or status >= 500
        super().__init__(f"{message} (status {status})", retryable=retryable)
        self.status = status
        self.body = body


class ProviderConfigError(ProviderError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)
