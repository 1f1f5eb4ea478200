"""The trigger catalog and the inbox: an event is handed to the functions of other apps that
listen to its name (events are environment-wide, as in Inngest), exactly once, and a worker
of that app takes the rows and starts the runs.

Before, the store had no catalog: an event started only the runs its sender planned.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from stepline.store import SQLiteStore, Store
from stepline.store.postgres import PostgresStore
from stepline.store.records import (
    EventIngest,
    FunctionSet,
    IngestResult,
    NewRun,
    TriggerRow,
    WorkerRecord,
)
from stepline.store.sqlite import queries as sq

from .builders import DAY, T0, event, ingest

BILLING = FunctionSet("billing", ("charge",))
EMAILS = FunctionSet("emails", ("receipt", "welcome"))
CATALOG = [
    TriggerRow("emails", "receipt", "order/placed"),
    TriggerRow("emails", "welcome", "user/signup"),
    TriggerRow("billing", "charge", "order/placed"),
]


def sync(store: Store, app_id: str, rows: list[TriggerRow]) -> None:
    with store.transaction() as tx:
        tx.sync_triggers(app_id, [r for r in rows if r.app_id == app_id], T0)


def sent(
    internal_id: str, name: str, sender: FunctionSet | None = BILLING, sender_id: str | None = None
) -> EventIngest:
    return EventIngest(event(internal_id, name, sender_id=sender_id), sender=sender)


def take(store: Store, functions: FunctionSet, limit: int = 100) -> list[tuple[str, str]]:
    with store.transaction() as tx:
        taken = tx.take_inbox(functions, limit)()
    return [(i.function_id, i.event.internal_id if i.event else "") for i in taken]


def test_an_event_is_handed_to_the_other_apps_listening_functions(store: Store) -> None:
    sync(store, "emails", CATALOG)
    sync(store, "billing", CATALOG)
    results = ingest(
        store,
        sent("e1", "order/placed"),
        sent("e2", "user/signup"),
        sent("e3", "nobody/listens"),
        sent("e4", "order/placed", sender=None),  # made for its own runs: handed to no one
    )
    # billing planned its own "charge" itself: only emails' function gets the event
    assert [r.delivered for r in results] == [
        (("emails", "receipt"),),
        (("emails", "welcome"),),
        (),
        (),
    ]
    assert take(store, BILLING) == []
    assert take(store, FunctionSet("emails", ("welcome",))) == [("welcome", "e2")]
    assert take(store, EMAILS) == [("receipt", "e1")]
    assert take(store, EMAILS) == []  # taken once


def test_the_senders_app_gets_what_this_process_does_not_have(store: Store) -> None:
    sync(store, "billing", CATALOG)
    # a sender of app billing without "charge" (a process that only sends): billing's workers
    [result] = ingest(store, sent("e1", "order/placed", sender=FunctionSet("billing", ())))
    assert result.delivered == (("billing", "charge"),)
    assert take(store, BILLING) == [("charge", "e1")]


def test_a_duplicate_event_is_handed_to_no_one(store: Store) -> None:
    sync(store, "emails", CATALOG)
    first, again = ingest(
        store,
        sent("e1", "order/placed", sender_id="same"),
        sent("e2", "order/placed", sender_id="same"),
    )
    assert (first.delivered, again.duplicate, again.delivered) == (
        (("emails", "receipt"),),
        True,
        (),
    )
    assert take(store, EMAILS) == [("receipt", "e1")]


def test_the_latest_registration_of_an_app_replaces_its_catalog(store: Store) -> None:
    sync(store, "emails", CATALOG)
    assert ingest(store, sent("e1", "user/signup"))[0].delivered == (("emails", "welcome"),)
    with store.transaction() as tx:  # a new deploy: welcome listens to another event now
        tx.sync_triggers("emails", [TriggerRow("emails", "welcome", "user/created")], T0)
        # the transaction that changed the catalog sees its change
        assert tx.ingest([sent("e2", "user/created")], T0, lambda w, e: True)[0].delivered
    results = ingest(store, sent("e3", "user/signup"), sent("e4", "order/placed"))
    assert [r.delivered for r in results] == [(), ()]
    assert take(store, EMAILS) == [("welcome", "e1"), ("welcome", "e2")]


def test_a_rolled_back_take_gives_the_rows_back(store: Store) -> None:
    sync(store, "emails", CATALOG)
    ingest(store, sent("e1", "order/placed"))
    try:
        with store.transaction() as tx:
            assert len(tx.take_inbox(EMAILS, 10)()) == 1
            raise RuntimeError("the lease job failed")
    except RuntimeError:
        pass
    assert take(store, EMAILS, limit=1) == [("receipt", "e1")]


def test_taken_events_start_runs_through_admission(store: Store) -> None:
    sync(store, "emails", CATALOG)
    ingest(store, sent("e1", "order/placed"))
    with store.transaction() as tx:
        [item] = tx.take_inbox(EMAILS, 10)()
        assert item.event is not None
        run = NewRun("r1", "receipt", ("e1",), app_id="emails")
        results = tx.admit_taken([EventIngest(item.event, (run,))], T0)
    assert results == [IngestResult("e1", False, ("r1",), ())]
    record = store.get_run("r1")
    assert record is not None and (record.app_id, record.status) == ("emails", "QUEUED")
    assert [(r.run.run_id, r.effect) for r in store.event_runs(["e1"])] == [("r1", "started")]


def test_an_event_waiting_in_an_inbox_is_not_purged_before_the_cutoff(store: Store) -> None:
    sync(store, "emails", CATALOG)
    ingest(store, sent("e1", "order/placed"), sent("e2", "nobody/listens"))
    ingest(store, sent("e3", "order/placed"), now=T0 + 3 * DAY)
    with store.transaction() as tx:
        tx.purge_before(T0 + 2 * DAY, 100)
    # a row older than the retention is dropped with its event (nobody took it in all that
    # time: it must not keep its event forever); a younger one keeps its event
    assert [e.internal_id for e in store.get_events(["e1", "e2", "e3"])] == ["e3"]
    assert take(store, EMAILS) == [("receipt", "e3")]


def test_a_taken_row_says_when_its_event_was_received(store: Store) -> None:
    sync(store, "emails", CATALOG)
    ingest(store, sent("e1", "order/placed"), now=T0 + 5)
    with store.transaction() as tx:
        [taken] = tx.take_inbox(EMAILS, 10)()
    assert (taken.function_id, taken.received_at) == ("receipt", T0 + 5)


def test_events_received_after_an_event_and_by_a_time(store: Store) -> None:
    """The events a handed-over run's cancel matchers look at: of these names, strictly after
    (received time, internal id), at or before a time (memory and SQLite; PostgreSQL: every
    one committed before the read, whatever its received time), oldest first."""
    ingest(store, sent("a1", "order/cancelled", sender=None), now=T0)
    ingest(
        store,
        sent("a2", "order/cancelled", sender=None),
        sent("a3", "order/other", sender=None),
        sent("a4", "order/refunded", sender=None),
        now=T0 + 1,
    )
    ingest(store, sent("a5", "order/cancelled", sender=None), now=T0 + 2)
    ingest(store, sent("a6", "order/cancelled", sender=None), now=T0 + 3)
    with store.transaction() as tx:
        found = tx.events_received(["order/cancelled", "order/refunded"], (T0 + 1, "a2"), T0 + 2)
        later = tx.events_received(["order/cancelled"], (T0, "a1"), T0 + 3)
    unbounded = [(T0 + 3, "a6")] if isinstance(store, PostgresStore) else []
    assert [(at, e.internal_id) for at, e in found] == [(T0 + 1, "a4"), (T0 + 2, "a5"), *unbounded]
    assert [e.internal_id for _, e in later] == ["a2", "a5", "a6"]


def register(
    store: Store, worker_id: str, functions: FunctionSet, rows: list[TriggerRow], now: float
) -> None:
    """A worker's registration: the worker, then its app's catalog."""
    with store.transaction() as tx:
        app_id, ids = functions.app_id, functions.function_ids
        tx.register_worker(WorkerRecord(worker_id, app_id, ids, now, now, now + 60))
        tx.sync_triggers(app_id, rows, now, functions)


V1 = FunctionSet("emails", ("welcome",))
V1_ROWS = [TriggerRow("emails", "welcome", "user/signup")]


def test_a_registration_keeps_the_functions_another_live_worker_of_its_app_serves(
    store: Store,
) -> None:
    """A rolling deploy: v2 adds "receipt"; a v1 worker starting after v2's (autoscaling, a
    crash restart) must not unhook it while v2's worker lives."""
    register(store, "w-v2", EMAILS, CATALOG[:2], T0)
    register(store, "w-v1", V1, V1_ROWS, T0 + 1)
    results = ingest(store, sent("e1", "order/placed"), sent("e2", "user/signup"), now=T0 + 2)
    assert [r.delivered for r in results] == [(("emails", "receipt"),), (("emails", "welcome"),)]
    # a dead worker (its registration expired) serves nothing: a registration replaces
    register(store, "w-v1b", V1, V1_ROWS, T0 + 100)
    [result] = ingest(store, sent("e3", "order/placed"), now=T0 + 101)
    assert result.delivered == ()


