"""SQLite-only guarantees: migrations, durability settings, reopening, several processes."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import pytest

from stepline.errors import LeaseLostError
from stepline.store import SQLiteStore
from stepline.store._copy import copy_database
from stepline.store._primitives import IndexedWait, indexed_wait
from stepline.store._rows import json_or_none
from stepline.store.records import (
    EventIngest,
    EventRecord,
    FunctionSet,
    PassCommit,
    RunEnd,
    RunFilter,
)
from stepline.store.sqlite._deferred import Deferred
from stepline.store.sqlite._wait_queries import PENDING
from stepline.store.sqlite.schema import MIGRATIONS, STOP_WORKERS_FIRST
from stepline.store.sqlite.tx import _SQLiteTx

from .builders import (
    SERVED,
    T0,
    cel_matches,
    commit,
    history,
    lease,
    lease_run,
    start,
    step,
    suspend_on_wait,
    wait,
)


def schema_versions(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def test_migrate_twice_is_idempotent_and_records_the_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.migrate()
    start(store, "r1")
    store.migrate()
    assert schema_versions(path) == list(range(1, len(MIGRATIONS) + 1))
    assert store.get_run("r1") is not None

    other = SQLiteStore(path)  # another process migrating the same file
    other.migrate()
    assert schema_versions(path) == list(range(1, len(MIGRATIONS) + 1))
    store.close()
    other.close()


def test_migrate_upgrades_a_file_made_by_an_older_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with closing(sqlite3.connect(path)) as conn:  # a file that only has migration 1
        conn.executescript(MIGRATIONS[0])
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.commit()
    store = SQLiteStore(path)
    store.migrate()
    assert schema_versions(path) == list(range(1, len(MIGRATIONS) + 1))
    start(store, "r1")
    assert [r.run_id for r in store.list_runs(RunFilter(function_id="fn"))] == ["r1"]
    store.close()


def test_runs_events_started_before_effects_were_recorded_read_as_started(
    tmp_path: Path,
) -> None:
    # issue 9: migration 11 keys run_events by effect too; the rows before it are "started"
    path = tmp_path / "s.db"
    with closing(sqlite3.connect(path)) as conn:  # a file at migration 10 with one run
        for script in MIGRATIONS[:10]:
            conn.executescript(script)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.executemany(
            "INSERT INTO schema_version (version) VALUES (?)", [(v,) for v in range(1, 11)]
        )
        conn.execute(
            "INSERT INTO runs (run_id, function_id, status, event_ids, created_at) "
            "VALUES ('r1', 'fn', 'QUEUED', '[\"e1\"]', ?)",
            (T0,),
        )
        conn.execute("INSERT INTO run_events (event_id, run_id) VALUES ('e1', 'r1')")
        conn.commit()
    store = SQLiteStore(path)
    store.migrate()
    assert [(r.effect, r.run.run_id) for r in store.event_runs(["e1"])] == [("started", "r1")]
    assert [r.run_id for r in store.list_runs(RunFilter(event_id="e1"))] == ["r1"]
    # a process of the version before 11, still running during the upgrade, records a run its
    # event started the old way: the row is kept, as started (INSERT OR IGNORE dropped it
    # without a word while the effect had no default)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT OR IGNORE INTO run_events (event_id, run_id) VALUES ('e2', 'r1')")
        conn.commit()
    assert [(r.effect, r.run.run_id) for r in store.event_runs(["e2"])] == [("started", "r1")]
    store.close()


def test_pauses_recorded_before_they_were_per_app_hold_every_app_until_adopted(
    tmp_path: Path,
) -> None:
    # issue 6 item 2: migration 7 keys pauses by (app id, function id); old rows get app ''
    path = tmp_path / "s.db"
    with closing(sqlite3.connect(path)) as conn:  # a file at migration 6, "fn" paused
        for script in MIGRATIONS[:6]:
            conn.executescript(script)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.executemany(
            "INSERT INTO schema_version (version) VALUES (?)", [(v,) for v in range(1, 7)]
        )
        conn.execute("INSERT INTO paused (function_id) VALUES ('fn')")
        conn.commit()
    store = SQLiteStore(path)
    store.migrate()
    assert store.paused_functions("shop") == store.paused_functions("billing") == {"fn"}
    with store.transaction() as tx:
        tx.adopt_unowned(FunctionSet("shop", ("fn",)))
    assert store.paused_functions("shop") == {"fn"}
    assert store.paused_functions("billing") == set()
    store.close()


def test_waits_stored_before_they_carried_their_step_id_name_it_when_resolved(
    tmp_path: Path,
) -> None:
    # migration 18 keys waits by run and stores each wait's step id (its WAIT_MATCHED history
    # row names the step without reading it): the waits a file holds get it from their step;
    # one a process of the version before stores without it still names its step when resolved.
    # (A wait without a step row, r2's, is pending nowhere since migration 28: a wait is
    # pending while its step is PENDING; the engine stores each one with its step.)
    path = tmp_path / "s.db"
    old_wait = (
        "INSERT INTO waits (wait_id, run_id, step_hash, event_name, expression, index_path, "
        "index_value, expires_at, created_at) VALUES (?, ?, ?, 'payment/received', NULL, NULL, "
        "NULL, NULL, ?)"
    )
    with closing(sqlite3.connect(path)) as conn:  # a file at migration 17, r1 and r2 waiting
        for script in MIGRATIONS[:17]:
            conn.executescript(script)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.executemany(
            "INSERT INTO schema_version (version) VALUES (?)", [(v,) for v in range(1, 18)]
        )
        for run_id in ("r1", "r2", "r3"):
            conn.execute(
                "INSERT INTO runs (run_id, function_id, status, event_ids, created_at) "
                "VALUES (?, 'fn', 'WAITING', '[]', ?)",
                (run_id, T0),
            )
            conn.execute("INSERT INTO queue (run_id, due_at) VALUES (?, NULL)", (run_id,))
        for run_id, step_id in (("r1", "pay"), ("r3", "ship")):
            conn.execute(
                "INSERT INTO steps (run_id, hash, step_id, kind, position, status) "
                "VALUES (?, 'h-w', ?, 'wait', 0, 'PENDING')",
                (run_id, step_id),
            )
        conn.execute(old_wait, ("w1", "r1", "h-w", T0))
        conn.execute(old_wait, ("w2", "r2", "h-none", T0))  # no step row: nothing to name
        conn.commit()
    store = SQLiteStore(path)
    store.migrate()
    loaded = [store.load_run(run_id) for run_id in ("r1", "r2")]
    assert [w.step_id for run in loaded if run is not None for w in run.waits] == ["pay"]
    with closing(sqlite3.connect(path)) as conn:
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(waits)")}
        assert "waits_run" not in indexes  # the key (run_id, wait_id) serves a run's waits
        conn.execute(old_wait, ("w3", "r3", "h-w", T0 + 1))  # a process of the version before
        conn.commit()
    event = EventRecord("e1", "payment/received", {}, {}, None, T0 + 2)
    with store.transaction() as tx:
        [result] = tx.ingest([EventIngest(event)], T0 + 2, cel_matches)
    assert sorted(result.resumed_run_ids) == ["r1", "r3"]
    matched = {
        run_id: [(h.kind, h.step_id) for h in store.get_history(run_id)]
        for run_id in ("r1", "r2", "r3")
    }
    assert matched == {"r1": [("WAIT_MATCHED", "pay")], "r2": [], "r3": [("WAIT_MATCHED", "ship")]}
    for run_id in ("r1", "r2", "r3"):
        state = store.load_run(run_id)
        assert state is not None and state.waits == []
    store.close()


def test_data_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.migrate()
    start(store, "r1")
    held = lease_run(store, "r1")
    pending = wait("r1", "w-1", 'async.data.orderId == "o-1"', expires_at=T0 + 60)
    commit(
        store,
        PassCommit(
            "r1",
            held.token,
            steps=[step("r1", "h-a", 0, output={"x": [1, 2.5, "s"]})],
            history=[history("r1", "STEP_COMPLETED", T0 + 1, step="a")],
        ),
    )
    suspend_on_wait(store, held, pending, T0 + 2, until=T0 + 60)
    before, before_history = store.load_run("r1"), store.get_history("r1")
    start(store, "r2", now=T0 + 3)
    r2_lease = lease_run(store, "r2", "w1", now=T0 + 3)
    store.close()

    reopened = SQLiteStore(path)
    reopened.migrate()
    assert reopened.load_run("r1") == before
    assert before is not None
    assert before.steps["h-a"].output_json == b'{"x":[1,2.5,"s"]}'
    assert reopened.get_history("r1") == before_history
    assert [h.kind for h in before_history] == ["RUN_QUEUED", "RUN_STARTED", "STEP_COMPLETED"]
    assert [r.run_id for r in reopened.list_runs(RunFilter())] == ["r2", "r1"]
    assert reopened.next_due_at() == T0 + 3 + 30  # r2's lease; r1 is due at T0 + 60
    # The lease survived too: its token still commits, another one is fenced out.
    with pytest.raises(LeaseLostError):
        commit(reopened, PassCommit("r2", "other", end=RunEnd("COMPLETED")), T0 + 4)
    commit(reopened, PassCommit("r2", r2_lease.token, end=RunEnd("COMPLETED")), T0 + 4)
    assert [h.run_id for h in lease(reopened, "w2", now=T0 + 60)] == ["r1"]
    reopened.close()


def test_wal_and_full_synchronous_by_default(sqlite_store: SQLiteStore) -> None:
    with closing(sqlite3.connect(sqlite_store.path)) as conn:  # journal_mode is the file's
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = sqlite_store._conn()  # synchronous is per connection: ask the store's own
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_synchronous_normal_on_request(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL")
    store.migrate()
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 1
    store.close()
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "s.db", synchronous="OFF")


def test_commits_never_checkpoint_the_checkpointer_thread_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 6 (timer lateness at scale): a checkpoint inside a COMMIT held the writer for
    # 100-300 ms on a large file; the WAL is checkpointed on a thread of its own instead
    limit = 64 * 1024
    monkeypatch.setattr("stepline.store.sqlite._database.CHECKPOINT_WAL_BYTES", limit)
    store = SQLiteStore(tmp_path / "s.db")
    store.migrate()
    wal = Path(f"{store.path}-wal")
    conn = store._conn()
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == limit

    def write(n: int, size: int) -> None:
        with store.transaction() as tx:
            tx.put_sdk_app("app", f"n{n}", b"x" * size, T0)

    for n in range(20):  # about 12 times the limit
        write(n, 40_000)
    # (the WAL's size here is a race with the checkpointer's thread: not asserted)
    deadline = time.monotonic() + 10
    while store._checkpointer.checkpoints == 0:
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.01)  # real time: a poll of the checkpointer thread, under the deadline
    # once a checkpoint has copied the whole WAL, a write starts it over and cuts the file back
    n = 20
    while wal.stat().st_size > limit:
        assert time.monotonic() < deadline, "the WAL was never started over"
        write(n, 100)
        n += 1
        time.sleep(0.01)  # real time: a poll: the checkpointer thread starts the WAL over
    with closing(sqlite3.connect(store.path)) as other:
        assert other.execute("SELECT count(*) FROM sdk_apps").fetchone()[0] == n
    store.close()
    assert store._checkpointer.checkpoints == 0  # a fresh one, started when needed


def test_two_stores_on_one_file_never_lease_the_same_run(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    setup = SQLiteStore(path)
    setup.migrate()
    run_ids = [f"r{n:03}" for n in range(150)]
    start(setup, *run_ids)
    setup.close()

    taken: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    rounds = threading.Barrier(2)  # both lease in every round, so they contend every time

    def worker(owner: str) -> None:
        store = SQLiteStore(path)  # its own store, as another process would have
        try:
            while True:
                try:
                    rounds.wait(timeout=30)
                except threading.BrokenBarrierError:
                    pass  # the other worker found the queue empty and left
                with store.transaction() as tx:
                    got = tx.lease_due(owner, T0, 3, 10**6, SERVED)
                if not got:
                    return
                taken[owner].extend(held.run_id for held in got)
                for held in got:  # and write, so the two contend on commits too
                    commit(store, PassCommit(held.run_id, held.token, started_at=T0), T0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            rounds.abort()
            store.close()

    threads = [threading.Thread(target=worker, args=(owner,)) for owner in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert set(taken["a"]).isdisjoint(taken["b"])
    assert len(taken["a"]) + len(taken["b"]) == len(run_ids)
    assert sorted(taken["a"] + taken["b"]) == run_ids
    assert taken["a"]
    assert taken["b"]


def test_a_failed_checkpoint_does_not_stop_the_next_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # commits never checkpoint (wal_autocheckpoint = 0): if the checkpointer's thread died on
    # an error, the WAL would grow without bound
    limit = 64 * 1024
    monkeypatch.setattr("stepline.store.sqlite._database.CHECKPOINT_WAL_BYTES", limit)
    store = SQLiteStore(tmp_path / "s.db")
    store.migrate()
    checkpointer = store._checkpointer
    connect = checkpointer._connect
    failures = [sqlite3.OperationalError("unable to open database file")]

    def flaky() -> sqlite3.Connection:
        if failures:
            raise failures.pop()
        return connect()

    monkeypatch.setattr(checkpointer, "_connect", flaky)
    deadline = time.monotonic() + 10
    n = 0
    while checkpointer.checkpoints == 0:
        assert time.monotonic() < deadline, "no checkpoint after the failed one"
        with store.transaction() as tx:
            tx.put_sdk_app("app", f"n{n}", b"x" * 40_000, T0)
        n += 1
        time.sleep(0.01)  # real time: lets the checkpointer's thread run; the deadline bounds it
    assert failures == []
    store.close()


def test_a_resolved_wait_gone_before_its_batched_delete_is_decided_again(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside ingest the waits an event resolves are deleted together, trusting the candidates
    # read in the transaction; if one were gone by then, the verb is made again, each delete
    # deciding. Here the index offers a wait that is not stored (a stale candidate).
    start(sqlite_store, "r1")
    pending = wait("r1", "w-r1", 'async.data.orderId == "o-1"')
    suspend_on_wait(sqlite_store, lease_run(sqlite_store, "r1"), pending)
    phantom = dataclasses.replace(pending, wait_id="w-gone", created_at=T0 - 1)
    real = _SQLiteTx.indexed_waits

    def stale(self: _SQLiteTx, name: str, path: str, values: Sequence[str]) -> list[IndexedWait]:
        return [indexed_wait(phantom), *real(self, name, path, values)]

    monkeypatch.setattr(_SQLiteTx, "indexed_waits", stale)
    paid = EventIngest(EventRecord("pay-1", "payment/received", {"orderId": "o-1"}, {}, None, T0))
    with sqlite_store.transaction() as tx:
        [result] = tx.ingest([paid], T0 + 1, cel_matches)
    assert result.resumed_run_ids == ("r1",)  # once: by the wait that was there
    kinds = [h.kind for h in sqlite_store.get_history("r1")]
    assert kinds.count("WAIT_MATCHED") == 1
    assert sqlite_store.get_events(["pay-1"])[0].internal_id == "pay-1"  # stored once


def test_an_ingest_verb_encodes_each_repeated_dict_of_strings_once() -> None:
    # issue 6 (matching costs): every run one verb cancels has the same error and RUN_CANCELLED
    # data; what is remembered is exactly what json_or_none gives, key order included
    deferred = Deferred()
    error = {"name": "Cancelled", "message": "cancelled by event order/cancelled"}
    first = deferred.json_of(error)
    assert first == json_or_none(error)
    assert deferred.json_of(dict(error)) is first  # encoded once
    reordered = {"message": error["message"], "name": "Cancelled"}
    assert deferred.json_of(reordered) == json_or_none(reordered) != first
    for other in ({"n": 1}, {"n": "1"}, {"a": {"b": "c"}}, {"x": None}, {}):
        assert deferred.json_of(other) == json_or_none(other)
    assert deferred.json_of(None) is None
    assert deferred.json_of({"n": 1}) != deferred.json_of({"n": "1"})


def test_the_later_commits_of_a_pass_write_no_run_row(sqlite_store: SQLiteStore) -> None:
    # issue 8 (per step): a pass's first commit marks its run RUNNING with its pass count back
    # to 0; the later ones find it so and write only their step and history rows
    start(sqlite_store, "r1")
    held = lease_run(sqlite_store, "r1")
    conn = sqlite_store._conn()  # the writes are made on this thread's connection

    def rows_written(position: int) -> int:
        before = conn.total_changes
        now = T0 + position
        commit(
            sqlite_store,
            PassCommit(
                "r1",
                held.token,
                steps=[step("r1", f"h{position}", position)],
                history=[history("r1", "STEP_COMPLETED", ts=now)],
            ),
            now,
        )
        return conn.total_changes - before

    assert rows_written(1) == 3  # the step, its history row, the run's mark
    assert [rows_written(position) for position in (2, 3)] == [2, 2]
    run = sqlite_store.get_run("r1")
    assert run is not None
    assert (run.status, run.started_at) == ("RUNNING", T0)
    assert [s.hash for s in sqlite_store.get_steps("r1")] == ["h1", "h2", "h3"]


def _waiting_on_their_ids(store: SQLiteStore, *run_ids: str) -> None:
    """Start each run and suspend it on a wait "w-<run id>" for orderId "<run id>"."""
    for run_id in run_ids:
        start(store, run_id)
        pending = wait(run_id, f"w-{run_id}", f'async.data.orderId == "{run_id}"')
        suspend_on_wait(store, lease_run(store, run_id), pending)


def _wait_rows(path: Path) -> tuple[list[str], list[str]]:
    """The wait ids in ``waits``, and those of them resolved (their step no longer PENDING,
    schema 28: kept for a purge), sorted."""
    with closing(sqlite3.connect(path)) as conn:
        rows = sorted(r[0] for r in conn.execute("SELECT wait_id FROM waits"))
        resolved = sorted(
            r[0] for r in conn.execute(f"SELECT wait_id FROM waits WHERE NOT {PENDING}")
        )
    return rows, resolved


def test_a_resolved_wait_keeps_its_row_until_a_purge_deletes_it_with_others(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    # issue 6 (matching costs): deleting each resolved wait at once rewrote a page of
    # waits_lookup per wait (44 % of a resolving batch's WAL pages); the ingest keeps it,
    # resolved (its step completed, schema 28), and purge_resolved_waits deletes the rows in
    # batches, the oldest keys first. A run's end by a pass or a verb (here a cancellation
    # after the event) drops its waits, the resolved ones too, leaving nothing for the purge.
    _waiting_on_their_ids(sqlite_store, "r1", "r2", "r3")
    start(sqlite_store, "r4")
    suspend_on_wait(sqlite_store, lease_run(sqlite_store, "r4"), wait("r4", "w-r4", None))
    paid = [
        EventIngest(EventRecord(f"pay-{r}", "payment/received", {"orderId": r}, {}, None, T0))
        for r in ("r1", "r2")
    ]
    with sqlite_store.transaction() as tx:
        results = tx.ingest(paid, T0 + 1, cel_matches)
    assert [sorted(r.resumed_run_ids) for r in results] == [["r1", "r4"], ["r2"]]
    path = tmp_path / "s.db"
    every = ["w-r1", "w-r2", "w-r3", "w-r4"]
    assert _wait_rows(path) == (every, ["w-r1", "w-r2", "w-r4"])
    with sqlite_store.transaction() as tx:
        assert tx.cancel_run("r2", T0 + 2, "by hand") is not None
        assert tx.cancel_run("r3", T0 + 2, "by hand") is not None  # its wait was pending
    assert _wait_rows(path) == (["w-r1", "w-r4"], ["w-r1", "w-r4"])
    with sqlite_store.transaction() as tx:
        assert tx.purge_resolved_waits(1) == 1  # the oldest key first: r1's row
    assert _wait_rows(path) == (["w-r4"], ["w-r4"])
    with sqlite_store.transaction() as tx:
        assert tx.purge_resolved_waits(10) == 1
        assert tx.purge_resolved_waits(10) == 0
    assert _wait_rows(path) == ([], [])


def test_a_database_copy_leaves_out_the_waits_resolved_but_not_purged(tmp_path: Path) -> None:
    # a resolved wait whose row waits for its purge is no state of the installation: a copy
    # holds the pending waits only
    source = SQLiteStore(tmp_path / "a.db")
    source.migrate()
    _waiting_on_their_ids(source, "r1", "r2")
    paid = EventRecord("pay-1", "payment/received", {"orderId": "r1"}, {}, None, T0)
    with source.transaction() as tx:
        [result] = tx.ingest([EventIngest(paid)], T0 + 1, cel_matches)
    assert result.resumed_run_ids == ("r1",)
    target = SQLiteStore(tmp_path / "b.db")
    target.migrate()
    start(target, "t1")  # a target replaced: its own resolved waits kept for a purge go too
    suspend_on_wait(target, lease_run(target, "t1"), wait("t1", "w-t1", None))
    with target.transaction() as tx:
        [result] = tx.ingest([EventIngest(paid)], T0 + 1, cel_matches)
    assert result.resumed_run_ids == ("t1",)
    copy_database(source, target, replace=True)
    source.close()
    target.close()
    assert _wait_rows(tmp_path / "b.db") == (["w-r2"], [])


def test_a_process_of_the_version_before_28_fails_at_its_claim_of_a_wait(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    # migration 28 drops the marks (a wait is resolved once its step is not PENDING): a process
    # of 27 still open on the file (a sender: STOP_WORKERS_FIRST sees only workers) fails its
    # next claim loudly instead of resolving a wait whose row is kept for the purge again; the
    # pending wait is left as it was, and the resolved one is purged
    assert 28 in STOP_WORKERS_FIRST
    _waiting_on_their_ids(sqlite_store, "r1", "r2")
    paid = EventRecord("pay-r1", "payment/received", {"orderId": "r1"}, {}, None, T0)
    with sqlite_store.transaction() as tx:
        [result] = tx.ingest([EventIngest(paid)], T0 + 1, cel_matches)
    assert result.resumed_run_ids == ("r1",)
    path = tmp_path / "s.db"
    claim_of_27 = """
