"""A send's statements are prepared at their first execution on a connection (``at_once``),
where psycopg prepares a statement at its fifth: each of a connection's first four was parsed
and planned anew for its parameters (the check that its events' names have no waits nor cancel
matchers: 0.19-0.36 ms of planning against 0.03 of execution). An optimistic ingestion runs
them with their generic plans from the first (their lookups are by index, whatever the
statistics); a send committed on the event loop prepares them as one made by the writer thread
does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import psycopg
from tests.store.builders import T0, cel_matches, trigger

from stepline.store.postgres import PostgresStore, _pipeline
from stepline.store.postgres._lease_queries import DEFAULT_PLANS, GENERIC_PLANS, LEASE_ALONE
from stepline.store.postgres._statements import AT_ONCE, Statements, at_once


def _prepared(conn: psycopg.Connection[Any]) -> list[tuple[str, int, int]]:
    rows = conn.execute(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


def test_a_sends_statements_are_prepared_at_their_first_execution(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        with store.optimistic_transaction() as tx:
            conn = tx.statements.conn
            tx.ingest([trigger("r1")], T0, cel_matches)
        found = _prepared(conn)
    finally:
        store.close()
    for text in ("wait_paths", "INSERT INTO events", "INSERT INTO runs", "note_unless_shared"):
        [statement] = [p for p in found if text in p[0]]
        assert statement[1:] == (1, 0), statement  # its generic plan, none for its parameters


async def test_a_text_marked_at_once_is_prepared_at_its_first_execution_on_the_loop(
    pg_url: str,
) -> None:
    """(A loop commit's round trip, ``send_all_async``: it sent every statement unprepared
    until psycopg's fifth execution, whatever ``at_once`` said.)"""
    text = at_once("SELECT %s::int + 1 AS stepline_at_once_probe")
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            [rows] = await _pipeline.send_all_async(conn, [(text, (1,))])
            assert rows == [(2,)]
            assert [p for p in _prepared(conn) if "stepline_at_once_probe" in p[0]]
    finally:
        AT_ONCE.discard(text)


def test_generic_plans_asked_for_right_after_they_were_put_back_go_on() -> None:
    """(An optimistic transaction: an ingest's generic plans, then a lease's by name.) The
    settings the first ``GENERIC_PLANS`` saved are those the last ``DEFAULT_PLANS`` puts back:
    the pair between them is never sent; one with a statement between them is."""
    s = Statements(cast(Any, None), optimistic=True)
    for query in (GENERIC_PLANS, "X", DEFAULT_PLANS, GENERIC_PLANS, "Y", DEFAULT_PLANS, "Z"):
        s.write(query)
    s.write(GENERIC_PLANS)
    assert [query for query, _ in s._queued] == [
        GENERIC_PLANS,
        "X",
        "Y",
        DEFAULT_PLANS,
        "Z",
        GENERIC_PLANS,
    ]


_ON = (  # fails unless the generic plans and a commit without waiting for its flush are on
    "SELECT 1 / (current_setting('synchronous_commit') = 'off'"
    " AND current_setting('plan_cache_mode') = 'force_generic_plan'"
    " AND current_setting('enable_seqscan') = 'off')::int"
)


def _sent(
    pg_url: str, trips: list[list[str]], body: Callable[[Statements], None]
) -> list[list[str]]:
    """The texts of each round trip of an optimistic transaction of ``body``'s statements,
    whose last statements are a hand-off's settings (``LEASE_ALONE``) and ``_ON``."""
    trips.clear()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        settings = (
            "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan'),"
            " current_setting('synchronous_commit')"
        )
        conn.execute("SET synchronous_commit = on")  # (the test cluster's is off)
        before = conn.execute(settings).fetchone()
        s = Statements(conn, optimistic=True)
        with s.transaction(lambda: [(LEASE_ALONE, None, None), (_ON, None, None)]):
            body(s)
        assert conn.execute(settings).fetchone() == before  # its own settings: gone with it
    return list(trips)


def test_generic_plans_on_up_to_the_commit_are_asked_for_with_its_settings(
    pg_url: str, trips: list[list[str]]
) -> None:
    """An optimistic transaction whose last statement was ``DEFAULT_PLANS`` (dropped: its
    settings end with it) and whose last statements ask for ``LEASE_ALONE``'s settings (a
    hand-off's ``HANDING``): its last ``GENERIC_PLANS`` is sent as ``LEASE_ALONE`` and the later
    one is not sent; the settings are all on for the last statements and the commit."""

    def body(s: Statements) -> None:
        for query in (GENERIC_PLANS, "SELECT 1", DEFAULT_PLANS, "SELECT 2", GENERIC_PLANS):
            s.write(query)
        s.write("SELECT 3")
        s.write(DEFAULT_PLANS)

    assert _sent(pg_url, trips, body) == [
        [GENERIC_PLANS, "SELECT 1", DEFAULT_PLANS, "SELECT 2", LEASE_ALONE, "SELECT 3", _ON]
    ]


def test_generic_plans_sent_before_are_asked_for_again(pg_url: str, trips: list[list[str]]) -> None:
    """...but a ``GENERIC_PLANS`` sent in an earlier round trip (a read) stays as it was, and
    ``LEASE_ALONE`` is sent as asked; so is it after a ``DEFAULT_PLANS`` left queued."""

    def read_between(s: Statements) -> None:
        s.write(GENERIC_PLANS)
        s.run("SELECT 0")
        s.write("SELECT 1")
        s.write(DEFAULT_PLANS)

    def put_back(s: Statements) -> None:
        for query in (GENERIC_PLANS, "SELECT 1", DEFAULT_PLANS, "SELECT 2"):
            s.write(query)

    assert _sent(pg_url, trips, read_between)[1:] == [["SELECT 1", LEASE_ALONE, _ON, "COMMIT"]]
    assert _sent(pg_url, trips, put_back) == [
        [GENERIC_PLANS, "SELECT 1", DEFAULT_PLANS, "SELECT 2", LEASE_ALONE, _ON]
    ]
