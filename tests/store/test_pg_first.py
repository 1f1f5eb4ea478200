"""A pass's first commit of step results alone on PostgreSQL (``store/postgres/_alone.py``):
the run not yet marked running by a committed commit of its lease, so the shared sequence
queues ``MARK_RUNNING`` after the steps and history rows. It goes the lone lane too
(``PostgresStore.commit_steps_on_loop(commit, now)``, ``now`` the time the job's
``commit_pass`` is given): the same statements, one statement for one step (``FIRST_STEP``, or
``FIRST_FRESH_STEP`` for a step's first row), prepared once per connection; the rows written
are those the job writes (the run RUNNING, its start kept or ``now``, no pass spent), the run is
marked for the lease's later commits once it committed, and a lost lease or a row there after
all commits nothing of it (``Replay``), the run's mark included. Before, such a commit was
refused (``WouldBlock``) and went as a job, its merged statement parsed and planned anew at
every pass."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from tests.store.builders import T0, cel_matches, lease, start
from tests.store.test_pg_alone import steps_of
from tests.store.test_pg_fold import completed
from tests.store.test_pg_optimistic import outputs
from tests.store.test_pg_prepared import kept_connection

from stepline.store.interface import Replay, WouldBlock
from stepline.store.postgres import PostgresStore, _alone
from stepline.store.postgres._alone import (
    FIRST_FRESH_STEP,
    FIRST_STEP,
    PREPARED_FIRST_FRESH_STEP,
    PREPARED_GENERIC,
    one_step,
    owner_of_lone_steps,
    queue_steps,
)
from stepline.store.postgres._merging import _planned
from stepline.store.postgres._statements import Statements
from stepline.store.postgres.tx import PostgresTx
from stepline.store.records import Lease, PassCommit

NOW = T0 + 5.5  # the time the first commit's job is given


@pytest.fixture
def store(own_pg_store: PostgresStore) -> PostgresStore:
    own_pg_store.load_run("none")  # one idle connection in the read pool
    return own_pg_store


def leased(store: PostgresStore, *run_ids: str) -> list[Lease]:
    """The runs started and leased by this process: no commit of the lease yet."""
    start(store, *run_ids)
    held = lease(store)
    assert [not store._tokens.marked_running(h.token, h.run_id) for h in held] == [True] * len(held)
    return held


def run_row(store: PostgresStore, run_id: str) -> tuple[Any, ...]:
    with psycopg.connect(store.url) as conn:
        row = conn.execute(
            "SELECT status, started_at, passes FROM runs WHERE run_id = %s", (run_id,)
        ).fetchone()
    assert row is not None
    return tuple(row)


def unstarted(store: PostgresStore, run_id: str) -> None:
    """The run's start forgotten (as a lease past its start deadline leaves it): the first
    commit's ``MARK_RUNNING`` then gives it its time."""
    with psycopg.connect(store.url) as conn:
        conn.execute("UPDATE runs SET started_at = NULL WHERE run_id = %s", (run_id,))


def as_a_job(store: PostgresStore, commit: PassCommit, now: float) -> None:
    """``commit`` committed as the writer's job commits it (the shared sequence)."""
    job = lambda tx: tx.commit_pass(commit, now, cel_matches)  # noqa: E731
    assert asyncio.run(store.commit_on_loop([job])) == [[]]


def queued(statements: Statements) -> list[Any]:
    return list(
        zip(
            [t for t, _ in statements._queued],
            [p for _, p in statements._queued],
            statements._tables,
            strict=True,
        )
    )


def test_the_first_commits_statements_are_those_the_shared_sequence_queues(
    store: PostgresStore,
) -> None:
    [held] = leased(store, "r1")
    for commit in (steps_of(held, 1), steps_of(held, 1, 2, 3)):
        owner = owner_of_lone_steps(commit, store._tokens)
        assert owner == "w1"
        conn = store._read_pool.getconn()
        try:
            tx = PostgresTx(conn, store._presence, store._tokens, True, store._hints)
            assert tx.commit_pass(commit, NOW, cel_matches) == []
            assert tx.marked == [(held.token, "r1")]  # the shared sequence marks the run
            straight = Statements(conn, optimistic=True)
            assert queue_steps(straight, commit, owner, NOW) is True
            assert queued(straight) == queued(tx.statements)
        finally:
            store._read_pool.putconn(conn)


