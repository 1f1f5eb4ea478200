"""The writer's jobs as it holds them (``_Pending``, a loop commit's ``_Flight``), how their
outcomes are handed to the callers that wait for them, and the writer thread's loop
(``engine/writer.py``)."""

from __future__ import annotations

import asyncio
import logging
import queue
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NamedTuple

from stepline.errors import StoreError
from stepline.store.interface import StoreTx
from stepline.store.records import PassCommit

if TYPE_CHECKING:
    from stepline.engine.writer import BatchWriter

Job = Callable[[StoreTx], Any]
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception to raise)

log = logging.getLogger("stepline.writer")


class _Pending(NamedTuple):
    job: Job
    loop: asyncio.AbstractEventLoop | None  # the waiting caller's loop; None: a blocked thread
    future: asyncio.Future[Any] | Future[Any]
    then: Callable[[Any], object] | None = None  # called with the result (``submit``)
    steps: PassCommit | None = None  # the pass commit the job applies (``submit``)
    now: float | None = None  # the time the job gives that commit (``submit``)
    unordered: bool = False  # later jobs need not wait for it (``submit``)


def _steps_alone(pending: _Pending) -> bool:
    """Whether ``pending`` commits a pass's step results alone (its steps and their history,
    nothing else: no end, wait, event, child run or wake-up): what may be made beside the
    thread's ``unordered`` jobs (a poll decides nothing on such rows, and the lease fences
    both). Any other write (a pass's end, a pause or resume, a cancel) may change what a poll
    in flight decides, with the time it took before: it waits for it, as it always did."""
    commit = pending.steps
    return (
        commit is not None
        and commit.end is None
        and not (commit.waits or commit.events or commit.child_runs or commit.wakes)
    )


def _own_copy(error: StoreError) -> StoreError:
    """One exception per waiting caller (each raise adds to its traceback)."""
    copy = type(error)(error.reason, error.database)
    copy.__cause__ = error.__cause__ or error
    return copy


def _settle(future: asyncio.Future[Any] | Future[Any], outcome: Outcome) -> None:
    if future.done():  # the caller gave up waiting (cancelled)
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    elif isinstance(value, StopIteration | StopAsyncIteration):
        # a future refuses them (TypeError): wrapped as asyncio wraps a coroutine's
        error = RuntimeError(f"a write raised {type(value).__name__}")
        error.__cause__ = value
        future.set_exception(error)
    else:
        future.set_exception(value)


def _settle_all(settled: list[tuple[_Pending, Outcome]]) -> None:
    """Runs in the callers' loop."""
    for pending, outcome in settled:
        ok, value = outcome
        if ok:
            _settle_done(pending, value)
            continue
        try:
            _settle(pending.future, outcome)
        except Exception:  # cannot happen; one caller's future never strands the others'
            log.exception("a write's result could not be delivered")


def _settle_done(pending: _Pending, result: Any) -> None:
    """``_settle_all`` of a job that succeeded with ``result`` (a loop commit's usual: one)."""
    future = pending.future
    if future.done():  # the caller gave up waiting (cancelled)
        return
    then = pending.then
    if then is not None:
        try:  # first: what it wakes runs ahead of the caller at the next loop turn
            then(result)
        except Exception:  # its own caller's bug: the other callers still get theirs
            log.exception("a write's continuation failed")
    try:
        if not future.done():
            future.set_result(result)
    except Exception:  # cannot happen; one caller's future never strands the others'
        log.exception("a write's result could not be delivered")


class _Flight:
    """A loop commit: its batch and its loop."""

    __slots__ = ("batch", "loop")

    def __init__(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        self.batch = batch
        self.loop = loop


def _nothing_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` has no callback ready to run after the running one, in this turn or
    the next (asyncio's loops keep them in ``_ready``; the next turn's I/O and timer callbacks
    come after a kick scheduled now: they could not join its batch either). False for a loop
    that does not say (uvloop): its kick is scheduled as any."""
    ready = getattr(loop, "_ready", None)
    return ready is not None and not ready


def _serve(wakes: queue.SimpleQueue[BatchWriter | None], writer: weakref.ref[BatchWriter]) -> None:
    """The writer thread: a drain per wake-up, until told to stop (``close``, or the writer
    was dropped: ``writer``'s callback; the reference is held here for it)."""
    while (draining := wakes.get()) is not None:
        try:
            draining._drain()
        except Exception:  # cannot happen (_apply catches everything); keep serving
            log.exception("the writer thread failed draining its queue")
        del draining


def _close_at_exit(writer: weakref.ref[BatchWriter]) -> None:
    """At interpreter exit (the writer thread is a daemon): finish the queued jobs first."""
    alive = writer()
    if alive is not None:
        alive.close()
