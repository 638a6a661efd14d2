"""The example config in config/ loads and lists every setting with its default value."""

from __future__ import annotations

import tomllib

import pytest

from sipagent.config import Settings, load_settings
from tests.conftest import REPO

pytestmark = pytest.mark.unit

EXAMPLE = REPO / "config" / "sipagent.example.toml"


def test_example_loads_to_the_defaults() -> None:
    assert load_settings(EXAMPLE) == Settings()


def test_example_names_every_section() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data) == set(Settings.model_fields)
