"""The function of the golden database: recorded by ``make_golden.py`` while it slept, resumed by
``test_golden.py`` on every change. Never change its step ids or their order: that is the point."""

from __future__ import annotations

from collections import Counter
from typing import Any

from stepline import App, Context, TriggerEvent

CALLS: Counter[str] = Counter()
T0 = 1_780_000_000.0  # the recording's virtual start time


def build_app(db: str | None = None) -> App:
    app = App("golden", db=db)

    @app.function(id="golden-order", trigger=TriggerEvent("golden/order"))
    async def golden_order(ctx: Context) -> Any:
        order = ctx.event.data

        def step(name: str, value: Any) -> Any:
            def body() -> Any:
                CALLS[name] += 1
                return value

            return body

        reserved = await ctx.step.run("reserve", step("reserve", {"sku": order["sku"]}))
        quote = await ctx.step.run("quote", step("quote", order["qty"] * 3))
        await ctx.step.run("quote", step("quote-again", quote + 1))  # a repeated id: quote:1
        await ctx.step.sleep("settle", "1h")
        charged = await ctx.step.run("charge", step("charge", {"amount": quote}))
        return {"reserved": reserved, "charged": charged}

    return app
