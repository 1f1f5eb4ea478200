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
  mode), or one after each completed step of a race-mode group (``_requests``); a group's
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
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from stepline._tls import tls_context
from stepline.drivers.inngest._errors import ProtocolError, UnsupportedOpError
from stepline.drivers.inngest._http import HttpClientError, LeanClient
from stepline.drivers.inngest._opcodes import ErrorInfo, RunCompleteOp, StepRunOp, read_op
from stepline.drivers.inngest._requests import PassRequests
from stepline.drivers.inngest._responses import SdkReply
from stepline.drivers.inngest._signing import SigningKey, SigningKeys, verify_response
from stepline.drivers.inngest._steps import StepBook, error_of
from stepline.engine._attempts import failure_commit, retry_commit
from stepline.engine._recording import encoded_result, parent_wake, retry_rows, suspension
from stepline.engine._system_events import not_started_reason, sdk_failure
from stepline.engine.driver import commit_pass, submit_pass
from stepline.engine.engine import Engine
from stepline.errors import (
    LeaseLostError,
    LimitExceededError,
    PassCancelledError,
    SerializationError,
    StoreError,
)
from stepline.sdk.function import FunctionDef
from stepline.store.records import (
    EventIngest,
    HistoryRecord,
    Lease,
    PassCommit,
    RunEnd,
    RunState,
)

REQUEST_TIMEOUT = 60.0  # seconds one execution request may take
MAX_REQUESTS_PER_PASS = 200  # then the run goes back to the queue (due now)


class SdkRequestError(Exception):
    """An execution request failed before a reply an SDK sends (time-out, connection, status)."""


@dataclass
class InngestDriver:
    """Drives the functions of synced SDK apps over HTTP. ``urls``: function id -> the URL its
    runs are driven through (set when an app syncs); ``signing_key``: sign every request and
    verify every reply with ``verify_keys`` (production), unsigned without (dev mode);
    ``max_requests_per_pass``: a pass that reaches it ends and the run goes back to the queue
    (the requests it planned but did not send are sent by the next pass);
    ``checkpoint_replies``: how many SDK checkpoints it answered, by HTTP status (``/metrics``)."""

    signing_key: SigningKey | None = None
    verify_keys: SigningKeys | None = None
    timeout: float = REQUEST_TIMEOUT
    checkpointing: bool = True
    max_requests_per_pass: int = MAX_REQUESTS_PER_PASS
    urls: dict[str, str] = field(default_factory=dict)
    checkpoint_replies: Counter[int] = field(default_factory=Counter)  # status -> answered
    _client: httpx.AsyncClient | None = field(default=None, repr=False)
    _lean: LeanClient | None = field(default=None, repr=False)  # execution requests (_http)
    _passes: dict[str, tuple[asyncio.AbstractEventLoop, HttpPass]] = field(
        default_factory=dict, repr=False
    )

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, verify=tls_context())
        return self._client

    async def aclose(self) -> None:
        if self._lean is not None:
            self._lean.close()
            self._lean = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run_pass(
        self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef
    ) -> None:
        http_pass = HttpPass(self, engine, lease, state, fn)
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
        status = await self._checkpoint(run_id, value)
        self.checkpoint_replies[status] += 1
        return status

    async def _checkpoint(self, run_id: str, value: dict[str, Any]) -> int:
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
        """One execution request (plain ``http://`` through ``_http``'s lean client, else
        httpx); reply header names lower-cased. Raises ``SdkRequestError`` on a time-out or a
        connection error, ``SignatureError`` for a reply not signed by our keys (production)."""
        if self._lean is None:
            self._lean = LeanClient(self.timeout)
        try:
            if self._lean.handles(url):
                reply = await self._lean.post(url, body, headers)
                status, reply_headers, raw = reply.status, reply.headers, reply.body
            else:
                response = await self.client().post(url, content=body, headers=dict(headers))
                status, reply_headers, raw = (
                    response.status_code,
                    dict(response.headers),
                    response.content,
                )
        except (HttpClientError, httpx.HTTPError, UnicodeEncodeError) as exc:
            # UnicodeEncodeError: httpx refuses a header value outside ASCII
            raise SdkRequestError(f"request to {url} failed: {exc!r}") from exc
        if self.verify_keys is not None and status != 201:
            # a streamed (201) reply's signature covers a placeholder body (see _responses)
            signed = reply_headers.get("x-inngest-signature")
            verify_response(raw, signed, self.verify_keys, time.time())
        return status, reply_headers, raw


