"""Shared test set-up: tier markers, and the rule that CI turns a missing interop peer into a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
REQUIRE_PEERS = os.environ.get("SIPAGENT_REQUIRE_PEERS") == "1"


def require_tool(name: str) -> str:
    """Path of an external peer program; skip when absent, fail when CI requires peers."""
    path = shutil.which(name)
    if path is None:
        message = f"interop peer {name!r} is not installed"
        if REQUIRE_PEERS:
            pytest.fail(message + " (SIPAGENT_REQUIRE_PEERS=1)")
        pytest.skip(message)
    return path


def require_root(reason: str) -> None:
    if os.geteuid() != 0:
        if REQUIRE_PEERS:
            pytest.fail(f"{reason} needs root (SIPAGENT_REQUIRE_PEERS=1)")
        pytest.skip(f"{reason} needs root")
