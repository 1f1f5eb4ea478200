"""The public step API type-checks as users write it: mypy --strict on a small function that
passes ``async def`` and plain functions to ``ctx.step.run`` (a union parameter once made mypy
infer ``Never`` for every ``async def``: 55 errors in the examples; an ``async def`` whose
signature mentions ``Any`` matched two overloads, and mypy gave ``Any``)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = """
import asyncio
from typing import Any, assert_type

from stepline import App, Context, SyncContext, TriggerEvent

app = App("typing")


async def fetch(user_id: int) -> dict[str, int]:
    return {"id": user_id}


async def fetch_loosely(user_id: int) -> dict[str, Any]:
    return {"id": user_id}


def total(values: list[int]) -> int:
    return sum(values)


def loosely(values: list[Any]) -> dict[str, Any]:
    return {"n": len(values)}


def scheduled() -> asyncio.Task[dict[str, int]]:
    return asyncio.ensure_future(fetch(1))


@app.function(id="async-fn", trigger=TriggerEvent("typing/async"))
async def async_fn(ctx: Context) -> int:
    user = await ctx.step.run("fetch", fetch, 1)
    assert_type(user, dict[str, int])
    await ctx.step.run("fetch-again", fetch, 2)  # result unused
    summed = await ctx.step.run("total", total, [user["id"], 2])
    assert_type(summed, int)
    # a signature mentioning Any: both overloads of the time matched, and mypy gave Any
    assert_type(await ctx.step.run("loose", fetch_loosely, 1), dict[str, Any])
    assert_type(await ctx.step.run("loose-plain", loosely, [1]), dict[str, Any])
    assert_type(await ctx.step.run("loose-lambda", lambda: fetch_loosely(2)), dict[str, Any])
    assert_type(await ctx.step.run("task", scheduled), dict[str, int])
    assert_type(await ctx.step.run("literal", lambda: 1), int)
    return summed


@app.function(id="sync-fn", trigger=TriggerEvent("typing/sync"))
def sync_fn(ctx: SyncContext) -> int:
    summed = ctx.step.run("total", total, [1, 2])
    assert_type(summed, int)
    assert_type(ctx.step.run("fetch", fetch, 1), dict[str, int])
    assert_type(ctx.step.run("loose", fetch_loosely, 1), dict[str, Any])
    assert_type(ctx.step.run("loose-plain", loosely, [1]), dict[str, Any])
    return summed
"""


def test_step_run_infers_the_result_of_async_and_plain_functions(tmp_path: Path) -> None:
    user_file = tmp_path / "user_code.py"
    user_file.write_text(USER_CODE)
    # the gate's own mypy run (scripts/test) leaves this cache warm: the package is not
    # analysed again
    out, err, status = api.run(
        [
            "--strict",
            "--python-version",
            "3.11",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(user_file),
        ]
    )
    assert status == 0, out + err
