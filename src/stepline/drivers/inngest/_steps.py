"""The steps of one pass of an SDK run, as the HTTP driver records them: the memo, the
records each op of a reply writes into a commit (a completed, failed or retrying step, a
sleep's timer, a wait, an invoke's child run, a model call's reply), the native run limits
(steps, output and state sizes, as ``engine/_rounds.py`` applies them), and what holds the run
(its pending steps' kinds and deadlines, the steps of race-mode groups). No I/O but one
history read (``StepBook.hold``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepline.drivers.inngest._ai import AI_ERROR
from stepline.drivers.inngest._errors import UnsupportedOpError
from stepline.drivers.inngest._opcodes import (
    AIGatewayOp,
    ErrorInfo,
    InvokeFunctionOp,
    Op,
    SleepOp,
    StepErrorOp,
    StepFailedOp,
    StepRunOp,
    WaitForEventOp,
)
from stepline.drivers.inngest._responses import SdkReply
from stepline.drivers.inngest._state import SETTLED
from stepline.engine._recording import invoke_rows, wait_rows
from stepline.engine.engine import Engine
from stepline.errors import EventError, LimitExceededError, SerializationError
from stepline.sdk.function import FunctionDef
from stepline.serde import dumps
from stepline.store.records import (
    HistoryRecord,
    PassCommit,
    RunState,
    StepRecord,
)


class StepBook:
    """The steps of one pass of ``state``'s run: ``memo`` (hash -> record, updated as ops are
    recorded), ``deadlines`` and ``kinds`` (what the run waits on when the pass suspends:
    ``sleep``, ``wait``, ``invoke``, ``retry``), ``held`` (the steps pending or backing off as
    the pass started), ``planned`` (the steps a pass cut by the request limit planned but did
    not ask for) and ``race`` (the steps of race-mode groups)."""

    def __init__(self, engine: Engine, fn: FunctionDef, state: RunState) -> None:
        self.engine = engine
        self.fn = fn
        self.state = state
        self.run = state.run
        self.memo: dict[str, StepRecord] = state.steps
        self.next_position = max((s.position for s in self.memo.values()), default=-1) + 1
        self.deadlines: list[float] = []
        self.kinds: set[str] = set()
        self.state_bytes = sum(len(s.output_json or b"") for s in self.memo.values())
        self.held: set[str] = set()  # steps pending or backing off as the pass started
        self.race: set[str] = set()  # steps of race-mode groups (kept in their history)
        self.planned: list[str] = []  # steps a cut pass planned but did not ask for
        self.unsent_discovery = False  # a cut pass left a discovery unsent

    def now(self) -> float:
        return self.engine.clock.now()

    def any_backing_off(self) -> bool:
        """True while a step of the run waits out its retry backoff (``backing_off``)."""
        now = self.now()
        return any(_backs_off(s, now) for s in self.memo.values())

    def backing_off(self, step_id: str) -> bool:
        """True while ``step_id`` is a step waiting out its retry backoff: it is not asked for
        before its retry time (the engine wakes the run then)."""
        step = self.memo.get(step_id)
        return step is not None and _backs_off(step, self.now())

    async def hold(self) -> None:
        """Note the steps that hold the run as the pass starts: pending (a sleep, a wait, an
        invoke) or waiting out a retry backoff, with their kinds and deadlines (as a reply
        reporting them again would note them), and the steps a pass cut by the request limit
        planned but did not ask for (``planned``: ``planned_step``). When there are any, which
        steps are of race-mode groups, as Inngest keeps a group's mode on its queue items and
        pauses from one request to the next: a row of a step's history says so
        (``parallel_mode: race`` with the step's ``hash``; a row written before the hash was
        kept names the step only), a cut pass's PASS_YIELDED row lists them (``race``) and
        whether a discovery was left unsent (``discover``)."""
        for step in sorted(self.memo.values(), key=lambda s: s.position):
            if planned_step(step):
                self.planned.append(step.hash)
                continue
            if step.status == "PENDING" and step.kind in ("sleep", "wait", "invoke"):
                self.kinds.add(step.kind)
            elif self.backing_off(step.hash):
                self.kinds.add("retry")
            else:
                continue
            self.held.add(step.hash)
            if step.due_at is not None:
                self.deadlines.append(step.due_at)
        if not self.held and not self.planned:
            return
        history = await self.engine.read(self.engine.store.get_history, self.run.run_id)
        names: set[str | None] = set()
        for row in history:
            data = row.data or {}
            if row.kind == "PASS_YIELDED" and "race" in data:
                self.race.update(data["race"])
                self.unsent_discovery = bool(data.get("discover"))
            elif data.get("parallel_mode") == "race":
                if "hash" in data:
                    self.race.add(data["hash"])
                else:
                    names.add(row.step_id)
        self.race |= {s.hash for s in self.memo.values() if s.step_id in names}

    def mode(self, op_id: str) -> dict[str, str]:
        """The history data that keeps a step's race mode for later passes (``hold``)."""
        return {"parallel_mode": "race", "hash": op_id} if op_id in self.race else {}

    def yielded(
        self, commit: PassCommit, unsent: Mapping[str, str], discover: bool, requests: int
    ) -> None:
        """Record in ``commit`` how a pass cut by the request limit after ``requests``
        requests ends: the steps it planned but did not ask for (``unsent``: id -> name) kept
        as PENDING steps that have not started (queued, as the dashboard and the GraphQL API
        show them, not running), and a PASS_YIELDED row naming which of them race and whether
        a discovery was left unsent (``hold`` reads them back): the next pass asks for them at
        once, as Go's executor keeps each planned step queued."""
        for op_id, name in unsent.items():
            if op_id not in self.memo:
                commit.steps.append(self.record(op_id, name, "run", "PENDING"))
        planned = [s.hash for s in self.memo.values() if planned_step(s)]
        data = {
            "requests": requests,
            "race": [h for h in planned if h in self.race],
            "discover": discover,
        }
        commit.history.append(HistoryRecord(self.run.run_id, self.now(), "PASS_YIELDED", data=data))

    # -- limits (as a native run's: engine/executor.py, engine/_rounds.py) -----------------------
    def check_new_steps(self, steps: Mapping[str, str]) -> None:
        """Raises ``LimitExceededError("steps")`` when the steps ``steps`` (id -> name) not
        met before would take the run over the steps it may have (``Limits.max_steps``)."""
        limit = self.engine.limits.max_steps
        new = [name for op_id, name in steps.items() if op_id not in self.memo]
        if new and len(self.memo) + len(new) > limit:
            raise LimitExceededError(
                "steps",
                f"run {self.run.run_id} asked for step {new[-1]!r} beyond the limit of "
                f"{limit} steps per run",
            )

    def checked_output(self, name: str, data: Any) -> bytes:
        """``data`` encoded as a step's output. Raises ``LimitExceededError`` for an output over
        ``Limits.max_step_output_bytes`` (``"step_output"``) or one that would take the run's
        state over ``Limits.max_run_state_bytes`` (``"run_state"``)."""
        output = dumps(data, f"output of step {name!r}")
        limits = self.engine.limits
        if len(output) > limits.max_step_output_bytes:
            raise LimitExceededError(
                "step_output",
                f"output of step {name!r} is {len(output)} bytes, over the limit of "
                f"{limits.max_step_output_bytes} bytes",
            )
        if self.state_bytes + len(output) > limits.max_run_state_bytes:
            raise LimitExceededError(
                "run_state",
                f"run {self.run.run_id} state would be {self.state_bytes + len(output)} bytes, "
                f"over the limit of {limits.max_run_state_bytes}",
            )
        self.state_bytes += len(output)
        return output

    # -- ops --------------------------------------------------------------------------------------
    def record(self, op_id: str, name: str, kind: str, status: str, **values: Any) -> StepRecord:
        existing = self.memo.get(op_id)
        position = existing.position if existing is not None else self.next_position
        if existing is None:
            self.next_position += 1
        record = StepRecord(self.run.run_id, op_id, name, kind, position, status, **values)
        self.memo[op_id] = record
        return record

    def settle(self, op: Op, reply: SdkReply | None, commit: PassCommit) -> bool:
        """Record one op in ``commit``; true when the run progressed (a step settled)."""
        now = self.now()
        existing = self.memo.get(op.id)
        if existing is not None and existing.status in SETTLED:
            return False  # reported again by a request sent before it settled: keep it
        if existing is not None and existing.status == "PENDING" and not planned_step(existing):
            # met again while it still waits (a parallel branch woke the run): keep it
            if existing.due_at is not None:
                self.deadlines.append(existing.due_at)
            self.kinds.add(existing.kind)
            return False
        attempts = existing.attempts if existing is not None else 0
        if existing is None:
            self.check_new_steps({op.id: str(getattr(op, "display_name", op.id))})
        if isinstance(op, StepRunOp):
            kind = "send" if op.sent_event else "run"
            try:
                self.completed(op.id, op.display_name, kind, op.data, attempts, commit)
            except SerializationError as exc:
                # an output no store can keep (a lone surrogate: a JS string cut in the middle
                # of a pair): the step fails for good, as an in-process step's output that
                # cannot be stored does (``_step_attempt``). Raised out of the pass, it failed
                # the run's attempt and the next request ran the step again (review, 18th stop)
                info = ErrorInfo(type(exc).__name__, str(exc))
                self.fail_step(op.id, op.display_name, info, attempts, commit, kind)
            return True
        if isinstance(op, StepFailedOp):
            self.fail_step(op.id, op.display_name, op.error, attempts, commit)
            return True
        if isinstance(op, StepErrorOp):
            no_retry = reply is not None and reply.no_retry
            retry_at = None
            if reply is not None and reply.retry_at is not None:
                retry_at = reply.retry_at.timestamp()
            return self.attempt_failed(
                op.id, op.display_name, "run", op.error, attempts, commit, no_retry, retry_at
            )
        if isinstance(op, SleepOp):
            until = op.until.timestamp()
            if until <= now:
                commit.steps.append(
                    self.record(
                        op.id,
                        op.display_name,
                        "sleep",
                        "COMPLETED",
                        output_json=b"null",
                        started_at=now,
                        ended_at=now,
                    )
                )
                return True
            commit.steps.append(
                self.record(
                    op.id, op.display_name, "sleep", "PENDING", due_at=until, started_at=now
                )
            )
            if op.race:
                self.race.add(op.id)
            commit.history.append(
                HistoryRecord(
                    self.run.run_id,
                    now,
                    "SLEEP",
                    op.display_name,
                    data={"until": until, **self.mode(op.id)},
                )
            )
            self.deadlines.append(until)
            self.kinds.add("sleep")
            return False
        if isinstance(op, WaitForEventOp):
            self.wait(op, commit, now)
            return False
        if isinstance(op, InvokeFunctionOp):
            return self.invoke(op, commit, now)
        raise UnsupportedOpError(
            f"the SDK asked for {getattr(op, 'op', type(op).__name__)!r} (step {op.id}), "
            "which Stepline does not drive"
        )

    def attempt_failed(
        self,
        op_id: str,
        name: str,
        kind: str,
        info: ErrorInfo,
        attempts: int,
        commit: PassCommit,
        no_retry: bool = False,
        retry_at: float | None = None,
    ) -> bool:
        """An attempt of a step failed: it retries after the backoff (or at ``retry_at``) while
        the function's retries last, else it fails for good; true in that case (it settled)."""
        if no_retry or attempts >= self.fn.retries:
            self.fail_step(op_id, name, info, attempts, commit, kind)
            return True
        now = self.now()
        due = retry_at if retry_at is not None else now + self.engine.backoff.delay(attempts)
        error = error_of(info)
        commit.steps.append(
            self.record(
                op_id, name, kind, "RETRYING", error=error, attempts=attempts + 1, due_at=due
            )
        )
        commit.history.append(
            self.failed_row(name, attempts, now, error=error, retry_at=due, **self.mode(op_id))
        )
        self.deadlines.append(due)
        self.kinds.add("retry")
        return False

    def settle_ai(
        self, op: AIGatewayOp, output: Any, failure: str | None, commit: PassCommit
    ) -> bool:
        """Record the model call of a ``step.ai.infer`` (``output`` its reply, or ``failure``
        why it failed); true when the step settled."""
        existing = self.memo.get(op.id)
        if existing is not None and existing.status in SETTLED:
            return False
        if existing is None:
            self.check_new_steps({op.id: op.display_name})
        attempts = existing.attempts if existing is not None else 0
        if failure is not None:
            info = ErrorInfo(AI_ERROR, f"Error making AI request: {failure}")
            return self.attempt_failed(op.id, op.display_name, "ai", info, attempts, commit)
        self.completed(op.id, op.display_name, "ai", output, attempts, commit)
        return True

    def completed(
        self, op_id: str, name: str, kind: str, data: Any, attempts: int, commit: PassCommit
    ) -> None:
        """Record step ``op_id`` completed with ``data`` after ``attempts`` failed attempts.
        Raises ``LimitExceededError`` as ``checked_output``."""
        output = self.checked_output(name, data)
        now = self.now()
        commit.steps.append(
            self.record(
                op_id,
                name,
                kind,
                "COMPLETED",
                output_json=output,
                attempts=attempts + 1,
                started_at=now,
                ended_at=now,
            )
        )
        commit.history.append(HistoryRecord(self.run.run_id, now, "STEP_COMPLETED", name, attempts))

    def fail_step(
        self,
        op_id: str,
        name: str,
        info: ErrorInfo,
        attempts: int,
        commit: PassCommit,
        kind: str = "run",
    ) -> None:
        error = error_of(info)
        now = self.now()
        commit.steps.append(
            self.record(
                op_id, name, kind, "FAILED", error=error, attempts=attempts + 1, ended_at=now
            )
        )
        commit.history.append(self.failed_row(name, attempts, now, error=error, final=True))

    def failed_row(self, name: str, attempts: int, now: float, **data: Any) -> HistoryRecord:
        """The STEP_FAILED history row of step ``name``'s failed attempt ``attempts``."""
        return HistoryRecord(self.run.run_id, now, "STEP_FAILED", name, attempts, 0.0, data)

    def wait(self, op: WaitForEventOp, commit: PassCommit, now: float) -> None:
        if op.race:
            self.race.add(op.id)
        due = now + op.timeout.total_seconds()
        trigger = self.state.events[0].payload() if self.state.events else {}
        wait, history = wait_rows(
            self.run.run_id,
            op.id,
            op.display_name,
            op.event,
            op.if_,
            due,
            trigger,
            now,
            history=self.mode(op.id),
        )
        commit.steps.append(
            self.record(op.id, op.display_name, "wait", "PENDING", due_at=due, started_at=now)
        )
        commit.waits.append(wait)
        commit.history.append(history)
        self.deadlines.append(due)
        self.kinds.add("wait")

    def invoke(self, op: InvokeFunctionOp, commit: PassCommit, now: float) -> bool:
        if op.race:
            self.race.add(op.id)
        fn = self.engine.invoke_target(op.function_id)
        if fn is None:
            info = ErrorInfo("FunctionNotFound", f"no function {op.function_id!r}")
            self.fail_step(op.id, op.display_name, info, 0, commit)
            return True
        due = None if op.timeout is None else now + op.timeout.total_seconds()
        try:  # data that cannot be an event fails the step, as step.invoke's does in process
            dumps(op.data, f"data of step.invoke {op.display_name!r}")
            event, child, history = invoke_rows(
                self.engine,
                fn,
                self.run,
                op.id,
                op.display_name,
                op.function_id,
                dict(op.data),
                now,
                due_at=due,
                v=op.v,
                source_app_id=self.fn.served_by[0] if self.fn.served_by else None,
                history=self.mode(op.id),
            )
        except (SerializationError, EventError) as exc:
            self.fail_step(
                op.id, op.display_name, ErrorInfo(type(exc).__name__, str(exc)), 0, commit
            )
            return True
        commit.events.append(event)
        commit.child_runs.append(child)
        commit.steps.append(
            self.record(op.id, op.display_name, "invoke", "PENDING", started_at=now, due_at=due)
        )
        commit.history.append(history)
        if due is not None:
            self.deadlines.append(due)
        self.kinds.add("invoke")
        return False


def error_of(info: ErrorInfo) -> dict[str, Any]:
    error: dict[str, Any] = {"name": info.name, "message": info.message}
    if info.stack is not None:
        error["stack"] = info.stack
    return error


def _backs_off(step: StepRecord, now: float) -> bool:
    return step.status == "RETRYING" and step.due_at is not None and step.due_at > now


def planned_step(step: StepRecord) -> bool:
    """True for a step a pass cut by the request limit planned and did not ask for: PENDING,
    of kind ``run``, not started (RUNNING in a database written before Stepline kept them as
    PENDING: an SDK run's step is never RUNNING otherwise)."""
    if step.status == "RUNNING":
        return True
    return step.status == "PENDING" and step.kind == "run" and step.started_at is None
