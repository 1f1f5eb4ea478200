"""PostgreSQL: a run a notification hands to a worker of another process is no work for this
process's workers (a lease by name cannot take it, nor a full look while its lease lives): its
listener does not name it to them, and a notification handing only such runs wakes nobody here.
Every other process's workers used to lease it by name, fail, and look for any due work (a full
lease attempt each, for every run sent)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from tests.store.test_pg_handoffs import APP, TTL, register, send

from stepline.store.postgres import PostgresStore

Heard = list[Sequence[tuple[str, str]]]


def _watch(store: PostgresStore) -> tuple[Heard, Callable[[], None]]:
    """What the store's listener wakes its workers with, from now on; and its stop."""
    heard: Heard = []
    listening = threading.Event()

    def on_wake(named: Sequence[tuple[str, str]]) -> None:
        listening.set()
        heard.append(named)

    stop = store.watch(on_wake)
    assert listening.wait(30)  # woken once it listens
    heard.clear()
    return heard, stop


def _until(what: str, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)  # real time: the poll interval; the deadline bounds the wait


def test_a_run_handed_to_another_processs_worker_wakes_no_worker_here(
    pg_store: PostgresStore, own_pg_store: PostgresStore
) -> None:
    """``pg_store`` is the process of ``w1`` (which takes hand-offs there); ``own_pg_store`` is
    another process's, with workers of the same function."""
    register(pg_store, "w1")
    pg_store._handoffs.accept("w1", TTL)
    owners, stop_owners = _watch(pg_store)
    others, stop_others = _watch(own_pg_store)
    try:
        send(pg_store, "r1")
        _until("the owner's wake-up", lambda: owners)
        with own_pg_store.transaction() as tx:  # a plain wake-up after it, for both
            tx.set_paused("f", True, APP)
        _until("the plain wake-ups", lambda: [] in owners and [] in others)
    finally:
        stop_owners()
        stop_others()
    assert owners == [[("fn", "r1")], []]  # its workers: the run named (w1 takes its lease)
    assert others == [[]]  # the other process: only the plain one
