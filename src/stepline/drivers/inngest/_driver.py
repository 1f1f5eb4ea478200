"""The HTTP driver (``"inngest"``): a pass of an SDK app's function is a series of execution
requests to the app's serve URL, each reply's ops committed as the records a native pass writes.

What happens to the run stays the engine's (leases, memo, waits, timers, flow control, retry
backoff); this driver only turns replies into records, through the shared ``commit_pass``:

* ``StepRun``/``Step``: a completed step (its ``data`` the output); ``StepFailed``: a step
  failed for good; ``StepError``: the step retries after the engine's backoff (``Retry-After``
  when the reply has one), attempts counted per step, or fails once they are spent or the reply
  says ``X-Inngest-No-Retry``;
* ``Sleep``: a pending step and a timer; ``WaitForEvent``: a pending step and a wait (its
  ``if`` prepared against the trigger event); ``InvokeFunction``: a child run of the named
  function (any driver) whose end wakes the step;
* ``StepPlanned``: a targeted request for that step, every planned step's at once (parallel
  steps), then one discovery request once none is in flight and nothing is pending (wait
  mode), or one after each completed step of a race-mode group (``_Requests``); a group's
  race mode is kept in its steps' history for later passes;
* a step in its retry backoff is not asked for before its retry time: a pass whose run was
  woken meanwhile (a parallel wait's event) sends no request while steps of its wait-mode
  group still hold the run (a race-mode group's: a discovery that plans steps only); a pass
  at the retry time sends a targeted request for the step (as Inngest retries the failed
  request);
* HTTP 200: the run completed with the body; an error status: a failed attempt of the run
  (``X-Inngest-No-Retry``: final; ``Retry-After``: its earliest retry);
* ``AIGateway`` (``step.ai.infer``): Stepline makes the model call (``_ai``) and memoizes its
  JSON reply; a failed call is a failed attempt of the step;
* an op Stepline does not drive (``Gateway``, ``WaitForSignal``, ...) fails the run naming it;
* a time-out, a connection error, a reply no SDK sends or a bad signature: a failed attempt.

``step.sendEvent`` is reported as a ``StepRun`` (its events went to the event API from the app).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from stepline._ids import new_id
from stepline.drivers.inngest._ai import AI_ERROR, AI_TIMEOUT, ai_output, ai_request
from stepline.drivers.inngest._errors import ProtocolError
from stepline.drivers.inngest._execution import (
    DISCOVERY,
    execution_url,
    fit,
    request_headers,
)
from stepline.drivers.inngest._opcodes import (
    AIGatewayOp,
    ErrorInfo,
    InvokeFunctionOp,
    Op,
    RunCompleteOp,
    SleepOp,
    StepErrorOp,
    StepFailedOp,
    StepPlannedOp,
    StepRunOp,
    WaitForEventOp,
    read_op,
)
from stepline.drivers.inngest._responses import (
    FunctionErrored,
    RunCompleted,
    SdkReply,
    parse_reply,
)
from stepline.drivers.inngest._signing import SigningKey, SigningKeys, verify_response
from stepline.drivers.inngest._state import SETTLED, request_for
from stepline.engine._attempts import failure_commit, retry_commit
from stepline.engine._system_events import (
    FUNCTION_INVOKED,
    ending_data,
    ending_names,
    invoked_data,
    sdk_failure,
)
from stepline.engine.admission import admission_for
from stepline.engine.driver import commit_pass
from stepline.engine.engine import Engine
from stepline.errors import LeaseLostError, LimitExceededError, PassCancelledError, StoreError
from stepline.expressions import prepare_match
from stepline.sdk.event import Event
from stepline.sdk.function import FunctionDef
from stepline.serde import dumps
from stepline.store.records import (
    EventIngest,
    HistoryRecord,
    Lease,
    NewRun,
    PassCommit,
    RunEnd,
    RunState,
    StepRecord,
    WaitRecord,
    Wake,
)

MAX_REQUESTS_PER_PASS = 200  # then the run goes back to the queue (due now)
REQUEST_TIMEOUT = 60.0  # seconds one execution request may take


class UnsupportedOpError(Exception):
    """An SDK asked for an op Stepline does not drive."""


class SdkRequestError(Exception):
    """An execution request failed before a reply an SDK sends (time-out, connection, status)."""


@dataclass
class InngestDriver:
    """Drives the functions of synced SDK apps over HTTP. ``urls``: function id -> the URL its
    runs are driven through (set when an app syncs); ``signing_key``: sign every request and
    verify every reply with ``verify_keys`` (production), unsigned without (dev mode)."""

    signing_key: SigningKey | None = None
    verify_keys: SigningKeys | None = None
    timeout: float = REQUEST_TIMEOUT
    checkpointing: bool = True
    urls: dict[str, str] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = field(default=None, repr=False)
    _passes: dict[str, tuple[asyncio.AbstractEventLoop, _HttpPass]] = field(
        default_factory=dict, repr=False
    )

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run_pass(
        self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef
    ) -> None:
        http_pass = _HttpPass(self, engine, lease, state, fn)
        self._passes[lease.run_id] = (asyncio.get_running_loop(), http_pass)
        try:
            await http_pass.execute()
        finally:
            if self._passes.get(lease.run_id, (None, None))[1] is http_pass:
                del self._passes[lease.run_id]

    async def checkpoint(self, run_id: str, body: bytes) -> int:
        """An SDK's ``POST /v1/checkpoint/{run_id}/async``: the steps it ran in the request
        now in flight, committed as that request's pass would commit them. Returns the HTTP
        status to answer: 200 once they are durable; 409 when that pass is over or its lease
        lost (the SDK stops: a newer request drives the run); 503 when the pass runs in
        another process (the SDK retries, then falls back to plain replies). Raises
        ``ProtocolError`` for a body that is not a checkpoint."""
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"checkpoint body is not JSON: {exc}") from exc
        if not isinstance(value, dict) or not isinstance(value.get("steps"), list):
            raise ProtocolError("checkpoint body without a steps list")
        found = self._passes.get(run_id)
        if found is None:
            return 503
        loop, http_pass = found
        if str(value.get("qi_id") or "") != http_pass.lease.token:
            return 409
        work = http_pass.checkpoint(value["steps"])
        if loop is asyncio.get_running_loop():
            return await work
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """One execution request. Raises ``SdkRequestError`` on a time-out or a connection
        error, ``SignatureError`` for a reply not signed by our keys (production)."""
        try:
            response = await self.client().post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise SdkRequestError(f"request to {url} failed: {exc!r}") from exc
        raw = response.content
        reply_headers = dict(response.headers)
        if self.verify_keys is not None and response.status_code != 201:
            # a streamed (201) reply's signature covers a placeholder body (see _responses)
            verify_response(
                raw, response.headers.get("X-Inngest-Signature"), self.verify_keys, time.time()
            )
        return response.status_code, reply_headers, raw


class _HttpPass:
    """One pass of one run: requests until the run suspends, ends or fails an attempt."""

    def __init__(
        self, driver: InngestDriver, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef
    ) -> None:
        self.driver = driver
        self.engine = engine
        self.lease = lease
        self.state = state
        self.fn = fn
        self.run = state.run
        self.memo: dict[str, StepRecord] = state.steps
        self.next_position = max((s.position for s in self.memo.values()), default=-1) + 1
        self.deadlines: list[float] = []
        self.kinds: set[str] = set()
        self.version = -1
        self.state_bytes = sum(len(s.output_json or b"") for s in self.memo.values())
        self.checkpoints = 0  # steps commits an SDK checkpointed during this pass
        self.held: set[str] = set()  # steps pending or backing off as the pass started
        self.race: set[str] = set()  # steps of race-mode groups (kept in their history)
        self.aborted: LimitExceededError | None = None  # a checkpoint breached a limit

    def now(self) -> float:
        return self.engine.clock.now()

    def commit(self) -> PassCommit:
        return PassCommit(self.run.run_id, self.lease.token)

    async def save(self, commit: PassCommit) -> None:
        await commit_pass(self.engine, commit, self.now())

    async def execute(self) -> None:
        try:
            await self._execute()
        except (LeaseLostError, PassCancelledError, StoreError):
            raise
        except (UnsupportedOpError, LimitExceededError) as exc:  # asking again: the same again
            await self.fail_attempt(exc, final=True)
        except Exception as exc:  # the app unreachable, a bad reply, a bad signature ...
            await self.fail_attempt(exc)

    async def fail_attempt(self, error: Exception, *, final: bool = False) -> None:
        self.engine.logger.warning(
            "run %s: SDK request failed (attempt %d): %r", self.run.run_id, self.run.attempt, error
        )
        commit = None
        if not final:
            commit = retry_commit(self.engine, self.run, self.lease.token, self.fn.retries, error)
        if commit is None:
            events = [e.payload() for e in self.state.events]
            commit = failure_commit(self.engine, self.run, self.lease.token, error, events)
        await self.save(commit)

    # -- the pass ---------------------------------------------------------------------------------
    async def _execute(self) -> None:
        reason = self._timed_out()
        if reason is not None:
            await self.engine.writer.write(
                self.engine.cancel_job(self.run.run_id, reason, self.now())
            )
            self.engine.changes.publish_runs([self.run.run_id])
            return
        first = self.commit()
        await self._settle_due(first)
        if first.steps:
            await self.save(first)
        await self._hold()
        url = self.driver.urls.get(self.fn.id)
        if url is None:
            raise SdkRequestError(f"function {self.fn.id!r} has no synced app URL")
        await _Requests(self, url).drive()

    def backing_off(self, step_id: str) -> bool:
        """True while ``step_id`` is a step waiting out its retry backoff: it is not asked for
        before its retry time (the engine wakes the run then)."""
        step = self.memo.get(step_id)
        return (
            step is not None
            and step.status == "RETRYING"
            and step.due_at is not None
            and step.due_at > self.now()
        )

    async def _hold(self) -> None:
        """Note the steps that hold the run as the pass starts: pending (a sleep, a wait, an
        invoke) or waiting out a retry backoff, with their kinds and deadlines (as a reply
        reporting them again would note them); when there are any, which steps are of
        race-mode groups (their history says ``parallel_mode: race``, ``_mode``), as Inngest
        keeps a group's mode on its queue items and pauses from one request to the next."""
        for step in self.memo.values():
            if step.status == "PENDING" and step.kind in ("sleep", "wait", "invoke"):
                self.kinds.add(step.kind)
            elif self.backing_off(step.hash):
                self.kinds.add("retry")
            else:
                continue
            self.held.add(step.hash)
            if step.due_at is not None:
                self.deadlines.append(step.due_at)
        if self.held:
            history = await self.engine.read(self.engine.store.get_history, self.run.run_id)
            names = {h.step_id for h in history if (h.data or {}).get("parallel_mode") == "race"}
            self.race |= {s.hash for s in self.memo.values() if s.step_id in names}

    def _mode(self, op_id: str) -> dict[str, str]:
        """The history data that keeps a step's race mode for later passes (``_hold``)."""
        return {"parallel_mode": "race"} if op_id in self.race else {}

    def first_requests(self) -> tuple[list[str], bool]:
        """The requests a pass starts with, and whether its discovery plans steps only: the
        ``step.run`` steps whose retry time came, targeted (as Inngest retries the request
        that failed), and a discovery when another kind of step's retry time came (a model
        call: the SDK reports its op again, an SDK runs no target without a body). Else one
        discovery, except while other steps of a wait-mode group still hold the run (Go's
        executor enqueues no discovery for a resumed wait while steps are pending, unless
        the group races): the one discovery follows once the last of them settles. A
        discovery plans only (``disable_immediate_execution``) while a step waits out its
        backoff, so that the SDK does not run that step early."""
        now = self.now()
        due = [
            s
            for s in sorted(self.memo.values(), key=lambda s: s.position)
            if s.status == "RETRYING" and (s.due_at is None or s.due_at <= now)
        ]
        plan_only = any(self.backing_off(h) for h in self.memo)
        if due:
            targeted = [s.hash for s in due if s.kind == "run"]
            return targeted + ([DISCOVERY] if len(targeted) < len(due) else []), plan_only
        if self.held and not self.held & self.race:
            return [], plan_only
        return [DISCOVERY], plan_only

    async def checkpoint(self, raw_steps: list[Any]) -> int:
        """Commit the steps an SDK checkpointed during this pass's request (``StepRun`` ops,
        as a reply would report them); the HTTP status to answer (see
        ``InngestDriver.checkpoint``)."""
        now = datetime.fromtimestamp(self.now(), UTC)
        ops = [read_op(raw, now) for raw in raw_steps]
        commit = self.commit()
        try:
            for op in ops:
                if isinstance(op, RunCompleteOp):
                    continue  # the request's reply reports the run's end
                if not isinstance(op, StepRunOp):
                    raise ProtocolError(f"checkpointed op {type(op).__name__} is not a step run")
                self._settle(op, None, commit)
        except LimitExceededError as exc:  # the SDK stops; the pass fails the run with it
            self.aborted = exc
            return 409
        try:
            await self.save(commit)
        except (LeaseLostError, PassCancelledError):
            return 409
        self.checkpoints += 1
        return 200

    async def request(self, url: str, step_id: str, force_plan: bool) -> SdkReply:
        attempt = self.run.attempt
        step = self.memo.get(step_id)
        if step is not None and step.status == "RETRYING":
            attempt = step.attempts
        checkpoint = None
        if self.driver.checkpointing and step_id == DISCOVERY and not force_plan:
            checkpoint = (self.fn.id, self.lease.token)
        _, body = fit(
            replace(
                request_for(
                    self.state,
                    attempt=attempt,
                    max_attempts=self.fn.retries + 1,
                    disable_immediate_execution=force_plan,
                    version=self.version,
                ),
                checkpoint=checkpoint,
            )
        )
        headers = request_headers(
            body,
            run_id=self.run.run_id,
            step_id=step_id,
            key=self.driver.signing_key,
            now=time.time(),
            request_version=self.version,
        )
        status, reply_headers, raw = await self.driver.post(
            execution_url(url, step_id), body, headers
        )
        reply = parse_reply(status, reply_headers, raw, datetime.fromtimestamp(self.now(), UTC))
        if reply.request_version is not None:
            self.version = reply.request_version
        return reply

    def _timed_out(self) -> str | None:
        run, now = self.run, self.now()
        late = run.start_timeout is not None and now > run.created_at + run.start_timeout
        if run.started_at is None and late:
            return f"not started within {run.start_timeout:g}s (timeouts.start)"
        if run.finish_timeout is not None:
            started = run.started_at if run.started_at is not None else now
            if now > started + run.finish_timeout:
                return f"not finished within {run.finish_timeout:g}s (timeouts.finish)"
        return None

    async def _settle_due(self, commit: PassCommit) -> None:
        """Steps whose time came while the run slept: expired waits, sleeps that ended,
        invokes that timed out."""
        now = self.now()
        if any(w.expires_at is not None and w.expires_at <= now for w in self.state.waits):
            expired = await self.engine.writer.write(
                lambda tx: tx.expire_waits(self.run.run_id, self.lease.token, now)
            )
            for digest in expired:
                step = self.memo.get(digest)
                if step is not None:
                    step.status, step.output_json, step.ended_at = "COMPLETED", b"null", now
        for step in self.memo.values():
            if step.status != "PENDING" or step.due_at is None or step.due_at > now:
                continue
            if step.kind == "sleep":
                step.status, step.output_json, step.ended_at = "COMPLETED", b"null", now
                commit.steps.append(step)
            elif step.kind == "invoke":
                message = "Timed out waiting for invoked function to complete"
                step.status, step.ended_at, step.attempts = "FAILED", now, 1
                step.error = {"name": "InngestInvokeTimeoutError", "message": message}
                commit.steps.append(step)
                commit.history.append(
                    HistoryRecord(
                        self.run.run_id,
                        now,
                        "STEP_FAILED",
                        step.step_id,
                        0,
                        0.0,
                        {"error": step.error, "final": True},
                    )
                )

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
    def _record(self, op_id: str, name: str, kind: str, status: str, **values: Any) -> StepRecord:
        existing = self.memo.get(op_id)
        position = existing.position if existing is not None else self.next_position
        if existing is None:
            self.next_position += 1
        record = StepRecord(self.run.run_id, op_id, name, kind, position, status, **values)
        self.memo[op_id] = record
        return record

    def _settle(self, op: Op, reply: SdkReply | None, commit: PassCommit) -> bool:
        """Record one op in ``commit``; true when the run progressed (a step settled)."""
        now = self.now()
        existing = self.memo.get(op.id)
        if existing is not None and existing.status in SETTLED:
            return False  # reported again by a request sent before it settled: keep it
        if existing is not None and existing.status == "PENDING":
            # met again while it still waits (a parallel branch woke the run): keep it
            if existing.due_at is not None:
                self.deadlines.append(existing.due_at)
            self.kinds.add(existing.kind)
            return False
        attempts = existing.attempts if existing is not None else 0
        if existing is None:
            self.check_new_steps({op.id: str(getattr(op, "display_name", op.id))})
        if isinstance(op, StepRunOp):
            output = self.checked_output(op.display_name, op.data)
            commit.steps.append(
                self._record(
                    op.id,
                    op.display_name,
                    "send" if op.sent_event else "run",
                    "COMPLETED",
                    output_json=output,
                    attempts=attempts + 1,
                    started_at=now,
                    ended_at=now,
                )
            )
            commit.history.append(
                HistoryRecord(self.run.run_id, now, "STEP_COMPLETED", op.display_name, attempts)
            )
            return True
        if isinstance(op, StepFailedOp):
            self._fail_step(op.id, op.display_name, op.error, attempts, commit)
            return True
        if isinstance(op, StepErrorOp):
            no_retry = reply is not None and reply.no_retry
            retry_at = None
            if reply is not None and reply.retry_at is not None:
                retry_at = reply.retry_at.timestamp()
            return self._attempt_failed(
                op.id, op.display_name, "run", op.error, attempts, commit, no_retry, retry_at
            )
        if isinstance(op, SleepOp):
            until = op.until.timestamp()
            if until <= now:
                commit.steps.append(
                    self._record(
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
                self._record(
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
                    data={"until": until, **self._mode(op.id)},
                )
            )
            self.deadlines.append(until)
            self.kinds.add("sleep")
            return False
        if isinstance(op, WaitForEventOp):
            self._wait(op, commit, now)
            return False
        if isinstance(op, InvokeFunctionOp):
            return self._invoke(op, commit, now)
        raise UnsupportedOpError(
            f"the SDK asked for {getattr(op, 'op', type(op).__name__)!r} (step {op.id}), "
            "which Stepline does not drive"
        )

    def _attempt_failed(
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
            self._fail_step(op_id, name, info, attempts, commit, kind)
            return True
        now = self.now()
        due = retry_at if retry_at is not None else now + self.engine.backoff.delay(attempts)
        error = _error(info)
        commit.steps.append(
            self._record(
                op_id, name, kind, "RETRYING", error=error, attempts=attempts + 1, due_at=due
            )
        )
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                now,
                "STEP_FAILED",
                name,
                attempts,
                0.0,
                {"error": error, "retry_at": due, **self._mode(op_id)},
            )
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
        now = self.now()
        if failure is not None:
            info = ErrorInfo(AI_ERROR, f"Error making AI request: {failure}")
            return self._attempt_failed(op.id, op.display_name, "ai", info, attempts, commit)
        encoded = self.checked_output(op.display_name, output)
        commit.steps.append(
            self._record(
                op.id,
                op.display_name,
                "ai",
                "COMPLETED",
                output_json=encoded,
                attempts=attempts + 1,
                started_at=now,
                ended_at=now,
            )
        )
        commit.history.append(
            HistoryRecord(self.run.run_id, now, "STEP_COMPLETED", op.display_name, attempts)
        )
        return True

    async def call_model(self, op: AIGatewayOp) -> tuple[Any, str | None]:
        """Make the model call ``op`` describes: its output, or None and why it failed."""
        request = ai_request(op)
        try:
            response = await self.driver.client().post(
                request.url, content=request.body, headers=request.headers, timeout=AI_TIMEOUT
            )
        except httpx.HTTPError as exc:
            return None, f"request to {request.url} failed: {exc!r}"
        return ai_output(response.status_code, response.content)

    def _fail_step(
        self,
        op_id: str,
        name: str,
        info: ErrorInfo,
        attempts: int,
        commit: PassCommit,
        kind: str = "run",
    ) -> None:
        error = _error(info)
        now = self.now()
        commit.steps.append(
            self._record(
                op_id, name, kind, "FAILED", error=error, attempts=attempts + 1, ended_at=now
            )
        )
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                now,
                "STEP_FAILED",
                name,
                attempts,
                0.0,
                {"error": error, "final": True},
            )
        )

    def _wait(self, op: WaitForEventOp, commit: PassCommit, now: float) -> None:
        if op.race:
            self.race.add(op.id)
        text: str | None = None
        index: tuple[tuple[str, str], ...] = ()
        if op.if_ is not None:
            trigger = self.state.events[0].payload() if self.state.events else {}
            prepared = prepare_match(op.if_, trigger)
            text, index = prepared.text, prepared.index_keys
        due = now + op.timeout.total_seconds()
        commit.steps.append(
            self._record(op.id, op.display_name, "wait", "PENDING", due_at=due, started_at=now)
        )
        commit.waits.append(
            WaitRecord(
                wait_id=new_id(now),
                run_id=self.run.run_id,
                step_hash=op.id,
                event_name=op.event,
                expression=text,
                index_path=index[0][0] if index else None,
                index_value=index[0][1] if index else None,
                expires_at=due,
                created_at=now,
            )
        )
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                now,
                "WAIT",
                op.display_name,
                data={"event": op.event, "if": op.if_, "until": due, **self._mode(op.id)},
            )
        )
        self.deadlines.append(due)
        self.kinds.add("wait")

    def _invoke(self, op: InvokeFunctionOp, commit: PassCommit, now: float) -> bool:
        if op.race:
            self.race.add(op.id)
        fn = self.engine.invoke_target(op.function_id)
        if fn is None:
            info = ErrorInfo("FunctionNotFound", f"no function {op.function_id!r}")
            self._fail_step(op.id, op.display_name, info, 0, commit)
            return True
        data = invoked_data(
            dict(op.data),
            fn_id=fn.id,
            source_app_id=self.fn.served_by[0] if self.fn.served_by else self.engine.app_id,
            source_fn_id=self.fn.id,
            run_id=self.run.run_id,
            step_hash=op.id,
            step_name=op.display_name,
            now=now,
            timeout=None if op.timeout is None else op.timeout.total_seconds(),
        )
        event = self.engine.event_record(Event(name=FUNCTION_INVOKED, data=data), now)
        child = NewRun(
            new_id(now),
            fn.id,
            (event.internal_id,),
            self.run.run_id,
            op.id,
            admission_for(fn, self.engine.app_id, event.payload()),
            app_id=self.engine.app_id,
        )
        due = None if op.timeout is None else now + op.timeout.total_seconds()
        commit.events.append(EventIngest(event))
        commit.child_runs.append(child)
        commit.steps.append(
            self._record(op.id, op.display_name, "invoke", "PENDING", started_at=now, due_at=due)
        )
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                now,
                "INVOKE",
                op.display_name,
                data={
                    "function_id": op.function_id,
                    "child_run_id": child.run_id,
                    **self._mode(op.id),
                },
            )
        )
        if due is not None:
            self.deadlines.append(due)
        self.kinds.add("invoke")
        return False

    # -- ends of a pass ---------------------------------------------------------------------------
    async def _suspend(self) -> None:
        kinds = self.kinds
        status = (
            "RETRYING"
            if "retry" in kinds
            else "WAITING"
            if kinds & {"wait", "invoke"}
            else "SLEEPING"
        )
        commit = self.commit()
        deadlines = list(self.deadlines)
        if self.run.finish_timeout is not None:
            started = self.run.started_at if self.run.started_at is not None else self.now()
            deadlines.append(started + self.run.finish_timeout + 0.001)
        if not kinds:  # nothing blocks and nothing is planned: ask again at once
            commit.end = RunEnd(status="RUNNING", due_at=self.now())
        else:
            commit.end = RunEnd(status=status, due_at=min(deadlines, default=None))
        await self.save(commit)

    def _ending_events(self, status: str, **details: Any) -> list[EventIngest]:
        events = [e.payload() for e in self.state.events]
        data = ending_data(self.fn.id, self.run.run_id, events, status, **details)
        now = self.now()
        return [self.engine.system_event(name, data, now) for name in ending_names(status, events)]

    def _wake_parent(
        self, commit: PassCommit, status: str, output: bytes | None, error: dict[str, Any] | None
    ) -> None:
        run = self.run
        if run.parent_run_id is not None and run.parent_step_hash is not None:
            commit.wakes.append(
                Wake(run.parent_run_id, run.parent_step_hash, status, output, error)
            )

    async def _complete(self, output: Any) -> None:
        encoded = dumps(output, f"result of function {self.fn.id!r}")
        commit = self.commit()
        commit.end = RunEnd(status="COMPLETED", output_json=encoded)
        commit.history.append(HistoryRecord(self.run.run_id, self.now(), "RUN_COMPLETED"))
        commit.events.extend(self._ending_events("COMPLETED", result=output))
        self._wake_parent(commit, "COMPLETED", encoded, None)
        await self.save(commit)

    async def _function_errored(self, reply: SdkReply, info: ErrorInfo) -> None:
        error = _error(info)
        now = self.now()
        attempt = self.run.attempt
        if not reply.no_retry and attempt < self.fn.retries:
            retry_at = (
                reply.retry_at.timestamp()
                if reply.retry_at is not None
                else now + self.engine.backoff.delay(attempt)
            )
            commit = self.commit()
            commit.history.append(
                HistoryRecord(
                    self.run.run_id,
                    now,
                    "FUNCTION_FAILED",
                    attempt=attempt,
                    data={"error": error, "retry_at": retry_at},
                )
            )
            commit.end = RunEnd(status="RETRYING", due_at=retry_at, attempt=attempt + 1)
            await self.save(commit)
            return
        commit = self.commit()
        # the run's error is the SDK's error body, its code included (Inngest's run output)
        coded = error if info.code is None else {**error, "code": info.code}
        commit.end = RunEnd(status="FAILED", error=coded)
        commit.history.append(HistoryRecord(self.run.run_id, now, "RUN_FAILED", data=error))
        failure = sdk_failure(reply.status, reply.no_retry, error)
        commit.events.extend(self._ending_events("FAILED", error=failure))
        self._wake_parent(commit, "FAILED", None, error)
        await self.save(commit)