def test_one_first_step_is_sent_as_the_statement_its_queue_makes(store: PostgresStore) -> None:
    [held] = leased(store, "r1")
    commit = steps_of(held, 1)  # not a first row (attempts 0): the upsert
    conn = store._read_pool.getconn()
    try:
        s = Statements(conn, optimistic=True)
        queue_steps(s, commit, "w1", NOW)
        [(text, params)], _ = _planned(list(s._queued), list(s._tables))
    finally:
        store._read_pool.putconn(conn)
    assert text == FIRST_STEP
    assert one_step(commit, "w1", store._tokens, NOW) == (FIRST_STEP, params)
    fresh = one_step(completed(held, "hf", 3), "w1", store._tokens, NOW)
    assert fresh is not None and fresh[0] == FIRST_FRESH_STEP


@pytest.mark.parametrize("make", [steps_of, completed], ids=["upsert", "first-row"])
@pytest.mark.parametrize("lane", ["prepared", "adapted", "queued"])
def test_the_first_commit_goes_on_the_loop_and_writes_what_its_job_writes(
    store: PostgresStore,
    monkeypatch: pytest.MonkeyPatch,
    prepared_sends: list[bool],
    make: Any,
    lane: str,
) -> None:
    one, other = leased(store, "r1", "r2")
    unstarted(store, "r1")
    unstarted(store, "r2")
    if lane != "prepared":
        monkeypatch.setattr(_alone, "one_step_values", lambda *_: None)
    if lane == "queued":
        monkeypatch.setattr(_alone, "one_step", lambda *_: None)

    def commit_of(held: Lease) -> PassCommit:
        return steps_of(held, 7) if make is steps_of else completed(held, "hf", 7)

    assert asyncio.run(store.commit_steps_on_loop(commit_of(one), NOW)) is True  # was WouldBlock
    assert prepared_sends == [True] * (lane == "prepared")
    assert store._tokens.marked_running(one.token, "r1")  # its next commits mark nothing
    as_a_job(store, commit_of(other), NOW)
    assert run_row(store, "r1") == run_row(store, "r2") == ("RUNNING", NOW, 0)
    assert outputs(store, "r1", "r2") == {"r1": b"7", "r2": b"7"}
    [mine], [theirs] = store.get_steps("r1"), store.get_steps("r2")
    assert (mine.output_json, mine.status, mine.attempts) == (
        theirs.output_json,
        theirs.status,
        theirs.attempts,
    )
    lines = [(h.kind, h.step_id, h.ts, h.worker_id) for h in store.get_history("r1")]
    assert lines == [(h.kind, h.step_id, h.ts, h.worker_id) for h in store.get_history("r2")]
    assert lines[-1][0] == "STEP_COMPLETED"


def test_a_run_started_before_keeps_its_start(store: PostgresStore) -> None:
    [held] = leased(store, "r1")
    status, started, passes = run_row(store, "r1")
    assert (status, started, passes) == ("RUNNING", T0, 1)  # the lease's
    assert asyncio.run(store.commit_steps_on_loop(completed(held, "hf", 3), NOW)) is True
    assert run_row(store, "r1") == ("RUNNING", T0, 0)  # a pass made progress: none spent


def test_the_first_commit_without_its_time_is_refused_with_nothing_sent(
    store: PostgresStore,
) -> None:
    [held] = leased(store, "r1")
    with pytest.raises(WouldBlock):
        asyncio.run(store.commit_steps_on_loop(completed(held, "hf", 3)))
    assert outputs(store, "r1") == {}
    assert run_row(store, "r1")[2] == 1
    assert not store._tokens.marked_running(held.token, "r1")


