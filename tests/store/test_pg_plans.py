"""Query plans of the PostgreSQL store's hot reads: they find their rows by index, so their cost
does not grow with the tables (asserted on the plan, not on time)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer
from tests.store.builders import SERVED, T0, TTL, cel_matches, event, start

import pgtest
from stepline.store.postgres import PostgresStore
from stepline.store.postgres import _lease_queries as lq
from stepline.store.postgres import _read_queries as rq
from stepline.store.postgres._handoffs import (
    HAND_OFF,
    HAND_OFF_ONE,
    hand_off_params,
    prepare_statements,
)
from stepline.store.postgres._leases import LEASE_NAMED, LEASE_NEW, _candidates, _named, _new_params
from stepline.store.records import EventIngest, FunctionSet, NewRun


def test_load_run_finds_its_events_by_primary_key(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        with store.transaction() as tx:  # many events that start no run
            items = [EventIngest(event(f"other-{n}"), ()) for n in range(3000)]
            tx.ingest(items, 1.0, cel_matches)
        start(store, "r1")
        state = store.load_run("r1")
        assert state is not None and [e.internal_id for e in state.events] == ["ev-r1"]
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE events")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + rq.LOAD_RUN, ("r1",)))
    assert "Seq Scan on events" not in plan, plan
    assert "events_pkey" in plan, plan


def _lease_named_plans(conn: psycopg.Connection[Any]) -> tuple[int, int] | None:
    """(generic plans, custom plans) of ``LEASE_NAMED`` prepared on ``conn``; None: not."""
    row = conn.execute(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
        ("%named AS MATERIALIZED%",),
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def test_every_new_connection_has_the_lease_by_name_prepared_and_planned(pg_url: str) -> None:
    # before: prepared at a connection's fifth lease by name, each of the first four planned
    # anew for its parameters (~2.5 ms of the server's CPU, on a wake-up's way to its step)
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        for pool in (store._pool, store._read_pool):
            with pool.connection() as conn:
                assert _lease_named_plans(conn) == (1, 0)
                assert _plans_of(conn, "WITH n AS MATERIALIZED") == (1, 0)  # LEASE_NEW's
    finally:
        store.close()


def test_the_first_lease_by_name_on_a_connection_uses_the_plan_made_when_it_connected(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1")
        with store.transaction() as tx:
            conn = tx.statements.conn
            leases = tx.lease_named("w1", T0, ["r1"], TTL, SERVED, 10)
        assert [held.run_id for held in leases()] == ["r1"]
        found = _lease_named_plans(conn)
        assert found == (2, 0), found  # its generic plan once more, nothing planned
    finally:
        store.close()


def test_the_lease_by_name_scans_no_table_whatever_the_statistics(pg_url: str) -> None:
    # before: its generic plan, made when the tables had no statistics (a fresh database, as
    # the benchmark's), scanned queue, runs and events for the named runs and their rows
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1")
    finally:
        store.close()
    query = PostgresQuery(Transformer(None))
    query.convert(LEASE_NAMED, _named("w", "t", T0, "", ["r1"], SERVED, T0, 10))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in ("queue", "runs", "events", "history"):  # as if never analyzed
            conn.execute(f"DELETE FROM pg_statistic WHERE starelid = '{table}'::regclass")
        with conn.transaction():
            conn.execute(lq.GENERIC_PLANS)
            conn.pgconn.prepare(b"named", query.query, param_types=query.types)
            nulls = ", ".join(["NULL"] * len(query.types))
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN EXECUTE named({nulls})"))
            conn.execute(lq.DEFAULT_PLANS)
            settings = conn.execute(
                "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')"
            ).fetchone()
    assert "Seq Scan" not in plan, plan
    assert settings == ("auto", "on")  # the transaction's own settings back after it


def _lease_named_widest_node(backlog: int, made: bool = False) -> int:
    """The most rows any node of ``LEASE_NAMED``'s generic plan (made with no statistics, as on
    a fresh database) touched — returned, plus removed by its filter, times its loops — to
    lease a new run of one function behind ``backlog`` due runs of another function of the same
    app (``made``: ``LEASE_NEW``'s, the lease of a run its transaction made), in a database of
    its own (``pgtest.own_database``)."""
    url = pgtest.own_database("stepline_plans")
    store = PostgresStore(url)
    try:
        store.migrate()
        with store.transaction() as tx:
            items = [
                EventIngest(event(f"b{n}"), (NewRun(f"b{n:06d}", "fa", (f"b{n}",), app_id="a"),))
                for n in range(backlog)
            ]
            tx.ingest(
                [*items, EventIngest(event("new"), (NewRun("z-new", "fb", ("new",), app_id="a"),))],
                T0,
                cel_matches,
            )
    finally:
        store.close()
    params = _named("w", "t", T0 + TTL, "a", ["z-new"], FunctionSet("a", ("fa", "fb")), T0, 10)
    statement = LEASE_NAMED
    if made:
        statement, params = LEASE_NEW, _new_params([("z-new", "fb", T0)], "a", T0, "w", "t", T0)
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("queue", "runs", "events", "history"):  # as if never analyzed
            conn.execute(f"DELETE FROM pg_statistic WHERE starelid = '{table}'::regclass")
        query = PostgresQuery(Transformer(conn))
        query.convert(statement, params)
        with conn.transaction(force_rollback=True):
            conn.execute(lq.GENERIC_PLANS)
            conn.pgconn.prepare(b"named", query.query, param_types=query.types)
            values = sql.SQL(", ").join(sql.Literal(params[name]) for name in query._order)
            explain = sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) EXECUTE named({})")
            [[plan]] = conn.execute(explain.format(values)).fetchall()
            leased = conn.execute("SELECT run_id FROM queue WHERE lease_owner = 'w'").fetchall()
    assert [r[0] for r in leased] == ["z-new"]
    return max(pgtest.rows_touched(plan[0]["Plan"]))


def test_the_lease_by_name_reads_no_more_behind_a_backlog() -> None:
    """Its named runs are looked up by primary key, each alone: with ``run_id = ANY(...)`` among
    the other conditions, the generic plan made without statistics scanned ``queue_fn_due``
    for every due run of the app, twice (the named runs, then those it locks): 524 buffers
    against 42 behind 20,000 due runs, 6-20 ms a lease (an in-process send's, a wake-up's)."""
    assert _lease_named_widest_node(0) <= 20
    assert _lease_named_widest_node(4000) <= 20  # a10aca3: 4,000 (queue_fn_due)


def test_the_lease_of_a_made_run_reads_no_more_behind_a_backlog() -> None:
    """``LEASE_NEW`` probes the queue order as ``LEASE_NAMED`` does (its generic plan too)."""
    assert _lease_named_widest_node(0, made=True) <= 20
    assert _lease_named_widest_node(4000, made=True) <= 20


def _plans_of(conn: psycopg.Connection[Any], fragment: str) -> tuple[int, int] | None:
    """(generic plans, custom plans) of the statement prepared on ``conn`` whose text holds
    ``fragment``; None: none is."""
    row = conn.execute(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
        (f"%{fragment}%",),
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def test_a_connections_due_leases_plan_their_candidates_once(pg_url: str) -> None:
    # before: psycopg prepared the candidates' statement at a connection's fifth lease, and
    # each lease before it planned it for its parameters (1.6-3.5 ms of the server's CPU: on
    # the way of an in-process send to its run's first step); prepared then, PostgreSQL made
    # custom plans for five more
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1", "r2", "r3")
        for run_id in ("r1", "r2", "r3"):
            with store.optimistic_transaction() as tx:
                conn = tx.statements.conn
                leases = tx.lease_due("w1", T0, 1, TTL, SERVED, 10)
            assert [held.run_id for held in leases] == [run_id]
            # prepared at once, its generic plan used by each read (one a served function)
            for read in ("full_keys AS MATERIALIZED", "lease_expires_at > $1"):  # live leases
                found = _plans_of(conn, read)
                assert found is not None and found[0] > 0 and found[1] == 0, (read, found)
    finally:
        store.close()


def test_a_connections_next_due_times_plan_their_statement_once(pg_url: str) -> None:
    # before: each of a connection's first next_due_at planned it (2.5-3.8 ms of the
    # server's CPU, at every idle moment of a new worker)
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1", now=T0 + 60)
        functions = FunctionSet("app", SERVED.function_ids)
        for _ in range(3):
            assert store.next_due_at(functions) == T0 + 60
        with store._read_pool.connection() as conn:  # the one connection the reads took
            found = _plans_of(conn, "ORDER BY lease_expires_at LIMIT 1")
            assert found is not None and found[0] > 0 and found[1] == 0, found
    finally:
        store.close()


def test_the_due_leases_candidates_scan_no_queue_whatever_the_statistics(pg_url: str) -> None:
    # their generic plan (made once per connection: _leases.lease_due) looks the rows up by
    # index, as their custom ones did
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1")
    finally:
        store.close()
    query = PostgresQuery(Transformer(None))
    params = {"app": "a", "now": T0, "by": T0, "window": 20, "owner": "w", "prefix": "p"}
    query.convert(_candidates(2), {**params, "app0": "a", "app1": "", "fn": "fn"})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM pg_statistic WHERE starelid = 'queue'::regclass")
        with conn.transaction():
            conn.execute(lq.GENERIC_PLANS)
            conn.pgconn.prepare(b"due", query.query, param_types=query.types)
            nulls = ", ".join(["NULL"] * len(query.types))
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN EXECUTE due({nulls})"))
            conn.execute(lq.DEFAULT_PLANS)
    assert "Seq Scan on queue" not in plan, plan


def _hand_off_widest_node(backlog: int, one: bool, analyzed: bool = False) -> int:
    """The most rows any node of ``HAND_OFF_ONE``'s generic plan (``HAND_OFF``'s, not
    ``one``) touched (as ``_lease_named_widest_node``) to hand a new run of one function over
    behind ``backlog`` due runs of another function of its app, the plan made as each pool
    connection makes it (``_handoffs.prepare_statements``) while the database was empty (a
    fresh one, as the benchmark's, ``pgtest.own_database``; ``analyzed``: its statistics made then,
    saying so): a connection keeps it for its life, or until the next ``ANALYZE``."""
    url = pgtest.own_database("stepline_plans")
    store = PostgresStore(url)
    try:
        store.migrate()
        if analyzed:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
        statement = HAND_OFF_ONE if one else HAND_OFF
        params = hand_off_params({"z-new": "fb"}, ["t"], 30)
        with psycopg.connect(url, autocommit=True) as conn:
            prepare_statements(conn)
            query = PostgresQuery(Transformer(conn))
            query.convert(statement, params)
            [name] = conn.execute(
                "SELECT name FROM pg_prepared_statements WHERE statement = %s",
                (query.query.decode(),),
            ).fetchone() or [None]
            assert name is not None
            with store.transaction() as tx:
                items = [
                    EventIngest(
                        event(f"b{n}"), (NewRun(f"b{n:06d}", "fa", (f"b{n}",), app_id="a"),)
                    )
                    for n in range(backlog)
                ]
                tx.ingest(items, T0, cel_matches)
            with conn.transaction(force_rollback=True):
                conn.execute(lq.GENERIC_PLANS)
                new = NewRun("z-new", "fb", ("new",), app_id="a")
                with store.transaction() as tx:  # (its own connection: committed, then gone)
                    tx.ingest([EventIngest(event("new"), (new,))], T0, cel_matches)
                values = sql.SQL(", ").join(sql.Literal(params[key]) for key in query._order)
                explain = sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) EXECUTE {}({})")
                [[plan]] = conn.execute(explain.format(sql.Identifier(name), values)).fetchall()
    finally:
        store.close()
    return max(pgtest.rows_touched(plan[0]["Plan"]))


def test_a_hand_off_reads_no_more_behind_a_backlog() -> None:
    """Its new runs' queue and runs rows are looked up by primary key, each alone (as
    ``LEASE_NAMED``'s): joined, the generic plan made while the database was empty hashed every
    due run of ``queue_fn_due`` for them, 17-22 ms a send behind 20,000 due runs (0.5-0.7 ms
    now), on every connection opened before the backlog."""
    for one in (True, False):
        assert _hand_off_widest_node(0, one) <= 20
        assert _hand_off_widest_node(4000, one) <= 20, one


def test_a_hand_off_reads_no_more_behind_a_backlog_after_an_analyze_of_an_empty_queue() -> None:
    """The generic plan a connection made after an ``ANALYZE`` of the empty tables (a new
    database's autovacuum, a restore) keeps the index lookups once they are filled; until the
    next ``ANALYZE`` replans it (autoanalyze, after ~50 changed rows: an autovacuum naptime).
    Before, its lease joined ``chosen`` (``UPDATE queue … FROM chosen``): the plan, made for
    tables said empty, scanned the whole primary key of queue and of runs (4,001 rows each)."""
    for one in (True, False):
        assert _hand_off_widest_node(0, one, analyzed=True) <= 20
        assert _hand_off_widest_node(4000, one, analyzed=True) <= 20, one


def test_a_hand_off_of_one_run_sorts_nothing_and_reads_its_events_by_key() -> None:
    """``HAND_OFF_ONE``'s generic plan (as every pool connection makes it:
    ``_handoffs.prepare_statements``) picks the lowest worker id in ``worker_functions``' key
    order (no sort) and reads each event of the run by primary key (no bitmap of them, no sort
    for ``json_agg``: the events are put in the run's order when the notification is read):
    most of the statement's cost is its executor's start, a cost per plan node (before: a Sort
    and a bitmap scan, 1.22 M of the backend's instructions against 1.12 M now, callgrind).
    In a database of its own (``pgtest.own_database``): in the process's shared one, the
    statistics earlier tests left steer the generic plan (a backlog of leases analyzed there:
    a bitmap scan of ``queue_owner`` for a worker's leases, 2 gates of 3 at 00:50)."""
    pg_url = pgtest.own_database("stepline_plans")
    store = PostgresStore(pg_url)
    try:
        store.migrate()
    finally:
        store.close()
    query = PostgresQuery(Transformer(None))
    query.convert(HAND_OFF_ONE, hand_off_params({"r1": "fn"}, ["t"], 30))
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction(force_rollback=True):
        conn.execute(lq.GENERIC_PLANS)
        conn.pgconn.prepare(b"one", query.query, param_types=query.types)
        nulls = ", ".join(["NULL"] * len(query.types))
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN EXECUTE one({nulls})"))
    assert "Sort" not in plan, plan
    assert "Bitmap" not in plan, plan
    assert "Index Scan using events_pkey on events" in plan, plan
    assert "worker_functions_pkey" in plan, plan
