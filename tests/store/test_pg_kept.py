"""The connection one event loop keeps for its commits (``store/postgres/_kept.py``): one
connection of the read pool, its reader registered once, for every commit of the loop; given
back when the loop shuts down or closes, when a commit leaves it other than idle, or when the
server ends it while it is idle; a commit beside it, while it is busy, or of another loop takes
a pooled one; never kept when the pool has nothing more to give (review R3); the store's close
during a commit on it lets that commit end (review R4)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest
from tests.store import test_pg_loop_commits as loop_commits
from tests.store.builders import lease, start
from tests.store.test_pg_loop_commits import idle
from tests.store.test_pg_optimistic import commit_job, outputs

import pgtest
from stepline.store.postgres import PostgresStore

DEADLINE = 30.0
taken = loop_commits.taken  # the fixture: the connections commit_on_loop takes from the pool


@pytest.fixture
def store(own_pg_store: PostgresStore) -> PostgresStore:
    """A store with pools of its own and one idle connection in its read pool."""
    own_pg_store.load_run("none")
    assert idle(own_pg_store) == 1
    return own_pg_store


def kept_by(store: PostgresStore, loop: asyncio.AbstractEventLoop) -> Any:
    kept = store._loop_conns._kept
    return kept if kept is not None and kept.loop() is loop else None


def warm(store: PostgresStore, count: int) -> None:
    """``count`` idle connections in the read pool."""
    conns = [store._read_pool.getconn() for _ in range(count)]
    for conn in conns:
        store._read_pool.putconn(conn)


def test_a_loops_commits_go_on_the_connection_it_keeps_until_it_shuts_down(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    start(store, "r1", "r2")
    first, second = lease(store)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        assert await store.commit_on_loop([commit_job(first, 1)]) == [[]]
        assert kept_by(store, loop).conn is taken[0]
        assert idle(store) == 0  # kept by the loop, its reader registered
        assert await store.commit_on_loop([commit_job(second, 2)]) == [[]]
        assert len(taken) == 1  # the same connection, never taken from the pool again

    asyncio.run(run())  # its shutdown (shutdown_asyncgens) gives the connection back
    assert idle(store) == 1 and not taken[0].closed
    assert store._loop_conns._kept is None
    assert outputs(store, "r1", "r2") == {"r1": b"1", "r2": b"2"}


def test_a_round_trip_awaited_in_a_task_is_read_in_the_readers_callback(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    """A task's commit on the kept connection (a lone step's: ``BatchWriter.commit_now``) has
    its reply read by the reader's callback, which wakes the task: the socket is not left
    readable, so the loop's next turn (the task's) runs no reader callback again."""
    start(store, "r1", "r2")
    first, second = lease(store)

    def readers(loop: asyncio.AbstractEventLoop) -> list[str]:
        ready = loop._ready  # type: ignore[attr-defined]
        return [str(handle) for handle in ready if "_readable" in str(handle)]

    async def run() -> list[list[str]]:
        loop = asyncio.get_running_loop()
        found = []
        for held, output in ((first, 1), (second, 2)):  # taken, then kept
            assert await store.commit_on_loop([commit_job(held, output)]) == [[]]
            found.append(readers(loop))  # the task's turn, right after the reply's
        assert kept_by(store, loop) is not None
        return found

    assert asyncio.run(run()) == [[], []]
    assert outputs(store, "r1", "r2") == {"r1": b"1", "r2": b"2"}


def test_a_commit_beside_a_busy_kept_connection_takes_a_pooled_one(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    start(store, "r1", "r2")
    first, second = lease(store)
    warm(store, 2)

    async def run() -> list[Any]:
        return list(
            await asyncio.gather(
                store.commit_on_loop([commit_job(first, 1)]),
                store.commit_on_loop([commit_job(second, 2)]),
            )
        )

    assert asyncio.run(run()) == [[[]], [[]]]
    assert len(taken) == 2  # the kept one, and a pooled one for the commit beside it
    assert idle(store) == 2
    assert outputs(store, "r1", "r2") == {"r1": b"1", "r2": b"2"}


def test_the_server_ending_the_idle_kept_connection_gives_it_back_closed(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    """A restart ends the session while the loop keeps it: the loop's reader reads its end,
    and the connection is closed and given back (the pool replaces it); the next commit takes
    the new one."""
    start(store, "r1", "r2")
    first, second = lease(store)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await store.commit_on_loop([commit_job(first, 1)])
        await asyncio.to_thread(pgtest.end_other_sessions, store.url)
        deadline = time.monotonic() + DEADLINE
        while kept_by(store, loop) is not None or idle(store) == 0:
            assert time.monotonic() < deadline, "the ended connection was not given back"
            # real time: the reader runs as the loop polls; the pool reconnects
            await asyncio.sleep(0.01)
        assert taken[0].closed
        assert await store.commit_on_loop([commit_job(second, 2)]) == [[]]
        assert kept_by(store, loop).conn is taken[1]

    asyncio.run(run())
    assert outputs(store, "r1", "r2") == {"r1": b"1", "r2": b"2"}


def test_a_loop_closed_without_shutting_down_gives_its_connection_back_later(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    """Closed without ``shutdown_asyncgens`` (not by ``asyncio.run``): its connection stays
    out of the pool until another loop takes one of its own, or the store closes."""
    start(store, "r1", "r2")
    first, second = lease(store)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(store.commit_on_loop([commit_job(first, 1)]))
    loop.close()
    assert idle(store) == 0
    asyncio.run(store.commit_on_loop([commit_job(second, 2)]))  # given back, taken, given back
    assert idle(store) == 1
    assert store._loop_conns._kept is None
    assert outputs(store, "r1", "r2") == {"r1": b"1", "r2": b"2"}

    other = asyncio.new_event_loop()
    other.run_until_complete(store.commit_on_loop([lambda tx: tx.set_paused("f", True, "a")]))
    other.close()
    store.close()
    assert store._loop_conns._kept is None
    assert taken[-1].closed  # given back to the closed pool, which closed it


def test_one_loop_keeps_a_connection_and_another_loops_commits_take_pooled_ones(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    start(store, "r1", "r2", "r3")
    first, second, third = lease(store)
    warm(store, 2)
    keeper = asyncio.new_event_loop()
    try:
        keeper.run_until_complete(store.commit_on_loop([commit_job(first, 1)]))
        assert kept_by(store, keeper) is not None and idle(store) == 1
        for held, output in ((second, 2), (third, 3)):  # another loop, open all along
            asyncio.run(store.commit_on_loop([commit_job(held, output)]))
            assert kept_by(store, keeper) is not None and idle(store) == 1  # taken, given back
        assert len(taken) == 3 and taken[1] is taken[2]  # the pooled one, twice
    finally:
        keeper.run_until_complete(keeper.shutdown_asyncgens())
        keeper.close()
    assert idle(store) == 2 and store._loop_conns._kept is None
    assert outputs(store, "r1", "r2", "r3") == {"r1": b"1", "r2": b"2", "r3": b"3"}


def test_a_pool_with_nothing_more_to_give_is_never_pinned(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review R3: a pool of one connection (its only idle one, no room to open another) is
    never kept by a loop: the writer thread's transactions and the reads need it."""
    store = PostgresStore(pg_url, max_connections=1)
    try:
        store.migrate()
        start(store, "r1", "r2")
        first, second = lease(store)
        store.load_run("none")  # the read pool's one connection, idle
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(store.commit_on_loop([commit_job(first, 1)]))
            assert store._loop_conns._kept is None and idle(store) == 1  # taken, given back
            with store.optimistic_transaction() as tx:  # the thread's path: not kept from it
                commit_job(second, 2)(tx)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        assert outputs(store, "r1", "r2") == {"r1": b"1", "r2": b"2"}
    finally:
        store.close()