def test_a_registration_alone_replaces_its_apps_catalog(store: Store) -> None:
    register(store, "w-v2", EMAILS, CATALOG[:2], T0)
    with store.transaction() as tx:
        tx.unregister_worker("w-v2")  # stopped: v1 is the app now (a rollback, a redeploy)
    register(store, "w-v1", V1, V1_ROWS, T0 + 1)
    [result] = ingest(store, sent("e1", "order/placed"), now=T0 + 2)
    assert result.delivered == ()


def test_a_registration_redefines_the_triggers_of_its_own_functions(store: Store) -> None:
    register(store, "w-v1", V1, V1_ROWS, T0)
    # a newer worker's welcome listens to another event: its definition wins, v1's is alive
    register(store, "w-v2", V1, [TriggerRow("emails", "welcome", "user/created")], T0 + 1)
    results = ingest(store, sent("e1", "user/signup"), sent("e2", "user/created"), now=T0 + 2)
    assert [r.delivered for r in results] == [(), (("emails", "welcome"),)]


def test_a_function_removed_from_its_apps_catalog_drops_its_waiting_rows_as_skipped(
    store: Store,
) -> None:
    sync(store, "emails", CATALOG)
    ingest(store, sent("e1", "order/placed"), sent("e2", "user/signup"), sent("e3", "order/placed"))
    with store.transaction() as tx:  # a new deploy without "receipt"
        tx.sync_triggers("emails", V1_ROWS, T0 + 5)
    skips = [(s.event_id, s.function_id, s.reason, s.at) for s in store.list_skips()]
    assert sorted(skips) == [
        ("e1", "receipt", "unregistered", T0 + 5),
        ("e3", "receipt", "unregistered", T0 + 5),
    ]
    assert take(store, EMAILS) == [("welcome", "e2")]
    with store.transaction() as tx:  # nothing pins their events any more
        tx.purge_before(T0 + 2 * DAY, 100)
    assert store.get_events(["e1", "e3"]) == []


