"""The PostgreSQL wake-up listener's thread outlives an unexpected error (a callback's bug, a
payload it could not read): it logs it and listens again. Before, only psycopg's and the
socket's errors were caught: anything else ended the thread for good, and the process's
workers heard no notification again (left to their poll)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest

from stepline.store.postgres.wakeups import WakeupListener


def _until(what: str, check: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(
            0.005
        )  # real time: the listener's thread works meanwhile; the deadline bounds it


def test_the_listener_listens_again_after_a_callbacks_error(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    woken: list[tuple[tuple[str, str], ...]] = []

    def on_wake(named: Sequence[tuple[str, str]]) -> None:
        woken.append(tuple(named))
        if ("fn", "boom") in named:
            raise RuntimeError("a bug in a wake-up's callback")

    listener = WakeupListener(pg_url, on_wake)
    listener.start()
    try:
        _until("the listener's first look", lambda: woken)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('stepline', %s)", ('[["fn","boom"]]',))
            _until("the failing wake-up", lambda: (("fn", "boom"),) in woken)
            _until("the look after listening again", lambda: woken[-1] == ())
            conn.execute("SELECT pg_notify('stepline', %s)", ('[["fn","after"]]',))
            _until("a wake-up after the error", lambda: (("fn", "after"),) in woken)
    finally:
        listener.stop()
    assert "the listener failed; listening again" in caplog.text
