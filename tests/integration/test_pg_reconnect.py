"""PostgreSQL going away and coming back (issue 8, "Reconnects"), on a cluster of the test's own:
calls during an outage raise ``StoreUnavailable`` (never hang, never a raw psycopg error), the
first call once the server is back succeeds, however long the outage lasted, and a connection
the server drops is replaced without the caller seeing it."""

from __future__ import annotations

import time

import psycopg
import pytest

import pgtest
from pgcluster import start_again, stop_cluster
from stepline import App, Event, StoreUnavailable
from stepline.store.postgres import PostgresStore
from stepline.store.records import EventFilter


@pytest.mark.timeout(120)
def test_the_first_call_after_a_long_outage_succeeds() -> None:
    """The server is down for 9 s while calls keep failing (each within its 1 s connect
    timeout); the first call once it is back succeeds: the pool's reconnect attempts never
    back off past what one call waits (before the fix they doubled up to minutes, and a call
    could fail for that long against a running server)."""
    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster) + "?connect_timeout=1"
        store = PostgresStore(url)
        try:
            assert store.get_run("nope") is None
            stop_cluster(cluster, mode="fast")
            failures = 0
            down_since = time.monotonic()
            while time.monotonic() - down_since < 9:  # the outage's length, not an assertion
                with pytest.raises(StoreUnavailable):
                    store.get_run("nope")
                failures += 1
            start_again(cluster)
            assert store.get_run("nope") is None
            assert failures >= 5
        finally:
            store.close()


@pytest.mark.timeout(120)
def test_send_during_an_outage_raises_store_unavailable_and_a_retry_stores_once() -> None:
    """``send`` while the server is down raises ``StoreUnavailable`` (after the connect
    timeout, never a hang, never psycopg's own error) and stores nothing; once the server is
    back the sender's retry stores the event, and a second retry with its id is a duplicate."""
    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster) + "?connect_timeout=2"
        app = App("reconnect", db=url)
        try:
            app.send(Event("before/outage"))
            stop_cluster(cluster, mode="fast")
            event = Event("during/outage", id="retry-me")
            with pytest.raises(StoreUnavailable, match="retry later"):
                app.send(event)
            start_again(cluster)
            [first] = app.send(event)
            [again] = app.send(event)  # as after a lost acknowledgement: stored as a duplicate
            stored = app.engine.store.list_events(EventFilter(name="during/outage"))
            copies = {s.event.internal_id: s.duplicate for s in stored}
            assert copies == {first: False, again: True}
        finally:
            app.close()


@pytest.mark.timeout(60)
def test_a_dropped_connection_is_replaced_without_the_caller_seeing_it(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        assert store.get_run("nope") is None  # a pooled connection exists now
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert store.get_run("nope") is None
        with store.transaction() as tx:
            tx.set_paused("f", True, "app")
        assert store.paused_functions("app") == {"f"}
    finally:
        store.close()
