"""Apps sharing a database: runs carry their app; a worker leases only the functions it serves,
workers register, and runs no live worker can run are listed as waiting for one.

issue 6 item 2: a worker failed runs of functions it did not know (another app's, or a newer
deploy's) because runs carried no app id and ``lease_due`` did not filter by function.
"""

from __future__ import annotations

from stepline.store import SQLiteStore, Store
from stepline.store.records import (
    CronRow,
    EventIngest,
    FunctionSet,
    Lease,
    NewRun,
    RunFilter,
    WorkerRecord,
)
from stepline.store.sqlite import queries as q

from .builders import T0, TTL, event, ingest, lease

SHOP = FunctionSet("shop", ("charge", "ship"))
BILLING = FunctionSet("billing", ("charge", "invoice"))


def run_of(run_id: str, app_id: str, function_id: str, now: float = T0) -> EventIngest:
    new = NewRun(run_id, function_id, (f"ev-{run_id}",), app_id=app_id)
    return EventIngest(event(f"ev-{run_id}", ts=now), (new,))


def ids(leases: list[Lease]) -> list[str]:
    return sorted(held.run_id for held in leases)


def fill(store: Store) -> None:
    ingest(
        store,
        run_of("shop-charge", "shop", "charge"),
        run_of("shop-ship", "shop", "ship"),
        run_of("shop-new", "shop", "refund"),  # a function a newer deploy of shop added
        run_of("billing-charge", "billing", "charge"),
        run_of("billing-invoice", "billing", "invoice"),
    )


def test_a_worker_leases_only_runs_of_the_functions_it_serves(store: Store) -> None:
    # issue 6 item 2
    fill(store)
    assert ids(lease(store, "w-shop", functions=SHOP)) == ["shop-charge", "shop-ship"]
    assert ids(lease(store, "w-billing", functions=BILLING)) == [
        "billing-charge",
        "billing-invoice",
    ]
    assert lease(store, "w-other", now=T0 + 10, functions=SHOP) == []  # refund is not for it
    refund = store.get_run("shop-new")
    assert refund is not None
    assert (refund.status, refund.app_id) == ("QUEUED", "shop")  # it waits, never fails
    newer = FunctionSet("shop", ("charge", "ship", "refund"))
    assert ids(lease(store, "w-new", functions=newer)) == ["shop-new"]


def test_expired_leases_are_taken_over_only_by_workers_serving_the_function(
    store: Store,
) -> None:
    # issue 6 item 2
    fill(store)
    lease(store, "w-billing", functions=BILLING, ttl=5)
    assert ids(lease(store, "w-shop2", now=T0 + 6, functions=SHOP)) == [
        "shop-charge",
        "shop-ship",
    ]
    assert ids(lease(store, "w-billing2", now=T0 + 6, functions=BILLING)) == [
        "billing-charge",
        "billing-invoice",
    ]


def test_next_due_at_of_a_worker_ignores_runs_it_cannot_lease(store: Store) -> None:
    ingest(store, run_of("b1", "billing", "invoice", T0), now=T0)
    ingest(store, run_of("s1", "shop", "ship", T0 + 50), now=T0 + 50)
    assert store.next_due_at() == T0
    assert store.next_due_at(SHOP) == T0 + 50
    lease(store, "w", now=T0 + 50, functions=SHOP)
    assert store.next_due_at(SHOP) == T0 + 50 + TTL
    assert store.next_due_at(FunctionSet("shop", ("nothing",))) is None


def test_runs_recorded_without_an_app_go_to_the_first_app_serving_their_function(
    store: Store,
) -> None:
    # runs written before runs carried their app id (a migrated database) have app ""
    ingest(store, run_of("old-1", "", "charge"), run_of("old-2", "", "charge"))
    assert lease(store, "w", functions=FunctionSet("shop", ("ship",))) == []
    [held] = lease(store, "w", limit=1, functions=SHOP)
    leased = store.get_run(held.run_id)
    assert leased is not None
    assert (leased.app_id, leased.worker_id) == ("shop", "w")
    with store.transaction() as tx:
        assert tx.adopt_unowned(SHOP) == 1
    assert {r.app_id for r in store.list_runs(RunFilter())} == {"shop"}
    assert lease(store, "w", functions=BILLING) == []


def test_each_app_keeps_its_own_cron_schedules(store: Store) -> None:
    shop = CronRow("charge", "0 * * * *", T0 + 60, "shop")
    billing = CronRow("charge", "0 * * * *", T0 + 120, "billing")
    with store.transaction() as tx:
        tx.sync_crons(SHOP, [shop])
        tx.sync_crons(BILLING, [billing])
        tx.sync_crons(SHOP, [shop])  # a restart of shop's worker keeps billing's schedule
        assert tx.due_crons(T0 + 200, SHOP) == [shop]
        assert tx.due_crons(T0 + 200, BILLING) == [billing]
        assert tx.advance_cron(shop, T0 + 3600)
        assert tx.due_crons(T0 + 200, SHOP) == []
        assert tx.due_crons(T0 + 200, BILLING) == [billing]
        tx.sync_crons(BILLING, [])
        assert tx.due_crons(T0 + 10**6, BILLING) == []
    assert store.next_due_at(SHOP) == T0 + 3600


def test_unowned_cron_schedules_are_adopted_by_the_app_that_has_the_function(
    store: Store,
) -> None:
    old = CronRow("charge", "0 * * * *", T0 + 60)  # recorded before schedules had an app
    with store.transaction() as tx:
        tx.sync_crons(FunctionSet("", ("charge",)), [old])
        tx.sync_crons(SHOP, [CronRow("charge", "0 * * * *", T0 + 999, "shop")])
        # the stored state (the next tick) is kept, under shop's name
        assert tx.due_crons(T0 + 100, SHOP) == [CronRow("charge", "0 * * * *", T0 + 60, "shop")]


