"""SQLite schema 28: a wait is pending while its step is PENDING, so an ingest that resolves it
writes no mark (completing the step claims it); a resolved wait's row is kept until the purge,
which sweeps ``waits`` in key order; the marks of a file of 27 go with the migration."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from sqlitetest import file_at_version
from stepline.store import SQLiteStore
from stepline.store.records import EventIngest, EventRecord, PassCommit, RunEnd
from stepline.store.sqlite import _waits as wait_verbs
from stepline.store.sqlite._wait_queries import PENDING
from stepline.store.sqlite.schema import _KEEP_RESOLVED, MIGRATIONS

from .builders import T0, commit, ingest, lease_run, start, step, suspend_on_wait, wait


def _paid(order_id: str, internal_id: str) -> EventIngest:
    return EventIngest(
        EventRecord(internal_id, "payment/received", {"orderId": order_id}, {}, None, T0)
    )


def _waiting(store: SQLiteStore, *run_ids: str) -> None:
    for run_id in run_ids:
        start(store, run_id)
        pending = wait(run_id, f"w-{run_id}", f'async.data.orderId == "{run_id}"')
        suspend_on_wait(store, lease_run(store, run_id), pending)


def _waits(path: Path) -> tuple[list[str], list[str]]:
    """The wait ids ``waits`` holds, and those of them resolved (kept for the purge)."""
    with closing(sqlite3.connect(path)) as conn:
        rows = sorted(r[0] for r in conn.execute("SELECT wait_id FROM waits"))
        done = sorted(r[0] for r in conn.execute(f"SELECT wait_id FROM waits WHERE NOT {PENDING}"))
    return rows, done


def test_the_marks_of_a_file_of_27_go_with_their_rows(tmp_path: Path) -> None:
    # a file of 27: r1's wait resolved (marked, its row kept for the purge), r2's pending
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.migrate()
    _waiting(store, "r1", "r2")
    [result] = ingest(store, _paid("r1", "p-1"), now=T0 + 1)
    assert result.resumed_run_ids == ("r1",)
    store.close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE waits_resolved (run_id TEXT NOT NULL, wait_id TEXT NOT NULL,"
            " PRIMARY KEY (run_id, wait_id)) WITHOUT ROWID"
        )
        conn.executescript(_KEEP_RESOLVED)
        conn.execute("INSERT INTO waits_resolved VALUES ('r1', 'w-r1')")
        conn.execute("ALTER TABLE events DROP COLUMN v")  # 29's
        conn.execute("ALTER TABLE gcra DROP COLUMN decided_at")  # 30's
        conn.execute("DELETE FROM schema_version WHERE version > 27")
        conn.commit()
    store = SQLiteStore(path)
    try:
        store.migrate()
        with closing(sqlite3.connect(path)) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            [(version,)] = conn.execute("SELECT MAX(version) FROM schema_version")
        assert version == len(MIGRATIONS) >= 28
        assert not names & {"waits_resolved", "waits_keep_resolved"}
        assert _waits(path) == (["w-r2"], [])
        [again] = ingest(store, _paid("r1", "p-2"), now=T0 + 2)
        assert again.resumed_run_ids == ()
        [paid] = ingest(store, _paid("r2", "p-3"), now=T0 + 2)
        assert paid.resumed_run_ids == ("r2",)
    finally:
        store.close()


def test_a_file_of_27_with_a_live_worker_is_not_migrated_to_28(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    file_at_version(path, 27, ("w-old", time.time() + 600))
    store = SQLiteStore(path)
    try:
        with pytest.raises(Exception, match="w-old"):
            store.migrate()
    finally:
        store.close()


def test_two_waits_of_one_step_resolve_it_once(sqlite_store: SQLiteStore) -> None:
    # the completion of the step is the claim: once it is not PENDING, no wait of it is pending
    start(sqlite_store, "r1")
    held = lease_run(sqlite_store, "r1")
    waits = [
        wait("r1", "w-a", 'async.data.orderId == "r1"'),
        wait("r1", "w-b", 'async.data.orderId == "r1"', event_name="payment/settled"),
    ]
    steps = [step("r1", "h-wait", 0, "PENDING", kind="wait")]
    commit(
        sqlite_store, PassCommit("r1", held.token, steps=steps, waits=waits, end=RunEnd("WAITING"))
    )
    [paid] = ingest(sqlite_store, _paid("r1", "p-1"), now=T0 + 1)
    assert paid.resumed_run_ids == ("r1",)
    settled = EventRecord("s-1", "payment/settled", {"orderId": "r1"}, {}, None, T0)
    [late] = ingest(sqlite_store, EventIngest(settled), now=T0 + 2)
    assert late.resumed_run_ids == ()
    state = sqlite_store.load_run("r1")
    assert state is not None and state.waits == []
    kinds = [h.kind for h in sqlite_store.get_history("r1")]
    assert kinds.count("WAIT_MATCHED") == 1
    assert _waits(sqlite_store.path) == (["w-a", "w-b"], ["w-a", "w-b"])


def test_the_purge_sweeps_on_past_pending_waits_then_starts_again(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each call reads at most ``limit + SWEEP_MORE`` rows, going on where the last one stopped
    monkeypatch.setattr(wait_verbs, "SWEEP_MORE", 1)
    _waiting(sqlite_store, "r1", "r2", "r3", "r4")
    [paid] = ingest(sqlite_store, _paid("r4", "p-4"), now=T0 + 1)
    assert paid.resumed_run_ids == ("r4",)
    path = sqlite_store.path
    assert _waits(path) == (["w-r1", "w-r2", "w-r3", "w-r4"], ["w-r4"])
    counts = []
    for _ in range(4):
        with sqlite_store.transaction() as tx:
            counts.append(tx.purge_resolved_waits(1))
    # r1, r2 read (pending); r3, r4 read, r4 purged; the end; from the first key again
    assert counts == [0, 1, 0, 0]
    assert _waits(path) == (["w-r1", "w-r2", "w-r3"], [])
    [paid] = ingest(sqlite_store, _paid("r1", "p-1"), now=T0 + 2)
    assert paid.resumed_run_ids == ("r1",)
    with sqlite_store.transaction() as tx:
        assert tx.purge_resolved_waits(1) == 0  # after r2: r3 read (pending), the end reached
    with sqlite_store.transaction() as tx:
        assert tx.purge_resolved_waits(1) == 1  # from the first key: r1
    assert _waits(path) == (["w-r2", "w-r3"], [])
