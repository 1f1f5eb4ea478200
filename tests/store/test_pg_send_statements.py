"""The statements of a send's commit on PostgreSQL (an event sent from a process without a
worker: the way to a first step in another process). A new run's ``run_events`` rows are
written by the statement that creates it (``CREATE_RUN``, ``CREATE_RUN_MANY``), and an
optimistic ingestion checks that its events' names have no waits nor cancel matchers and that
the trigger catalog is the one it knows with one statement (``NO_WAITS_NOR_MATCHERS_IN_CATALOG``):
two statements fewer a send than before, with the same rows and the same decisions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from tests.store.builders import T0, event, ingest

from stepline import App, Context, Event, TriggerEvent
from stepline.store.postgres import PostgresStore, _pipeline
from stepline.store.postgres import queries as q
from stepline.store.records import EventIngest, NewRun, TriggerRow


def run_events(url: str) -> set[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_id, run_id, effect FROM run_events").fetchall()
    return {(str(r[0]), str(r[1]), str(r[2])) for r in rows}


def recording(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts of every round trip sent from now on (either way of sending)."""
    trips: list[list[str]] = []
    send_all, send_all_async = _pipeline.send_all, _pipeline.send_all_async

    def sync(conn: Any, statements: Sequence[tuple[str, Any]]) -> Any:
        trips.append([query for query, _ in statements])
        return send_all(conn, statements)

    async def on_loop(conn: Any, statements: Sequence[tuple[str, Any]], watch: Any = None) -> Any:
        trips.append([query for query, _ in statements])
        return await send_all_async(conn, statements, watch)

    monkeypatch.setattr(_pipeline, "send_all", sync)
    monkeypatch.setattr(_pipeline, "send_all_async", on_loop)
    return trips


def sender(url: str) -> App:
    app = App("shop", db=url)

    @app.function(id="fn", trigger=TriggerEvent("order/created"))
    async def fn(ctx: Context) -> None:
        return None

    return app


async def test_a_sends_commit_writes_its_runs_events_and_checks_its_assumptions_at_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = sender(pg_url)
    try:
        await app.send_async(Event("order/created", {"n": 0}))  # the catalog is known after it
        trips = recording(monkeypatch)
        [event_id] = await app.send_async(Event("order/created", {"n": 1}))
        [commit] = [t for t in trips if q.INSERT_EVENT in t]
        assert q.NO_WAITS_NOR_MATCHERS_IN_CATALOG in commit
        assert q.CATALOG_IS not in commit and q.NO_WAITS_NOR_MATCHERS not in commit
        assert q.CREATE_RUN in commit
        assert not [t for t in commit if t.lstrip().startswith("INSERT INTO run_events")]
        [run] = await app.runs(event_id=event_id)
        assert (event_id, run.run_id, "started") in run_events(pg_url)
    finally:
        app.close()


async def test_a_registration_between_two_sends_is_seen_by_the_second(
    pg_url: str, pg_store: PostgresStore
) -> None:
    """The catalog the sender knows is checked by the merged statement: changed since, the
    send is made again reading it, and its event goes to the new listener's inbox."""
    app = sender(pg_url)
    try:
        await app.send_async(Event("order/created", {"n": 0}))
        with pg_store.transaction() as tx:
            tx.sync_triggers("billing", [TriggerRow("billing", "bill", "order/created")], T0)
        [event_id] = await app.send_async(Event("order/created", {"n": 1}))
        with psycopg.connect(pg_url) as conn:
            inbox = conn.execute(
                "SELECT app_id, function_id FROM inbox WHERE event_id = %s", (event_id,)
            ).fetchall()
        assert [tuple(r) for r in inbox] == [("billing", "bill")]
        assert len(await app.runs(event_id=event_id)) == 1
    finally:
        app.close()


def test_runs_created_together_are_linked_to_their_events(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """Runs created by one statement (``CREATE_RUN_MANY``), one of them started by two
    events (a batch), each linked to each of its events once."""
    news = [
        NewRun("r1", "fn", ("e1",)),
        NewRun("r2", "fn", ("e2",)),
        NewRun("r3", "fn", ("e1", "e2")),
    ]
    ingest(
        pg_store,
        EventIngest(event("e1"), (news[0],)),
        EventIngest(event("e2"), (news[1], news[2])),
    )
    assert run_events(pg_url) == {
        ("e1", "r1", "started"),
        ("e2", "r2", "started"),
        ("e1", "r3", "started"),
        ("e2", "r3", "started"),
    }
    with pg_store.transaction() as tx:
        assert [e.internal_id for e in tx.run_events("r3")] == ["e1", "e2"]


def test_the_hand_offs_are_short_enough_for_psycopg_to_cache_their_conversion() -> None:
    """A longer text's placeholders are parsed again at every send (4b66ab9's HAND_OFF, 4,272
    bytes: ~50-100 µs of the sender's CPU on an event's way to its first step)."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    from stepline.store.postgres._handoffs import HAND_OFF, HAND_OFF_ONE

    for text in (HAND_OFF, HAND_OFF_ONE):
        assert len(text.encode()) <= MAX_CACHED_STATEMENT_LENGTH


def test_a_send_of_one_run_hands_it_with_the_one_runs_text(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HAND_OFF_ONE``: no window, ordering or aggregate over several runs to plan and run;
    a send of several runs has ``HAND_OFF``."""
    from stepline.store.postgres._handoffs import HAND_OFF, HAND_OFF_ONE

    app = sender(pg_url)
    try:
        trips = recording(monkeypatch)
        app.send(Event("order/created", {"n": 1}))
        app.send([Event("order/created", {"n": 2}), Event("order/created", {"n": 3})])
        texts = (HAND_OFF, HAND_OFF_ONE)
        handing = [text for trip in trips for text in trip if text in texts]
        assert handing == [HAND_OFF_ONE, HAND_OFF]
    finally:
        app.close()
