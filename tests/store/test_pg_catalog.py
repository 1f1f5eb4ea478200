"""Two workers of one app registering at once on PostgreSQL: the app's catalog ends as the union
of both (each keeps the functions the other live worker serves), whichever commits last.

Without the per-app lock taken before the catalog is read, the later transaction would not see
the earlier one's uncommitted worker and would replace the app's rows with its own functions
only (an older worker starting mid-rollout unhooking a newer one's function): here v2's rows
are in the catalog already (an earlier v2 worker, expired), so v2's new registration changes
nothing and v1's, not seeing v2's worker, would delete "receipt"."""

from __future__ import annotations

import threading
import time

from tests.store.builders import T0
from tests.store.test_inbox import CATALOG, EMAILS, V1, V1_ROWS, register, sent

import pgtest
from stepline.store.postgres import PostgresStore
from stepline.store.records import WorkerRecord

from .builders import ingest


def test_concurrent_registrations_of_one_app_keep_both_workers_functions(
    pg_store: PostgresStore,
) -> None:
    register(pg_store, "w-v2-gone", EMAILS, CATALOG[:2], T0 - 100)  # expired at T0 - 40
    synced, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def newer() -> None:  # v2 (receipt and welcome): synced, not committed until released
        try:
            with pg_store.transaction() as tx:
                worker = WorkerRecord("w-v2", "emails", EMAILS.function_ids, T0, T0, T0 + 60)
                tx.register_worker(worker)
                tx.sync_triggers("emails", CATALOG[:2], T0, EMAILS)
                synced.set()
                assert release.wait(30)
        except BaseException as exc:
            failures.append(exc)
            synced.set()

    def older() -> None:  # v1 (welcome only), registering while v2's transaction is open
        try:
            register(pg_store, "w-v1", V1, V1_ROWS, T0 + 1)
        except BaseException as exc:
            failures.append(exc)

    first = threading.Thread(target=newer)
    first.start()
    assert synced.wait(30)
    second = threading.Thread(target=older)
    second.start()
    deadline = time.monotonic() + 30
    while (
        pgtest.lock_waiters(pg_store.url, "advisory") == 0
    ):  # v1's registration waits for v2's to end
        assert time.monotonic() < deadline and second.is_alive(), failures
        time.sleep(0.01)  # real time: a poll of the server's lock waiters, under the deadline
    release.set()
    first.join(30)
    second.join(30)
    assert failures == []
    results = ingest(pg_store, sent("e1", "order/placed"), sent("e2", "user/signup"), now=T0 + 2)
    assert [r.delivered for r in results] == [(("emails", "receipt"),), (("emails", "welcome"),)]
