"""The apps of the trigger catalog (``Store.apps``) and removing one (``remove_app``): a
decommissioned app stays in the catalog until removed, and every event its functions listen to
adds an inbox row for it that no worker takes.

Before, nothing listed the catalog and nothing took an app out of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from stepline.store import Store
from stepline.store.interface import StoreTx
from stepline.store.records import (
    AppRecord,
    AppRemoval,
    EventIngest,
    FunctionSet,
    TriggerRow,
    WorkerRecord,
)

from .builders import T0, event, ingest
from .test_inbox import BILLING, CATALOG, EMAILS

EMAILS_ROWS = tuple(r for r in CATALOG if r.app_id == "emails")
BILLING_ROWS = tuple(r for r in CATALOG if r.app_id == "billing")
TTL = 30.0


def registered(
    store: Store, functions: FunctionSet, rows: tuple[TriggerRow, ...], at: float
) -> None:
    """A worker of the app registered at ``at`` (alive until ``at + TTL``)."""
    worker = WorkerRecord(
        f"w-{functions.app_id}", functions.app_id, functions.function_ids, at, at, at + TTL
    )
    with store.transaction() as tx:
        tx.register_worker(worker)
        tx.sync_triggers(functions.app_id, rows, at, functions)


def sent(internal_id: str, name: str = "order/placed") -> EventIngest:
    return EventIngest(event(internal_id, name), sender=BILLING)


def remove(store: Store, app_id: str, now: float, force: bool = False) -> AppRemoval:
    with store.transaction() as tx:
        return tx.remove_app(app_id, now, force)


def test_apps_lists_the_catalog_with_workers_and_waiting_events(store: Store) -> None:
    registered(store, EMAILS, EMAILS_ROWS, at=T0 - 100)  # its worker died: expired at T0 - 70
    registered(store, BILLING, BILLING_ROWS, at=T0)
    ingest(store, sent("e1"), sent("e2"), sent("e3", "user/signup"))
    assert store.apps(T0 + 1) == [
        AppRecord("billing", BILLING_ROWS, live_workers=1, last_seen_at=T0, waiting=0),
        AppRecord("emails", EMAILS_ROWS, live_workers=0, last_seen_at=T0 - 100, waiting=3),
    ]


def test_a_removed_app_is_handed_no_more_events_and_its_waiting_events_are_dropped(
    store: Store,
) -> None:
    registered(store, EMAILS, EMAILS_ROWS, at=T0 - 100)
    registered(store, BILLING, BILLING_ROWS, at=T0)
    ingest(store, sent("e1"), sent("e2", "user/signup"))
    assert remove(store, "emails", T0) == AppRemoval("emails", 0, False, triggers=2, dropped=2)
    [after] = ingest(store, sent("e3"))
    assert after.delivered == ()
    with store.transaction() as tx:
        assert tx.take_inbox(EMAILS, 100)() == []
    assert [a.app_id for a in store.apps(T0)] == ["billing"]
    # removing it again does nothing; a worker of it starting again puts it back
    assert remove(store, "emails", T0) == AppRemoval("emails", 0, False, triggers=0, dropped=0)
    registered(store, EMAILS, EMAILS_ROWS, at=T0)
    assert ingest(store, sent("e4"))[0].delivered == (("emails", "receipt"),)


def test_an_app_with_a_live_worker_is_removed_only_when_forced(store: Store) -> None:
    registered(store, EMAILS, EMAILS_ROWS, at=T0)
    ingest(store, sent("e1"))
    refused = remove(store, "emails", T0 + 1)
    assert refused == AppRemoval("emails", 1, True, triggers=0, dropped=0)
    assert store.apps(T0 + 1)[0].waiting == 1  # nothing done
    assert ingest(store, sent("e2"))[0].delivered == (("emails", "receipt"),)
    forced = remove(store, "emails", T0 + 1, force=True)
    assert forced == AppRemoval("emails", 1, False, triggers=2, dropped=2)
    assert ingest(store, sent("e3"))[0].delivered == ()
    # once its worker expired no force is needed
    registered(store, EMAILS, EMAILS_ROWS, at=T0)
    assert not remove(store, "emails", T0 + TTL + 1).refused


def test_a_rolled_back_removal_keeps_the_app(store: Store) -> None:
    registered(store, EMAILS, EMAILS_ROWS, at=T0 - 100)
    ingest(store, sent("e1"))
    try:
        with store.transaction() as tx:
            tx.remove_app("emails", T0, False)
            assert tx.ingest([sent("e2")], T0, lambda w, e: True)[0].delivered == ()
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert store.apps(T0)[0].waiting == 1
    assert ingest(store, sent("e3"))[0].delivered == (("emails", "receipt"),)


# -- PostgreSQL: a registration of the app at the same time as its removal --------------------
def _waiting_for_a_lock(store: Store) -> bool:
    with store._read_pool.connection() as conn:  # type: ignore[attr-defined]
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0])


def _race(
    store: Store, pg_url: str, first: Callable[[StoreTx], object], second: Callable[[Store], object]
) -> None:
    """``first(tx)`` in a transaction of ``store`` held open (its locks kept) until
    ``second(other)`` — ``other`` another process's store on the same database — waits for a
    lock; then the first commits and the second ends."""
    from stepline.store.postgres import PostgresStore

    other = PostgresStore(pg_url)
    ready, go = threading.Event(), threading.Event()

    def held_open() -> None:
        with store.transaction() as tx:
            first(tx)
            ready.set()
            go.wait()

    one = threading.Thread(target=held_open)
    two = threading.Thread(target=second, args=(other,))
    try:
        one.start()
        assert ready.wait(20)
        two.start()
        pause = threading.Event()
        for _ in range(2000):  # 20 s at most
            if _waiting_for_a_lock(store):
                break
            pause.wait(0.01)
        else:
            raise AssertionError("the second transaction never waited for the first one's lock")
    finally:
        go.set()
        one.join()
        two.join()
        other.close()


def _register(tx: StoreTx, at: float) -> None:
    tx.register_worker(WorkerRecord("w-emails", "emails", EMAILS.function_ids, at, at, at + TTL))
    tx.sync_triggers("emails", EMAILS_ROWS, at, EMAILS)


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_postgres_a_registration_committed_first_is_seen_alive(store: Store, pg_url: str) -> None:
    result: list[AppRemoval] = []
    _race(
        store,
        pg_url,
        lambda tx: _register(tx, T0),
        lambda other: result.append(remove(other, "emails", T0)),
    )
    assert result == [AppRemoval("emails", 1, True, 0, 0)]
    assert [a.app_id for a in store.apps(T0)] == ["emails"]


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_postgres_a_registration_waiting_for_the_removal_adds_the_app_back(
    store: Store, pg_url: str
) -> None:
    registered(store, EMAILS, EMAILS_ROWS, at=T0 - 100)
    ingest(store, sent("e1"))
    removal: list[AppRemoval] = []
    _race(
        store,
        pg_url,
        lambda tx: removal.append(tx.remove_app("emails", T0, False)),
        lambda other: registered(other, EMAILS, EMAILS_ROWS, at=T0),
    )
    assert removal == [AppRemoval("emails", 0, False, 2, 1)]
    [app] = store.apps(T0)
    assert (app.app_id, app.triggers, app.live_workers, app.waiting) == (
        "emails",
        EMAILS_ROWS,
        1,
        0,
    )
    assert ingest(store, sent("e2"))[0].delivered == (("emails", "receipt"),)


def test_removing_an_app_removes_the_sdk_apps_it_stored(store: Store) -> None:
    """An app serving Inngest-SDK apps (``stepline dev``, ``stepline server``) stored their
    syncs to restore them when it starts: a removed app (decommissioned) keeps none, so one
    started again under its id does not bring back functions nobody synced to it since.
    Another app's stored SDK apps stay."""
    registered(store, EMAILS, EMAILS_ROWS, at=T0 - 100)
    with store.transaction() as tx:
        tx.put_sdk_app("emails", "js-app", b'{"appName": "js-app"}', T0 - 50)
        tx.put_sdk_app("emails", "py-app", b'{"appName": "py-app"}', T0 - 50)
        tx.put_sdk_app("billing", "go-app", b'{"appName": "go-app"}', T0 - 50)
    done = remove(store, "emails", T0)
    assert (done.refused, done.sdk_apps) == (False, 2)
    assert store.sdk_apps("emails") == []
    assert [name for name, _ in store.sdk_apps("billing")] == ["go-app"]
