"""A lone step's first row carries its STEP_COMPLETED history line (PostgreSQL, schema 17,
``_alone.ONE_FRESH_STEP``): the run's history reads it as a line in its place, exactly as the
row of history the other statement writes; a lost lease commits neither; a row of the step
there already (a retry's, a RUNNING row shown or left by a crashed pass) is never overwritten
that way (the upsert and a row of history then, or nothing committed and made again
carefully); a copy carries the line to another store as a row of history."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from tests.store.builders import T0, cel_matches, history, lease, start
from tests.store.test_pg_loop_commits import _lock_wait_seen
from tests.store.test_pg_optimistic import commit_job

from stepline.store import SQLiteStore
from stepline.store._copy import copy_database
from stepline.store.interface import Replay
from stepline.store.postgres import PostgresStore, _alone
from stepline.store.postgres._alone import ONE_FRESH_STEP, ONE_STEP, one_step
from stepline.store.records import HistoryRecord, Lease, PassCommit, StepRecord


@pytest.fixture(params=["prepared", "adapted"])
def store(
    own_pg_store: PostgresStore, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> PostgresStore:
    """The store, its lone step commits sent by one lane: prepared with values encoded here
    (``_prepared``), or as psycopg adapts them."""
    if request.param == "adapted":
        monkeypatch.setattr(_alone, "one_step_values", lambda *_: None)
    own_pg_store.load_run("none")  # one idle connection in the read pool
    return own_pg_store


def marked(store: PostgresStore, run_id: str = "r1") -> Lease:
    """A run started and leased here, marked running by a committed pass commit."""
    start(store, run_id)
    [held] = lease(store)
    assert asyncio.run(store.commit_on_loop([commit_job(held, 0)])) == [[]]
    return held


def completed(held: Lease, digest: str, output: int, attempts: int = 1) -> PassCommit:
    """A step's result as the engine commits it: its row and its STEP_COMPLETED line."""
    ended = T0 + 10 + output
    row = StepRecord(
        held.run_id,
        digest,
        f"step-{digest}",
        "run",
        5,
        "COMPLETED",
        str(output).encode(),
        attempts=attempts,
        started_at=ended - 0.25,
        ended_at=ended,
    )
    line = HistoryRecord(held.run_id, ended, "STEP_COMPLETED", f"step-{digest}", attempts - 1, 0.25)
    return PassCommit(held.run_id, held.token, steps=[row], history=[line])


def the_line(held: Lease, digest: str, output: int, attempt: int = 0) -> HistoryRecord:
    ended = T0 + 10 + output
    return HistoryRecord(
        held.run_id, ended, "STEP_COMPLETED", f"step-{digest}", attempt, 0.25, None, "w1"
    )


def statement(store: PostgresStore, commit: PassCommit) -> str:
    """The statement ``one_step`` sends for ``commit``."""
    one = one_step(commit, "w1", store._tokens)
    assert one is not None
    return one[0]


def history_rows(store: PostgresStore, kind: str) -> int:
    with psycopg.connect(store.url) as conn:
        row = conn.execute("SELECT count(*) FROM history WHERE kind = %s", (kind,)).fetchone()
    return int(row[0]) if row else 0


def note(store: PostgresStore, run_id: str, kind: str, ts: float) -> None:
    with store.transaction() as tx:
        tx.append_history([history(run_id, kind, ts)], None)


def test_a_first_row_carries_its_line_read_back_in_its_place(store: PostgresStore) -> None:
    held = marked(store)
    commit = completed(held, "a", 1)
    assert statement(store, commit) == ONE_FRESH_STEP
    note(store, "r1", "BEFORE", T0 + 1)
    assert asyncio.run(store.commit_steps_on_loop(commit)) is True
    note(store, "r1", "AFTER", T0 + 2)
    lines = store.get_history("r1")
    assert [h.kind for h in lines][-3:] == ["BEFORE", "STEP_COMPLETED", "AFTER"]
    assert lines[-2] == the_line(held, "a", 1)
    assert history_rows(store, "STEP_COMPLETED") == 0  # the line is in the step's row
    [row] = [s for s in store.get_steps("r1") if s.hash == "a"]
    assert (row.status, row.output_json, row.attempts) == ("COMPLETED", b"1", 1)


def test_a_lost_lease_commits_neither_the_row_nor_its_line(store: PostgresStore) -> None:
    held = marked(store)
    with store.transaction() as tx:  # another worker takes the run over
        tx.release_owner("w1", T0)
    lease(store, owner="w2", now=T0 + 1)
    commit = completed(held, "a", 1)
    assert statement(store, commit) == ONE_FRESH_STEP
    with pytest.raises(Replay):
        asyncio.run(store.commit_steps_on_loop(commit))
    assert [s.hash for s in store.get_steps("r1")] == ["h1"]  # the marking commit's only
    assert "STEP_COMPLETED" not in [h.kind for h in store.get_history("r1")]


