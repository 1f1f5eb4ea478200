"""The PostgreSQL store's queued statements (``store/postgres/_statements.py``): writes whose
result nobody reads are sent with the next read or at the end of the outermost savepoint, in one
round trip; a failing statement still raises inside the savepoint (verb, job) that queued it,
which is rolled back alone."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from stepline.engine.writer import BatchWriter
from stepline.errors import StoreError
from stepline.store.postgres import PostgresStore
from stepline.store.postgres import queries as q
from stepline.store.postgres._coalesce import coalesced
from stepline.store.postgres._merging import _HOLD, Later, _held, _merged, _planned
from stepline.store.postgres._statements import Statements
from stepline.store.records import EventIngest, EventRecord

PAUSE = "INSERT INTO paused (app_id, function_id) VALUES ('app', %s)"
FAILS = "SELECT 1 / 0"  # a statement that fails when the server executes it


class GaveUp(Exception):
    """A verb's own error (raised after its statements were queued or sent)."""


def verb(s: Statements, *names: str, then: str | None = None, give_up: bool = False) -> None:
    """A savepoint writing rows of ``paused`` (a name ``FAILS``: that statement instead), then
    running ``then`` and giving up if asked."""
    with s.savepoint():
        for name in names:
            s.write(FAILS) if name == FAILS else s.write(PAUSE, (name,))
        if then is not None:
            s.run(then)
        if give_up:
            raise GaveUp(names)


