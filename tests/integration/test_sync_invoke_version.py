"""A sync function's ``ctx.step.invoke(..., v=)`` gives the invoked event its v, as an async
function's does (``SyncStep.invoke`` takes the same arguments as ``Step.invoke``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, SyncContext, TriggerEvent
from stepline.testing import TestEngine


async def test_a_sync_functions_invoke_gives_the_child_event_its_v(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="child", trigger=TriggerEvent("child/go"))
    async def child(ctx: Context) -> Any:
        return ctx.event.v

    @app.function(id="parent", trigger=TriggerEvent("parent/go"))
    def parent(ctx: SyncContext) -> Any:
        return ctx.step.invoke("invoke", function=child, v="invoked.1")

    async with make_engine() as t:
        run = await t.trigger(Event("parent/go"))
        assert run.status == "COMPLETED", run.error
        assert run.output == "invoked.1"
