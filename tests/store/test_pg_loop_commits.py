"""``PostgresStore.commit_on_loop`` (``LoopCommits``): an optimistic transaction whose jobs run
on the event loop and whose commit's round trip is awaited there, never blocking it. Anything
that would wait other than for that reply is refused with nothing sent (``WouldBlock``); what
fails in the round trip maps as in the writer thread's optimistic transaction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from tests.store.builders import SERVED, T0, TTL, lease, start
from tests.store.test_pg_optimistic import commit_job, outputs

import pgtest
from stepline.errors import LeaseLostError, StoreUnavailable
from stepline.store.interface import LoopCommits, Replay, WouldBlock
from stepline.store.postgres import PostgresStore, _database
from stepline.store.postgres import _lease_queries as lq
from stepline.store.postgres._statements import Statements

Job = Callable[[Any], Any]
DEADLINE = 30.0


def idle(store: PostgresStore) -> int:
    """The read pool's idle connections."""
    return int(store._read_pool.get_stats()["pool_available"])


@pytest.fixture
def pg_store(own_pg_store: PostgresStore) -> PostgresStore:
    """A store with connection pools of its own (not the warm ones of ``pg_store``):
    these tests count, take and close its idle connections."""
    return own_pg_store


@pytest.fixture
def store(pg_store: PostgresStore) -> PostgresStore:
    """``pg_store`` with one idle connection in its read pool (a read made one)."""
    pg_store.load_run("none")
    assert idle(pg_store) == 1
    return pg_store


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[psycopg.Connection[Any]]:
    """The connections ``commit_on_loop`` takes."""
    found: list[psycopg.Connection[Any]] = []
    take = _database.take_idle

    def recorded(pool: Any) -> Any:
        conn = take(pool)
        if conn is not None:
            found.append(conn)
        return conn

    monkeypatch.setattr(_database, "take_idle", recorded)
    return found


def commit(store: PostgresStore, *jobs: Job) -> list[Any]:
    return asyncio.run(store.commit_on_loop(jobs))


def test_the_store_commits_on_the_loop(store: PostgresStore) -> None:
    assert isinstance(store, LoopCommits)
    start(store, "r1", "r2")
    held = lease(store)
    assert commit(store, commit_job(held[0], 1), commit_job(held[1], 2)) == [[], []]
    assert outputs(store, "r1", "r2") == {"r1": b"1", "r2": b"2"}
    assert idle(store) == 1  # given back, idle


def test_the_jobs_statements_go_in_one_round_trip_with_the_commit(store: PostgresStore) -> None:
    start(store, "r1")
    [held] = lease(store)

    def trips(tx: Any) -> int:
        return int(tx.statements.round_trips)

    assert commit(store, commit_job(held, 1), trips) == [[], 0]


def test_without_an_idle_connection_it_would_block(pg_store: PostgresStore) -> None:
    start(pg_store, "r1")
    [held] = lease(pg_store)  # on the checked pool: the read pool has no connection yet
    assert idle(pg_store) == 0
    with pytest.raises(WouldBlock):
        commit(pg_store, commit_job(held, 1))
    assert outputs(pg_store, "r1") == {}


def test_a_read_before_the_commit_would_block_with_nothing_sent(store: PostgresStore) -> None:
    def pause_then_read(tx: Any) -> None:
        tx.set_paused("fn", True, "app")
        tx.stored_event_ids(["e1"])  # a round trip: refused

    with pytest.raises(WouldBlock):
        commit(store, pause_then_read)
    assert store.paused_functions("app") == set()
    assert idle(store) == 1  # idle: nothing was sent on it


def test_a_job_that_catches_the_refusal_cannot_commit(store: PostgresStore) -> None:
    def read_anyway(tx: Any) -> None:
        try:
            tx.stored_event_ids(["e1"])
        except WouldBlock:
            pass
        tx.set_paused("fn", True, "app")

    with pytest.raises(WouldBlock):
        commit(store, read_anyway)
    assert store.paused_functions("app") == set()


def test_a_lease_without_its_presence_lock_would_block(store: PostgresStore) -> None:
    start(store, "r1")
    with pytest.raises(WouldBlock):
        commit(store, lambda tx: tx.lease_due("w1", T0, 10, TTL, SERVED))


def test_a_lost_lease_is_replayed_with_nothing_committed(store: PostgresStore, pg_url: str) -> None:
    start(store, "r1", "r2")
    held = {h.run_id: h for h in lease(store)}
    with psycopg.connect(pg_url, autocommit=True) as conn:  # another process took r2 over
        conn.execute("UPDATE queue SET lease_token = 'theirs' WHERE run_id = 'r2'")
    with pytest.raises(Replay):
        commit(store, commit_job(held["r1"], 1), commit_job(held["r2"], 2))
    assert outputs(store, "r1", "r2") == {}  # the sync rolled the whole transaction back
    with store.transaction() as tx:  # made again carefully: only r2's job fails
        assert commit_job(held["r1"], 1)(tx) == []
        with pytest.raises(LeaseLostError):
            commit_job(held["r2"], 2)(tx)
    assert outputs(store, "r1", "r2") == {"r1": b"1"}