def test_a_takeover_committed_while_the_first_row_waits_for_the_lease_commits_nothing(
    store: PostgresStore, pg_url: str
) -> None:
    held = marked(store)
    commit = completed(held, "a", 1)
    assert statement(store, commit) == ONE_FRESH_STEP

    async def run() -> None:
        with psycopg.connect(pg_url) as taker:  # another worker takes the run over meanwhile
            taker.execute(
                "UPDATE queue SET lease_owner = 'w2', lease_token = 'taken' WHERE run_id = 'r1'"
            )
            task = asyncio.create_task(store.commit_steps_on_loop(commit))
            await _lock_wait_seen(pg_url)
            taker.commit()
            with pytest.raises(Replay):
                await task

    asyncio.run(run())
    assert [s.hash for s in store.get_steps("r1")] == ["h1"]
    assert "STEP_COMPLETED" not in [h.kind for h in store.get_history("r1")]


def test_a_retried_step_is_upserted_with_a_row_of_history(store: PostgresStore) -> None:
    held = marked(store)
    retrying = PassCommit(
        held.run_id,
        held.token,
        steps=[StepRecord("r1", "a", "step-a", "run", 5, "RETRYING", attempts=1, due_at=T0)],
        history=[HistoryRecord("r1", T0 + 3, "STEP_FAILED", "step-a", 0, 0.1, {"e": 1})],
    )
    with store.transaction() as tx:
        tx.commit_pass(retrying, T0, cel_matches)
    second = completed(held, "a", 2, attempts=2)
    assert statement(store, second) == ONE_STEP
    assert asyncio.run(store.commit_steps_on_loop(second)) is True
    kinds = [(h.kind, h.attempt) for h in store.get_history("r1")]
    assert kinds[-2:] == [("STEP_FAILED", 0), ("STEP_COMPLETED", 1)]
    [row] = [s for s in store.get_steps("r1") if s.hash == "a"]
    assert (row.status, row.attempts, row.output_json) == ("COMPLETED", 2, b"2")


def test_a_step_shown_executing_is_upserted(store: PostgresStore) -> None:
    held = marked(store)
    running = StepRecord("r1", "a", "step-a", "run", 5, "RUNNING", started_at=T0 + 10.75)
    with store.transaction() as tx:
        assert tx.mark_steps_running("r1", held.token, [running]) is True
    commit = completed(held, "a", 1)
    assert statement(store, commit) == ONE_STEP
    assert asyncio.run(store.commit_steps_on_loop(commit)) is True
    assert store.get_history("r1")[-1] == the_line(held, "a", 1)
    [row] = [s for s in store.get_steps("r1") if s.hash == "a"]
    assert (row.status, row.output_json) == ("COMPLETED", b"1")


def test_a_row_there_already_fails_the_first_row_and_nothing_commits(
    store: PostgresStore,
) -> None:
    held = marked(store)
    # a RUNNING row this process does not know of (a pass that crashed wrote it)
    with psycopg.connect(store.url) as conn:
        conn.execute(
            "INSERT INTO steps (run_id, hash, step_id, kind, position, status, attempts) "
            "VALUES ('r1', 'a', 'step-a', 'run', 5, 'RUNNING', 0)"
        )
    commit = completed(held, "a", 1)
    assert statement(store, commit) == ONE_FRESH_STEP
    with pytest.raises(Replay):  # made again carefully: the upsert and a row of history
        asyncio.run(store.commit_steps_on_loop(commit))
    [row] = [s for s in store.get_steps("r1") if s.hash == "a"]
    assert row.status == "RUNNING"
    assert "STEP_COMPLETED" not in [h.kind for h in store.get_history("r1")]
    with store.transaction() as tx:  # what the careful commit does
        tx.commit_pass(commit, T0, cel_matches)
    assert store.get_history("r1")[-1] == the_line(held, "a", 1)
    [row] = [s for s in store.get_steps("r1") if s.hash == "a"]
    assert (row.status, row.output_json) == ("COMPLETED", b"1")


def test_a_copy_carries_the_line_as_a_row_of_history(store: PostgresStore, tmp_path: Path) -> None:
    held = marked(store)
    note(store, "r1", "BEFORE", T0 + 1)
    assert asyncio.run(store.commit_steps_on_loop(completed(held, "a", 1))) is True
    note(store, "r1", "AFTER", T0 + 2)
    target = SQLiteStore(tmp_path / "copy.db")
    try:
        with store.transaction() as tx:  # a copy refuses live workers: none registered here
            tx.release_owner("w1", T0)
        plan = copy_database(store, target, live_workers_at=T0)
        assert plan.counts["history"] == len(store.get_history("r1"))
        assert target.get_history("r1") == store.get_history("r1")
        assert target.get_steps("r1") == store.get_steps("r1")
    finally:
        target.close()
