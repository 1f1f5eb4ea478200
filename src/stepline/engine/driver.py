"""How a function is driven: the seam between what happens to a run and the code it runs.

What happens to a run belongs to the engine and the store, the same for every function: leases
with fencing, the memo, waits, timers, flow control, cancellation, retries, histories and system
events. How its code is driven belongs to a ``Driver``: it takes one leased run (its loaded
``RunState``) for one pass and drives the function until the pass ends, recording what the code
did as ``PassCommit``s (step results, pending sleeps, waits and invokes, sent events, the run's
end), each committed with ``commit_pass`` under the lease's fencing token.

* ``PythonDriver`` (``engine/executor.py``) runs a Python function in this process, its
  coroutine or its thread (``PassExecutor``): the driver of every ``App.function``.
* An Inngest HTTP driver calls an SDK app's serve URL instead, building each request from the
  memo (``stepline.drivers.inngest.request_for``) and turning each reply's ops into the same
  records (``stepline.drivers.inngest``).

A function names its driver (``FunctionDef.driver``, ``"python"`` by default); another driver is
added to the engine (``Engine.add_driver``) before the functions it drives are registered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from stepline.engine._handover import handed_over
from stepline.engine.changes import pass_change
from stepline.errors import PassCancelledError
from stepline.store.interface import StoreTx
from stepline.store.records import IngestResult, Lease, PassCommit, RunState

if TYPE_CHECKING:
    from stepline.engine.engine import Engine
    from stepline.sdk.function import FunctionDef

PYTHON = "python"


class Driver(Protocol):
    """Drives the passes of the functions that name it."""

    async def run_pass(
        self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef
    ) -> None:
        """Drive one pass of the leased run ``state`` of ``fn`` to its end: committed, every
        effect of the pass, with the run suspended (its next wake-up), finished, failed or
        retrying. Raises ``PassCancelledError`` when the run was cancelled meanwhile,
        ``LeaseLostError`` when another worker took it over, ``StoreError`` when the store
        failed; any other failure of the pass the driver records itself, as a failed attempt
        of the run, so that no run is re-entered without bound."""
        ...


async def commit_pass(
    engine: Engine,
    commit: PassCommit,
    now: float,
    then: Callable[[], object] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> None:
    """Commit one transaction of a pass through the engine's group-commit writer (fenced by
    ``commit.lease_token``) and publish its change; returns once it is durable. Raises
    ``PassCancelledError`` when the run was cancelled during the pass (nothing is written),
    ``LeaseLostError`` when the lease was lost. ``then()`` is called in the loop as soon as
    the commit is known durable (``BatchWriter.submit``), only if it was, before this
    returns and before its change is published. ``meanwhile()`` is called once the commit
    is submitted (in flight, when the writer commits it on the loop at once): work that
    need not come before it, done while the loop waits for its reply. ``loop``: the
    running loop, if the caller holds it."""
    # submit_pass's work, awaited at once: no coroutine of its own, no closure for ``then``
    job, ingested = _pass_job(engine, commit, now)
    try:
        written = engine.writer.submit(
            job,
            None if then is None else partial(_if_applied, then),
            alone=True,
            steps=commit,
            now=now,
            loop=loop,
        )
    finally:  # the commit is in flight now (or queued): the loop is idle until its reply
        if meanwhile is not None:
            meanwhile()
    _published(engine, commit, ingested, await written)


def _if_applied(then: Callable[[], object], applied: bool) -> None:
    """A pass commit's continuation: ``then()`` once its job applied it (not cancelled)."""
    if applied:
        then()


def _pass_job(
    engine: Engine, commit: PassCommit, now: float
) -> tuple[Callable[[StoreTx], bool], list[IngestResult]]:
    """The writer's job of ``commit`` (True: applied; False: the run was cancelled) and the
    list it fills with the ingest's results."""
    ingested: list[IngestResult] = []

    def job(tx: StoreTx) -> bool:
        with tx.savepoint():
            results = tx.commit_pass(commit, now, engine.wait_matches)
            if results is None:
                return False
            if results:  # a step's commit ingests nothing
                engine.announce_cancellations(tx, results, now)
            ingested[:] = results  # a job applied again (writer.py) replaces what it found
            return True

    return job, ingested


def _published(
    engine: Engine, commit: PassCommit, ingested: list[IngestResult], committed: bool
) -> None:
    """After ``commit``'s job: its results handed over, its change published; raises
    ``PassCancelledError`` when the run was cancelled (nothing was written)."""
    if ingested:
        handed_over(ingested)
    if engine.changes.watched:
        engine.changes.publish(pass_change(commit, ingested))
    if not committed:
        raise PassCancelledError(f"run {commit.run_id} was cancelled during its pass")


def submit_pass(
    engine: Engine,
    commit: PassCommit,
    now: float,
    then: Callable[[], object] | None = None,
    *,
    alone: bool = False,
) -> Coroutine[Any, Any, None]:
    """``commit_pass`` with its job queued to the writer now (behind the jobs queued before
    it: the writer keeps their order), whatever becomes of the caller: the coroutine returned
    waits for it to be durable, publishes its change and raises as ``commit_pass``.
    ``alone``: the caller submits nothing else before it awaits it (``BatchWriter.submit``)."""
    job, ingested = _pass_job(engine, commit, now)
    # a lone step commit may be committed without its job (writer: LoneStepCommits)
    written = engine.writer.submit(
        job,
        None if then is None else partial(_if_applied, then),
        alone=alone,
        steps=commit,
        now=now,
    )

    async def published() -> None:
        _published(engine, commit, ingested, await written)

    return published()
