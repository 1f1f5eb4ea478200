"""The ``commit_pass`` sequence, shared by every store backend (DESIGN.md §7.1, §7.5).

A pass's commit is applied in this order, inside the backend's verb: the lease token first (a
run whose queue item is gone was cancelled, and only the pass that held its lease then may keep
the result of the step it was executing); then the memo rows and the history; the new waits;
the invoked child runs (admitted as any run); the events the pass sent (the ingest order, which
may resume or cancel other runs); the parents woken by children the pass settled; and last the
run's next state: RUNNING, ended (its work dropped), or suspended until its due time or a wake.
The backend supplies the primitives (``_primitives.PassPrimitives``).
"""

from __future__ import annotations

from typing import Protocol

from stepline.errors import LeaseLostError
from stepline.store._admission_rules import start_child
from stepline.store._ingest_rules import IngestTx, apply_wake, ingest
from stepline.store._primitives import LeasePrimitives, PassPrimitives
from stepline.store.records import (
    TERMINAL_STATUSES,
    HistoryRecord,
    IngestResult,
    PassCommit,
    SpentRun,
    WaitMatcher,
    Wake,
    reentered_error,
)

_SETTLED = ("COMPLETED", "FAILED")


class PassTx(PassPrimitives, IngestTx, Protocol):
    """A backend transaction as the ``commit_pass`` sequence uses it."""


def commit_pass(
    tx: PassTx, commit: PassCommit, now: float, wait_matches: WaitMatcher
) -> list[IngestResult] | None:
    """The ``StoreTx.commit_pass`` verb (inside the caller's verb, which undoes everything when
    this raises ``LeaseLostError``)."""
    run_id = commit.run_id
    worker = tx.hold_lease(run_id, commit.lease_token)
    if worker is None:
        cancelled = tx.cancelled_lease(run_id)
        if cancelled is None or cancelled[0] != commit.lease_token:
            raise LeaseLostError(f"run {run_id}: lease lost")
        _keep_results_of_cancelled(tx, commit, cancelled[1])
        return None
    if commit.steps:
        tx.put_steps(commit.steps)
    if commit.history:
        tx.append_history(commit.history, worker)
    if commit.waits:
        tx.insert_waits(commit.waits)
    children = [start_child(tx, r, now) for r in commit.child_runs] if commit.child_runs else []
    results = ingest(tx, commit.events, now, wait_matches) if commit.events else []
    wakes = commit.wakes
    if children:  # started before the ingest; their results and skipped parents after its
        results.extend(result for result, _ in children)
        wakes = [*wakes, *(wake for _, wake in children if wake is not None)]
    for wake in wakes:
        apply_wake(tx, wake, now)
    started_at = commit.started_at if commit.started_at is not None else now
    end = commit.end
    if end is None:
        tx.mark_running(run_id, started_at)
    elif end.status in TERMINAL_STATUSES:
        tx.end_run(run_id, end, started_at, now)
        tx.drop_run_work(run_id)
    else:
        tx.suspend_run(run_id, end, started_at, now)
    return results


def _keep_results_of_cancelled(tx: PassTx, commit: PassCommit, worker: str | None) -> None:
    """A run cancelled while its pass executed a step keeps that step's result (and the history
    of its attempt), but nothing else of the pass is applied: only results of step bodies that
    were executing (not sends, sleeps, waits: their effects are not applied), and never over a
    result already settled (by a newer pass)."""
    settled = [s for s in commit.steps if s.kind == "run" and s.status in _SETTLED]
    if settled:
        tx.put_steps_if_unsettled(settled)
    names = {s.step_id for s in settled}
    history = [h for h in commit.history if h.step_id in names]
    if history:
        tx.append_history(history, worker)


def fail_spent(
    tx: LeasePrimitives,
    run_ids: list[str],
    now: float,
    max_passes: int,
    failed: list[SpentRun] | None = None,
) -> list[str]:
    """The re-entry cap, at lease time: the runs among ``run_ids`` (about to be leased) that were
    leased ``max_passes`` times without progress fail instead (FAILED with ``reentered_error``,
    their queue item, waits, matchers and RUNNING marks dropped, a RUN_FAILED history row; an
    invoking parent's step fails with the same error and the parent is woken), and are added to
    ``failed`` (for the caller to announce). Returns the others, in order."""
    spent = tx.spent_runs(run_ids, max_passes)
    if failed is not None:
        failed.extend(spent)
    for run in spent:
        error = reentered_error(run.run_id, max_passes)
        tx.fail_run(run.run_id, error, now)
        tx.drop_run_work(run.run_id)
        tx.append_history([HistoryRecord(run.run_id, now, "RUN_FAILED", data=error)], None)
        if run.parent_run_id is not None and run.parent_step_hash is not None:
            wake = Wake(run.parent_run_id, run.parent_step_hash, "FAILED", None, error)
            apply_wake(tx, wake, now)
    if not spent:
        return run_ids
    ended = {run.run_id for run in spent}
    return [run_id for run_id in run_ids if run_id not in ended]
