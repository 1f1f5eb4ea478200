"""Errors the engine itself raises while handling a pass never loop a run forever (issue 6
item 1): an error that concerns one step is that step's failure, raised into the function at
that step; any other engine error is a failed attempt of the run (backoff), and the run fails
with it once its attempts are spent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.integration._commit_hook import CommitPass, hook_commit_pass

from stepline import App, Context, Event, StepError, TriggerEvent
from stepline.testing import TestEngine

BIG = "x" * (600 * 1024)  # over the default event payload limit (512 KB)


async def test_an_oversize_send_event_fails_its_step_where_try_except_catches_it(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 1: EventError was raised in the round recorder, outside the function, and
    # the run was re-leased after every lease TTL without end
    entered: list[int] = []

    @app.function(id="sender", trigger=TriggerEvent("go"), retries=3)
    async def sender(ctx: Context) -> Any:
        entered.append(1)
        try:
            await ctx.step.send_event("big", Event("x/big", {"blob": BIG}))
        except StepError as exc:
            return {"caught": exc.error_name}
        return "sent"

    async with make_engine() as t:
        run = await t.trigger(Event("go"), timeout=20)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"caught": "EventError"}
    [step] = run.steps
    assert (step.id, step.status, step.attempts) == ("big", "FAILED", 1)  # not retried
    assert entered == [1]


async def test_an_oversize_invoke_fails_its_step_and_an_uncaught_one_fails_the_run(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 1: step.invoke with oversize data
    entered: list[int] = []

    @app.function(id="child", trigger=TriggerEvent("never"))
    async def child(ctx: Context) -> Any:
        return "child ran"

    @app.function(id="parent", trigger=TriggerEvent("go"), retries=3)
    async def parent(ctx: Context) -> Any:
        entered.append(1)
        return await ctx.step.invoke("call", function=child, data={"blob": BIG})

    async with make_engine() as t:
        run = await t.trigger(Event("go"), timeout=20)
    assert run.status == "FAILED"
    assert run.error is not None and run.error["name"] == "StepError"
    assert "EventError" in run.error["message"]
    [step] = run.steps
    assert (step.id, step.status) == ("call", "FAILED")
    assert entered == [1]  # an uncaught StepError fails the run at once


async def test_an_engine_fault_in_a_pass_is_a_failed_attempt_and_the_run_fails_after_them(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 1: an engine error that concerns no step (here: the store refuses every
    # commit holding the step "poison") counts as a failed attempt of the run, with backoff;
    # once the attempts are spent the run fails with the error: a bounded number of passes
    entered: list[int] = []

    @app.function(id="poisoned", trigger=TriggerEvent("go"), retries=2)
    async def poisoned(ctx: Context) -> Any:
        entered.append(1)
        return await ctx.step.run("poison", lambda: 1)

    async with make_engine() as t:
        _inject_fault(t, when=lambda commit: any(s.step_id == "poison" for s in commit.steps))
        run = await t.trigger(Event("go"), timeout=20)
        history = await t.history(run.run_id)
    assert run.status == "FAILED"
    assert run.error is not None and "injected engine fault" in run.error["message"]
    assert len(entered) == 3  # retries=2: three attempts, then the run failed
    retries = [h for h in history if h.kind == "FUNCTION_FAILED"]
    assert [h.attempt for h in retries] == [0, 1]
    assert all(h.data and "retry_at" in h.data for h in retries)
    assert [s.id for s in run.steps] == []  # the refused commits left nothing behind


def _inject_fault(t: TestEngine, when: Callable[[Any], bool]) -> None:
    """Make the store raise inside ``commit_pass`` for the commits ``when`` selects."""

    def refusing(commit_pass: CommitPass) -> CommitPass:
        def refused(commit: Any, now: float, matcher: Any) -> Any:
            if when(commit):
                raise RuntimeError("injected engine fault")
            return commit_pass(commit, now, matcher)

        return refused

    hook_commit_pass(t.app.engine.store, refusing)
