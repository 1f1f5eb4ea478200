"""The requests of one pass of an SDK run, made as Inngest's executor makes them
(``PassRequests``): which requests a pass starts with, a targeted request for every planned
step at once, the discovery requests of wait and race mode, each request built from the run's
state, signed, sent and its reply read, and the model calls of ``step.ai.infer``. What each
reply reports is recorded by the pass's ``StepBook`` (``_steps``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from stepline.drivers.inngest._ai import AI_TIMEOUT, ai_output, ai_request
from stepline.drivers.inngest._execution import DISCOVERY, execution_url, request_headers
from stepline.drivers.inngest._opcodes import AIGatewayOp, RunCompleteOp, StepPlannedOp
from stepline.drivers.inngest._responses import (
    FunctionErrored,
    RunCompleted,
    SdkReply,
    parse_reply,
)
from stepline.drivers.inngest._state import SETTLED, RequestBuilder
from stepline.store.records import PassCommit, RunEnd

if TYPE_CHECKING:
    from stepline.drivers.inngest._driver import HttpPass


class PassRequests:
    """The requests of one pass, made as Inngest's executor makes them. Every step a reply
    plans (``StepPlanned``) gets its own targeted request, all of them at once; a reply of
    several ops makes the next requests plan steps only (``disable_immediate_execution``,
    Go's ForceStepPlan). A discovery request follows once no targeted request is in flight
    and nothing (a sleep, a wait, an invoke, a step in its retry backoff) is pending (wait
    mode: one discovery for the whole group), or after each step of a race-mode group
    completes (race mode). A step already in flight or settled is not asked for twice; one in
    its retry backoff not before its retry time."""

    def __init__(self, http_pass: HttpPass, url: str) -> None:
        self.p = http_pass
        self.book = http_pass.book
        self.url = url
        self.version = -1  # the SDK's request version, as its last reply said
        self.inflight: dict[asyncio.Task[SdkReply], str] = {}
        self.sent = 0
        self.over = False  # MAX_REQUESTS_PER_PASS reached: the run goes back to the queue
        self.force_plan = False
        self.progressed = False  # a step settled since the last discovery was sent
        self.unsent: dict[str, str] = {}  # planned steps not asked for (the limit): id -> name
        self.unsent_discovery = False  # a discovery not sent (the limit)
        self.builder = RequestBuilder(http_pass.state)
        self.commits: list[asyncio.Task[None]] = []  # the pass's commits, in the writer's order

    def first_requests(self) -> tuple[list[str], bool]:
        """The requests a pass starts with, and whether its discovery plans steps only: the
        steps a pass cut by the request limit planned but did not ask for, targeted (with the
        discovery it left unsent, if any); the ``step.run`` steps whose retry time came,
        targeted (as Inngest retries the request that failed), and a discovery when another
        kind of step's retry time came (a model call: the SDK reports its op again, an SDK runs
        no target without a body). Else one discovery, except while other steps of a wait-mode
        group still hold the run (Go's executor enqueues no discovery for a resumed wait while
        steps are pending, unless the group races): the one discovery follows once the last of
        them settles. A discovery plans only (``disable_immediate_execution``) while a step
        waits out its backoff, so that the SDK does not run that step early."""
        book = self.book
        now = book.now()
        due = [
            s
            for s in sorted(book.memo.values(), key=lambda s: s.position)
            if s.status == "RETRYING" and (s.due_at is None or s.due_at <= now)
        ]
        plan_only = book.any_backing_off()
        if due or book.planned:
            targeted = book.planned + [s.hash for s in due if s.kind == "run"]
            discover = book.unsent_discovery if book.planned else False
            discover |= len(targeted) < len(due) + len(book.planned)
            return targeted + ([DISCOVERY] if discover else []), plan_only
        if book.held and not book.held & book.race:
            return [], plan_only
        return [DISCOVERY], plan_only

    async def request(
        self, step_id: str, force_plan: bool, after: list[asyncio.Task[None]]
    ) -> SdkReply:
        """One execution request of the pass (a targeted one for ``step_id``, or a discovery),
        sent and its reply read. Its body is built while ``after`` (the commits of what the
        replies before it reported) is written, and sent once those commits are durable.
        Raises as ``InngestDriver.post`` and ``parse_reply`` do, and as the commits do."""
        p = self.p
        attempt = p.run.attempt
        step = self.book.memo.get(step_id)
        if step is not None and step.status == "RETRYING":
            attempt = step.attempts
        checkpoint = None
        if p.driver.checkpointing and step_id == DISCOVERY and not force_plan:
            checkpoint = (p.fn.id, p.lease.token)
        body = self.builder.body(
            attempt=attempt,
            max_attempts=p.fn.retries + 1,
            disable_immediate_execution=force_plan,
            version=self.version,
            checkpoint=checkpoint,
        )
        headers = request_headers(
            body,
            run_id=p.run.run_id,
            step_id=step_id,
            key=p.driver.signing_key,
            now=time.time(),
            request_version=self.version,
        )
        await written(after)
        status, reply_headers, raw = await p.driver.post(
            execution_url(self.url, step_id), body, headers
        )
        reply = parse_reply(status, reply_headers, raw, datetime.fromtimestamp(p.now(), UTC))
        if reply.request_version is not None:
            self.version = reply.request_version
        return reply

    def commit_later(self, commit: PassCommit) -> None:
        """Queue ``commit`` to the writer now, behind the commits before it (the writer keeps
        their order), without waiting: the requests sent from now on wait for it (``request``),
        the pass's end too (``committed``). A cancelled request withdraws no commit."""
        # the commits already durable are dropped (a failed one stays: its error is raised)
        self.commits = [c for c in self.commits if not c.done() or c.cancelled() or c.exception()]
        self.commits.append(self.p.submit(commit))

    async def committed(self) -> None:
        """Wait for the commits queued so far (raises as the first that failed)."""
        await written(self.commits)

    async def call_model(self, op: AIGatewayOp) -> tuple[Any, str | None]:
        """Make the model call ``op`` describes: its output, or None and why it failed."""
        request = ai_request(op)
        try:
            response = await self.p.driver.client().post(
                request.url, content=request.body, headers=request.headers, timeout=AI_TIMEOUT
            )
        except httpx.HTTPError as exc:
            return None, f"request to {request.url} failed: {exc!r}"
        return ai_output(response.status_code, response.content)

    def send(self, step_id: str, name: str = "") -> None:
        if self.sent >= self.p.driver.max_requests_per_pass:
            self.over = True
            if step_id == DISCOVERY:
                self.unsent_discovery = True
            else:
                self.unsent[step_id] = name or step_id
            return
        self.unsent.pop(step_id, None)
        self.sent += 1
        task = asyncio.create_task(self.request(step_id, self.force_plan, list(self.commits)))
        self.inflight[task] = step_id

    def discover(self) -> None:
        self.progressed = False
        # Go clears ForceStepPlan with a discovery; Stepline keeps it while a step backs off
        self.force_plan = self.book.any_backing_off()
        self.send(DISCOVERY)

    async def drive(self) -> None:
        first, self.force_plan = self.first_requests()
        try:
            ended = await self._exchange(first)
        except BaseException as exc:
            await self._stop()
            try:  # the commits of the replies handled are written, whatever ended the pass
                await self.committed()
            except Exception as failed:  # a lost lease, a cancelled run, the store: it decides
                if isinstance(exc, Exception) and failed is not exc:
                    raise failed from exc
            raise
        await self._stop()
        await self.committed()
        if ended:
            return
        if self.over:
            commit = self.p.commit()
            unsent = {i: n for i, n in self.unsent.items() if not self._settled(i)}
            self.book.yielded(commit, unsent, self.unsent_discovery, self.sent)
            commit.end = RunEnd(status="RUNNING", due_at=self.p.now())
            await self.p.save(commit)
            return
        await self.p.suspend()

    async def _exchange(self, first: list[str]) -> bool:
        """Send the first requests, then handle each reply and send what it calls for, until
        none is in flight; true when the run ended."""
        for step_id in first:
            self.send(step_id)
        while self.inflight:
            done, _ = await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                step_id = self.inflight.pop(task)
                if await self.handle(step_id, task.result()):
                    return True
            if not self.inflight and self.progressed and not self.book.kinds:
                self.discover()
        return False

    async def _stop(self) -> None:
        """Cancel the requests in flight (not the commits they wait for: ``written``)."""
        for task in self.inflight:
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)

    def _settled(self, step_id: str) -> bool:
        step = self.book.memo.get(step_id)
        return step is not None and step.status in SETTLED

    async def handle(self, step_id: str, reply: SdkReply) -> bool:
        """Commit what one reply reports and send the requests it calls for; true when the
        run ended."""
        p, book = self.p, self.book
        if p.aborted is not None:
            raise p.aborted
        outcome = reply.outcome
        if isinstance(outcome, RunCompleted | FunctionErrored):
            await self.committed()
            if isinstance(outcome, RunCompleted):
                await p.complete(outcome.output)
            else:
                await p.function_errored(reply, outcome.error)
            return True
        commit = p.commit()
        planned: dict[str, str] = {}  # id -> name, in the order planned
        progressed = False
        models = [op for op in outcome.ops if isinstance(op, AIGatewayOp)]
        answers = dict(
            zip(
                (op.id for op in models),
                await asyncio.gather(*(self.call_model(op) for op in models)),
                strict=True,
            )
        )
        for op in outcome.ops:
            if isinstance(op, AIGatewayOp):
                progressed |= book.settle_ai(op, *answers[op.id], commit)
                continue
            if isinstance(op, RunCompleteOp):
                self.commit_later(commit)
                await self.committed()
                await p.complete(op.data)
                return True
            if isinstance(op, StepPlannedOp):
                if op.race:
                    book.race.add(op.id)
                planned.setdefault(op.id, op.display_name)
                continue
            progressed |= book.settle(op, reply, commit)
        self.commit_later(commit)
        book.check_new_steps(planned)
        if planned and len(outcome.ops) > 1:
            self.force_plan = True
        asked = set(self.inflight.values())
        for planned_id in planned:
            step = book.memo.get(planned_id)
            if planned_id in asked or (step is not None and step.status in SETTLED):
                continue
            if book.backing_off(planned_id):
                assert step is not None and step.due_at is not None
                book.deadlines.append(step.due_at)
                book.kinds.add("retry")
                continue
            self.send(planned_id, planned[planned_id])
        if progressed:
            self.progressed = True
            if step_id in book.race:
                self.discover()
        return False


async def written(commits: list[asyncio.Task[None]]) -> None:
    """Wait for ``commits`` to be durable; raises as the first that failed. Shielded: a
    cancelled waiter leaves them to be written (a task awaited directly would pass its
    cancellation on to them, and a commit cancelled before it was queued loses what an SDK
    reported)."""
    outcomes = await asyncio.shield(asyncio.gather(*commits, return_exceptions=True))
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
