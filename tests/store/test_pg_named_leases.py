"""PostgreSQL: a transaction whose only work is a few new runs due now names them in its
NOTIFY, and a worker leases runs by name (``lease_named``) in one statement sent with its
``COMMIT``, taking only those ``lease_due`` would take first; any other is left to ``lease_due``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from tests.store.builders import SERVED, T0, TTL, event, ingest, lease, start, trigger

from stepline.engine.writer import BatchWriter
from stepline.store.interface import WouldBlock
from stepline.store.postgres import PostgresStore
from stepline.store.postgres.wakeups import MAX_NAMED, named_runs
from stepline.store.records import Admission, EventIngest, Lease, NewRun


def wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)  # real time: the poll interval; the deadline bounds the wait


@pytest.fixture(params=[False, True], ids=["in-a-transaction", "alone"])
def alone(request: pytest.FixtureRequest) -> bool:
    """Whether ``lease_named`` leases in a transaction of its own, in an event loop
    (``lease_named_alone``) rather than in a transaction's (``tx.lease_named``)."""
    return bool(request.param)


def lease_named(
    store: PostgresStore, *run_ids: str, now: float = T0, max_passes: int = 10, alone: bool
) -> list[Lease]:
    if alone:
        return asyncio.run(_alone(store, list(run_ids), now, max_passes))
    with store.transaction() as tx:
        leases = tx.lease_named("w2", now, run_ids, TTL, SERVED, max_passes)
    return leases()


async def _alone(store: PostgresStore, run_ids: list[str], now: float, max_passes: int) -> Any:
    store._presence.token_prefix("w2")  # held: the loop never takes it (WouldBlock)
    store.load_run("none")  # a read: the read pool has an idle connection (never made on a loop)
    return await store.lease_named_alone("w2", now, run_ids, TTL, SERVED, max_passes)


def leased(store: PostgresStore, *run_ids: str) -> list[str]:
    return [q.run_id for q in store.queue_states(list(run_ids), T0) if q.leased]


def keyed(run_id: str, function_id: str = "fa") -> EventIngest:
    admission = Admission(concurrency=((f"{function_id}\x1f\x1fk", 1),))
    return EventIngest(
        event(f"ev-{run_id}"),
        (NewRun(run_id, function_id, (f"ev-{run_id}",), None, None, admission),),
    )


def test_a_named_run_is_leased_and_loaded_in_one_round_trip(pg_store: PostgresStore) -> None:
    start(pg_store, "r1")

    async def run() -> tuple[list[Lease], int]:
        writer = BatchWriter(pg_store)
        try:
            found = await writer.write(
                lambda tx: (tx.lease_named("w2", T0, ["r1"], TTL, SERVED), tx.statements)
            )
        finally:
            writer.close()
        return found[0](), found[1].round_trips

    leases, trips = asyncio.run(run())
    assert trips == 1  # BEGIN, the lease, the runs' state and the COMMIT, sent at once
    assert [held.run_id for held in leases] == ["r1"]
    assert leases[0].loaded is not None
    state = leases[0].loaded()
    assert state is not None and state.run.status == "RUNNING" and state.run.started_at == T0
    assert [h.kind for h in pg_store.get_history("r1")][-1] == "RUN_STARTED"
    assert leased(pg_store, "r1") == ["r1"]
    assert lease(pg_store, "w1") == []  # held: lease_due takes it no more


def test_a_named_run_leased_alone_is_leased_and_loaded(pg_store: PostgresStore) -> None:
    """...in a transaction of its own, committed by the reply to its one statement."""
    start(pg_store, "r1")
    [held] = lease_named(pg_store, "r1", alone=True)
    assert held.run_id == "r1" and held.loaded is not None
    state = held.loaded()
    assert state is not None and state.run.status == "RUNNING" and state.run.started_at == T0
    assert [h.kind for h in pg_store.get_history("r1")][-1] == "RUN_STARTED"
    assert leased(pg_store, "r1") == ["r1"]
    assert lease(pg_store, "w1") == []  # held: lease_due takes it no more


def test_a_lease_alone_sends_nothing_without_the_presence_lock(pg_store: PostgresStore) -> None:
    """Taking the lock may connect: never on the loop (``WouldBlock``)."""
    start(pg_store, "r1", "r2")
    pg_store.load_run("r1")  # a read: the read pool has an idle connection

    async def unheld() -> None:
        with pytest.raises(WouldBlock, match="presence"):
            await pg_store.lease_named_alone("w9", T0, ["r2"], TTL, SERVED)

    asyncio.run(unheld())
    assert leased(pg_store, "r2") == []


def test_only_the_runs_lease_due_would_take_first_are_leased_by_name(
    pg_store: PostgresStore, alone: bool
) -> None:
    start(pg_store, "r1", "r2")  # r1 is ahead of r2 in fn's queue (due at once, then run id)
    start(pg_store, "other-fn", function_id="unserved")
    ingest(pg_store, keyed("keyed"))
    assert lease_named(pg_store, "r2", "other-fn", "keyed", "missing", alone=alone) == []
    # named with the run ahead of it: both taken, in the queue order
    assert [held.run_id for held in lease_named(pg_store, "r2", "r1", alone=alone)] == ["r1", "r2"]


