"""sipagent: an asyncio SIP endpoint that puts a voice agent on a phone line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sipagent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
