"""The pytest plugin (registered through the ``pytest11`` entry point).

Fixtures: ``mock_clock`` (a ``MockClock`` with autojump) and ``stepline_engine``, a factory:
``async with stepline_engine(app) as t: ...`` (a fresh SQLite file in the test's ``tmp_path`` by
default; ``store="memory"`` for the in-memory reference store).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stepline.sdk.app import App
from stepline.testing.clock import MockClock
from stepline.testing.engine import TestEngine


@pytest.fixture
def mock_clock() -> MockClock:
    """Virtual time that jumps ahead whenever the engine is idle."""
    return MockClock()


@pytest.fixture
def stepline_engine(tmp_path: Path, mock_clock: MockClock) -> Callable[..., TestEngine]:
    """Build a ``TestEngine`` for an app: ``stepline_engine(app, store="sqlite")``."""

    def make(app: App, **options: Any) -> TestEngine:
        options.setdefault("clock", mock_clock)
        options.setdefault("store", "sqlite")
        if options["store"] == "sqlite":
            options.setdefault("path", tmp_path / "stepline.db")
        return TestEngine(app, **options)

    return make