def test_the_purge_finds_old_inbox_rows_by_index_on_sqlite(tmp_path: Path) -> None:
    """Purge asks for the inbox rows received before its cutoff: a range of an index on
    ``received_at`` (the inbox may hold many rows waiting for a retired app), not a scan."""
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.migrate()
        plan = [
            str(row[3])
            for row in store._conn().execute("EXPLAIN QUERY PLAN " + sq.PURGE_INBOX, (T0, 10))
        ]
    finally:
        store.close()
    reads = [p for p in plan if "inbox" in p and "PRIMARY KEY" not in p]
    assert reads and all("USING COVERING INDEX inbox_received" in p for p in reads), plan


def test_a_worker_asks_for_its_inbox_rows_by_index_on_sqlite(tmp_path: Path) -> None:
    """``next_due_at``'s look at the inbox (each idle worker's) is a probe per function."""
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.migrate()
        query = "EXPLAIN QUERY PLAN " + sq.NEXT_INBOX_OF
        plan = [str(row[3]) for row in store._conn().execute(query, ("emails", '["receipt"]'))]
    finally:
        store.close()
    reads = [p for p in plan if "inbox" in p]
    assert reads and all("USING INDEX inbox_function" in p for p in reads), plan


def _vm_steps_of_next_inbox(tmp_path: Path, waiting: int) -> int:
    """The SQLite VM steps of ``next_due_at``'s inbox read with ``waiting`` rows waiting for
    one function (given back rows included: a later seq, an older reception)."""
    store = SQLiteStore(tmp_path / f"steps-{waiting}.db")
    try:
        store.migrate()
        conn = store._conn()
        with conn:
            conn.executemany(
                "INSERT INTO inbox (app_id, function_id, event_id, received_at) VALUES (?,?,?,?)",
                [("emails", "receipt", f"e{n}", T0 + 100 - n) for n in range(waiting)],
            )
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        conn.set_progress_handler(count, 1)
        [(at,)] = conn.execute(sq.NEXT_INBOX_OF, ("emails", '["receipt", "welcome"]')).fetchall()
        conn.set_progress_handler(None, 1)
        assert at is not None and at <= T0 + 100
        return steps[0]
    finally:
        store.close()


