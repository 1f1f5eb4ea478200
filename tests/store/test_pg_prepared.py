"""A lone step's commit sent prepared (``store/postgres/_prepared.py``, ``_alone.
one_step_values``): ``ONE_STEP`` parsed once per connection under a name kept in psycopg's cache
of the connection, its parameters encoded here to the binary forms of the types it declares,
sent and read with libpq's calls. The rows it writes are those psycopg's adaptation writes; the
name is parsed again where psycopg dropped its prepared statements, or on a new connection;
and the outcome rules are the usual lane's: a lost lease or a refused value commits nothing
(``Replay``), an error of the commit itself or of the connection after the send leaves the
outcome unknown (``StoreUnavailable``), a cancelled round trip closes its connection, and the
commit returns only once the server replied (its commit flushed)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Generator
from typing import Any

import psycopg
import pytest
from tests.store.builders import T0, history, lease
from tests.store.test_pg_alone import marked, steps_of
from tests.store.test_pg_fold import completed
from tests.store.test_pg_loop_commits import _lock_wait_seen
from tests.store.test_pg_optimistic import outputs

import pgtest
from stepline._driven import Driven
from stepline.errors import StoreUnavailable
from stepline.store.interface import Replay, WouldBlock
from stepline.store.postgres import PostgresStore, _alone, _pipeline, _prepared
from stepline.store.postgres._alone import (
    FIRST_FRESH_STEP,
    FIRST_FRESH_STEP_TYPES,
    FIRST_STEP,
    FIRST_STEP_TYPES,
    ONE_FRESH_STEP,
    ONE_FRESH_STEP_TYPES,
    ONE_STEP,
    ONE_STEP_TYPES,
    PREPARED_ONE_STEP,
)
from stepline.store.records import HistoryRecord, Lease, PassCommit, StepRecord


@pytest.fixture
def store(own_pg_store: PostgresStore) -> PostgresStore:
    own_pg_store.load_run("none")  # one idle connection in the read pool
    return own_pg_store


def kept_connection(store: PostgresStore) -> psycopg.Connection[Any]:
    kept = store._loop_conns._kept
    assert kept is not None
    return kept.conn


@pytest.mark.parametrize(
    ("query", "types"),
    [
        (ONE_STEP, ONE_STEP_TYPES),
        (ONE_FRESH_STEP, ONE_FRESH_STEP_TYPES),
        (FIRST_STEP, FIRST_STEP_TYPES),
        (FIRST_FRESH_STEP, FIRST_FRESH_STEP_TYPES),
    ],
)
def test_the_declared_types_are_those_the_server_infers(
    store: PostgresStore, query: str, types: tuple[int, ...]
) -> None:
    with psycopg.connect(store.url, autocommit=True) as conn:
        text = _pipeline._shape(query, "utf-8", len(types))
        assert text is not None
        assert conn.pgconn.prepare(b"probe", text[0]).status == psycopg.pq.ExecStatus.COMMAND_OK
        described = conn.pgconn.describe_prepared(b"probe")
        inferred = tuple(described.param_type(i) for i in range(described.nparams))
    assert inferred == types


def rows_of(store: PostgresStore, run_id: str) -> tuple[list[StepRecord], list[HistoryRecord]]:
    return store.get_steps(run_id), store.get_history(run_id)


def every_value(held: Lease, digest: str) -> PassCommit:
    """A lone step commit with every nullable parameter set (and unusual texts)."""
    s = StepRecord(
        held.run_id,
        digest,
        "stép \u2603",
        "sleep",
        -7,
        "FAILED",
        b"\x00\xff raw",
        {"name": "Boom", "message": "b\u00e9"},
        2**31 - 1,
        T0 + 0.125,
        T0 - 1e-9,
        float("inf"),
    )
    h = HistoryRecord(held.run_id, T0 + 1, "STEP_FAILED", "stép", -(2**31), 1e-300, {"k": [1]})
    return PassCommit(held.run_id, held.token, steps=[s], history=[h])


def empty_values(held: Lease, digest: str) -> PassCommit:
    """A lone step commit with empty texts and bytes (not NULL), integers and floats at 0."""
    s = StepRecord(held.run_id, digest, "", "", 0, "COMPLETED", b"", None, 0, 0.0, -0.0, 0)
    h = HistoryRecord(held.run_id, 0.0, "", "", 0, 0.0, {})
    return PassCommit(held.run_id, held.token, steps=[s], history=[h])


def test_the_rows_written_are_those_the_usual_lane_writes(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch, prepared_sends: list[bool]
) -> None:
    one, other = marked(store, "r1", "r2")
    for commit in (
        steps_of(one, 7),
        every_value(one, "h9"),
        empty_values(one, "h8"),
        completed(one, "hf", 3),
    ):
        assert asyncio.run(store.commit_steps_on_loop(commit)) is True
    assert prepared_sends == [True] * 4  # the last a first row (ONE_FRESH_STEP)
    monkeypatch.setattr(_alone, "one_step_values", lambda *_: None)  # the usual lane
    for commit in (
        steps_of(other, 7),
        every_value(other, "h9"),
        empty_values(other, "h8"),
        completed(other, "hf", 3),
    ):
        assert asyncio.run(store.commit_steps_on_loop(commit)) is True
    assert prepared_sends == [True] * 4
    steps, rows = rows_of(store, "r1")
    usual_steps, usual_rows = rows_of(store, "r2")
    assert [values(s) for s in steps] == [values(s) for s in usual_steps]
    assert [values(h) for h in rows] == [values(h) for h in usual_rows]
    [full] = [s for s in steps if s.hash == "h9"]
    assert full.output_json == b"\x00\xff raw" and full.ended_at == float("inf")
    assert full.error == {"name": "Boom", "message": "b\u00e9"} and full.position == -7
    assert rows[-3].worker_id == "w1" and rows[-3].data == {"k": [1]}
    [empty] = [s for s in steps if s.hash == "h8"]
    assert (empty.step_id, empty.output_json, empty.ended_at) == ("", b"", 0.0)
    assert (rows[-2].step_id, rows[-2].data) == ("", {})
    assert rows[-1].kind == "STEP_COMPLETED" and rows[-1].step_id == "step-hf"


def values(record: Any) -> list[Any]:
    """A record's fields but its run id."""
    return [getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "run_id"]