@pytest.mark.parametrize("make", [steps_of, completed], ids=["upsert", "first-row"])
def test_a_lost_lease_commits_nothing_of_the_first_commit(store: PostgresStore, make: Any) -> None:
    [held] = leased(store, "r1")
    with store.transaction() as tx:  # another worker takes the run over
        tx.release_owner("w1", T0)
    lease(store, owner="w2", now=T0 + 1)
    before = run_row(store, "r1")
    commit = steps_of(held, 7) if make is steps_of else completed(held, "hf", 7)
    with pytest.raises(Replay):
        asyncio.run(store.commit_steps_on_loop(commit, NOW))
    assert outputs(store, "r1") == {}
    assert run_row(store, "r1") == before  # its passes not reset: the mark failed with it
    assert not store._tokens.marked_running(held.token, "r1")


def test_a_first_row_there_after_all_commits_nothing_of_the_first_commit(
    store: PostgresStore,
) -> None:
    [held] = leased(store, "r1")
    with psycopg.connect(store.url) as conn:  # a RUNNING row this process does not know of
        conn.execute(
            "INSERT INTO steps (run_id, hash, step_id, kind, position, status, attempts)"
            " VALUES ('r1', 'hf', 'step-hf', 'run', 5, 'RUNNING', 0)"
        )
    with pytest.raises(Replay):  # made again carefully: the upsert and the history row
        asyncio.run(store.commit_steps_on_loop(completed(held, "hf", 7), NOW))
    assert [s.status for s in store.get_steps("r1")] == ["RUNNING"]
    assert run_row(store, "r1") == ("RUNNING", T0, 1)
    assert not store._tokens.marked_running(held.token, "r1")


def server_value(conn: psycopg.Connection[Any], query: bytes) -> Any:
    """A value read on ``conn``'s session outside psycopg (it sees nothing of it)."""
    result = conn.pgconn.exec_(query)
    assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, result.error_message
    value = result.get_value(0, 0)
    return None if value is None else value.decode()


def test_the_first_commit_is_planned_once_per_connection_with_its_generic_plan(
    store: PostgresStore, prepared_sends: list[bool]
) -> None:
    # after _handoffs.GENERIC in its pipeline: before, each of a connection's first five passes
    # planned it for its parameters (0.19-0.25 ms of the server's time each)
    held = leased(store, "r1", "r2", "r3")
    plans: list[str] = []
    settings: list[str] = []

    async def run() -> None:
        for one in held:
            assert await store.commit_steps_on_loop(completed(one, "hf", 3), NOW) is True
        conn = kept_connection(store)
        name = PREPARED_FIRST_FRESH_STEP.name_on(conn)
        assert name is not None
        plans.append(
            server_value(
                conn,
                b"SELECT generic_plans || ' ' || custom_plans FROM pg_prepared_statements"
                b" WHERE name = '" + name + b"'",
            )
        )
        for setting in (b"plan_cache_mode", b"enable_seqscan"):  # gone with its transaction
            settings.append(server_value(conn, b"SELECT current_setting('" + setting + b"')"))

    asyncio.run(run())
    assert prepared_sends == [True] * 3
    assert plans == ["3 0"]  # its generic plan chosen three times (made once); no custom one
    assert settings == ["auto", "on"]
    assert [run_row(store, h.run_id)[2] for h in held] == [0, 0, 0]


def test_its_setting_deallocated_behind_psycopgs_back_commits_nothing_then_is_parsed_again(
    store: PostgresStore,
) -> None:
    [held] = leased(store, "r1")
    names: list[bytes | None] = []
    [other] = leased(store, "r2")

    async def run() -> None:
        assert await store.commit_steps_on_loop(completed(other, "hf", 1), NOW) is True
        conn = kept_connection(store)
        name = PREPARED_GENERIC.name_on(conn)
        assert name is not None
        names.append(name)
        conn.pgconn.exec_(b"DEALLOCATE " + name)  # psycopg does not see it
        with pytest.raises(Replay):  # refused by the server (26000): nothing committed
            await store.commit_steps_on_loop(completed(held, "hf", 2), NOW)
        assert outputs(store, "r1") == {}
        assert not store._tokens.marked_running(held.token, "r1")
        assert await store.commit_steps_on_loop(completed(held, "hf", 3), NOW) is True
        names.append(PREPARED_GENERIC.name_on(kept_connection(store)))

    asyncio.run(run())
    assert names[1] is not None and names[1] != names[0]
    assert outputs(store, "r1") == {"r1": b"3"}
    assert run_row(store, "r1") == ("RUNNING", T0, 0)