def test_a_named_run_behind_an_expired_lease_is_left_to_lease_due(
    pg_store: PostgresStore, alone: bool
) -> None:
    start(pg_store, "crashed")
    assert [held.run_id for held in lease(pg_store, "w1")] == ["crashed"]
    start(pg_store, "new", now=T0 + 1)
    later = T0 + TTL + 1  # the lease of "crashed" expired: it comes first
    assert lease_named(pg_store, "new", now=later, alone=alone) == []
    assert [held.run_id for held in lease(pg_store, "w2", later)] == ["crashed", "new"]


def test_paused_spent_late_and_not_yet_due_runs_are_not_leased_by_name(
    pg_store: PostgresStore, alone: bool
) -> None:
    start(pg_store, "soon", now=T0 + 60)
    assert lease_named(pg_store, "soon", alone=alone) == []  # not due yet
    start(pg_store, "spent")
    assert (
        lease_named(pg_store, "spent", max_passes=0, alone=alone) == []
    )  # lease_due fails it instead
    late = EventIngest(
        event("ev-late"),
        (NewRun("late", "fa", ("ev-late",), None, None, Admission(start_timeout=5.0)),),
    )
    ingest(pg_store, late)
    assert (
        lease_named(pg_store, "late", now=T0 + 6, alone=alone) == []
    )  # housekeeping cancels it instead
    with pg_store.transaction() as tx:
        tx.set_paused("fn", True, "")
    assert lease_named(pg_store, "spent", alone=alone) == []
    assert leased(pg_store, "soon", "spent", "late") == []


def test_a_run_another_worker_is_leasing_is_skipped_not_waited_for(
    pg_store: PostgresStore, pg_url: str, alone: bool
) -> None:
    start(pg_store, "r1")
    other = PostgresStore(pg_url)
    try:
        with other.transaction() as tx:
            assert [held.run_id for held in tx.lease_due("w1", T0, 10, TTL, SERVED)] == ["r1"]
            tx.statements.flush()
            # r1's queue row is locked by that transaction, not yet committed
            assert lease_named(pg_store, "r1", alone=alone) == []
    finally:
        other.close()
    assert lease_named(pg_store, "r1", alone=alone) == []  # leased by w1 now


def test_a_send_names_its_new_runs_in_the_notification(pg_store: PostgresStore) -> None:
    heard: list[Sequence[tuple[str, str]]] = []
    listening = threading.Event()

    def on_wake(named: Sequence[tuple[str, str]]) -> None:
        listening.set()
        heard.append(named)

    stop = pg_store.watch(on_wake)
    try:
        assert listening.wait(30)
        heard.clear()
        start(pg_store, "r1", "r2")  # two new runs due now: named
        ingest(pg_store, keyed("k1"))  # a run with concurrency keys: a plain wake-up
        # a run due later than now: a plain wake-up
        later = Admission(not_before=T0 + 60)
        ingest(
            pg_store, EventIngest(event("ev-l"), (NewRun("l", "fn", ("ev-l",), None, None, later),))
        )
        start(pg_store, *(f"m{i}" for i in range(MAX_NAMED + 1)))  # too many: plain
        wait_for("four notifications", lambda: len(heard) >= 4)
    finally:
        stop()
    assert [sorted(named) for named in heard] == [
        [("fn", "r1"), ("fn", "r2")],
        [],
        [],
        [],
    ]


def test_runs_leased_by_their_own_transaction_are_not_named(pg_store: PostgresStore) -> None:
    heard: list[Sequence[tuple[str, str]]] = []
    listening = threading.Event()
    stop = pg_store.watch(lambda named: (listening.set(), heard.append(named)))
    try:
        assert listening.wait(30)
        heard.clear()
        with pg_store.transaction() as tx:  # a send that hands its run to a worker of its own
            tx.ingest([trigger("r1"), trigger("r2")], T0, lambda w, e: False)
            tx.lease_due("w1", T0, 1, TTL, SERVED)
        wait_for("the notification", lambda: bool(heard))
    finally:
        stop()
    assert heard == [[("fn", "r2")]]


@pytest.mark.parametrize("payload", ["", "x", "[1]", '{"a": 1}', "[[1, 2, 3]]"])
def test_a_payload_that_names_nothing_is_a_plain_wake_up(payload: str) -> None:
    assert named_runs(payload) == []


def test_a_payload_names_function_and_run() -> None:
    assert named_runs('[["fn","r1"],["g","r2"]]') == [("fn", "r1"), ("g", "r2")]


def test_the_lease_statements_are_short_enough_for_psycopg_to_cache_their_conversion() -> None:
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    from stepline.store.postgres import _lease_queries as lq
    from stepline.store.postgres import _leases

    # psycopg parses a longer text's placeholders again at each execution (45-65 µs)
    for text in (
        _leases.LEASE_NAMED,
        _leases.LEASE_NEW,
        _leases._candidates(1),
        _leases._candidates(2),
    ):
        assert len(text.encode()) <= MAX_CACHED_STATEMENT_LENGTH
    assert len(lq.LEASE_NAMED.encode()) > MAX_CACHED_STATEMENT_LENGTH  # as written: not cached


def test_compact_keeps_string_literals_and_tokens() -> None:
    from stepline.store.postgres._leases import compact

    query = "SELECT a ,  b\n  FROM t WHERE s = 'x  ( y )' AND n <= %(n)s AND m <> ''"
    assert compact(query) == "SELECT a,b FROM t WHERE s='x  ( y )' AND n<=%(n)s AND m<>''"
