"""An error whose message holds a lone surrogate (a Python string that is not valid Unicode, as
``os.fsdecode`` gives for a file name that is not UTF-8, or a ``surrogateescape`` decoding) is
kept with that character written as its escape (``\\udcff``), as ``repr`` shows it, on every
store. Before, SQLite and PostgreSQL could not serialize the stored error: a step that raised
one did not fail as a step (no retry, nothing the function could catch) but the whole run
failed at once with a ``SerializationError`` in place of the user's error, while the memory
store retried the step (review, eighteenth stop)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, NonRetriableError, StepError, TriggerEvent
from stepline.testing import TestEngine

NAME = os.fsdecode(b"/data/\xff.csv")  # a file name that is not UTF-8: '/data/\udcff.csv'
SHOWN = "/data/\\udcff.csv"


async def test_a_step_error_with_a_lone_surrogate_is_retried_and_caught(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="reads", trigger=TriggerEvent("go"), retries=2)
    async def reads(ctx: Context) -> Any:
        def read() -> None:
            raise ValueError(f"cannot parse {NAME}")

        try:
            await ctx.step.run("read", read)
        except StepError as exc:
            return {"caught": exc.error_name, "message": exc.error_message}
        return "read"

    async with make_engine() as t:
        run = await t.trigger(Event("go"), timeout=30)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"caught": "ValueError", "message": f"cannot parse {SHOWN}"}
    [step] = run.steps
    assert (step.status, step.attempts) == ("FAILED", 3)
    assert step.error is not None and step.error["message"] == f"cannot parse {SHOWN}"


async def test_a_functions_error_with_a_lone_surrogate_is_the_runs_failure(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="fails", trigger=TriggerEvent("go"), retries=0)
    async def fails(ctx: Context) -> Any:
        raise NonRetriableError(f"no such file {NAME}")

    async with make_engine() as t:
        run = await t.trigger(Event("go"), timeout=30)
    assert run.status == "FAILED"
    assert run.error is not None
    assert (run.error["name"], run.error["message"]) == (
        "NonRetriableError",
        f"no such file {SHOWN}",
    )
    assert "\\udcff" in run.error["stack"]
