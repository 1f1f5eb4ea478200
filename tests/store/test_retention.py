"""Retention: expired de-duplication state and old ended runs are deleted; nothing live is."""

from __future__ import annotations

from stepline.store import Store
from stepline.store.records import EventIngest, NewRun, PassCommit, RunEnd, StepRecord

from .builders import T0, cel_matches, commit, event, lease_run

DAY = 86400.0


def _ingest(store: Store, item: EventIngest, now: float) -> None:
    with store.transaction() as tx:
        tx.ingest([item], now, cel_matches)


def test_expired_dedup_ids_are_purged_and_fresh_ones_kept(store: Store) -> None:
    _ingest(store, EventIngest(event("e-old", sender_id="old")), T0)
    _ingest(store, EventIngest(event("e-new", sender_id="new")), T0 + DAY)
    with store.transaction() as tx:
        assert tx.purge_expired(T0 + DAY + 1) == 1
    # "new" is still remembered: a resend is a duplicate; "old" is not
    with store.transaction() as tx:
        [again] = tx.ingest([EventIngest(event("e-3", sender_id="new"))], T0 + DAY + 2, cel_matches)
        [fresh] = tx.ingest([EventIngest(event("e-4", sender_id="old"))], T0 + DAY + 2, cel_matches)
    assert again.duplicate
    assert not fresh.duplicate


def test_purge_before_deletes_old_ended_runs_only(store: Store) -> None:
    _ingest(store, EventIngest(event("e1"), (NewRun("old", "f", ("e1",)),)), T0)
    _ingest(store, EventIngest(event("e2"), (NewRun("live", "f", ("e2",)),)), T0 + 0.25)
    held = lease_run(store, "old", now=T0)  # "live" is due later: it stays queued
    step = StepRecord("old", "h", "s", "run", 0, "COMPLETED", b"1", attempts=1)
    commit(store, PassCommit("old", held.token, steps=[step], end=RunEnd("COMPLETED")), T0 + 1)
    with store.transaction() as tx:
        assert tx.purge_before(T0 + 0.5, 100) == 0  # ended after the cutoff
        assert tx.purge_before(T0 + 2, 100) == 1
    assert store.get_run("old") is None
    assert store.get_steps("old") == []
    assert store.get_history("old") == []
    assert store.get_events(["e1"]) == []
    live = store.get_run("live")
    assert live is not None
    assert live.status == "QUEUED"
    assert [e.internal_id for e in store.get_events(["e2"])] == ["e2"]