def test_a_worker_reads_one_inbox_row_per_function_whatever_waits_on_sqlite(
    tmp_path: Path,
) -> None:
    """``next_due_at``'s inbox read (each idle worker's turn while a backlog drains) reads
    the first row of each function, not every waiting row: its work does not grow with
    them."""
    few, many = _vm_steps_of_next_inbox(tmp_path, 2), _vm_steps_of_next_inbox(tmp_path, 3000)
    assert many == few, (few, many)


def test_a_worker_reads_one_inbox_row_per_function_whatever_waits_on_postgres(
    pg_url: str,
) -> None:
    from stepline.store.postgres import _lease_queries as pq

    store = PostgresStore(pg_url)
    try:
        store.migrate()
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # rows of another app received earlier, then the backlog of one function of this one
        for app_id, start in (("shipping", T0), ("emails", T0 + 5000)):
            conn.execute(
                "INSERT INTO inbox (app_id, function_id, event_id, received_at) "
                "SELECT %s, 'receipt', %s || n, %s + n FROM generate_series(1, 3000) n",
                (app_id, app_id, start),
            )
        conn.execute("ANALYZE inbox")
        fns = ["receipt", "welcome"]
        params = {"apps": ["emails", ""], "fns": fns, "app": "emails", "all": fns}
        query = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + pq.NEXT_DUE_OF
        plan = "\n".join(r[0] for r in conn.execute(query, params))
    # each scan of the inbox returns at most one row and drops none
    scans = [part.split("->")[0] for part in plan.split(" on inbox")[1:]]
    assert scans, plan
    for scan in scans:
        assert re.search(r"actual rows=[01] ", scan) and "Rows Removed" not in scan, plan


def test_the_purge_finds_old_inbox_rows_by_index_on_postgres(pg_url: str) -> None:
    from stepline.store.postgres import PostgresStore
    from stepline.store.postgres import _upkeep_queries as pq

    store = PostgresStore(pg_url)
    try:
        store.migrate()
        sync(store, "emails", CATALOG)
        ingest(store, *(sent(f"e{n}", "user/signup") for n in range(3000)))
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE inbox")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + pq.PURGE_INBOX, (T0 - 1, 10)))
    assert "Seq Scan on inbox" not in plan, plan
    assert "inbox_received" in plan, plan


def test_an_inbox_row_waiting_is_work_due_for_the_receiving_apps_workers(store: Store) -> None:
    """``next_due_at`` (when a worker leases next) counts the rows handed to its app's
    functions, due at their reception: a SQLite worker of another process that finds one
    there goes on at once instead of sleeping until its poll. Another app's rows are not its."""
    sync(store, "emails", CATALOG)
    assert store.next_due_at(EMAILS) is None
    ingest(store, sent("e1", "order/placed"), now=T0 + 5)
    ingest(store, sent("e2", "user/signup"), now=T0 + 7)
    assert store.next_due_at(EMAILS) == T0 + 5
    assert store.next_due_at(FunctionSet("emails", ("welcome",))) == T0 + 7
    assert store.next_due_at(FunctionSet("shipping", ("receipt", "welcome"))) is None
    take(store, EMAILS)
    assert store.next_due_at(EMAILS) is None
