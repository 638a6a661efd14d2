"""Import rules of the design: rtp never imports sipagent; the SIP core stays sans-I/O.

Checked on the source's import statements (ast), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def imported_modules(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[path] = names
    return found


def offenders(package: str, banned: tuple[str, ...], allow: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path, names in imported_modules(package).items():
        if path.name in allow:
            continue
        for name in names:
            if any(name == b or name.startswith(b + ".") for b in banned):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    return bad


def test_rtp_never_imports_sipagent() -> None:
    assert offenders("rtp", ("sipagent",)) == []


def test_rtp_uses_asyncio_only_in_transport() -> None:
    assert offenders("rtp", ("asyncio",), allow=("transport.py",)) == []


def test_sip_core_is_sans_io() -> None:
    assert offenders("sipagent/sip", ("asyncio", "socket", "rtp", "sipagent.agent", "threading")) == []


def test_no_threads_sleep_or_audioop_in_runtime_packages() -> None:
    assert offenders("rtp", ("threading", "audioop")) == []
    assert offenders("sipagent", ("threading", "audioop")) == []
    for package in ("rtp", "sipagent"):
        for path in (REPO / package).rglob("*.py"):
            assert "time.sleep(" not in path.read_text(encoding="utf-8"), path


def test_only_config_reads_the_environment() -> None:
    for package in ("rtp", "sipagent"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "config.py" and path.parent.name == "sipagent":
                continue
            text = path.read_text(encoding="utf-8")
            assert "os.environ" not in text and "getenv(" not in text, path
