"""Errors of the media plane.

    RtpError
    ├── PacketError      malformed RTP, RTCP or telephone-event bytes (the message names the field)
    └── CaptureError     a pcap/pcapng file that cannot be read (the message names the file and offset)

Parsers raise only these; no ``IndexError`` or ``struct.error`` escapes.
"""

from __future__ import annotations


class RtpError(Exception):
    """Base of every error the media plane raises on purpose."""


class PacketError(RtpError, ValueError):
    """Bytes that are not a valid RTP/RTCP/telephone-event packet."""


class CaptureError(RtpError):
    """A capture file that cannot be read; ``offset`` is where reading stopped, if known."""

    def __init__(self, path: str, problem: str, offset: int | None = None) -> None:
        self.path = path
        self.problem = problem
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{path}: {problem}{where}")


__all__ = ["CaptureError", "PacketError", "RtpError"]
