"""The event loop of Stepline's own runners (``stepline._loops``): uvloop's when it is
installed, for ``stepline server``, the workers (``stepline worker``, ``App.run_worker``) and
``stepline dev`` alike; ``STEPLINE_LOOP=asyncio`` picks asyncio's for every runner."""

from __future__ import annotations

import asyncio
import sys

import pytest

from stepline import _loops


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_every_runners_loop_is_uvloops_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_loops.LOOP_VARIABLE, raising=False)
    assert _loops.run(_loop_module()).startswith("uvloop")


def test_stepline_loop_picks_the_loop_of_every_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_loops.LOOP_VARIABLE, "asyncio")
    assert _loops.run(_loop_module()).startswith("asyncio")
    monkeypatch.setenv(_loops.LOOP_VARIABLE, " AsyncIO ")
    assert _loops.run(_loop_module()).startswith("asyncio")
    monkeypatch.setenv(_loops.LOOP_VARIABLE, "uvloop")
    assert _loops.run(_loop_module()).startswith("uvloop")


def test_without_uvloop_every_runners_loop_is_asyncios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_loops.LOOP_VARIABLE, raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop: ImportError
    assert _loops.run(_loop_module()).startswith("asyncio")
