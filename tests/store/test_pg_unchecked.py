"""The writer's optimistic transactions on PostgreSQL take a connection that is not checked before
use: the transaction's first round trip is the check. A connection the server ended while it
sat in the pool fails that round trip, which never carries the ``COMMIT`` (a transaction that
would send everything at once checks the connection first), so nothing of it committed and the
batch is made again on a checked connection, unseen by the callers."""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
from tests.store.builders import SERVED, T0, TTL, start

import pgtest
from stepline.engine.writer import BatchWriter
from stepline.store.postgres import PostgresStore
from stepline.store.postgres._statements import _quiet
from stepline.store.records import Lease

Job = Callable[[Any], Any]


def batches(store: PostgresStore, *rounds: Sequence[Job]) -> tuple[list[list[Any]], BatchWriter]:
    """Each round's outcomes, its jobs applied as one batch (after the previous round's);
    between rounds, every session but the test's is ended."""

    async def run() -> tuple[list[list[Any]], BatchWriter]:
        writer = BatchWriter(store, loop_batch=0)  # the thread's path (loop: test_pg_loop_commits)
        found: list[list[Any]] = []
        try:
            for i, jobs in enumerate(rounds):
                if i:
                    await asyncio.to_thread(pgtest.end_other_sessions, store.url)
                done = await asyncio.gather(*map(writer.submit, jobs), return_exceptions=True)
                found.append(list(done))
        finally:
            writer.close()
        return found, writer

    return asyncio.run(run())


@pytest.fixture
def pg_store(own_pg_store: PostgresStore) -> PostgresStore:
    """A store with connection pools of its own (not the warm ones of ``pg_store``):
    these tests end every session and count what is made again."""
    return own_pg_store


def lease_job(now: float = T0) -> Job:
    return lambda tx: [held.run_id for held in tx.lease_due("w1", now, 10, TTL, SERVED)]


def test_a_lease_on_an_ended_connection_is_made_again_unseen(pg_store: PostgresStore) -> None:
    start(pg_store, "r1", "r2")

    def trips(tx: Any) -> int:
        return int(tx.statements.round_trips)

    # the first round: the writer's connection is pooled; the second finds it ended at its
    # first round trip (the lease's read), and is made again on a checked connection
    found, writer = batches(pg_store, [trips], [lease_job()])
    assert found[0] == [0]  # no round trip before the COMMIT's: the check comes with it
    assert found[1] == [["r1", "r2"]]
    assert (writer.transactions, writer.replays) == (2, 1)
    held = [q.run_id for q in pg_store.queue_states(["r1", "r2"], T0) if q.leased]
    assert held == ["r1", "r2"]


def test_writes_on_an_ended_connection_are_made_again_unseen(pg_store: PostgresStore) -> None:
    def pause(tx: Any) -> None:  # writes only: its COMMIT would go in the first round trip
        tx.set_paused("fn", True, "app")

    found, writer = batches(pg_store, [lease_job()], [pause])
    assert found == [[[]], [None]]
    assert (writer.transactions, writer.replays) == (2, 1)
    assert pg_store.paused_functions("app") == {"fn"}


def test_a_lease_on_a_live_connection_makes_two_round_trips(pg_store: PostgresStore) -> None:
    start(pg_store, "r1")
    leases: list[Lease] = []

    def lease_and_count(tx: Any) -> int:
        leases.extend(tx.lease_due("w1", T0, 10, TTL, SERVED))
        return int(tx.statements.round_trips)

    found, writer = batches(pg_store, [lease_and_count])
    # the candidates and the live leases in one round trip; the COMMIT (with the leased runs'
    # state) in the second, and no check of the connection before them
    assert found == [[1]]
    assert [held.run_id for held in leases] == ["r1"]
    assert writer.replays == 0


def test_a_refused_first_round_trip_does_not_check_the_pool(
    pg_store: PostgresStore, monkeypatch: Any
) -> None:
    # only a connection's own failure says it may have been stale: a statement the server
    # refuses (here a division by zero) leaves the connection fine, and checking every idle
    # connection of the pool (a round trip each, in the writer's thread) would be wasted
    checks: list[int] = []
    pool = pg_store._read_pool
    check = pool.check
    monkeypatch.setattr(pool, "check", lambda: (checks.append(1), check())[1])

    def refused(tx: Any) -> int:
        return int(tx.statements.run("SELECT 1 / 0", ()).fetchone()[0])

    found, _ = batches(pg_store, [refused])
    assert isinstance(found[0][0], Exception)  # the job failed (made again alone: failed again)
    assert checks == []


def test_writes_on_a_live_connection_make_one_round_trip(pg_store: PostgresStore) -> None:
    # nothing to read on the pooled connection's socket: the COMMIT goes in the first round
    # trip (an event sent from another process is one round trip, not a check and a commit)
    def pause(tx: Any) -> Any:
        tx.set_paused("fn", True, "app")
        return tx.statements

    found, writer = batches(pg_store, [pause])
    assert found[0][0].round_trips == 1
    assert (writer.transactions, writer.replays) == (1, 0)
    assert pg_store.paused_functions("app") == {"fn"}


@pytest.mark.parametrize("has_poll", [True, False], ids=["poll", "no-poll"])
def test_only_a_connection_with_nothing_to_read_is_quiet(
    pg_url: str, has_poll: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an ended connection has its end waiting to be read; so has one a notification reached.
    # Without select.poll (Windows) the look is select.select's
    if not has_poll:
        monkeypatch.delattr(select, "poll", raising=False)
    with (
        psycopg.connect(pg_url, autocommit=True) as conn,
        psycopg.connect(pg_url, autocommit=True) as other,
    ):
        conn.execute("LISTEN quiet_test")
        assert _quiet(conn)
        other.execute("NOTIFY quiet_test")
        deadline = time.monotonic() + 30
        while _quiet(conn):
            assert time.monotonic() < deadline, "the notification never arrived"
            time.sleep(0.001)  # real time: a poll: the notification reaches the socket on its own
        assert len(list(conn.notifies(timeout=0, stop_after=1))) == 1
        assert _quiet(conn)
        pid = conn.info.backend_pid
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while _quiet(conn):
            assert time.monotonic() < deadline, "the ended connection still looks quiet"
            time.sleep(0.001)  # real time: a poll: the session's end reaches the socket on its own


def test_ending_the_other_sessions_returns_once_each_end_can_be_read(pg_url: str) -> None:
    # the suite's helper (pgtest.end_other_sessions) waits until the sessions are gone: a bare
    # pg_terminate_backend returns before a session not scheduled yet has ended, whose pooled
    # connection then looks quiet to the next test's check and dies under its next commit
    conns = [psycopg.connect(pg_url, autocommit=True) for _ in range(4)]
    try:
        for conn in conns:
            conn.execute("SELECT 1")
        pgtest.end_other_sessions(pg_url)
        assert not any(_quiet(conn) for conn in conns)
    finally:
        for conn in conns:
            conn.close()