def paused(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT function_id FROM paused")}


def test_writes_are_sent_with_the_next_read_in_one_round_trip(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)
        with s.transaction(list), s.savepoint():
            for name in ("a", "b", "c"):
                s.write(PAUSE, (name,))
            before = s.round_trips
            deleted = s.run("DELETE FROM paused WHERE function_id IN ('a', 'b')")
            assert s.round_trips == before + 1  # BEGIN, SAVEPOINT, 3 writes and the read
            assert deleted.rowcount == 2  # the row count is there once run() returns
    assert paused(pg_url) == {"c"}


def test_a_failing_write_raises_at_the_end_of_its_savepoint_and_the_transaction_goes_on(
    pg_url: str,
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)
        with s.transaction(list):
            verb(s, "kept")
            with pytest.raises(psycopg.errors.DivisionByZero):  # when the savepoint ends
                verb(s, "undone", FAILS, "never")
            verb(s, "after")
    assert paused(pg_url) == {"kept", "after"}


def test_a_block_raising_after_its_statements_were_sent_is_rolled_back_alone(
    pg_url: str,
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)
        with s.transaction(list), s.savepoint():
            s.write(PAUSE, ("outer",))
            with pytest.raises(GaveUp):  # the SAVEPOINT and the write reach the server
                verb(s, "inner", then="SELECT 1", give_up=True)
            with pytest.raises(GaveUp):  # never sent: dropped without a round trip
                verb(s, "queued only", give_up=True)
            s.write(PAUSE, ("outer again",))
    assert paused(pg_url) == {"outer", "outer again"}


def test_a_savepoint_right_inside_another_shares_it_and_leaves_it_open(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)
        with s.transaction(list), s.savepoint():  # a job's savepoint
            with pytest.raises(psycopg.errors.DivisionByZero):
                verb(s, "undone", then=FAILS)  # its verb's savepoint: the same one
            s.write(PAUSE, ("the job goes on",))
            verb(s, "its next verb")
    assert paused(pg_url) == {"the job goes on", "its next verb"}


def _event(n: int) -> EventIngest:
    record = EventRecord(f"evt{n}", "test/ev", {"n": n}, {}, None, 1.0)
    return EventIngest(record, ())


async def _three_jobs(store: PostgresStore) -> list[Any]:
    writer = BatchWriter(store)

    def fails(tx: Any) -> None:
        with tx.savepoint():
            tx.statements.write(FAILS)  # queued: executed only when the job's savepoint ends

    jobs = [
        writer.submit(lambda tx: tx.ingest([_event(1)], 1.0, lambda w, e: False)),
        writer.submit(fails),
        writer.submit(lambda tx: tx.ingest([_event(2)], 1.0, lambda w, e: False)),
    ]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert writer.transactions == 1  # the three jobs shared one transaction
    writer.close()
    return results


def test_a_job_whose_queued_statement_fails_gets_the_error_and_the_batch_commits(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url)
    try:
        first, failed, last = asyncio.run(_three_jobs(store))
        assert isinstance(failed, StoreError)
        assert "division by zero" in str(failed)
        assert not isinstance(first, BaseException) and not isinstance(last, BaseException)
        with store.transaction() as tx:
            assert tx.stored_event_ids(["evt1", "evt2"]) == {"evt1", "evt2"}
    finally:
        store.close()


def test_adjacent_writes_to_different_tables_are_sent_as_one_statement() -> None:
    a, b = "INSERT INTO a VALUES (%s)", "INSERT INTO b VALUES (%s)"
    queued = [(a, (1,)), (b, (2,)), (a, (3,)), ("SAVEPOINT s1", None), (b, (4,)), (a, (5,))]
    tables = ["a", "b", "a", None, "b", "a"]
    assert _merged(queued, tables) == [
        (f"WITH w0 AS ({a}) {b}", [1, 2], None),
        (a, (3,), None),  # a second write to a: a statement of its own
        ("SAVEPOINT s1", None, None),
        (f"WITH w0 AS ({b}) {a}", [4, 5], None),
    ]


@pytest.mark.parametrize(
    "shape",
    [
        "a step's commit",
        "two runs' commits",
        "a write, a savepoint, a read",
        "one hold",
        "a lone statement with named parameters",
    ],
)
def test_a_planned_round_trip_sends_what_merging_it_anew_would(shape: str) -> None:
    """``_planned``: a shape's plan, made once, gives what ``_merged(coalesced(_held(…)))``
    gives for it, the first time and every time after (with other parameters), whether or
    not the shape can be planned (several holds, a text twice, a read are not)."""
    hold, step, history = q.HOLD_LEASE, q.UPSERT_STEP, q.INSERT_HISTORY
    later = Later()

    def queued(n: int) -> tuple[list[tuple[str, Any]], list[Any]]:
        step_row = (f"r{n}", "h", "s", "run", 0, "COMPLETED", b"1", None, 1, None, 1.0, 2.0)
        history_row = (f"r{n}", 2.0, "STEP_COMPLETED", "s", 0, 1.0, None, "w")
        if shape == "a step's commit":
            return [
                ("BEGIN", None),
                (hold, (f"r{n}", "t")),
                (step, step_row),
                (history, history_row),
            ], [None, _HOLD, "steps", "history"]
        if shape == "two runs' commits":
            other = (f"x{n}", *step_row[1:])
            return [
                (hold, (f"r{n}", "t")),
                (step, step_row),
                (hold, (f"x{n}", "t")),
                (step, other),
            ], [_HOLD, "steps", _HOLD, "steps"]
        if shape == "a write, a savepoint, a read":
            return [(history, history_row), ("SAVEPOINT s0", None), ("SELECT %s", (n,))], [
                "history",
                None,
                later,
            ]
        if shape == "one hold":
            return [(hold, (f"r{n}", "t"))], [_HOLD]
        return [("SELECT %(n)s", {"n": n})], [None]

    for n in range(3):
        statements, tables = queued(n)
        expected = _merged(*coalesced(*_held(statements, list(tables))))
        sent, laters = _planned(statements, list(tables))
        kept = laters if laters is not None else [None] * len(sent)
        assert [(*entry, later) for entry, later in zip(sent, kept, strict=True)] == expected, (
            shape,
            n,
        )


def test_merged_writes_do_what_they_do_one_after_the_other(pg_url: str) -> None:
    skip = "INSERT INTO skips (event_id, function_id, reason, at) VALUES (%s, 'f', %s, 1)"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)

        def both(name: str | None) -> None:
            with s.savepoint():
                s.write(PAUSE, (name or "undone",), "paused")
                s.write(skip, (name, "merged"), "skips")  # None fails: the whole statement does

        with s.transaction(list):
            both("merged")
            with pytest.raises(psycopg.errors.NotNullViolation):
                both(None)
            verb(s, "after")
    assert paused(pg_url) == {"merged", "after"}
    with psycopg.connect(pg_url) as conn:
        assert [r[0] for r in conn.execute("SELECT reason FROM skips")] == ["merged"]
