"""A cancel event ingested while another process takes the inbox row of the run it cancels
(PostgreSQL): the run is cancelled, whichever way the two transactions interleave.

Before, the take checked for cancel events received after the run's trigger with a read of
its own, and the ingestion matched the cancel matchers it could see: a cancel event whose
transaction committed inside the take's own (after the take's read, before its commit: the
ingestion did not see the uncommitted matchers, the take did not see the uncommitted event)
cancelled nothing, and the run went on. Each test holds both transactions open on two
connections, in one thread, in the order it names (no thread, no timing: nothing waits).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from typing import Any

import psycopg
import pytest
from tests.integration.test_handed_over_decisions import shop_app

from stepline import App
from stepline.errors import LeaseLostError
from stepline.store.interface import Replay
from stepline.store.postgres import PostgresStore, _late_cancels, _take_gates, wakeups
from stepline.store.postgres.queries import CANCEL_GATES, CLOSE_GATE, NOTE_UNLESS_SHARED
from stepline.store.records import EventFilter, EventIngest, FunctionSet, PassCommit, RunFilter
from stepline.store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from stepline.testing import MockClock

from .builders import T0, cel_matches, event

BILLING = FunctionSet("billing", ("noop",))


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[App, PostgresStore, PostgresStore]]:
    """shop (its worker's store: ``taker``) and billing's sending store (``sender``), one
    database; shop's ``ship`` is in the catalog, and billing handed it order 1."""
    taker, sender = PostgresStore(pg_url), PostgresStore(pg_url)
    taker.migrate()
    shop = shop_app()  # ship: order/paid, cancel_on order/cancelled matching data.n
    engine = shop.attach(taker, MockClock(T0 + 10))
    with taker.transaction() as tx:
        tx.sync_triggers("shop", engine.trigger_rows(), T0, engine.served)
    with sender.transaction() as tx:
        paid = EventIngest(event("paid-1", "order/paid", {"n": 1}), sender=BILLING)
        assert tx.ingest([paid], T0, cel_matches)[0].delivered == (("shop", "ship"),)
    try:
        yield shop, taker, sender
    finally:
        shop.close()
        sender.close()
        taker.close()


def cancelled_event(internal_id: str = "cancel-1") -> EventIngest:
    return EventIngest(event(internal_id, "order/cancelled", {"n": 1}), sender=BILLING)


def take(shop: App, taker: PostgresStore) -> list[str]:
    """One take by shop's engine, committed: the runs it started."""
    with taker.transaction() as tx:
        results = shop.engine.take_inbox(tx, 100)()
    return [run_id for r in results for run_id in r.run_ids]


def status(shop: App, taker: PostgresStore) -> tuple[str, str, list[tuple[str, str]]]:
    [run] = taker.list_runs(RunFilter(function_id="ship", app_id=None))
    effects = [(r.effect, r.event_id) for r in taker.event_runs(["cancel-1"])]
    return run.run_id, run.status, effects


def test_a_cancel_ingested_while_the_take_holds_its_runs_is_applied_after_it(
    stores: tuple[App, PostgresStore, PostgresStore],
) -> None:
    """take (started the run, checked for cancel events, not committed) → the cancel event
    ingested and committed → the take commits: the event was noted, and the next
    housekeeping matches it against the run's cancel matchers."""
    shop, taker, sender = stores
    with taker.transaction() as take_tx:
        started = [run_id for r in shop.engine.take_inbox(take_tx, 100)() for run_id in r.run_ids]
        assert len(started) == 1
        with sender.transaction() as tx:  # committed inside the take's window
            assert tx.ingest([cancelled_event()], T0 + 5, cel_matches)[0].cancelled == ()
    with taker.transaction() as tx:
        late = shop.engine.housekeeping(tx, T0 + 20)
    assert [(r.internal_id, r.cancelled) for r in late if r.cancelled] == [
        ("cancel-1", ((started[0], "ship"),))
    ]
    assert status(shop, taker) == (started[0], "CANCELLED", [("cancelled", "cancel-1")])
    # announced as any cancellation
    assert taker.list_events(EventFilter(name="inngest/function.cancelled"))


def test_a_take_while_a_cancel_is_being_ingested_gives_the_row_back_until_it_ended(
    stores: tuple[App, PostgresStore, PostgresStore],
) -> None:
    """the cancel event ingested (its cancel matching done, not committed) → a take: it cannot
    see the event yet, so it gives the row back → the ingestion commits → the next take
    starts the run and cancels it at once (its check sees the event)."""
    shop, taker, sender = stores
    with sender.transaction() as tx:
        assert tx.ingest([cancelled_event()], T0 + 5, cel_matches)[0].cancelled == ()
        tx.stored_event_ids(["cancel-1"])  # its statements sent: the ingestion is in flight
        assert take(shop, taker) == []
    [run_id] = take(shop, taker)
    assert status(shop, taker) == (run_id, "CANCELLED", [("cancelled", "cancel-1")])


def test_the_optimistic_first_try_of_a_refused_take_is_made_again_carefully(
    stores: tuple[App, PostgresStore, PostgresStore],
) -> None:
    """The writer's optimistic transaction has no savepoint to roll a refused row back to: it
    is made again carefully (``Replay``), which gives the row back."""
    shop, taker, sender = stores
    with sender.transaction() as tx:
        tx.ingest([cancelled_event()], T0 + 5, cel_matches)
        tx.stored_event_ids(["cancel-1"])
        with pytest.raises(Replay), taker.optimistic_transaction() as otx:
            assert shop.engine.take_inbox(otx, 100)() == []
        assert take(shop, taker) == []
    [run_id] = take(shop, taker)
    assert status(shop, taker) == (run_id, "CANCELLED", [("cancelled", "cancel-1")])


def test_an_ingestion_refused_once_notes_its_later_events_of_that_bucket_too(
    stores: tuple[App, PostgresStore, PostgresStore],
) -> None:
    """An ingestion refused while the take held the bucket, then the take commits, then the
    same transaction ingests the cancel event that matches: its bucket is free now, but the
    transaction read the name's cancel matchers (none) before the take committed and does not
    read them again, so that event is noted too, and the run cancelled after."""
    shop, taker, sender = stores
    with sender.transaction() as tx:
        with taker.transaction() as take_tx:
            [started] = [r for r in shop.engine.take_inbox(take_tx, 100)() if r.run_ids]
            other = EventIngest(event("cancel-2", "order/cancelled", {"n": 2}), sender=BILLING)
            assert tx.ingest([other], T0 + 4, cel_matches)[0].cancelled == ()
            tx.stored_event_ids(["cancel-2"])  # sent while the take holds the bucket
        assert tx.ingest([cancelled_event()], T0 + 5, cel_matches)[0].cancelled == ()
    with taker.transaction() as tx:
        shop.engine.housekeeping(tx, T0 + 20)
    assert status(shop, taker) == (started.run_ids[0], "CANCELLED", [("cancelled", "cancel-1")])


def test_a_cancel_after_a_committed_take_in_a_transaction_that_read_the_name_before_cancels(
    stores: tuple[App, PostgresStore, PostgresStore],
) -> None:
    """A verb rolled back to its savepoint releases the advisory locks it took, so the
    transaction forgets what it read of the index too: a zombie pass commit (its lease lost)
    that sent an order/cancelled event read that name's cancel matchers (none) and was rolled
    back; a take then starts the run with cancel_on and commits; the same transaction's
    ingestion of the cancel reads the matchers again and cancels the run."""
    shop, taker, sender = stores
    with sender.transaction() as tx:
        other = EventIngest(event("cancel-0", "order/cancelled", {"n": 0}), sender=BILLING)
        zombie = PassCommit("ghost-run", "lost-token", events=[other])
        with pytest.raises(LeaseLostError):
            tx.commit_pass(zombie, T0 + 3, cel_matches)
        [started] = take(shop, taker)
        tx.ingest([cancelled_event()], T0 + 5, cel_matches)
    with taker.transaction() as tx:
        shop.engine.housekeeping(tx, T0 + 20)  # late cancels, if it was noted
    assert status(shop, taker) == (started, "CANCELLED", [("cancelled", "cancel-1")])


def test_a_cancel_committed_before_the_take_with_a_later_timestamp_cancels(
    stores: tuple[App, PostgresStore, PostgresStore],
) -> None:
    """An ingestion that committed before the take's read ran without the run's matchers,
    whatever its received time: the sender's clock may read later than the worker's ``now``
    (skew between machines, or a sender that read its clock after the worker did and
    committed its send before the take's read). The take's read has no upper bound, so it
    sees it. Here: shop's worker clock says T0+10, billing's cancel (received T0+15)
    committed before the take."""
    shop, taker, sender = stores
    with sender.transaction() as tx:
        tx.ingest([cancelled_event()], T0 + 15, cel_matches)  # committed before the take
    [started] = take(shop, taker)  # the worker's clock: T0 + 10
    with taker.transaction() as tx:
        shop.engine.housekeeping(tx, T0 + 20)
    assert status(shop, taker) == (started, "CANCELLED", [("cancelled", "cancel-1")])


def _closed_gates(url: str) -> list[int]:
    """The buckets whose gate some session holds closed (_take_gates.py)."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = %s AND mode = 'ExclusiveLock' "
            # pg_locks is the cluster's: another test process's database has gates too
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY 1",
            (CANCEL_GATES,),
        )
        return [int(r[0]) for r in rows]


def _gates_become(url: str, expected: list[int]) -> None:
    """Wait until the closed gates are ``expected`` (a take asks; the gates' own thread closes
    and opens them: _take_gates.py)."""
    deadline = time.monotonic() + 30
    while (closed := _closed_gates(url)) != expected:
        assert time.monotonic() < deadline, closed
        time.sleep(0.01)  # real time: the poll interval; the deadline bounds it


def test_a_refused_take_never_waits_inside_its_transaction(
    stores: tuple[App, PostgresStore, PostgresStore],
) -> None:
    """A take runs inside the worker's group-commit transaction: waiting there for an
    ingestion that holds its bucket would hold up every other commit of the process (review
    finding 3). It gives the row back at once, while the ingestion is still in flight (the
    ingestion stays open until the take has ended, or 30 s)."""
    shop, taker, sender = stores
    taken: list[list[str]] = []
    with sender.transaction() as tx:
        assert tx.ingest([cancelled_event()], T0 + 5, cel_matches)[0].cancelled == ()
        tx.stored_event_ids(["cancel-1"])  # in flight, holding the bucket
        thread = threading.Thread(target=lambda: taken.append(take(shop, taker)))
        thread.start()
        thread.join(timeout=30)  # the ingestion stays open till then: a waiting take waits
        assert not thread.is_alive(), "the take waited for the ingestion"
        assert taken == [[]]  # the row given back
    thread.join(timeout=60)
    [run_id] = take(shop, taker)
    assert status(shop, taker) == (run_id, "CANCELLED", [("cancelled", "cancel-1")])


def test_a_refused_take_never_waits_for_its_gates(
    stores: tuple[App, PostgresStore, PostgresStore],
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing the gates takes a round trip, the first time a connection: asked of the gates'
    own thread, never made inside the take's transaction. Here the gates' connection is held
    up until the test lets it go: the refused take has given its row back by then."""
    let_go = threading.Event()
    connection = _take_gates.TakeGates._connection

    def held_up(gates: _take_gates.TakeGates) -> Any:
        assert let_go.wait(30)
        return connection(gates)

    monkeypatch.setattr(_take_gates.TakeGates, "_connection", held_up)
    shop, taker, sender = stores
    taken: list[list[str]] = []
    with sender.transaction() as tx:
        tx.ingest([cancelled_event()], T0 + 5, cel_matches)
        tx.stored_event_ids(["cancel-1"])  # in flight, holding the bucket
        thread = threading.Thread(target=lambda: taken.append(take(shop, taker)))
        thread.start()
        thread.join(timeout=20)
        alive = thread.is_alive()
        let_go.set()
        assert not alive, "the take waited for its gates' connection"
        assert taken == [[]]
        _gates_become(pg_url, [_late_cancels.bucket("order/cancelled")])
    thread.join(timeout=30)


def test_a_refused_take_gives_its_row_back_without_waking_every_worker(
    stores: tuple[App, PostgresStore, PostgresStore], pg_url: str
) -> None:
    """A refused take gives its row back to the inbox, due as it was: its engine wakes its own
    workers to take it again (the next test), and other workers of the app see it due, so its
    transaction sends no notification, which would wake every worker of every app on the
    database. Notifications arrive in commit order: none may come before the marker, sent
    once the take committed and before the ingestion does."""
    shop, taker, sender = stores
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {wakeups.CHANNEL}")
        with sender.transaction() as tx:
            tx.ingest([cancelled_event()], T0 + 5, cel_matches)
            tx.stored_event_ids(["cancel-1"])  # in flight, holding the bucket
            assert take(shop, taker) == []  # refused: the row given back
            listener.execute("SELECT pg_notify(%s, 'marker')", (wakeups.CHANNEL,))
        payloads: list[str] = []
        deadline = time.monotonic() + 30
        while "marker" not in payloads:
            assert time.monotonic() < deadline, payloads
            payloads += [n.payload for n in listener.notifies(timeout=1, stop_after=1)]
    assert payloads[: payloads.index("marker")] == []
    [run_id] = take(shop, taker)
    assert status(shop, taker) == (run_id, "CANCELLED", [("cancelled", "cancel-1")])


async def test_a_worker_whose_take_was_refused_takes_the_row_again_by_itself(
    stores: tuple[App, PostgresStore, PostgresStore], pg_url: str
) -> None:
    """With no notification for the row given back, the refused worker's own engine wakes it
    to take the row again (any worker of the app in this process may): not the poll of a
    worker with work due, which never comes on a clock that does not move (here a MockClock,
    and a worker without a poll interval), nor a wait for a pass to end."""
    shop, _, sender = stores
    taker = PostgresStore(pg_url)  # the engine's (attaching again closes the one before)
    shop.attach(taker, MockClock(T0 + 10, autojump=False))  # a clock that does not move
    holding, commit = threading.Event(), threading.Event()

    def ingestion_in_flight() -> None:  # an unrelated cancel (n=2): the run is started
        with sender.transaction() as tx:
            other = EventIngest(event("cancel-2", "order/cancelled", {"n": 2}), sender=BILLING)
            tx.ingest([other], T0 + 5, cel_matches)
            tx.stored_event_ids(["cancel-2"])  # in flight, holding the bucket
            holding.set()
            assert commit.wait(30)

    thread = threading.Thread(target=ingestion_in_flight)
    thread.start()
    worker = shop.make_worker(worker_id="w-shop", poll_interval=None)
    serving = asyncio.create_task(worker.run())
    try:
        assert await asyncio.to_thread(holding.wait, 30)
        # the take refused, and the lease job that gave the row back committed
        bucket = _late_cancels.bucket("order/cancelled")
        await asyncio.to_thread(_gates_become, pg_url, [bucket])
        deadline = time.monotonic() + 30
        while worker.loops < 1:
            assert time.monotonic() < deadline, "no lease attempt"
            await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it
        assert taker.list_runs(RunFilter(function_id="ship", app_id=None)) == []
        commit.set()
        await asyncio.to_thread(thread.join, 30)
        deadline = time.monotonic() + 30
        while not taker.list_runs(RunFilter(function_id="ship", app_id=None)):
            assert time.monotonic() < deadline, "the row was never taken again"
            await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it
    finally:
        commit.set()
        worker.stop()
        await serving
        thread.join(30)
    [run] = taker.list_runs(RunFilter(function_id="ship", app_id=None))
    assert run.status in ("QUEUED", "RUNNING", "SLEEPING")  # started, not cancelled


def test_a_refused_take_is_not_starved_by_ingestions_that_keep_coming(
    stores: tuple[App, PostgresStore, PostgresStore], pg_url: str
) -> None:
    """A refused take closes its buckets' gates: an ingestion that starts then notes its event
    instead of holding the bucket in turn, so once the ingestions in flight ended the next
    take gets the bucket, however many overlap (before: the second ingestion held it, and the
    take was refused again). Here: an ingestion in flight, the take refused, the matching
    cancel ingested while the gate is closed (noted, still in flight), the first commits: the
    take starts the run and opens the gate; the cancel commits and housekeeping cancels."""
    shop, taker, sender = stores
    second = PostgresStore(pg_url)
    with ExitStack() as first, ExitStack() as then:
        tx = first.enter_context(sender.transaction())
        other = EventIngest(event("cancel-2", "order/cancelled", {"n": 2}), sender=BILLING)
        tx.ingest([other], T0 + 4, cel_matches)
        tx.stored_event_ids(["cancel-2"])  # in flight, holding the bucket
        assert take(shop, taker) == []  # refused: the row given back, the gate closed
        _gates_become(pg_url, [_late_cancels.bucket("order/cancelled")])
        then.callback(second.close)
        tx2 = then.enter_context(second.transaction())
        assert tx2.ingest([cancelled_event()], T0 + 5, cel_matches)[0].cancelled == ()
        tx2.stored_event_ids(["cancel-1"])  # in flight, noted, not holding the bucket
        first.close()  # the first ingestion commits
        [run_id] = take(shop, taker)  # while the second is still in flight
        _gates_become(pg_url, [])
    with taker.transaction() as tx:  # the second committed: its note is matched again
        shop.engine.housekeeping(tx, T0 + 20)
    assert status(shop, taker) == (run_id, "CANCELLED", [("cancelled", "cancel-1")])


def _gate_closed(
    stores: tuple[App, PostgresStore, PostgresStore],
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[float, Callable[[], None]]]:
    """Close the gate of order/cancelled by a refused take; the timers ``TakeGates`` made
    meanwhile (interval, function): the test's, they never fire by themselves."""
    timers: list[tuple[float, Callable[[], None]]] = []

    class Timer:
        def __init__(self, interval: float, function: Callable[[], None]) -> None:
            timers.append((interval, function))

        def start(self) -> None:
            return None

    monkeypatch.setattr(_take_gates.threading, "Timer", Timer)
    shop, taker, sender = stores
    with sender.transaction() as tx:
        tx.ingest([cancelled_event()], T0 + 5, cel_matches)
        tx.stored_event_ids(["cancel-1"])
        assert take(shop, taker) == []
    _gates_become(pg_url, [_late_cancels.bucket("order/cancelled")])
    taker._gates.wait()  # the gate shows closed before its thread made the timer
    return timers


def test_a_gate_no_take_of_its_process_opened_is_opened_after_gate_hold(
    stores: tuple[App, PostgresStore, PostgresStore],
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gate stays closed only while its process may take the row again: another worker may
    have taken it. ``GATE_HOLD`` after it closed, a timer opens it, whether or not the process
    looks for work meanwhile (an idle worker may not for long). The timer is the test's: it
    fires when the test says."""
    [(interval, fire)] = _gate_closed(stores, pg_url, monkeypatch)
    assert interval == _take_gates.GATE_HOLD
    monkeypatch.setattr(_take_gates, "GATE_HOLD", 0.0)  # its time has come
    fire()
    _gates_become(pg_url, [])  # nobody else came by
    shop, taker, _ = stores
    [run_id] = take(shop, taker)  # the next take gets the bucket
    assert status(shop, taker) == (run_id, "CANCELLED", [("cancelled", "cancel-1")])


def test_a_gate_whose_timer_was_lost_is_opened_by_housekeeping(
    stores: tuple[App, PostgresStore, PostgresStore],
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The timer is the usual way a gate no take of its process got is opened; a timer that
    never fires (its thread could not start) must not leave the gate closed until a take of
    this process gets the bucket (every ingestion of its names noting its event meanwhile):
    the process's housekeeping opens the gates closed ``GATE_HOLD`` ago as well."""
    _gate_closed(stores, pg_url, monkeypatch)  # its timer never fires
    monkeypatch.setattr(_take_gates, "GATE_HOLD", 0.0)  # its time has come
    shop, taker, _ = stores
    with taker.transaction() as tx:
        shop.engine.housekeeping(tx, T0 + 20)
    _gates_become(pg_url, [])


# a cancel (statement_timeout, pg_cancel_backend) delivered right after an ingestion's look at a
# gate: the first of these functions the look's next statement calls raises it
CANCELLED_AFTER_THE_LOOK = f"""
CREATE SCHEMA trap;
CREATE FUNCTION trap.pg_advisory_unlock_shared(a integer, b integer) RETURNS boolean
LANGUAGE plpgsql AS $$ BEGIN RAISE SQLSTATE '57014'; END $$;
CREATE FUNCTION trap.pg_try_advisory_xact_lock_shared(a integer, b integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF a = {CANCEL_GATES - 1} THEN RAISE SQLSTATE '57014'; END IF;
    RETURN pg_catalog.pg_try_advisory_xact_lock_shared(a, b);
END $$;
"""


def test_a_cancel_right_after_an_ingestion_looked_at_a_gate_leaves_the_gate_free(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """The look takes the gate shared and lets it go at once; cancelled in between, the
    transaction ends but the connection (a pooled one, for its whole life) kept the gate when
    the look was a session-level lock, and that bucket's gate could never be closed again
    (review2's finding 5). The trap stands for the cancel: it raises where it would be
    serviced, before the statement after the look."""
    with psycopg.connect(pg_url, autocommit=True) as conn, psycopg.connect(pg_url) as closer:
        schema = conn.execute("SELECT current_schema()").fetchone()
        conn.execute(CANCELLED_AFTER_THE_LOOK.encode())
        try:
            # the trap's schema first, then pg_catalog (searched first when not named)
            conn.execute(f"SET search_path = trap, {schema[0] if schema else 'public'}, pg_catalog")
            with pytest.raises(psycopg.errors.QueryCanceled), conn.transaction():
                conn.execute(NOTE_UNLESS_SHARED, (["e1"], [7]))
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert closer.execute(CLOSE_GATE, (7,)).fetchone() == (True,)
        finally:
            conn.execute("RESET search_path")
            conn.execute("DROP SCHEMA trap CASCADE")


def test_nothing_unread_of_the_notes_and_takes_is_kept(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """A note's transaction id (written, never read: the only use of ``pg_current_xact_id``,
    which PostgreSQL 12 lacks) and migration 9's function (a take no longer waits for its
    buckets) are gone from the PostgreSQL schema, and the id from SQLite's too (both hold the
    same columns, for db copy: tests/integration/test_db_copy.py)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'cancel_notes' "
            "ORDER BY ordinal_position"
        ).fetchall()
        functions = dict(
            conn.execute(
                "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'stepline%%' "
                "AND pronamespace = current_schema()::regnamespace"
            ).fetchall()
        )
    assert [c[0] for c in columns] == ["event_id", "bucket"]
    assert sorted(functions) == ["stepline_note_unless_shared"]
    assert "pg_current_xact_id" not in functions["stepline_note_unless_shared"]
    with closing(sqlite3.connect(":memory:")) as lite, lite:
        lite.executescript("".join(SQLITE_MIGRATIONS))
        assert [r[1] for r in lite.execute("PRAGMA table_info(cancel_notes)")] == [
            "event_id",
            "bucket",
        ]