def test_live_workers_and_runs_waiting_for_one(store: Store) -> None:
    # issue 6 item 2: a run whose function no live worker has is visible as waiting
    fill(store)
    worker = WorkerRecord("w-shop", "shop", SHOP.function_ids, T0, T0, T0 + TTL)
    with store.transaction() as tx:
        tx.register_worker(worker)
    assert store.live_workers(T0 + 1) == [worker]

    def waiting(now: float) -> list[str]:
        found = store.list_runs(RunFilter(waiting_for_worker_at=now))
        return sorted(r.run_id for r in found)

    assert waiting(T0 + 1) == ["billing-charge", "billing-invoice", "shop-new"]
    assert waiting(T0 + TTL + 1) == sorted(  # the worker's registration expired
        ["billing-charge", "billing-invoice", "shop-charge", "shop-new", "shop-ship"]
    )
    with store.transaction() as tx:
        tx.touch_worker("w-shop", T0 + 20, T0 + 20 + TTL)
    assert store.live_workers(T0 + TTL + 1)[0].seen_at == T0 + 20
    assert waiting(T0 + TTL + 1) == ["billing-charge", "billing-invoice", "shop-new"]
    with store.transaction() as tx:
        tx.unregister_worker("w-shop")
    assert store.live_workers(T0 + 1) == []
    assert len(waiting(T0 + 1)) == 5


def test_the_lease_reads_only_the_served_functions_index_ranges(
    sqlite_store: SQLiteStore,
) -> None:
    # issue 6 item 2: no scan of other apps' runs per lease (each arm is an index range)
    fill(sqlite_store)
    lease(sqlite_store, "w", functions=SHOP)
    conn = sqlite_store._conn()
    plan = [
        str(row[3])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN " + q.DUE_ARM.format(n=6),
            (T0, "[]", 10, "shop", T0, "charge"),
        )
    ]
    queue_reads = [p for p in plan if "queue" in p]
    assert queue_reads, plan
    assert all("USING" in p and "INDEX" in p for p in queue_reads), plan
    assert any("queue_fn_due" in p for p in queue_reads), plan
    assert any("queue_fn_lease" in p for p in queue_reads), plan
    # fair leasing: a function's concurrency-key groups are visited through an index too
    plan = [
        str(row[3])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN " + q.GROUP_HEADS, ("shop", "charge", "", 16, T0)
        )
    ]
    queue_reads = [p for p in plan if "queue" in p and "PRIMARY KEY" not in p]
    assert queue_reads, plan
    assert all("USING INDEX queue_fn_group" in p for p in queue_reads), plan


def test_pausing_a_function_holds_only_that_apps_runs(store: Store) -> None:
    # issue 6 item 2: a pause keyed by function id alone held another app's function too
    fill(store)
    with store.transaction() as tx:
        tx.set_paused("charge", True, app_id="shop")
    assert store.paused_functions("shop") == {"charge"}
    assert store.paused_functions("billing") == set()
    assert store.paused_functions() == {"charge"}  # any app's
    assert ids(lease(store, "w-shop", functions=SHOP)) == ["shop-ship"]
    assert ids(lease(store, "w-billing", functions=BILLING)) == [
        "billing-charge",
        "billing-invoice",
    ]
    assert store.next_due_at(SHOP) == T0 + TTL  # shop-ship's lease; not shop-charge (due at T0)
    with store.transaction() as tx:
        tx.set_paused("charge", False, app_id="billing")  # not paused there: shop stays paused
    assert store.paused_functions("shop") == {"charge"}
    with store.transaction() as tx:
        tx.set_paused("charge", False, app_id="shop")
    assert store.paused_functions() == set()
    assert ids(lease(store, "w-shop", functions=SHOP)) == ["shop-charge"]


def test_a_pause_recorded_without_an_app_holds_every_app_until_one_adopts_it(
    store: Store,
) -> None:
    # issue 6 item 2: pauses from before they were per app (and `functions pause --db` alone)
    fill(store)
    with store.transaction() as tx:
        tx.set_paused("charge", True)
    assert store.paused_functions("shop") == store.paused_functions("billing") == {"charge"}
    assert ids(lease(store, "w-billing", functions=BILLING)) == ["billing-invoice"]
    with store.transaction() as tx:
        tx.adopt_unowned(SHOP)  # the first app to register the function takes the pause over
    assert store.paused_functions("shop") == {"charge"}
    assert store.paused_functions("billing") == set()
    assert ids(lease(store, "w-billing", functions=BILLING)) == ["billing-charge"]
    assert ids(lease(store, "w-shop", functions=SHOP)) == ["shop-ship"]
    with store.transaction() as tx:
        tx.set_paused("charge", True, app_id="billing")
        tx.set_paused("charge", False)  # without an app: resumed in every app
    assert store.paused_functions() == set()
    with store.transaction() as tx:
        tx.set_paused("charge", True)
        tx.set_paused("charge", False, app_id="billing")  # lifts the pause of every app
    assert store.paused_functions() == set()


def test_runs_can_be_listed_per_app(store: Store) -> None:
    # issue 6 item 2: app.runs(function_id=...) listed both apps' runs
    fill(store)
    ingest(store, run_of("old-charge", "", "charge"))  # recorded before runs carried their app
    shop = store.list_runs(RunFilter(function_id="charge", app_id="shop"))
    assert sorted(r.run_id for r in shop) == ["old-charge", "shop-charge"]
    every = store.list_runs(RunFilter(function_id="charge"))
    assert sorted(r.run_id for r in every) == ["billing-charge", "old-charge", "shop-charge"]
