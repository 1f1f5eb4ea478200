"""An error's message is kept up to ``MAX_ERROR_MESSAGE_CHARS`` characters, saying how many more
were cut, the same on every store: a step raising an error whose message carried a whole
response body (megabytes) had it stored whole in the step's error, the run's error and every
attempt's history row (the reviewer's INFO note, nineteenth stop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, NonRetriableError, TriggerEvent
from stepline.engine._ops import MAX_ERROR_MESSAGE_CHARS
from stepline.testing import TestEngine

BODY = "<html>" + "x" * 1_000_000


async def test_a_huge_error_message_is_kept_bounded_saying_how_much_was_cut(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    def fetch() -> None:
        raise NonRetriableError(f"502 Bad Gateway: {BODY}")

    @app.function(id="fetcher", trigger=TriggerEvent("go"), retries=0)
    async def fetcher(ctx: Context) -> Any:
        return await ctx.step.run("fetch", fetch)

    async with make_engine() as t:
        run = await t.trigger(Event("go", {}))
    assert run.status == "FAILED" and run.error is not None
    said = len(f"502 Bad Gateway: {BODY}") - MAX_ERROR_MESSAGE_CHARS
    step_message = run.steps[0].error["message"] if run.steps[0].error else ""
    assert step_message.startswith("502 Bad Gateway: <html>xxx")
    assert step_message.endswith(f"\u2026 ({said} more characters cut)")
    assert len(step_message) < MAX_ERROR_MESSAGE_CHARS + 64
    # the run's error wraps the step's (StepError): kept whole around it
    assert run.error["message"].endswith(step_message)
    assert len(run.error["message"]) < MAX_ERROR_MESSAGE_CHARS + 128
