"""The command line: help, version, and one-line errors for bad settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sipagent import __version__
from sipagent.config import load_settings
from sipagent.errors import ConfigError

pytestmark = pytest.mark.unit


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipagent.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_help_lists_commands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    assert "serve" in out.stdout and "version" in out.stdout


def test_serve_help_lists_options() -> None:
    out = run_cli("serve", "--help")
    assert out.returncode == 0
    for option in ("--config", "--bind", "--sip-port", "--rtp-ports", "--agent", "--register",
                   "--username", "--auth-user", "--password"):
        assert option in out.stdout


def test_version_prints_package_version() -> None:
    out = run_cli("version")
    assert out.stdout.strip() == __version__


def test_bad_config_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip\nport = 1\n")
    out = run_cli("serve", "--config", str(bad))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "invalid TOML" in lines[0]


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[rtp]\nport_min = 20001\n")
    with pytest.raises(ConfigError, match=r"c\.toml: rtp.*even"):
        load_settings(cfg)


def test_bad_rtp_port_range_option() -> None:
    out = run_cli("serve", "--rtp-ports", "banana")
    assert out.returncode == 2 and "--rtp-ports" in out.stderr


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sip]\nport = 5070\nbind = "127.0.0.2"\n[rtp]\nport_min = 30000\nport_max = 30100\n')
    assert load_settings(cfg).sip.port == 5070
    monkeypatch.setenv("SIPAGENT_SIP__PORT", "5080")
    s = load_settings(cfg)
    assert (s.sip.port, s.sip.bind, s.rtp.port_min) == (5080, "127.0.0.2", 30000)
    s = load_settings(cfg, {"sip": {"port": 5090}})
    assert (s.sip.port, s.sip.bind) == (5090, "127.0.0.2")
