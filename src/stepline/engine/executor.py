"""One pass over one run: replay the memo, execute new steps, commit, suspend or finish.

The function runs as a task (async) or in a thread (sync). Each step call registers an ``_Op``
and awaits its future. When the function's branches have settled (``_settle``; the tasks it starts
are tracked in ``_branches``), the pass takes the
operations registered since the last round in registration order (deterministic on replay),
executes the ``run`` steps concurrently, persists everything in one commit and only then resolves
the futures, so the function continues in the same pass. Sleeps, waits and invokes are persisted
as pending steps; once nothing else can progress the pass commits the run's next wake-up and
raises ``Suspended`` (a BaseException user code does not catch) into the blocked calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from stepline.engine._attempts import retry_commit
from stepline.engine._branches import Branches
from stepline.engine._endings import PassEndings
from stepline.engine._executing import ExecutingSteps
from stepline.engine._ops import StepGate, Suspended, _Abort, _Op, _Outcome, step_hash
from stepline.engine._rounds import RoundRecorder
from stepline.engine._step_attempt import attempt_step
from stepline.engine._system_events import not_started_reason
from stepline.engine.driver import commit_pass
from stepline.engine.engine import Engine
from stepline.errors import (
    LeaseLostError,
    LimitExceededError,
    PassCancelledError,
    StepError,
    StoreError,
)
from stepline.sdk.context import Context, ReplayAwareLogger, SyncContext
from stepline.sdk.event import Event
from stepline.sdk.function import FunctionDef
from stepline.sdk.step import Step, SyncStep
from stepline.serde import loads
from stepline.store.records import (
    EventRecord,
    HistoryRecord,
    Lease,
    PassCommit,
    RunEnd,
    RunState,
    StepRecord,
)

STOP_GRACE = 1.0  # real seconds an ended pass lets its async function unwind before cancelling it
SUSPEND_GRACE = 10.0  # real seconds a pass that could suspend waits for its function's busy tasks
ROUND_TURNS = 16  # loop turns a round of new steps waits at most for tasks that stay ready to run
INVOKE_TIMEOUT = "InngestInvokeTimeoutError"


class PassExecutor(RoundRecorder, PassEndings):
    """Drives one leased run for one pass. Implements ``StepDriver`` for the function's steps."""

    def __init__(self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef) -> None:
        self.engine = engine
        self.lease = lease
        self.state = state
        self.fn = fn
        self.run = state.run
        self.loop = asyncio.get_running_loop()
        self.memo: dict[str, StepRecord] = state.steps
        self._counts: dict[str, int] = {}  # how many times each step id was asked for
        self._new_ops: list[_Op] = []
        self.gate = StepGate(self.loop)  # every future of a step call; released when it ends
        self._blocked: list[asyncio.Future[Any]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Future[Any] | None = None  # the function's task (its main branch)
        self._branched = False  # a step was called from another task than the function's own
        # the function's tasks (tracked from its start), and its sync thread's step calls
        self.branches = Branches(self.loop, self.gate.holds, self._notify, sync=not fn.is_async)
        self._consumed: set[str] = set()
        memo = self.memo
        self._memo_done = {h for h, s in memo.items() if s.status in ("COMPLETED", "FAILED")}
        self._memo_at_load = set(memo)
        self._deadlines: list[float] = []
        self._suspend_kinds: set[str] = set()
        self._late_steps: list[StepRecord] = []
        self._late_history: list[HistoryRecord] = []
        self._abort: LimitExceededError | None = None
        self._determined = False  # _check_determinism has nothing more to find this pass
        # (a first pass has no memo: none of its walks, on the way from its lease to its step)
        self._next_position = 1 + max(s.position for s in memo.values()) if memo else 0
        self._new_ops_seen = False
        self._buffer: PassCommit | None = None  # step results awaiting their commit
        self._buffered = 0
        self._buffer_since: float | None = None
        checkpointing = fn.options.checkpointing
        # rounds of one run step take _lone_round's path: nothing is ever buffered
        self._lone_rounds = checkpointing is None
        self._max_runtime = None if checkpointing is None else checkpointing.max_runtime_seconds
        self._pass_started_at = self.now()
        # the bytes ``dumps`` would make of each event's data: its stored encoding (an event's
        # data was checked at the edge: not walked again by ``dumps``'s check, a pass start)
        state_bytes = 0
        for event in state.events:
            state_bytes += len(event.encoded_data())
        for step in memo.values():
            state_bytes += len(step.output_json or b"")
        self._state_bytes = state_bytes
        started = self.run.started_at if self.run.started_at is not None else self.now()
        self._finish_deadline = (
            started + self.run.finish_timeout if self.run.finish_timeout is not None else None
        )
        self.executing = ExecutingSteps(engine, lease, self.loop, self.memo)
        self.ctx = self._make_context()

    # -- StepDriver -------------------------------------------------------------------------------
    def now(self) -> float:
        return self.engine.clock.now()

    @property
    def replaying(self) -> bool:
        """True while the function re-executes code it already ran: memo rows (of any status)
        remain unreached and it has not asked for a new step yet."""
        # the flag first: a log call after the first new step makes no set difference
        return not self._new_ops_seen and bool(self._memo_at_load - self._consumed)

    def step_run(
        self, step_id: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        # the request's coroutine itself, awaited by ``Step.run``: no coroutine of its own
        return self._request("run", step_id, fn=fn, args=args, kwargs=kwargs)

    async def step_sleep_until(self, step_id: str, due_at: float) -> None:
        await self._request("sleep", step_id, due_at=due_at)

    async def step_wait(
        self, step_id: str, event: str, expression: str | None, timeout: float
    ) -> Event | None:
        result = await self._request(
            "wait", step_id, event_name=event, expression=expression, due_at=self.now() + timeout
        )
        return None if result is None else Event.from_payload(result)

    async def step_invoke(
        self,
        step_id: str,
        function_id: str,
        data: dict[str, Any],
        user: dict[str, Any],
        timeout: float | None = None,
        v: str | None = None,
    ) -> Any:
        due_at = None if timeout is None else self.now() + timeout
        return await self._request(
            "invoke", step_id, function_id=function_id, data=data, user=user, due_at=due_at, v=v
        )

    async def step_send(self, step_id: str, events: list[Event]) -> list[str]:
        result: list[str] = await self._request("send", step_id, events=events)
        return result

    # -- registering operations -------------------------------------------------------------------
    async def _request(self, kind: str, step_id: str, **spec: Any) -> Any:
        self.gate.check()
        # (its loop given: asyncio.current_task() would look it up, a getpid call a step)
        if not self._branched and asyncio.current_task(self.loop) is not self._task:
            self._branched = not self.branches.from_own_thread()
        counts = self._counts
        n = counts.get(step_id, 0)
        counts[step_id] = n + 1
        key = step_id if n == 0 else f"{step_id}:{n}"
        digest = step_hash(key)
        memo = self.memo.get(digest)
        if memo is not None:
            self._consumed.add(digest)
            if memo.status == "COMPLETED":
                return loads(memo.output_json)
            if memo.status == "FAILED":
                error = memo.error or {}
                raise StepError(key, error.get("name", "Error"), error.get("message", ""))
            if memo.status == "PENDING":
                if memo.kind == "sleep" and memo.due_at is not None and memo.due_at <= self.now():
                    memo.status, memo.ended_at = "COMPLETED", self.now()
                    memo.output_json = b"null"
                    self._late_steps.append(memo)
                    return None
                if memo.kind == "invoke" and memo.due_at is not None and memo.due_at <= self.now():
                    raise self._invoke_timed_out(memo)
                if memo.due_at is not None:
                    self._deadlines.append(memo.due_at)
                self._suspend_kinds.add(memo.kind)
                return await self._block()
            if memo.status == "RETRYING" and memo.due_at is not None and memo.due_at > self.now():
                # woken early (a parallel wait matched, say): the retry keeps its backoff
                self._deadlines.append(memo.due_at)
                self._suspend_kinds.add("retry")
                return await self._block()
        if len(self.memo) + len(self._new_ops) >= self.engine.limits.max_steps:
            self._abort = LimitExceededError(
                "steps",
                f"run {self.run.run_id} asked for step {key!r} beyond the limit of "
                f"{self.engine.limits.max_steps} steps per run",
            )
            self._notify()
            raise _Abort()
        self._new_ops_seen = True
        op = _Op(kind, step_id, key, digest, self._step_future(), **spec)
        if memo is not None and memo.status in ("RETRYING", "RUNNING"):
            op.attempts = memo.attempts  # RUNNING: an attempt a crashed pass was executing
        self._new_ops.append(op)
        self._notify()
        return await op.future

    def _invoke_timed_out(self, memo: StepRecord) -> StepError:
        """An invoke whose child has not finished by its ``timeout`` fails (as in Inngest's
        executor/service.go); the child keeps running and its late result is ignored."""
        message = "Timed out waiting for invoked function to complete"
        error = {"name": INVOKE_TIMEOUT, "message": message}
        memo.status, memo.error, memo.ended_at, memo.attempts = "FAILED", error, self.now(), 1
        self._late_steps.append(memo)
        data = {"error": error, "final": True}
        history = HistoryRecord(
            self.run.run_id, self.now(), "STEP_FAILED", memo.step_id, 0, 0, data
        )
        self._late_history.append(history)
        return StepError(memo.step_id, INVOKE_TIMEOUT, message)

    def _notify(self) -> None:
        """Wake ``_settle``: an operation was registered, the run must abort, or the function
        ended."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _block(self) -> Any:
        if not self._branched and asyncio.current_task(self.loop) is not self._task:
            self._branched = not self.branches.from_own_thread()
        future = self._step_future()
        self._blocked.append(future)
        self._notify()
        return await future

    def _step_future(self) -> asyncio.Future[Any]:
        future = self.gate.future()
        if not self.fn.is_async:
            self.branches.step_called(future)
        return future

    # -- the pass ---------------------------------------------------------------------------------
    def _make_context(self) -> Context | SyncContext:
        events = [event_of(e) for e in self.state.events]
        step = Step(self)
        logger = ReplayAwareLogger(
            self.engine.logger,
            {"run_id": self.run.run_id, "function_id": self.fn.id},
            lambda: self.replaying,
        )
        attempt = self.run.attempt
        for memo in self.memo.values():
            if memo.status == "RETRYING" and memo.attempts > attempt:
                attempt = memo.attempts
        fields: dict[str, Any] = {
            "event": events[0] if events else Event(name="", data={}),
            "events": events,
            "run_id": self.run.run_id,
            "function_id": self.fn.id,
            "logger": logger,
            "attempt": attempt,
        }
        if self.fn.is_async:
            return Context(step=step, **fields)
        return SyncContext(step=SyncStep(step, self.loop), **fields)

    async def execute(self) -> None:
        """Run the pass to its end (suspended, finished, failed or cancelled by a timeout).

        Raises ``PassCancelledError`` when the run was cancelled meanwhile, ``LeaseLostError``
        when another worker took it over, and ``StoreError`` when the store failed
        (``StoreUnavailable``: for a while, the worker backs off). Any other error the engine
        raises handling the pass is a failed attempt of the run (``_fail_attempt``), so no run
        is re-entered without bound."""
        try:
            await self._execute()
        except (LeaseLostError, PassCancelledError, StoreError):  # StoreUnavailable too
            raise  # not the run's failure: another pass owns it, or the store will recover
        except Exception as exc:  # before the function started (timeouts, expired waits)
            await self._fail_attempt(exc)
        finally:
            del self.ctx

    async def _execute(self) -> None:
        reason = self._timed_out(at_start=True)
        if reason is not None:
            await self._cancel(reason)
            return
        if any(w.expires_at is not None and w.expires_at <= self.now() for w in self.state.waits):
            expired = await self.engine.writer.write(
                lambda tx: tx.expire_waits(self.run.run_id, self.lease.token, self.now())
            )
            for digest in expired:
                step = self.memo.get(digest)
                if step is not None:
                    step.status, step.output_json = "COMPLETED", b"null"
                    self._memo_done.add(digest)
        task = self._start_function()
        try:
            if self.fn.is_async:
                # one turn of the loop: the function's first step, scheduled just now, runs
                # first, so its first step call is found registered (the round starts in that
                # same turn) instead of waking this task a turn later (``_wait_for_change``)
                await asyncio.sleep(0)
            await self._drive(task)
        except (LeaseLostError, PassCancelledError, StoreError):  # StoreUnavailable too
            raise  # not the run's failure: another pass owns it, or the store will recover
        except Exception as exc:  # the engine's own error, not the function's: see _fail_attempt
            self.gate.close()
            await self._fail_attempt(exc)
        finally:
            # whatever ended the pass (a lost lease, a cancellation, an error), the function's
            # step calls are released and it is waited out: no future, no thread is left behind
            await self._stop_function(task)

    def _start_function(self) -> asyncio.Future[Any]:
        handler = self.fn.handler
        task: asyncio.Future[Any]
        context = self.branches.context()  # the tasks made in it are the function's (_settle)
        tracked = False  # a tracked task's end is a change of its branches: it notifies
        if self.fn.is_async:
            made = self.branches.start(handler(self.ctx), context)
            task = self._task = made
            tracked = self.branches.tracks(made)
        else:  # each step call of its thread is a task of its own, made in that context
            call = partial(context.run, handler, self.ctx)
            task = self.loop.run_in_executor(self.engine.function_threads, call)
        if not tracked:
            task.add_done_callback(lambda _: self._notify())  # its end wakes _settle too
        return task

    async def _drive(self, task: asyncio.Future[Any]) -> None:
        while True:
            if not self._new_ops or self._branched:  # else _settle would return at once
                await self._settle(task)
            if self._abort is not None:
                await self._fail_run(self._abort, task)
                return
            # no finish deadline: nothing to time out (the call saved on every round)
            reason = None if self._finish_deadline is None else self._timed_out()
            if reason is not None:
                if self._buffer is not None:  # keep the results Checkpointing still holds
                    await self._commit(self._new_commit())
                await self._cancel(reason)
                await self._stop_function(task)
                return
            if self._new_ops:
                if self._max_runtime is not None and self._past_max_runtime():
                    await self._yield_pass(task)
                    return
                ops, self._new_ops = self._new_ops, []
                if len(ops) == 1 and ops[0].kind == "run" and self._lone_rounds:
                    await self._lone_round(ops[0])
                else:
                    await self._run_round(ops)
                continue
            if task.done():
                await self._finish(task)
                return
            await self._suspend(task)
            return

    async def _settle(self, task: asyncio.Future[Any]) -> None:
        """Wait until the function is done, or its branches have settled for a round of new
        steps or for the pass to suspend (``docs/design.md``, "Branches"). A round starts at
        once while every step came from the function's own task or thread (blocked on the step
        it called last), else once no task of the function is ready to run (``ROUND_TURNS``
        loop turns at most). The pass suspends once every task waits for the engine
        (``Branches.may_suspend``: a task still working may call a step yet, which would wait
        for the next pass), or after ``SUSPEND_GRACE`` (the tasks still working are then
        released or cancelled by ``_stop_function``: ``Branches.stop``)."""
        turns = 0
        grace_until: float | None = None
        while True:
            if task.done() or self._abort is not None:
                return
            timeout: float | None = None
            if self._new_ops:
                if not self._branched or turns >= ROUND_TURNS or self.branches.quiet():
                    return
                turns += 1
            elif self._blocked:
                if self.branches.may_suspend():
                    return
                if grace_until is None:
                    grace_until = self.loop.time() + SUSPEND_GRACE
                timeout = grace_until - self.loop.time()
                if timeout <= 0:
                    self.engine.logger.warning(
                        "run %s: suspending while tasks of the function still run after %gs: "
                        "%s (they keep running, no longer tracked by the run, but for those a "
                        "gather or TaskGroup of the ended function joins: cancelled; a step "
                        "they call later is refused)",
                        self.run.run_id,
                        SUSPEND_GRACE,
                        ", ".join(self.branches.working()) or "the function's thread",
                    )
                    return
            await self._wait_for_change(task, timeout)

    async def _wait_for_change(self, task: asyncio.Future[Any], timeout: float | None) -> None:
        """Wait for ``_notify`` (a new operation, an abort, the function's end, a task of the
        function yielding, starting or ending), at most ``timeout`` seconds."""
        waiter = self._waiter = self.loop.create_future()
        try:
            if self._flush_due_at() is None and timeout is None:
                await waiter
                return
            waitables: set[asyncio.Future[Any]] = {task, waiter}
            timer: asyncio.TimerHandle | None = None
            if timeout is not None:
                expired: asyncio.Future[None] = self.loop.create_future()
                timer = self.loop.call_later(timeout, expired.set_result, None)
                waitables.add(expired)
            try:
                await self._wait_flushing(waitables)
            finally:
                if timer is not None:
                    timer.cancel()
        finally:
            self._waiter = None

    # -- a round of new operations ----------------------------------------------------------------
    async def _attempt(self, op: _Op) -> _Outcome:
        """Execute one attempt of a ``run`` step; never raises."""
        return await attempt_step(self.engine, self.loop, self.fn.retries, op)

    # -- ends of a pass ---------------------------------------------------------------------------
    def _new_commit(self, take_buffer: bool = True) -> PassCommit:
        """The next commit of this pass; it carries the results buffered by Checkpointing
        (unless ``take_buffer`` is false: ``_take_buffer`` later)."""
        commit = PassCommit(self.run.run_id, self.lease.token)
        if take_buffer:
            self._take_buffer(commit)
        if self._late_steps:
            commit.steps.extend(self._late_steps)
            self._late_steps = []
        if self._late_history:
            commit.history.extend(self._late_history)
            self._late_history = []
        return commit

    def _take_buffer(self, commit: PassCommit) -> None:
        """Move the results buffered by Checkpointing to the front of ``commit``."""
        if self._buffer is not None:
            commit.steps[:0] = self._buffer.steps
            commit.history[:0] = self._buffer.history
            self._buffer = None

    def _flush_due_at(self) -> float | None:
        """When buffered results must be committed (``Checkpointing.max_interval``)."""
        checkpointing = self.fn.options.checkpointing
        interval = checkpointing.max_interval_seconds if checkpointing is not None else None
        if self._buffer is None or self._buffer_since is None or interval is None:
            return None
        return self._buffer_since + interval

    async def _wait_flushing(self, waitables: set[asyncio.Future[Any]]) -> None:
        """Wait until one of ``waitables`` is done. Meanwhile, results buffered by
        Checkpointing are committed once ``max_interval`` has passed (on the engine's clock),
        however long the function works outside steps or in a step."""
        while True:
            due = self._flush_due_at()
            if due is None:
                await asyncio.wait(waitables, return_when=asyncio.FIRST_COMPLETED)
                return
            woken = asyncio.Event()

            def wake(_: asyncio.Future[Any], woken: asyncio.Event = woken) -> None:
                woken.set()

            for waitable in waitables:
                waitable.add_done_callback(wake)
            try:
                await self.engine.clock.sleep_until(due, woken)
            finally:
                for waitable in waitables:
                    waitable.remove_done_callback(wake)
            if any(w.done() for w in waitables):
                return
            if self.now() >= due:
                commit = self._new_commit()
                self._buffered, self._buffer_since = 0, None
                await self._commit(commit)

    async def _commit(self, commit: PassCommit, then: Callable[[], object] | None = None) -> None:
        await commit_pass(self.engine, commit, self.now(), then)

    async def _fail_attempt(self, error: Exception) -> None:
        """The engine itself failed handling this pass (not the function: its errors are
        handled where they are raised). That counts as a failed attempt of the run: it is
        retried after the backoff, and fails with ``error`` once its attempts are spent. The
        commit is a fresh one: nothing of the failed pass (the part that may have caused the
        error) is in it. If even that commit fails (other than by a lost lease), the run is
        failed with nothing but its end state, its history and its parent's wake-up."""
        self.engine.logger.warning(
            "run %s: the engine failed during a pass (attempt %d): %r",
            self.run.run_id,
            self.run.attempt,
            error,
        )
        commit = retry_commit(self.engine, self.run, self.lease.token, self.fn.retries, error)
        if commit is not None:
            await self._commit(commit)
            return
        try:
            await self._fail_run(error, None, PassCommit(self.run.run_id, self.lease.token))
        except (LeaseLostError, PassCancelledError, StoreError):  # StoreUnavailable too
            raise
        except Exception:
            await self._fail_run(
                error, None, PassCommit(self.run.run_id, self.lease.token), announce=False
            )

    def _past_max_runtime(self) -> bool:
        limit = self._max_runtime  # Checkpointing.max_runtime
        return limit is not None and self.now() - self._pass_started_at >= limit

    async def _yield_pass(self, task: asyncio.Future[Any]) -> None:
        """``Checkpointing.max_runtime`` reached: commit, go back to the queue (due now), and
        let the next pass replay to here."""
        self.gate.refuse()
        commit = self._new_commit()
        now = self.now()
        elapsed = now - self._pass_started_at
        commit.history.append(
            HistoryRecord(self.run.run_id, now, "PASS_YIELDED", data={"after": elapsed})
        )
        commit.end = RunEnd(status="RUNNING", due_at=now)
        await self._commit(commit)
        await self._stop_function(task)

    def _timed_out(self, at_start: bool = False) -> str | None:
        """Why the run must be cancelled now (a start timeout, checked when a pass begins, or a
        finish timeout), if it must."""
        run, deadline = self.run, self._finish_deadline
        start_timeout = run.start_timeout
        late = start_timeout is not None and run.started_at is None
        if at_start and late and self.now() > run.created_at + (start_timeout or 0.0):
            return not_started_reason(start_timeout or 0.0)
        if deadline is not None and self.now() > deadline:
            return f"not finished within {run.finish_timeout:g}s (timeouts.finish)"
        return None

    async def _cancel(self, reason: str) -> None:
        self.gate.refuse()
        await self.engine.writer.write(self.engine.cancel_job(self.run.run_id, reason, self.now()))
        self.engine.changes.publish_runs([self.run.run_id])

    def _release_ops(self, ops: list[_Op], error: BaseException) -> None:
        for op in ops:
            if not op.future.done():
                op.future.set_exception(error)

    async def _stop_function(
        self, task: asyncio.Future[Any], signal: type[BaseException] = Suspended
    ) -> None:
        """End the pass's hold on the function: refuse its later step calls, release the pending
        ones with ``signal``, and wait until it has unwound. An async function still running
        after ``STOP_GRACE`` (awaiting something that is not a step) is cancelled; a sync
        function's thread is waited for (no step call of it can block any more). The tasks it
        started that still run are released or cancelled (``Branches.stop``)."""
        self.gate.close(signal)
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=STOP_GRACE)
                if not done and self.fn.is_async:
                    task.cancel()
            if not task.cancelled():
                task.exception()  # retrieved: it is the signal we raised (or the function's end)
        finally:
            self.branches.stop()


def event_of(record: EventRecord) -> Event:
    """The ``Event`` a function sees of a stored one: ``Event.from_payload(record.payload())``,
    without the payload's dict between them (a pass's start)."""
    return Event(
        record.name,
        record.data or {},
        record.internal_id if record.id is None else record.id,
        int(record.ts * 1000),
        record.user or {},
        record.v,
    )


class PythonDriver:
    """The in-process driver (``engine/driver.py``): a pass runs the function's Python code
    here, its coroutine or its thread, in a ``PassExecutor``."""

    def run_pass(
        self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef
    ) -> Coroutine[Any, Any, None]:
        # the pass's own coroutine: no frame of this one resumed with it at every await
        return PassExecutor(engine, lease, state, fn).execute()


IN_PROCESS = PythonDriver()

__all__ = ["IN_PROCESS", "PassExecutor", "PythonDriver", "Suspended", "step_hash"]
