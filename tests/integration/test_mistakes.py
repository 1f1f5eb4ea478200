"""Mistakes caught early: a mocked step the function never reaches, a bad duration given to a
step helper while the run executes, and a bad option at import time."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import stepline
from stepline import App, Context, CronError, DurationError, Event
from stepline.testing import TestEngine

REPO = Path(__file__).resolve().parents[2]


# -- mock_step ------------------------------------------------------------------------------------
async def test_a_mocked_step_the_function_never_reaches_fails_the_test(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 "Mistakes caught early": mock_step with a step id the function never reaches
    # fails the test, listing the ids that were reached
    @app.function(id="checkout", trigger=stepline.TriggerEvent("cart/checkout"))
    async def checkout(ctx: Context) -> str:
        user = await ctx.step.run("fetch-user", lambda: "real")
        return await ctx.step.run("charge", lambda: f"charged {user}")

    async def typo() -> None:
        async with make_engine() as t:
            t.mock_step("chrage", "r-1")  # a typo: the real "charge" runs
            run = await t.trigger(Event(name="cart/checkout"))
            assert run.status == "COMPLETED"

    with pytest.raises(AssertionError) as caught:
        await typo()
    message = str(caught.value)
    assert "mock_step('chrage')" in message
    assert "charge, fetch-user" in message


async def test_mocked_steps_that_are_reached_pass(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="checkout", trigger=stepline.TriggerEvent("cart/checkout"))
    async def checkout(ctx: Context) -> str:
        await ctx.step.sleep("pause", "1h")
        return await ctx.step.run("charge", lambda: "real")

    async with make_engine() as t:
        t.mock_step("charge", "mocked")
        t.mock_step("gone", "never")
        t.unmock_step("gone")  # an unmocked step is not checked
        run = await t.trigger(Event(name="cart/checkout"))
        assert run.output == "mocked"


async def test_an_error_in_the_block_is_not_hidden_by_the_mock_check(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    async def failing() -> None:
        async with make_engine() as t:
            t.mock_step("never", 1)
            raise KeyError("the test's own failure")

    with pytest.raises(KeyError):
        await failing()


# -- step helpers at run time ---------------------------------------------------------------------
@pytest.mark.parametrize("sync", [False, True])
async def test_a_bad_duration_in_a_step_helper_fails_the_run_at_once(
    app: App, make_engine: Callable[..., TestEngine], sync: bool
) -> None:
    # issue 6 "Mistakes caught early": a DurationError/ConfigError raised by a step helper at
    # run time is non-retriable: the run fails at once with it, it is not retried 5 times
    if sync:

        @app.function(id="nap", trigger=stepline.TriggerEvent("nap/go"))
        def nap_sync(ctx: stepline.SyncContext) -> None:
            ctx.step.sleep("rest", "banana")

    else:

        @app.function(id="nap", trigger=stepline.TriggerEvent("nap/go"))
        async def nap(ctx: Context) -> None:
            await ctx.step.sleep("rest", "banana")

    async with make_engine() as t:
        run = await t.trigger(Event(name="nap/go"))
        history = await t.history(run.run_id)
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["name"] == "DurationError"
    assert "banana" in run.error["message"]
    assert [h.kind for h in history if h.kind == "FUNCTION_FAILED"] == []
    assert run.attempt == 0


async def test_a_wait_condition_that_cannot_be_a_boolean_fails_the_run_at_once(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 "Mistakes caught early": step.wait_for_event(if_=...) whose expression can never
    # give true or false (a number here) is refused with ExpressionError when the step is
    # called, as a trigger's if_ is at registration; it is not stored as a wait that never fires
    @app.function(id="waiter", trigger=stepline.TriggerEvent("shop/order"))
    async def waiter(ctx: Context) -> None:
        await ctx.step.wait_for_event(
            "paid", event="shop/paid", timeout="1h", if_="async.data.amount + 1"
        )

    async with make_engine() as t:
        run = await t.trigger(Event(name="shop/order"))
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["name"] == "ExpressionError"
    assert "true or false" in run.error["message"]
    assert run.attempt == 0


# -- import time ----------------------------------------------------------------------------------
BAD_CRON = """\
import stepline

app = stepline.App("bad")


@app.function(id="tick", trigger=stepline.TriggerCron("61 * * * *"))
async def tick(ctx):
    return None
"""

BAD_OPTION = """\
import stepline

app = stepline.App("bad")

LIMIT = stepline.Throttle(limit=0, period="1m")
"""


def _import(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.mark.parametrize(
    ("source", "error", "line"), [(BAD_CRON, CronError, 6), (BAD_OPTION, stepline.ConfigError, 5)]
)
def test_an_import_time_config_error_names_the_users_line(
    tmp_path: Path, source: str, error: type[Exception], line: int
) -> None:
    # issue 6 "Mistakes caught early": an import-time CronError/ConfigError points at the
    # user's line, not at Stepline's internals
    path = tmp_path / "bad_app.py"
    path.write_text(source)
    with pytest.raises(error) as caught:
        _import(path)
    assert f"bad_app.py:{line}" in str(caught.value)
    assert "stepline" not in str(caught.value).split("bad_app.py")[0].split("(")[-1]


def test_the_cli_names_the_users_line_of_an_import_time_cron_error(tmp_path: Path) -> None:
    # issue 6 "Mistakes caught early": the CLI's one-line error points at the user's line
    (tmp_path / "bad_app.py").write_text(BAD_CRON)
    result = subprocess.run(
        [sys.executable, "-m", "stepline.cli", "worker", "bad_app:app", "--db", "x.db"],
        cwd=tmp_path,
        env={"PATH": "", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: error while importing 'bad_app': bad_app.py:6: CronError: ")
    assert "cron.py" not in line


def test_duration_error_is_a_config_error() -> None:
    assert issubclass(DurationError, stepline.ConfigError)
