"""Shared fixtures: a fresh app per test, run on a real SQLite file (and on the reference memory
store) with virtual time."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stepline import App
from stepline.testing import TestEngine

# `stepline dev` invoked in-process (CliRunner) serves HTTP: on any free port, so tests running
# at once never fight over 8288
os.environ.setdefault("STEPLINE_PORT", "0")


@pytest.fixture
def app() -> App:
    """A fresh app (functions are registered by each test)."""
    return App("test-app")


@pytest.fixture(params=["sqlite", "memory"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Both stores: engine tests run on a real SQLite file and on the reference store."""
    kind: str = request.param
    return kind


@pytest.fixture
def make_engine(app: App, store_kind: str, tmp_path: Path) -> Callable[..., TestEngine]:
    """``async with make_engine() as t:`` runs ``app`` with a worker and a MockClock."""

    def make(**options: Any) -> TestEngine:
        return TestEngine(app, store=store_kind, path=tmp_path / "stepline.db", **options)

    return make