class HttpPass:
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
        self.book = StepBook(engine, fn, state)
        self.checkpoints = 0  # steps commits an SDK checkpointed during this pass
        self.aborted: LimitExceededError | None = None  # a checkpoint breached a limit

    def now(self) -> float:
        return self.engine.clock.now()

    def commit(self) -> PassCommit:
        return PassCommit(self.run.run_id, self.lease.token)

    async def save(self, commit: PassCommit) -> None:
        await commit_pass(self.engine, commit, self.now())

    def submit(self, commit: PassCommit) -> asyncio.Task[None]:
        """``save`` without waiting: ``commit`` is queued to the writer now; the task ends once
        it is durable (raises as ``save``)."""
        return asyncio.ensure_future(submit_pass(self.engine, commit, self.now()))

    async def execute(self) -> None:
        try:
            await self._execute()
        except (LeaseLostError, PassCancelledError, StoreError):
            raise
        except (UnsupportedOpError, LimitExceededError, SerializationError) as exc:
            await self.fail_attempt(exc, final=True)  # asking again: the same again
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
        await self.book.hold()
        url = self.driver.urls.get(self.fn.id)
        if url is None:
            raise SdkRequestError(f"function {self.fn.id!r} has no synced app URL")
        await PassRequests(self, url).drive()

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
                self.book.settle(op, None, commit)
        except LimitExceededError as exc:  # the SDK stops; the pass fails the run with it
            self.aborted = exc
            return 409
        try:
            await self.save(commit)
        except (LeaseLostError, PassCancelledError):
            return 409
        self.checkpoints += 1
        return 200

    def _timed_out(self) -> str | None:
        run, now = self.run, self.now()
        start_timeout = run.start_timeout
        late = start_timeout is not None and now > run.created_at + start_timeout
        if run.started_at is None and late and start_timeout is not None:
            return not_started_reason(start_timeout)
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
                step = self.book.memo.get(digest)
                if step is not None:
                    step.status, step.output_json, step.ended_at = "COMPLETED", b"null", now
        for step in self.book.memo.values():
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
                    self.book.failed_row(step.step_id, 0, now, error=step.error, final=True)
                )

    # -- ends of a pass ---------------------------------------------------------------------------
    async def suspend(self) -> None:
        commit = self.commit()
        deadlines = list(self.book.deadlines)
        if self.run.finish_timeout is not None:
            started = self.run.started_at if self.run.started_at is not None else self.now()
            deadlines.append(started + self.run.finish_timeout + 0.001)
        if not self.book.kinds:  # nothing blocks and nothing is planned: ask again at once
            commit.end = RunEnd(status="RUNNING", due_at=self.now())
        else:
            commit.end = suspension(self.book.kinds, deadlines)
        await self.save(commit)

    def _ending_events(self, status: str, **details: Any) -> list[EventIngest]:
        events = [e.payload() for e in self.state.events]
        return self.engine.ending_events(
            self.fn.id, self.run.run_id, events, status, self.now(), **details
        )

    def _wake_parent(
        self, commit: PassCommit, status: str, output: bytes | None, error: dict[str, Any] | None
    ) -> None:
        wake = parent_wake(self.run, status, output, error)
        if wake is not None:
            commit.wakes.append(wake)

    async def complete(self, output: Any) -> None:
        encoded = encoded_result(self.fn.id, output, self.engine.limits.max_step_output_bytes)
        commit = self.commit()
        commit.end = RunEnd(status="COMPLETED", output_json=encoded)
        commit.history.append(HistoryRecord(self.run.run_id, self.now(), "RUN_COMPLETED"))
        commit.events.extend(self._ending_events("COMPLETED", result=output))
        self._wake_parent(commit, "COMPLETED", encoded, None)
        await self.save(commit)

    async def function_errored(self, reply: SdkReply, info: ErrorInfo) -> None:
        error = error_of(info)
        now = self.now()
        attempt = self.run.attempt
        if not reply.no_retry and attempt < self.fn.retries:
            retry_at = (
                reply.retry_at.timestamp()
                if reply.retry_at is not None
                else now + self.engine.backoff.delay(attempt)
            )
            commit = self.commit()
            history, commit.end = retry_rows(self.run, error, retry_at, now)
            commit.history.append(history)
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


__all__ = ["InngestDriver", "SdkRequestError", "UnsupportedOpError"]
