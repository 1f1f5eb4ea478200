"""A failed attempt of a run, when the engine itself failed handling its pass (issue 6 item 1).

The rule lives here once: the attempt is retried after the function's backoff while it has
``retries`` left (a FUNCTION_FAILED history row with ``retry_at``, the run RETRYING), then the
run fails with the error. ``PassExecutor._fail_attempt`` applies it to a loaded run;
``fail_unloaded_run`` to a run whose pass could not even load it (undecodable stored data, an
unknown step record), and ``fail_refused_pass`` to a run whose pass's commit the store refused
for a value it cannot hold (``StoreRefusedValue``): they need only the run's row and the lease.
"""

from __future__ import annotations

import logging
from typing import Any

from stepline.engine._ops import error_dict
from stepline.engine._recording import parent_wake, retry_rows
from stepline.engine.engine import Engine
from stepline.errors import LeaseLostError, PassCancelledError, StoreError, StoreRefusedValue
from stepline.store.interface import StoreTx
from stepline.store.records import HistoryRecord, Lease, PassCommit, RunEnd, RunRecord

log = logging.getLogger("stepline.worker")


def retry_commit(
    engine: Engine, run: RunRecord, token: str, retries: int, error: BaseException
) -> PassCommit | None:
    """The commit that makes ``run`` retry after its failed attempt, or None when its attempts
    are spent (the run must fail)."""
    attempt, now = run.attempt, engine.clock.now()
    if attempt >= retries:
        return None
    retry_at = now + engine.backoff.delay(attempt)
    commit = PassCommit(run.run_id, token)
    history, commit.end = retry_rows(run, error_dict(error), retry_at, now, engine=True)
    commit.history.append(history)
    return commit


def failure_commit(
    engine: Engine,
    run: RunRecord,
    token: str,
    error: BaseException,
    events: list[dict[str, Any]] | None,
) -> PassCommit:
    """The commit that fails ``run`` for good with ``error``: its end, a RUN_FAILED history row,
    its parent's wake-up and, given the run's trigger ``events``, its system events."""
    now = engine.clock.now()
    details = error_dict(error)
    commit = PassCommit(run.run_id, token)
    commit.end = RunEnd(status="FAILED", error=details)
    commit.history.append(HistoryRecord(run.run_id, now, "RUN_FAILED", data=details))
    if events is not None:
        failure = {"name": details["name"], "message": details["message"]}
        commit.events.extend(
            engine.ending_events(run.function_id, run.run_id, events, "FAILED", now, error=failure)
        )
    wake = parent_wake(run, "FAILED", None, details)
    if wake is not None:
        commit.wakes.append(wake)
    return commit


async def fail_unloaded_run(engine: Engine, lease: Lease, error: Exception) -> None:
    """The pass of ``lease`` could not load its run: count a failed attempt of the run (or fail
    it once its attempts are spent) from its row alone. Raises ``LeaseLostError`` and
    ``StoreUnavailable`` as a pass does; any other error here leaves the run to be leased
    again, and ``lease_due``'s count of passes without progress bounds that."""
    await _fail_from_row(engine, lease, error, "could not be loaded")


async def fail_refused_pass(engine: Engine, lease: Lease, error: StoreRefusedValue) -> None:
    """The store refused a commit of the pass of ``lease`` for a value it cannot hold (nothing
    of that commit was written; the lease still holds): a failed attempt of the run, or its
    failure once its attempts are spent, as ``fail_unloaded_run``. The value is the pass's
    (a step's output, an event it sent): the next attempt replays to it and may be refused
    again, until the attempts are spent; then the run fails with the error."""
    await _fail_from_row(engine, lease, error, "the store refused a value of its pass")


async def _fail_from_row(engine: Engine, lease: Lease, error: Exception, what: str) -> None:
    run = await engine.read(engine.store.get_run, lease.run_id)
    if run is None:
        return
    fn = engine.functions.get(run.function_id)
    if fn is None:  # lease_due leases only registered functions: never reached
        return
    log.warning("run %s: %s (attempt %d): %r", lease.run_id, what, run.attempt, error)
    commit = retry_commit(engine, run, lease.token, fn.retries, error)
    now = engine.clock.now()

    def job(tx: StoreTx) -> None:
        if commit is not None:
            apply(tx, commit)
            return
        # its trigger events may be what cannot be decoded, or the store may refuse a system
        # event or a run one starts (the driver's error, raised in the job): then no events
        try:
            with tx.savepoint():
                events = [e.payload() for e in tx.run_events(run.run_id)]
                apply(tx, failure_commit(engine, run, lease.token, error, events))
        except (LeaseLostError, PassCancelledError, StoreError):  # StoreUnavailable too
            raise
        except Exception:
            apply(tx, failure_commit(engine, run, lease.token, error, None))

    def apply(tx: StoreTx, commit: PassCommit) -> None:
        with tx.savepoint():
            results = tx.commit_pass(commit, now, engine.wait_matches)
            if results is not None:
                engine.announce_cancellations(tx, results, now)

    await engine.writer.write(job)
    engine.changes.publish_runs([run.run_id])