class _Requests:
    """The requests of one pass, made as Inngest's executor makes them. Every step a reply
    plans (``StepPlanned``) gets its own targeted request, all of them at once; a reply of
    several ops makes the next requests plan steps only (``disable_immediate_execution``,
    Go's ForceStepPlan). A discovery request follows once no targeted request is in flight
    and nothing (a sleep, a wait, an invoke, a step in its retry backoff) is pending (wait
    mode: one discovery for the whole group), or after each step of a race-mode group
    completes (race mode). A step already in flight or settled is not asked for twice; one in
    its retry backoff not before its retry time."""

    def __init__(self, http_pass: _HttpPass, url: str) -> None:
        self.p = http_pass
        self.url = url
        self.inflight: dict[asyncio.Task[SdkReply], str] = {}
        self.sent = 0
        self.over = False  # MAX_REQUESTS_PER_PASS reached: the run goes back to the queue
        self.force_plan = False
        self.progressed = False  # a step settled since the last discovery was sent

    def send(self, step_id: str) -> None:
        if self.sent >= MAX_REQUESTS_PER_PASS:
            self.over = True
            return
        self.sent += 1
        task = asyncio.create_task(self.p.request(self.url, step_id, self.force_plan))
        self.inflight[task] = step_id

    def discover(self) -> None:
        self.progressed = False
        # Go clears ForceStepPlan with a discovery; Stepline keeps it while a step backs off
        self.force_plan = any(self.p.backing_off(h) for h in self.p.memo)
        self.send(DISCOVERY)

    async def drive(self) -> None:
        first, self.force_plan = self.p.first_requests()
        try:
            for step_id in first:
                self.send(step_id)
            while self.inflight:
                done, _ = await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step_id = self.inflight.pop(task)
                    if await self.handle(step_id, task.result()):
                        return  # the run ended
                if not self.inflight and self.progressed and not self.p.kinds:
                    self.discover()
        finally:
            for task in self.inflight:
                task.cancel()
            await asyncio.gather(*self.inflight, return_exceptions=True)
        if self.over:
            commit = self.p.commit()
            commit.end = RunEnd(status="RUNNING", due_at=self.p.now())
            await self.p.save(commit)
            return
        await self.p._suspend()

    async def handle(self, step_id: str, reply: SdkReply) -> bool:
        """Commit what one reply reports and send the requests it calls for; true when the
        run ended."""
        p = self.p
        if p.aborted is not None:
            raise p.aborted
        outcome = reply.outcome
        if isinstance(outcome, RunCompleted):
            await p._complete(outcome.output)
            return True
        if isinstance(outcome, FunctionErrored):
            await p._function_errored(reply, outcome.error)
            return True
        commit = p.commit()
        planned: dict[str, str] = {}  # id -> name, in the order planned
        progressed = False
        models = [op for op in outcome.ops if isinstance(op, AIGatewayOp)]
        answers = dict(
            zip(
                (op.id for op in models),
                await asyncio.gather(*(p.call_model(op) for op in models)),
                strict=True,
            )
        )
        for op in outcome.ops:
            if isinstance(op, AIGatewayOp):
                progressed |= p.settle_ai(op, *answers[op.id], commit)
                continue
            if isinstance(op, RunCompleteOp):
                await p.save(commit)
                await p._complete(op.data)
                return True
            if isinstance(op, StepPlannedOp):
                if op.race:
                    p.race.add(op.id)
                planned.setdefault(op.id, op.display_name)
                continue
            progressed |= p._settle(op, reply, commit)
        await p.save(commit)
        p.check_new_steps(planned)
        if planned and len(outcome.ops) > 1:
            self.force_plan = True
        asked = set(self.inflight.values())
        for planned_id in planned:
            step = p.memo.get(planned_id)
            if planned_id in asked or (step is not None and step.status in SETTLED):
                continue
            if p.backing_off(planned_id):
                assert step is not None and step.due_at is not None
                p.deadlines.append(step.due_at)
                p.kinds.add("retry")
                continue
            self.send(planned_id)
        if progressed:
            self.progressed = True
            if step_id in p.race:
                self.discover()
        return False


def _error(info: ErrorInfo) -> dict[str, Any]:
    error: dict[str, Any] = {"name": info.name, "message": info.message}
    if info.stack is not None:
        error["stack"] = info.stack
    return error


__all__ = ["InngestDriver", "SdkRequestError", "UnsupportedOpError"]
