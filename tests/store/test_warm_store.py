"""The tests' WarmStore (tests/pgtest.py) behaves as a PostgresStore where a test can tell."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

import pgtest
from stepline.store.postgres import PostgresStore
from stepline.store.postgres.presence import Presence

from .builders import start


@pytest.mark.parametrize("warm", [False, True], ids=["store", "warm_store"])
def test_a_store_used_after_close_fails(pg_url: str, warm: bool) -> None:
    # an engine thread that touches the store after its test closed it must fail that test (as
    # on a real PostgresStore, whose pools are closed), not write into the next test's database
    store = pgtest.warm_store(pg_url) if warm else PostgresStore(pg_url)
    store.migrate()
    store.close()
    with pytest.raises(Exception, match=r"closed|not open"):
        start(store, "r1")


def test_a_warm_store_closed_leaves_the_pools_open_for_the_next_test(pg_url: str) -> None:
    first = pgtest.warm_store(pg_url)
    first.migrate()
    first.close()
    second = pgtest.warm_store(pg_url)
    start(second, "r1")
    assert second.load_run("r1") is not None
    second.close()


def test_a_test_starts_once_the_presence_locks_of_closed_stores_are_released(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed store's presence session ends, and the server releases its locks when that
    # backend has ended: after close() returned, 4.6 ms later at the median, 24 ms at most
    # (300 closes at load 12). An earlier test's store of its own (own_pg_store, an App's)
    # holding w1 left it held into the next test, whose warm store's presence (a session
    # already open, at once) could not take w1 and offered no hand-offs
    # (test_pg_handoff_spare: "None == 'w1'", 1 gate of 75). The emptying before each test
    # waits for them. Forced: the earlier session's backend is stopped until the emptying waits
    earlier = Presence(pg_url)
    assert earlier.token_prefix("w1")
    assert earlier._conn is not None
    backend = earlier._conn.info.backend_pid

    class Resuming:
        """``time`` whose sleep (the emptying's wait) lets the stopped backend end first."""

        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            _resume(backend)
            time.sleep(seconds)

    os.kill(backend, signal.SIGSTOP)
    try:
        earlier.close()  # its session ends only once its backend runs again
        monkeypatch.setattr(pgtest, "time", Resuming())
        pgtest.empty_database(pg_url)
        store = pgtest.warm_store(pg_url)
        try:
            assert store._presence.token_prefix("w1")  # before: "" (w1 held by the earlier)
        finally:
            store.close()
    finally:
        _resume(backend)


def _resume(pid: int) -> None:
    """SIGCONT to the backend ``pid`` if it has not ended."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