INSERT OR IGNORE INTO waits_resolved (run_id, wait_id)
SELECT run_id, wait_id FROM waits WHERE run_id = ? AND wait_id = ?"""
    with closing(sqlite3.connect(path)) as conn:
        for key in (("r1", "w-r1"), ("r2", "w-r2")):
            with pytest.raises(sqlite3.OperationalError, match="no such table: waits_resolved"):
                conn.execute(claim_of_27, key)
    assert _wait_rows(path) == (["w-r1", "w-r2"], ["w-r1"])
    with sqlite_store.transaction() as tx:
        assert tx.purge_resolved_waits(10) == 1
    assert _wait_rows(path) == (["w-r2"], [])


@pytest.mark.parametrize("count", [1, 150])
def test_a_batch_of_one_name_without_user_data_stores_the_rows_a_mixed_batch_stores(
    tmp_path: Path, count: int
) -> None:
    # issue 6 (matching costs): such a batch binds its name and receiving time once a statement
    # (``insert_shared``); the rows are those each event makes in a batch of mixed names
    events = [
        EventRecord(
            f"e-{i:03}", "payment/received", {"orderId": f"o{i}", "n": i / 3}, {}, None, T0 + i
        )
        for i in range(count)
    ]
    stored: list[list[tuple[object, ...]]] = []
    other = EventRecord("x", "other", {}, {}, None, T0)
    mixed = [[e, dataclasses.replace(other, internal_id=f"x-{e.internal_id}")] for e in events]
    for name, batches in (("batch", [events]), ("mixed", mixed)):
        store = SQLiteStore(tmp_path / f"{name}.db")
        try:
            store.migrate()
            for batch in batches:
                with store.transaction() as tx:
                    tx.ingest([EventIngest(e) for e in batch], T0 + 1000, cel_matches)
        finally:
            store.close()
        with closing(sqlite3.connect(tmp_path / f"{name}.db")) as conn:
            query = """SELECT *, typeof(data), typeof(user_data) FROM events
                       WHERE name = 'payment/received' ORDER BY internal_id"""
            stored.append(conn.execute(query).fetchall())
    assert stored[0] == stored[1]
    assert len(stored[0]) == count
    assert stored[0][0][2:4] == (b'{"orderId":"o0","n":0.0}', b"{}")