def test_a_statement_refused_in_the_round_trip_is_replayed(store: PostgresStore) -> None:
    def refused(tx: Any) -> None:
        tx.set_paused("fn", True, "app")
        tx.statements.write("SELECT 1 / 0")

    with pytest.raises(Replay, match="division by zero"):
        commit(store, refused)
    assert store.paused_functions("app") == set()
    assert idle(store) == 1  # the sync ended the failed transaction: the connection is fine


def test_a_job_that_raises_is_replayed(store: PostgresStore) -> None:
    def fails(tx: Any) -> None:
        tx.set_paused("fn", True, "app")
        raise ValueError("its own")

    with pytest.raises(Replay, match="its own"):
        commit(store, fails)
    assert store.paused_functions("app") == set()


def test_an_error_after_the_commit_leaves_its_outcome_unknown(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(store, "r1")
    [held] = lease(store)
    flush = Statements._flush_async

    async def crashed(statements: Statements) -> None:
        await flush(statements)  # committed; then the reply is an error, as from a backend
        # terminated after its commit's flush because another backend crashed (57P02)
        raise psycopg.errors.CrashShutdown("terminating connection: another process crashed")

    monkeypatch.setattr(Statements, "_flush_async", crashed)
    with pytest.raises(StoreUnavailable, match="outcome is unknown"):
        commit(store, commit_job(held, 1))
    assert outputs(store, "r1") == {"r1": b"1"}  # committed once: never made again


def test_an_ended_connection_is_refused_and_closed(
    store: PostgresStore, taken: list[psycopg.Connection[Any]]
) -> None:
    """The server ended the idle connection (a restart): its end waits on the socket, so no
    commit goes on it; checking it would be a round trip: refused, the connection closed
    (the pool replaces it)."""
    pgtest.end_other_sessions(store.url)
    with pytest.raises(WouldBlock):
        commit(store, lambda tx: tx.set_paused("fn", True, "app"))
    assert taken[0].closed
    assert store.paused_functions("app") == set()


async def _lock_wait_seen(url: str) -> None:
    """Poll (from this loop, on a thread) until a session of the database waits for a lock."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )

    def waiting() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
            return row is not None and row[0] > 0

    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not await asyncio.to_thread(waiting):
        assert asyncio.get_running_loop().time() < deadline, "no session waited for a lock"
        await asyncio.sleep(0.01)  # real time: polling a real server's state under a deadline


def test_a_commit_waiting_for_a_lock_leaves_the_loop_running(
    store: PostgresStore, pg_url: str
) -> None:
    start(store, "r1")
    [held] = lease(store)

    async def run() -> list[Any]:
        with psycopg.connect(pg_url) as locker:  # another process holds the run's queue row
            locker.execute("SELECT 1 FROM queue WHERE run_id = 'r1' FOR UPDATE")
            commit = asyncio.create_task(store.commit_on_loop([commit_job(held, 1)]))
            await _lock_wait_seen(pg_url)  # the loop ran this while the commit waits
            assert not commit.done()
            locker.rollback()
        return await commit

    assert asyncio.run(run()) == [[]]
    assert outputs(store, "r1") == {"r1": b"1"}


def test_a_cancelled_round_trip_closes_its_connection(
    store: PostgresStore, pg_url: str, taken: list[psycopg.Connection[Any]]
) -> None:
    """Cancelled while its reply is awaited: the connection is mid-protocol, so it is closed
    (never given back to the pool as it is), and the cancellation goes on. The server had the
    commit's statements: whether they committed is unknown (the writer says so)."""
    start(store, "r1")
    [held] = lease(store)

    async def run() -> None:
        with psycopg.connect(pg_url) as locker:
            locker.execute("SELECT 1 FROM queue WHERE run_id = 'r1' FOR UPDATE")
            commit = asyncio.create_task(store.commit_on_loop([commit_job(held, 1)]))
            await _lock_wait_seen(pg_url)
            commit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await commit
            locker.rollback()

    asyncio.run(run())
    assert taken[0].closed
    assert taken[0] not in store._read_pool._pool  # not given back (the pool replaces it)


def test_take_idle_never_waits(pg_store: PostgresStore) -> None:
    """What ``take_idle`` leans on in psycopg_pool: its lock, its deque of idle connections,
    and ``putconn`` taking back a connection so taken."""
    pool = pg_store._read_pool
    pg_store.load_run("none")  # opens the pool, one connection made and given back
    conn = _database.take_idle(pool)
    assert conn is not None and idle(pg_store) == 0
    assert _database.take_idle(pool) is None  # none idle: None at once, nothing waited for
    pool.putconn(conn)
    assert idle(pg_store) == 1


def test_take_idle_takes_the_connection_given_back_last(pg_store: PostgresStore) -> None:
    """A loop's commits, one after the other, go to one server process (LIFO), not to each
    idle connection in turn (``getconn`` takes the oldest)."""
    pool = pg_store._read_pool
    pg_store.load_run("none")  # opens the pool
    first, second = pool.getconn(), pool.getconn()
    pool.putconn(first)
    pool.putconn(second)
    taken = _database.take_idle(pool)
    assert taken is second
    pool.putconn(taken)


def test_a_named_lease_is_committed_on_the_loop_once_its_presence_lock_is_held(
    store: PostgresStore,
) -> None:
    """A worker told of new runs (``lease_named``) leases them on the loop: its presence
    lock is held already (a poll says its session is alive), and its generic plans are set
    without ``SET LOCAL``, so the transaction goes without ``BEGIN``, in one round trip."""
    start(store, "r1", "r2")

    def named(run_id: str) -> Job:
        return lambda tx: tx.lease_named("w1", T0, [run_id], TTL, SERVED)

    with pytest.raises(WouldBlock):  # the lock is not held yet: taking it may connect
        commit(store, named("r1"))
    [first] = lease(store, limit=1)  # on the thread: takes the lock
    assert first.token.startswith("p:")
    [taken] = commit(store, named("r2"))
    [held] = taken()
    assert held.run_id == "r2" and held.token.startswith("p:")
    assert [q.run_id for q in store.queue_states(["r1", "r2"], T0) if q.leased] == ["r1", "r2"]


def test_generic_plans_last_until_put_back_in_a_transaction_without_begin(
    store: PostgresStore,
) -> None:
    """``lease_named``'s generic plans: set for the statements after ``GENERIC_PLANS`` and
    the mode before put back by ``DEFAULT_PLANS``, also in a transaction sent without
    ``BEGIN`` (its pipeline's sync commits it: one implicit transaction)."""
    mode = "SELECT current_setting('plan_cache_mode')"

    def modes(tx: Any) -> Callable[[], list[Any]]:
        s = tx.statements
        s.write(lq.GENERIC_PLANS)
        during = s.read_later(mode)
        s.write(lq.DEFAULT_PLANS)
        after = s.read_later(mode)
        return lambda: [during.rows, after.rows]

    [found] = commit(store, modes)
    assert found() == [[("force_generic_plan",)], [("auto",)]]


def test_a_refusal_names_the_job_that_needed_a_read(store: PostgresStore) -> None:
    start(store, "r1")

    def pause(tx: Any) -> None:
        tx.set_paused("fn", True, "app")

    def reads(tx: Any) -> None:
        tx.stored_event_ids(["e1"])

    with pytest.raises(WouldBlock) as refused:
        commit(store, pause, reads)
    assert refused.value.job == 1
    with pytest.raises(WouldBlock) as refused:  # the presence lock: not the job's every time
        commit(store, lambda tx: tx.lease_due("w1", T0, 10, TTL, SERVED))
    assert refused.value.job is None


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A loop without ``add_reader``/``add_writer``, as asyncio's ``ProactorEventLoop`` (the
    default event loop on Windows) is: both raise ``NotImplementedError``."""

    def add_reader(self, *args: Any) -> None:
        raise NotImplementedError

    def add_writer(self, *args: Any) -> None:
        raise NotImplementedError


class FailingReaderLoop(asyncio.SelectorEventLoop):
    """A loop whose ``add_reader`` works once (the store's probe) and then fails, as a loop's
    own error on the socket would (a ``RuntimeError``: not a ``psycopg.Error``)."""

    readers = 0

    def add_reader(self, *args: Any) -> None:
        self.readers += 1
        if self.readers > 1:
            raise RuntimeError("the loop failed on the socket")
        super().add_reader(*args)


def test_a_loop_that_cannot_wait_on_a_socket_would_block_with_nothing_sent(
    store: PostgresStore,
) -> None:
    """Review F2: a Proactor-like loop is refused before the commit is written (the thread
    makes it), never found out after the server got it."""
    start(store, "r1")
    [held] = lease(store)
    with asyncio.Runner(loop_factory=NoReaderLoop) as runner, pytest.raises(WouldBlock):
        runner.run(store.commit_on_loop([commit_job(held, 1)]))
    assert outputs(store, "r1") == {}


def test_an_error_of_the_loop_after_the_commit_was_written_is_never_a_replay(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review F2: the pipeline (statements and sync: the commit) is written, then the wait
    for its reply fails with an error that is not psycopg's: the outcome is unknown
    (``StoreUnavailable``), never ``Replay``, which would apply the jobs a second time. On a
    pooled connection, whose wait adds a reader (the loop's own connection is busy)."""
    start(store, "r1")
    [held] = lease(store)
    monkeypatch.setattr(store._loop_conns, "take", lambda loop, pool: None)
    with (
        asyncio.Runner(loop_factory=FailingReaderLoop) as runner,
        pytest.raises(StoreUnavailable, match="outcome is unknown"),
    ):
        runner.run(store.commit_on_loop([commit_job(held, 1)]))
    deadline = 300
    while outputs(store, "r1") == {} and deadline:  # the server commits what it got
        deadline -= 1
        # real time: polling a real server's state under a bound (its commit is async)
        time.sleep(0.1)
    assert outputs(store, "r1") == {"r1": b"1"}
