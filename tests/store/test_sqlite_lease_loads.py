"""A SQLite transaction reads the runs it just leased (``LoadsLeased``): an in-process send's
new runs start their pass with the run as that transaction read it, as ``load_run`` reads it
once committed (PostgreSQL's leases carry it always: test_pg_lease_loads.py)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from tests.store.builders import SERVED, T0, TTL, commit, lease_run, start, step

from stepline.store.capabilities import LoadsLeased
from stepline.store.records import Lease, PassCommit
from stepline.store.sqlite import SQLiteStore


def _lease_loaded(store: SQLiteStore, now: float) -> list[Lease]:
    with store.transaction() as tx:
        assert isinstance(tx, LoadsLeased)
        return tx.load_leased(tx.lease_due("w2", now, 100, TTL, SERVED))


def test_a_lease_loaded_in_its_transaction_reads_as_load_run_does(
    sqlite_store: SQLiteStore,
) -> None:
    start(sqlite_store, "r1", "r2")
    first = lease_run(sqlite_store, "r1", "w1", T0)
    commit(sqlite_store, PassCommit("r1", first.token, steps=[step("r1", "h1", 0, output=7)]))
    leases = _lease_loaded(sqlite_store, T0 + 3600)  # w1's expired
    assert [held.run_id for held in leases] == ["r1", "r2"]
    states = [held.loaded() if held.loaded else None for held in leases]
    assert states == [sqlite_store.load_run("r1"), sqlite_store.load_run("r2")]
    state = states[0]
    assert state is not None
    assert state.run.status == "RUNNING" and state.run.worker_id == "w2"
    assert [s.output_json for s in state.steps.values()] == [b"7"]
    assert [e.internal_id for e in state.events] == ["ev-r1"]


def test_a_run_the_lease_cannot_decode_is_left_for_its_pass_to_read(
    sqlite_store: SQLiteStore,
) -> None:
    start(sqlite_store, "r1", "r2")
    with closing(sqlite3.connect(sqlite_store.path)) as conn, conn:
        conn.execute("UPDATE runs SET error = 'not json' WHERE run_id = 'r2'")
    leases = {held.run_id: held for held in _lease_loaded(sqlite_store, T0)}
    assert leases["r1"].loaded is not None  # the other run is loaded all the same
    assert leases["r2"].loaded is None  # its pass reads it and fails the attempt there
