"""Retry backoff as Inngest's server schedules it (issue 7): its table in production, a fast one
under ``stepline dev`` and the test kit, per-app configuration, ``RetryAfterError`` clamped."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stepline import App, ConfigError, Context, Event, RetryAfterError, RetryBackoff, TriggerEvent
from stepline.testing import TestEngine

Make = Callable[..., TestEngine]
INNGEST_TABLE = [15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200]


def test_inngest_backoff_is_the_servers_table_plus_up_to_30s_of_jitter() -> None:
    # issue 7 backoff; Inngest: pkg/backoff/backoff.go (BackoffTable, TableBackoff's jitter)
    for attempt in range(14):
        base = INNGEST_TABLE[min(attempt, len(INNGEST_TABLE) - 1)]
        delays = [RetryBackoff.INNGEST.delay(attempt) for _ in range(100)]
        assert all(base <= d <= base + 30 for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered


def test_an_app_retries_on_inngests_schedule_by_default(tmp_path: Path) -> None:
    # issue 7 backoff; Inngest: pkg/backoff/backoff.go (DefaultBackoff = TableBackoff)
    app = App("prod", db=str(tmp_path / "prod.db"))
    try:
        assert app.engine.backoff is RetryBackoff.INNGEST
    finally:
        app.close()


async def test_the_test_kit_retries_fast_unless_the_app_sets_a_backoff(app: App) -> None:
    # issue 7 backoff: fast in the test kit (a deliberate difference, docs/inngest.md)
    async with TestEngine(app, store="memory") as t:
        assert t.app.engine.backoff is RetryBackoff.FAST
    custom = RetryBackoff(["5s", "1m"], jitter=0)
    app.retry_backoff = custom
    async with TestEngine(app, store="memory") as t:
        assert t.app.engine.backoff is custom


async def _gaps(
    t: TestEngine, app: App, failures: int, error: Callable[[], Exception]
) -> list[float]:
    times: list[float] = []

    @app.function(id="flaky", trigger=TriggerEvent("go"), retries=failures)
    async def flaky(ctx: Context) -> Any:
        def call() -> str:
            times.append(t.clock.now())
            if len(times) <= failures:
                raise error()
            return "ok"

        return await ctx.step.run("call", call)

    run = await t.trigger(Event("go"))
    assert run.output == "ok"
    return [b - a for a, b in itertools.pairwise(times)]


async def test_an_apps_retry_backoff_spaces_its_retries(app: App, make_engine: Make) -> None:
    # issue 7 backoff: configurable per app, the Inngest table applied when chosen
    app.retry_backoff = RetryBackoff.INNGEST
    async with make_engine() as t:
        gaps = await _gaps(t, app, 4, lambda: ValueError("down"))
    for base, gap in zip(INNGEST_TABLE, gaps, strict=False):
        assert base <= gap <= base + 30.5, (base, gaps)


@pytest.mark.parametrize(("retry_after", "expected"), [(0.01, 1.0), ("3d", 86400.0)])
async def test_retry_after_error_is_clamped_to_one_second_to_a_day(
    app: App, make_engine: Make, retry_after: Any, expected: float
) -> None:
    # issue 7 RetryAfterError clamp; Inngest: pkg/consts/consts.go (MinRetryDuration 1 s,
    # MaxRetryDuration 24 h)
    async with make_engine() as t:
        [gap] = await _gaps(t, app, 1, lambda: RetryAfterError("429", retry_after))
    assert gap == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RetryBackoff([]), "RetryBackoff.schedule must be a non-empty"),
        (lambda: RetryBackoff(["0s"]), "more than 0"),
        (lambda: RetryBackoff(["1s"], jitter=-1), "RetryBackoff.jitter must not be negative"),
        (lambda: App("a", retry_backoff="fast"), "must be a RetryBackoff"),  # type: ignore[arg-type]
    ],
)
def test_invalid_backoffs_name_the_field(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()
