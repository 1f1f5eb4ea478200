"""A lone step's commit on the event loop (``PostgresStore.commit_steps_on_loop``,
``store/postgres/_alone.py``): for a pass commit of step results alone, under a lease this
process took whose run a committed commit marked running (the pass's first commit:
``test_pg_first.py``), the statements the shared sequence queues (``PostgresTx.commit_pass``,
optimistic) are queued straight, the same ones in the same order; it commits them as
``commit_on_loop`` of that job would, a lost lease commits nothing (``Replay``), and any other
commit is refused with nothing sent (``WouldBlock``). A commit of one step and one history row
is sent whole, as the one statement the queue makes (``one_step``), under the same rules: an
ended connection refused and closed, an error after the commit an unknown outcome, a cancelled
round trip its connection closed. It is sent prepared with parameters encoded by hand
(``test_pg_prepared.py``), else as psycopg adapts it."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from tests.store import test_pg_loop_commits as loop_commits
from tests.store.builders import T0, cel_matches, history, lease, start, step
from tests.store.test_pg_loop_commits import _lock_wait_seen, idle
from tests.store.test_pg_optimistic import commit_job, outputs

import pgtest
from stepline.errors import StoreUnavailable
from stepline.store.interface import LoneStepCommits, Replay, WouldBlock
from stepline.store.postgres import PostgresStore, _alone
from stepline.store.postgres._alone import one_step, owner_of_lone_steps, queue_steps
from stepline.store.postgres._merging import _planned
from stepline.store.postgres._statements import Statements
from stepline.store.postgres.tx import PostgresTx
from stepline.store.records import Lease, PassCommit, RunEnd, StepRecord

taken = loop_commits.taken  # the connections commit_on_loop takes (a fixture)


@pytest.fixture
def store(own_pg_store: PostgresStore) -> PostgresStore:
    own_pg_store.load_run("none")  # one idle connection in the read pool
    return own_pg_store


def marked(store: PostgresStore, *run_ids: str) -> list[Lease]:
    """The runs started and leased, each marked running by a committed pass commit."""
    start(store, *run_ids)
    held = lease(store)
    assert asyncio.run(store.commit_on_loop([commit_job(h, 0) for h in held])) == [[]] * len(held)
    return held


def steps_of(held: Lease, *outputs: int) -> PassCommit:
    steps: list[StepRecord] = [
        step(held.run_id, f"h{n}", n + 1, output=output) for n, output in enumerate(outputs)
    ]
    rows = [history(held.run_id, "STEP_COMPLETED", T0 + n) for n in range(len(outputs))]
    return PassCommit(held.run_id, held.token, steps=steps, history=rows)


def queued_by_the_shared_sequence(store: PostgresStore, commit: PassCommit) -> list[Any]:
    """What ``PostgresTx.commit_pass`` queues for ``commit`` in an optimistic transaction
    (nothing sent: it is queued until the commit), as ``(text, params, table)``."""
    conn = store._read_pool.getconn()
    try:
        tx = PostgresTx(conn, store._presence, store._tokens, True, store._hints)
        assert tx.commit_pass(commit, T0, cel_matches) == []
        assert not tx.marked and not tx.made_work and tx.durable
        s = tx.statements
        return list(
            zip([t for t, _ in s._queued], [p for _, p in s._queued], s._tables, strict=True)
        )
    finally:
        store._read_pool.putconn(conn)


def queued_straight(store: PostgresStore, commit: PassCommit, owner: str) -> list[Any]:
    conn = store._read_pool.getconn()
    try:
        s = Statements(conn, optimistic=True)
        assert queue_steps(s, commit, owner) is True
        return list(
            zip([t for t, _ in s._queued], [p for _, p in s._queued], s._tables, strict=True)
        )
    finally:
        store._read_pool.putconn(conn)


def test_the_statements_are_those_the_shared_sequence_queues(store: PostgresStore) -> None:
    [held] = marked(store, "r1")
    for commit in (steps_of(held, 1), steps_of(held, 1, 2, 3)):
        owner = owner_of_lone_steps(commit, store._tokens)
        assert owner == "w1"
        assert queued_straight(store, commit, owner) == queued_by_the_shared_sequence(store, commit)


def test_only_a_commit_of_steps_alone_under_a_lease_of_this_process_qualifies(
    store: PostgresStore,
) -> None:
    [held] = marked(store, "r1")
    tokens = store._tokens
    assert owner_of_lone_steps(steps_of(held, 1), tokens) == "w1"
    others = [
        PassCommit(held.run_id, held.token),  # no step
        PassCommit(held.run_id, held.token, steps_of(held, 1).steps, end=RunEnd("COMPLETED")),
        PassCommit(held.run_id, held.token, steps_of(held, 1).steps, started_at=T0),
        PassCommit(held.run_id, "another token", steps_of(held, 1).steps),  # not this process's
    ]
    assert [owner_of_lone_steps(commit, tokens) for commit in others] == [None] * 4
    start(store, "r2")
    [fresh] = lease(store)  # taken here, its run not marked by a commit yet: it qualifies,
    # its statements then mark the run running (test_pg_first.py)
    assert owner_of_lone_steps(steps_of(fresh, 1), tokens) == "w1"


def test_a_lone_step_commit_is_committed_on_the_loop(store: PostgresStore) -> None:
    assert isinstance(store, LoneStepCommits)
    [held] = marked(store, "r1")
    assert asyncio.run(store.commit_steps_on_loop(steps_of(held, 7))) is True
    assert outputs(store, "r1") == {"r1": b"7"}
    assert [h.kind for h in store.get_history("r1")][-1] == "STEP_COMPLETED"
    assert [h.worker_id for h in store.get_history("r1")][-1] == "w1"
    assert idle(store) >= 1  # the connection given back


def test_another_commit_is_refused_with_nothing_sent(store: PostgresStore) -> None:
    [held] = marked(store, "r1")
    done = PassCommit(held.run_id, held.token, steps_of(held, 7).steps, end=RunEnd("COMPLETED"))
    with pytest.raises(WouldBlock):
        asyncio.run(store.commit_steps_on_loop(done))
    assert outputs(store, "r1") == {"r1": b"0"}


def test_a_lost_lease_commits_nothing(store: PostgresStore) -> None:
    [held] = marked(store, "r1")
    with store.transaction() as tx:  # another worker takes the run over
        tx.release_owner("w1", T0)
    lease(store, owner="w2", now=T0 + 1)
    with pytest.raises(Replay):
        asyncio.run(store.commit_steps_on_loop(steps_of(held, 7)))
    assert outputs(store, "r1") == {"r1": b"0"}


def test_one_step_is_sent_as_the_statement_its_queue_makes(store: PostgresStore) -> None:
    [held] = marked(store, "r1")
    commit = steps_of(held, 1)
    queued = queued_by_the_shared_sequence(store, commit)
    [(text, params)], _ = _planned([(t, p) for t, p, _ in queued], [t for _, _, t in queued])
    assert one_step(commit, "w1", store._tokens) == (text, params)
    assert one_step(steps_of(held, 1, 2), "w1", store._tokens) is None  # two steps: queued


def test_several_steps_are_committed_on_the_loop_as_queued(store: PostgresStore) -> None:
    [held] = marked(store, "r1")
    assert asyncio.run(store.commit_steps_on_loop(steps_of(held, 7, 8))) is True
    assert [s.output_json for s in store.get_steps("r1")][-2:] == [b"7", b"8"]
    assert [h.kind for h in store.get_history("r1")][-2:] == ["STEP_COMPLETED"] * 2


def test_one_step_on_an_ended_connection_is_refused_and_closed(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    [held] = marked(store, "r1")
    pgtest.end_other_sessions(store.url)
    with pytest.raises(WouldBlock):
        asyncio.run(store.commit_steps_on_loop(steps_of(held, 7)))
    assert taken[-1].closed
    assert outputs(store, "r1") == {"r1": b"0"}


def test_one_step_whose_reply_fails_after_its_commit_has_an_unknown_outcome(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    [held] = marked(store, "r1")
    # the lane psycopg adapts the statement's parameters in (test_pg_prepared: the other)
    monkeypatch.setattr(_alone, "one_step_values", lambda *_: None)
    sent = Statements._sent_async

    async def crashed(statements: Statements, *args: Any) -> Any:
        await sent(statements, *args)  # committed; then the reply is an error (57P02)
        raise psycopg.errors.CrashShutdown("terminating connection: another process crashed")

    monkeypatch.setattr(Statements, "_sent_async", crashed)
    with pytest.raises(StoreUnavailable, match="outcome is unknown"):
        asyncio.run(store.commit_steps_on_loop(steps_of(held, 7)))
    assert outputs(store, "r1") == {"r1": b"7"}  # committed once: never made again


def test_one_step_cancelled_in_its_round_trip_closes_its_connection(
    store: PostgresStore, pg_url: str, taken: list[psycopg.Connection[Any]]
) -> None:
    [held] = marked(store, "r1")

    async def run() -> None:
        with psycopg.connect(pg_url) as locker:  # another process holds the run's queue row
            locker.execute("SELECT 1 FROM queue WHERE run_id = 'r1' FOR UPDATE")
            commit = asyncio.create_task(store.commit_steps_on_loop(steps_of(held, 7)))
            await _lock_wait_seen(pg_url)
            commit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await commit
            locker.rollback()

    asyncio.run(run())
    assert taken[-1].closed
    assert taken[-1] not in store._read_pool._pool  # not given back (the pool replaces it)
