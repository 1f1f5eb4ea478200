"""The event loop of Stepline's own runners (``stepline._loops``): uvloop's when it is
installed, asyncio's when it is not or when ``STEPLINE_LOOP=asyncio`` asks for it."""

from __future__ import annotations

import asyncio
import sys

import pytest

from stepline import _loops


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_runners_loop_is_uvloops_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_loops.LOOP_VARIABLE, raising=False)
    assert _loops.run(_loop_module()).startswith("uvloop")


def test_stepline_loop_asyncio_picks_asyncios_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_loops.LOOP_VARIABLE, "asyncio")
    assert _loops.run(_loop_module()).startswith("asyncio")


def test_without_uvloop_the_runners_loop_is_asyncios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_loops.LOOP_VARIABLE, raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop: ImportError
    assert _loops.run(_loop_module()).startswith("asyncio")