def test_a_value_not_of_its_declared_type_goes_the_usual_lane(
    store: PostgresStore, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")
    s = StepRecord(held.run_id, "h1", "step-h1", "run", 1, "COMPLETED", bytearray(b"7"))
    commit = PassCommit(held.run_id, held.token, [s], history=[history("r1", "STEP_COMPLETED")])
    assert _alone.one_step_values(commit, "w1", store._tokens) is None
    assert asyncio.run(store.commit_steps_on_loop(commit)) is True
    assert prepared_sends == []
    assert outputs(store, "r1") == {"r1": b"7"}


def test_the_statement_is_parsed_once_per_connection(
    store: PostgresStore, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")
    names: list[bytes | None] = []

    async def run() -> None:
        for n in range(3):
            assert await store.commit_steps_on_loop(steps_of(held, n)) is True
            names.append(PREPARED_ONE_STEP.name_on(kept_connection(store)))

    asyncio.run(run())
    assert prepared_sends == [True] * 3
    assert names[0] is not None and names == [names[0]] * 3


def test_it_is_parsed_again_once_psycopg_dropped_the_connections_prepared_statements(
    store: PostgresStore,
) -> None:
    [held] = marked(store, "r1")
    names: list[bytes | None] = []

    async def run() -> None:
        assert await store.commit_steps_on_loop(steps_of(held, 1)) is True
        conn = kept_connection(store)
        names.append(PREPARED_ONE_STEP.name_on(conn))
        conn.execute("SELECT 1", prepare=True)
        conn.execute("ROLLBACK")  # psycopg deallocates every prepared statement (a warning)
        names.append(PREPARED_ONE_STEP.name_on(conn))
        for n in (2, 3):
            assert await store.commit_steps_on_loop(steps_of(held, n)) is True
        names.append(PREPARED_ONE_STEP.name_on(conn))

    asyncio.run(run())
    first, dropped, last = names
    assert first is not None and dropped is None
    assert last is not None and last != first
    assert outputs(store, "r1") == {"r1": b"3"}


def test_it_is_parsed_again_on_a_new_connection(
    store: PostgresStore, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")
    conns: list[psycopg.Connection[Any]] = []

    async def commit(output: int) -> None:
        assert await store.commit_steps_on_loop(steps_of(held, output)) is True
        conns.append(kept_connection(store))

    asyncio.run(commit(1))
    pgtest.end_other_sessions(store.url)  # a server restart, as its connections see it
    with pytest.raises(WouldBlock):  # found ended before anything was sent: closed
        asyncio.run(store.commit_steps_on_loop(steps_of(held, 7)))
    store.load_run("none")  # the pool made a new connection
    asyncio.run(commit(2))
    assert conns[1] is not conns[0] and conns[0].closed
    assert PREPARED_ONE_STEP.name_on(conns[1]) is not None
    assert prepared_sends == [True, True]
    assert outputs(store, "r1") == {"r1": b"2"}


def test_a_lost_lease_commits_nothing(store: PostgresStore, prepared_sends: list[bool]) -> None:
    [held] = marked(store, "r1")
    with store.transaction() as tx:  # another worker takes the run over
        tx.release_owner("w1", T0)
    lease(store, owner="w2", now=T0 + 1)
    with pytest.raises(Replay):
        asyncio.run(store.commit_steps_on_loop(steps_of(held, 7)))
    assert prepared_sends == []  # raised through it
    assert outputs(store, "r1") == {"r1": b"0"}


def test_a_value_the_server_refuses_commits_nothing(store: PostgresStore) -> None:
    [held] = marked(store, "r1")
    s = StepRecord(held.run_id, "h1", "a NUL \x00 in a step id", "run", 1, "COMPLETED", b"7")
    commit = PassCommit(held.run_id, held.token, [s], history=[history("r1", "STEP_COMPLETED")])
    assert (
        _alone.one_step_values(commit, "w1", store._tokens) is not None
    )  # sent: the server refuses it
    with pytest.raises(Replay):
        asyncio.run(store.commit_steps_on_loop(commit))
    assert outputs(store, "r1") == {"r1": b"0"}


def test_an_error_of_its_commit_leaves_the_outcome_unknown(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    [held] = marked(store, "r1")
    sent = _prepared._sent

    async def crashed(*args: Any) -> psycopg.Error | None:
        assert await sent(*args) is None  # committed; then the sync's reply is an error (57P02)
        error = psycopg.errors.CrashShutdown("terminating connection: another process crashed")
        setattr(error, _pipeline._AT_SYNC, True)
        return error

    monkeypatch.setattr(_prepared, "_sent", crashed)
    with pytest.raises(StoreUnavailable, match="outcome is unknown"):
        asyncio.run(store.commit_steps_on_loop(steps_of(held, 7)))
    assert outputs(store, "r1") == {"r1": b"7"}  # committed once: never made again


def test_a_connection_ended_during_its_round_trip_leaves_the_outcome_unknown(
    store: PostgresStore, pg_url: str
) -> None:
    [held] = marked(store, "r1")

    async def run() -> None:
        with psycopg.connect(pg_url) as locker:  # another process holds the run's queue row
            locker.execute("SELECT 1 FROM queue WHERE run_id = 'r1' FOR UPDATE")
            commit = asyncio.create_task(store.commit_steps_on_loop(steps_of(held, 7)))
            await _lock_wait_seen(pg_url)
            assert not commit.done()  # sent: it waits for the server's reply
            locker.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            with pytest.raises(StoreUnavailable, match="outcome is unknown"):
                await commit
            locker.rollback()

    asyncio.run(run())
    assert outputs(store, "r1") == {"r1": b"0"}  # (terminated before it ran)


def test_cancelled_in_its_round_trip_it_closes_its_connection(
    store: PostgresStore, pg_url: str, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")
    asyncio.run(store.commit_steps_on_loop(steps_of(held, 1)))  # the loop's connection kept
    conns: list[psycopg.Connection[Any]] = []

    async def run() -> None:
        with psycopg.connect(pg_url) as locker:
            locker.execute("SELECT 1 FROM queue WHERE run_id = 'r1' FOR UPDATE")
            commit = asyncio.create_task(store.commit_steps_on_loop(steps_of(held, 7)))
            await _lock_wait_seen(pg_url)
            conns.append(kept_connection(store))
            commit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await commit
            locker.rollback()

    asyncio.run(run())
    assert prepared_sends == [True]  # the second raised through it
    assert conns[0].closed
    assert conns[0] not in store._read_pool._pool  # not given back (the pool replaces it)


def driven(coro: Coroutine[Any, Any, Any]) -> Any:
    """``coro`` run by a ``Driven`` (as the writer runs its loop commits), its result."""

    async def run() -> Any:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[Driven] = loop.create_future()
        loop.call_soon(lambda: started.set_result(Driven(coro, loop)))
        return await (await started)

    return asyncio.run(run())


def test_driven_as_the_writer_drives_it_the_same_rules_hold(
    store: PostgresStore, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")

    async def commits() -> None:
        for n in (1, 2):
            assert await store.commit_steps_on_loop(steps_of(held, n)) is True

    driven(commits())
    assert outputs(store, "r1") == {"r1": b"2"}
    with store.transaction() as tx:
        tx.release_owner("w1", T0)
    lease(store, owner="w2", now=T0 + 1)
    with pytest.raises(Replay):
        driven(store.commit_steps_on_loop(steps_of(held, 7)))
    assert prepared_sends == [True, True]
    assert outputs(store, "r1") == {"r1": b"2"}


def test_it_is_parsed_again_once_deallocated_behind_psycopgs_back(
    store: PostgresStore, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")
    names: list[bytes | None] = []

    async def run() -> None:
        assert await store.commit_steps_on_loop(steps_of(held, 1)) is True
        conn = kept_connection(store)
        name = PREPARED_ONE_STEP.name_on(conn)
        assert name is not None
        names.append(name)
        conn.pgconn.exec_(b"DEALLOCATE " + name)  # psycopg does not see it
        with pytest.raises(Replay):  # refused by the server (26000): nothing committed
            await store.commit_steps_on_loop(steps_of(held, 2))
        assert await store.commit_steps_on_loop(steps_of(held, 3)) is True
        names.append(PREPARED_ONE_STEP.name_on(kept_connection(store)))

    asyncio.run(run())
    assert names[1] is not None and names[1] != names[0]
    assert outputs(store, "r1") == {"r1": b"3"}


def test_driven_and_cancelled_in_its_round_trip_it_closes_its_connection(
    store: PostgresStore, pg_url: str
) -> None:
    [held] = marked(store, "r1")
    conns: list[psycopg.Connection[Any]] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        assert await store.commit_steps_on_loop(steps_of(held, 1)) is True
        conns.append(kept_connection(store))
        with psycopg.connect(pg_url) as locker:
            locker.execute("SELECT 1 FROM queue WHERE run_id = 'r1' FOR UPDATE")
            started: asyncio.Future[Driven] = loop.create_future()
            commit = store.commit_steps_on_loop(steps_of(held, 7))
            loop.call_soon(lambda: started.set_result(Driven(commit, loop)))
            driven = await started
            await _lock_wait_seen(pg_url)
            assert not driven.done()
            driven.cancel()
            with pytest.raises(asyncio.CancelledError):
                await driven
            locker.rollback()

    asyncio.run(run())
    assert conns[0].closed  # (its outcome unknown: the writer says so, BatchWriter)


def test_a_connection_of_another_client_encoding_goes_the_usual_lane(
    store: PostgresStore, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")

    async def run() -> None:
        assert await store.commit_steps_on_loop(steps_of(held, 1)) is True
        kept_connection(store).execute("SET client_encoding TO 'LATIN1'")
        s = StepRecord(held.run_id, "h0", "\u00e9t\u00e9", "run", 1, "COMPLETED", b"2")
        commit = PassCommit(held.run_id, held.token, [s], [history("r1", "STEP_COMPLETED")])
        assert await store.commit_steps_on_loop(commit) is True

    asyncio.run(run())
    assert prepared_sends == [True, False]  # its texts are not sent as UTF-8 there


class _Odd:
    """A result that is neither an error nor a statement's success (read as a result is read
    for its error: no SQLSTATE, no message)."""

    status = psycopg.pq.ExecStatus.EMPTY_QUERY

    def error_field(self, field: Any) -> bytes | None:
        return None

    def get_error_message(self, encoding: str = "utf-8") -> str:
        return ""


def test_a_result_neither_an_error_nor_a_success_leaves_the_outcome_unknown(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch, prepared_sends: list[bool]
) -> None:
    [held] = marked(store, "r1")
    replies = _prepared._replies

    def odd(pgconn: Any) -> Generator[Any, Any, list[Any]]:
        results = yield from replies(pgconn)
        return [*results[:-1], _Odd()]  # the statement's result (it ran: committed)

    monkeypatch.setattr(_prepared, "_replies", odd)
    with pytest.raises(StoreUnavailable, match="outcome is unknown"):  # never a Replay
        asyncio.run(store.commit_steps_on_loop(steps_of(held, 7)))
    assert prepared_sends == []  # raised through it
    assert outputs(store, "r1") == {"r1": b"7"}  # committed once: never made again
