"""A payload search over strings holding a NUL gives the same runs on every store, the ones its
expression matches as Stepline's expressions see strings (cut at their first NUL: docs/
expressions.md). Before, the memory store's pushed-down clause compared the whole string and
dropped runs the expression matches (``event.data.x == "a"`` for ``"a\\u0000b"``: SQLite and
PostgreSQL found the run, memory none), and PostgreSQL answered a literal holding a NUL
(``== "a\\u0000b"``, true for no event) with a refused value (a 400 at the REST API), where
the others found no run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import TestEngine


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ('event.data.x == "a"', 1),
        ('output.s == "a"', 1),
        ('output.s < "a\\u0001"', 1),
        ('event.data.x.startsWith("a")', 1),
        ('event.data.x == "a\\u0000b"', 0),
        ('event.data.x.contains("a\\u0000")', 0),
    ],
)
async def test_a_search_over_strings_with_a_nul_finds_the_same_runs_on_every_store(
    app: App, make_engine: Callable[..., TestEngine], query: str, found: int
) -> None:
    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Context) -> Any:
        return {"s": ctx.event.data["x"]}

    async with make_engine() as t:
        await t.trigger(Event("go", {"x": "a\x00b"}))
        await t.trigger(Event("go", {"x": "b"}))
        result = await t.app.search_runs(query)
    assert (len(result.runs), result.failed) == (found, 0)
