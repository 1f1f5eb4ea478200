"""The event loop of Stepline's own runners (``stepline._loops``): ``stepline server``'s is
uvloop's when it is installed, the workers' (``stepline worker``, ``App.run_worker``,
``stepline dev``) asyncio's; ``STEPLINE_LOOP`` picks either for every runner."""

from __future__ import annotations

import asyncio
import sys

import pytest

from stepline import _loops


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_a_workers_loop_is_asyncios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_loops.LOOP_VARIABLE, raising=False)
    assert _loops.run(_loop_module()).startswith("asyncio")


def test_the_servers_loop_is_uvloops_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_loops.LOOP_VARIABLE, raising=False)
    assert _loops.run(_loop_module(), uvloop_by_default=True).startswith("uvloop")


@pytest.mark.parametrize("by_default", [False, True])
def test_stepline_loop_picks_the_loop_of_every_runner(
    monkeypatch: pytest.MonkeyPatch, by_default: bool
) -> None:
    monkeypatch.setenv(_loops.LOOP_VARIABLE, "asyncio")
    assert _loops.run(_loop_module(), uvloop_by_default=by_default).startswith("asyncio")
    monkeypatch.setenv(_loops.LOOP_VARIABLE, "uvloop")
    assert _loops.run(_loop_module(), uvloop_by_default=by_default).startswith("uvloop")


def test_without_uvloop_every_runners_loop_is_asyncios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_loops.LOOP_VARIABLE, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop: ImportError
    assert _loops.run(_loop_module(), uvloop_by_default=True).startswith("asyncio")
