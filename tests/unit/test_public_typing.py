"""The public step API type-checks as users write it: mypy --strict on a small function that
passes ``async def`` and plain functions to ``ctx.step.run`` (a union parameter once made mypy
infer ``Never`` for every ``async def``: 55 errors in the examples)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = """
from typing import assert_type

from stepline import App, Context, SyncContext, TriggerEvent

app = App("typing")


async def fetch(user_id: int) -> dict[str, int]:
    return {"id": user_id}


def total(values: list[int]) -> int:
    return sum(values)


@app.function(id="async-fn", trigger=TriggerEvent("typing/async"))
async def async_fn(ctx: Context) -> int:
    user = await ctx.step.run("fetch", fetch, 1)
    assert_type(user, dict[str, int])
    await ctx.step.run("fetch-again", fetch, 2)  # result unused
    summed = await ctx.step.run("total", total, [user["id"], 2])
    assert_type(summed, int)
    return summed


@app.function(id="sync-fn", trigger=TriggerEvent("typing/sync"))
def sync_fn(ctx: SyncContext) -> int:
    summed = ctx.step.run("total", total, [1, 2])
    assert_type(summed, int)
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
