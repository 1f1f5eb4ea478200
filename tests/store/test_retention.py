"""Retention: expired de-duplication state and old ended runs are deleted; nothing live is."""

from __future__ import annotations

from stepline.store import Store
from stepline.store.records import EventIngest, NewRun, PassCommit, RunEnd, StepRecord

from .builders import T0, cel_matches, commit, event, lease, lease_run

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
        assert tx.purge_before(T0 + 0.5, 100).runs == 0  # ended after the cutoff
        assert tx.purge_before(T0 + 2, 100).runs == 1
    assert store.get_run("old") is None
    assert store.get_steps("old") == []
    assert store.get_history("old") == []
    assert store.get_events(["e1"]) == []
    live = store.get_run("live")
    assert live is not None
    assert live.status == "QUEUED"
    assert [e.internal_id for e in store.get_events(["e2"])] == ["e2"]


def _ended_runs(store: Store, count: int, now: float = T0) -> list[str]:
    """``count`` runs that completed at ``now + 1``, each with its own triggering event."""
    run_ids = [f"old-{i:02}" for i in range(count)]
    for run_id in run_ids:
        _ingest(
            store, EventIngest(event(f"e-{run_id}"), (NewRun(run_id, "f", (f"e-{run_id}",)),)), now
        )
    held = {lease.run_id: lease for lease in lease(store, now=now, limit=count)}
    for run_id in run_ids:
        step = StepRecord(run_id, "h", "s", "run", 0, "COMPLETED", b"1", attempts=1)
        end = PassCommit(run_id, held[run_id].token, steps=[step], end=RunEnd("COMPLETED"))
        commit(store, end, now + 1)
    return run_ids


def test_purges_go_in_small_batches_until_nothing_is_left(store: Store) -> None:
    run_ids = _ended_runs(store, 25)
    for i in range(12):  # events that started no run, remembered by their sender ids
        _ingest(store, EventIngest(event(f"lone-{i}", sender_id=f"sender-{i}")), T0)
    batches = []
    while True:
        with store.transaction() as tx:
            purged = tx.purge_before(T0 + 2, 10)
        batches.append(purged)
        assert max(purged.runs, purged.events, purged.skips) <= 10
        if not purged.full(10):
            break
    assert sum(p.runs for p in batches) == 25
    assert sum(p.events for p in batches) == 25 + 12
    assert len(batches) == 4  # 10 + 10 + 10 (the last runs, then events) + the rest
    assert all(store.get_run(r) is None for r in run_ids)
    assert store.get_events([f"lone-{i}" for i in range(12)]) == []
    expired = []
    while True:
        with store.transaction() as tx:
            expired.append(tx.purge_expired(T0 + DAY + 1, limit=5))
        if expired[-1] < 5:
            break
    assert sum(expired) == 12
    assert max(expired) == 5
