"""Showing the steps a pass is executing: their memo rows become RUNNING (start time, attempt).

The write goes through the group-commit writer and nothing waits for it; it is made only when a
round's steps are still executing ``SHOW_AFTER`` seconds after they started, so quick steps (the
common case) never write it and add no transaction. The passes of one loop share one timer
(``_Rounds``): a round notes its start and joins the loop's executing rounds, and leaves them as
it ends; the timer, while any round executes, looks at them when the oldest is due (at most
``LOOK_EVERY`` after the last look: a round is shown between ``SHOW_AFTER`` and that much later).
No timer is made per pass or per round (one a pass cost ~2.3 timers a run of three quick steps
in the one-process throughput workload, each kept its pass's executor alive until it fired).
The store applies it only while the pass holds its lease, never over a settled step nor over the
row of a later attempt; the step's own result replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from stepline.engine._ops import _Op
from stepline.engine.engine import Engine
from stepline.store.records import Lease, StepRecord

SHOW_AFTER = 0.05  # seconds a round executes before its steps are shown RUNNING
LOOK_EVERY = 0.01  # seconds at least between two looks of a loop's timer at its rounds

log = logging.getLogger("stepline.worker")


def executing_records(
    run_id: str, ops: Sequence[_Op], memo: dict[str, StepRecord], next_position: int, now: float
) -> list[StepRecord]:
    """The RUNNING rows of a round's ``run`` steps, at the positions their results will take
    (a step seen before keeps its own; new ones follow in registration order)."""
    records: list[StepRecord] = []
    for op in ops:
        existing = memo.get(op.hash)
        if existing is not None:
            position = existing.position
        else:
            position, next_position = next_position, next_position + 1
        records.append(
            StepRecord(
                run_id,
                op.hash,
                op.key,
                "run",
                position,
                "RUNNING",
                attempts=op.attempts,
                started_at=now,
            )
        )
    return records


class _Rounds:
    """The rounds executing in the passes of one loop, and the one timer that shows those still
    executing ``SHOW_AFTER`` after their start. The loop is held weakly and its timer's handle
    not at all (the handle holds the loop). Kept alive by the passes that add rounds (while they
    run) and by its timer (set while a round executes), never by what finds it (``_LOOPS``,
    ``_last``: weakly): its rounds hold their loop (a round's ops, their futures), and a round
    never ended (a loop closed in the middle of it, its pass never resumed) kept the loop."""

    __slots__ = ("__weakref__", "loop", "rounds", "timed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self.rounds: dict[ExecutingSteps, None] = {}  # by start: the oldest first
        self.timed = False  # the loop's timer is set (it calls ``_look``)

    def add(self, steps: ExecutingSteps) -> None:
        self.rounds[steps] = None
        if not self.timed:
            self.timed = True
            steps._loop.call_at(steps._since + SHOW_AFTER, self._look)

    def _look(self) -> None:
        self.timed = False
        loop = self.loop()
        if loop is None:  # (never: the loop calls this)
            return
        now = loop.time()
        rounds = self.rounds
        due: list[ExecutingSteps] = []
        oldest: float | None = None  # the start of the oldest round not due yet
        for steps in rounds:
            if steps._since + SHOW_AFTER <= now:
                due.append(steps)
            elif oldest is None or steps._since < oldest:
                oldest = steps._since
        for steps in due:
            del rounds[steps]
            steps._show()
        if oldest is not None:
            self.timed = True
            loop.call_at(max(oldest + SHOW_AFTER, now + LOOK_EVERY), self._look)


def _none() -> None:
    return None


# the rounds of each loop (the last one looked up kept apart: a worker's passes share one
# loop), both by weak references: neither keeps the rounds, nor so their loop, alive
_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref[_Rounds]] = (
    weakref.WeakKeyDictionary()
)
_last: Callable[[], _Rounds | None] = _none


def _rounds_of(loop: asyncio.AbstractEventLoop) -> _Rounds:
    """``loop``'s rounds: those of its passes alive (or its timer set), else new ones."""
    global _last
    last = _last()
    if last is not None and last.loop() is loop:
        return last
    found = _LOOPS.get(loop)
    rounds = None if found is None else found()
    if rounds is None:
        rounds = _Rounds(loop)
        _LOOPS[loop] = weakref.ref(rounds)
    _last = weakref.ref(rounds)
    return rounds


class ExecutingSteps:
    """Marks a pass's executing steps RUNNING once they have run ``SHOW_AFTER`` seconds."""

    def __init__(
        self,
        engine: Engine,
        lease: Lease,
        loop: asyncio.AbstractEventLoop,
        memo: dict[str, StepRecord],
    ) -> None:
        """``memo``: the pass's memo (``executing_records`` reads it when the rows are due)."""
        self._engine = engine
        self._lease = lease
        self._loop = loop
        self._memo = memo
        self._writes: set[asyncio.Future[Any]] = set()
        self._rounds = _rounds_of(loop)  # the loop's executing rounds, and its timer
        # the round executing: its run steps, the position of its first new one, its start
        self._executing: tuple[Sequence[_Op], int, float] | None = None
        self._since = 0.0  # when that round started (the loop's time)

    def show_later(self, ops: Sequence[_Op], next_position: int, now: float) -> None:
        """A round's ``run`` steps ``ops`` start at ``now``: their rows (``executing_records``,
        built then: quick rounds build nothing, not even a closure) are written if the round
        still executes ``SHOW_AFTER`` seconds from now; ``done`` ends it."""
        self._executing = (ops, next_position, now)
        self._since = self._loop.time()
        self._rounds.add(self)

    def done(self) -> None:
        """The round has ended: its rows are no longer written."""
        self._executing = None
        self._rounds.rounds.pop(self, None)

    def _show(self) -> None:
        """(The loop's timer) the round has executed ``SHOW_AFTER``: its rows are written."""
        executing = self._executing
        if executing is None:
            return
        self._executing = None  # written once
        ops, next_position, now = executing
        run_id = self._lease.run_id
        self._write(partial(executing_records, run_id, ops, self._memo, next_position, now))

    def _write(self, make_records: Callable[[], list[StepRecord]]) -> None:
        records = make_records()
        run_id, token = self._lease.run_id, self._lease.token
        # queued now, so ahead of the round's own commit (the writer keeps the order of its
        # jobs): a task queuing it at its first turn could come after the round ended and
        # committed a RETRYING result; the store also drops a mark older than the step's row
        try:
            future = self._engine.writer.submit(
                lambda tx: tx.mark_steps_running(run_id, token, records)
            )
        except RuntimeError:  # the writer is closed: the engine is stopping
            return
        self._writes.add(future)
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            # only a display: the step's own commit reports any real trouble
            log.debug(
                "run %s: could not show its executing steps: %s",
                self._lease.run_id,
                future.exception(),
            )
