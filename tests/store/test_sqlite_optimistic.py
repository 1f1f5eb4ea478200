"""SQLite's optimistic transactions (``SQLiteStore.optimistic_transaction``, the writer's first
try at a batch): no SAVEPOINT is made; anything that fails inside (a job, a verb, even one whose
error a job caught) rolls the whole transaction back and raises ``Replay``, and the writer then
makes the batch again with a savepoint per verb, where each job fails alone. A lease's later
pass commits do not mark its run RUNNING again once a committed optimistic one did (``_marks``)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.store.builders import T0, lease, lease_run, start, step

from stepline.engine.writer import BatchWriter
from stepline.errors import LeaseLostError, StoreUnavailable
from stepline.store import SQLiteStore
from stepline.store.interface import Replay, StoreTx
from stepline.store.records import PassCommit, RunEnd


@contextmanager
def _statements(store: SQLiteStore) -> Iterator[list[str]]:
    """The statements the calling thread's connection runs meanwhile."""
    seen: list[str] = []
    conn = store._conn()
    conn.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def _store(tmp_path: Path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL")
    store.migrate()
    return store


def test_a_pass_commit_in_an_optimistic_transaction_makes_no_savepoint(tmp_path: Path) -> None:
    store = _store(tmp_path)
    start(store, "r1")
    held = lease_run(store, "r1")
    commit = PassCommit("r1", held.token, steps=[step("r1", "h1", 0, output=1)])
    with _statements(store) as seen, store.optimistic_transaction() as tx, tx.savepoint():
        assert tx.commit_pass(commit, T0, lambda w, e: False) == []
    assert not [s for s in seen if "SAVEPOINT" in s or "RELEASE" in s], seen
    assert seen[0] == "BEGIN IMMEDIATE" and seen[-1] == "COMMIT"
    assert [s.hash for s in store.get_steps("r1")] == ["h1"]
    with _statements(store) as seen, store.transaction() as tx, tx.savepoint():  # careful: one
        tx.set_paused("f", True)
    assert [s for s in seen if s.startswith(("SAVEPOINT", "RELEASE"))] == [
        "SAVEPOINT verb",
        "RELEASE verb",
    ]
    store.close()


def _caught_lease_loss(store: SQLiteStore, lost: PassCommit) -> None:
    with store.optimistic_transaction() as tx:
        tx.set_paused("before", True)
        with pytest.raises(LeaseLostError):
            tx.commit_pass(lost, T0, lambda w, e: False)  # caught: it cannot be undone alone
        tx.set_paused("after", True)


def _raising_job(store: SQLiteStore) -> None:
    with store.optimistic_transaction() as tx:
        tx.set_paused("raised", True)
        raise ValueError("a job's own error")


def _interrupted(store: SQLiteStore) -> None:
    with store.optimistic_transaction() as tx, tx.savepoint():
        tx.set_paused("f", True)
        raise KeyboardInterrupt


def test_a_failure_inside_rolls_the_whole_transaction_back_even_if_a_job_caught_it(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    start(store, "r1")
    lease_run(store, "r1")
    lost = PassCommit("r1", "not-its-token", steps=[step("r1", "h1", 0, output=1)])
    with pytest.raises(Replay):
        _caught_lease_loss(store, lost)
    with pytest.raises(Replay):
        _raising_job(store)
    assert store.paused_functions() == set()  # nothing of either committed
    with store.transaction() as tx:  # the connection is usable: out of both transactions
        tx.set_paused("later", True)
    assert store.paused_functions() == {"later"}
    store.close()


def test_a_base_exception_is_not_a_replay(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _interrupted(store)
    assert store.paused_functions() == set()
    store.close()


def test_a_failed_begin_is_store_unavailable_as_in_a_careful_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL", busy_timeout=0.01)
    store.migrate()
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailable, match="locked"), store.optimistic_transaction():
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.close()


async def test_the_writer_makes_a_failed_batch_again_and_each_job_fails_alone(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    start(store, "r1")
    held = lease_run(store, "r1")
    writer = BatchWriter(store)
    ok = PassCommit("r1", held.token, steps=[step("r1", "h1", 0, output=1)])
    lost = PassCommit("r1", "not-its-token", steps=[step("r1", "h2", 1, output=2)])

    def commit_job(commit: PassCommit) -> object:
        def job(tx: StoreTx) -> object:
            with tx.savepoint():
                return tx.commit_pass(commit, T0, lambda w, e: False)

        return job

    try:
        await writer.write(lambda tx: None)  # the thread started; the next three are a batch
        first = writer.submit(commit_job(ok))
        second = writer.submit(commit_job(lost))
        third = writer.submit(lambda tx: tx.set_paused("f", True))
        outcomes = await asyncio.gather(first, second, third, return_exceptions=True)
        assert outcomes[0] == [] and outcomes[2] is None
        assert isinstance(outcomes[1], LeaseLostError)
        assert writer.replays == 1  # the optimistic try, then the careful one
        assert [s.hash for s in store.get_steps("r1")] == ["h1"]
        assert store.paused_functions() == {"f"}
        replays = writer.replays
        await writer.write(commit_job(PassCommit("r1", held.token)))
        assert writer.replays == replays  # a batch that fails nothing commits at once
    finally:
        writer.close()
        store.close()


def _marks_running(store: SQLiteStore, commit: PassCommit, optimistic: bool = True) -> bool:
    """Commit ``commit``; whether its transaction updated the run's RUNNING mark."""
    transaction = store.optimistic_transaction if optimistic else store.transaction
    with _statements(store) as seen, transaction() as tx:
        tx.commit_pass(commit, T0, lambda w, e: False)
    return any(s.lstrip().startswith("UPDATE runs SET status = 'RUNNING'") for s in seen)


def test_a_lease_s_later_commits_do_not_mark_its_run_running_again(tmp_path: Path) -> None:
    store = _store(tmp_path)
    start(store, "r1", "r2")
    held = {taken.run_id: taken.token for taken in lease(store)}

    def steps(run_id: str, n: int, token: str | None = None) -> PassCommit:
        return PassCommit(run_id, token or held[run_id], steps=[step(run_id, f"h{n}", n, output=n)])

    assert _marks_running(store, steps("r1", 0))  # the lease's first commit marks it
    assert not _marks_running(store, steps("r1", 1))  # its later ones need not
    assert not _marks_running(store, steps("r1", 2))
    # a careful transaction's mark is not remembered (a savepoint may have undone it), nor one
    # whose optimistic transaction rolled back
    assert _marks_running(store, steps("r2", 0), optimistic=False)
    assert _marks_running(store, steps("r2", 1))
    assert not _marks_running(store, steps("r2", 2))
    run = store.get_run("r1")
    assert run is not None and run.status == "RUNNING"
    # a suspension ends the lease: the next lease (another token) marks it again
    sleep = PassCommit("r1", held["r1"], end=RunEnd(status="SLEEPING", due_at=T0 + 10))
    with store.optimistic_transaction() as tx:
        tx.commit_pass(sleep, T0, lambda w, e: False)
    again = lease_run(store, "r1", now=T0 + 10)
    assert again.token != held["r1"]
    assert _marks_running(store, steps("r1", 3, again.token))
    assert not _marks_running(store, steps("r1", 4, again.token))
    run = store.get_run("r1")
    assert run is not None and run.status == "RUNNING"
    store.close()


def test_a_mark_of_a_rolled_back_optimistic_transaction_is_not_remembered(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    start(store, "r1")
    token = lease_run(store, "r1").token
    commit = PassCommit("r1", token, steps=[step("r1", "h0", 0, output=0)])
    with pytest.raises(Replay):
        _rolled_back(store, commit)
    assert _marks_running(store, commit)  # marked again: the first mark was undone
    store.close()


def _rolled_back(store: SQLiteStore, commit: PassCommit) -> None:
    with store.optimistic_transaction() as tx:
        tx.commit_pass(commit, T0, lambda w, e: False)
        raise ValueError("another job of the batch failed")
