"""Property: any program of steps (runs, repeated ids, sleeps, parallel groups, failures that
recover or not, errors caught for fallbacks) ends with the output a straight reading of it gives,
every step body runs exactly as many times as its attempts, and the memo lists the steps in
order with their occurrence counters. On every store: memory, a SQLite file, PostgreSQL (each
example on a fresh file, or on this xdist worker's database emptied)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pgtest
import sqlitetest
from stepline import App, Context, Event, StepError, TriggerEvent
from stepline.store import MemoryStore, SQLiteStore
from stepline.store.interface import Store
from stepline.testing import MockClock, TestEngine

RETRIES = 2


@dataclass(frozen=True)
class Run:
    name: str
    value: int
    failures: int  # attempts that raise before one succeeds (> RETRIES: fails for good)


@dataclass(frozen=True)
class Sleep:
    seconds: int


@dataclass(frozen=True)
class Parallel:
    steps: tuple[Run, ...]


Item = Run | Sleep | Parallel

names = st.sampled_from(["a", "b", "c"])  # few names: repeated ids get counters
runs = st.builds(Run, names, st.integers(0, 100), st.integers(0, RETRIES + 1))
items = st.one_of(
    runs,
    st.builds(Sleep, st.integers(1, 7200)),
    st.builds(Parallel, st.lists(runs, min_size=2, max_size=3).map(tuple)),
)
programs = st.lists(items, min_size=1, max_size=8)


def expected(program: list[Item]) -> tuple[list[Any], Counter[str], list[str]]:
    """Output, step-body calls per step key, memo ids in order."""
    output: list[Any] = []
    calls: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    ids: list[str] = []

    def key(name: str) -> str:
        n = seen[name]
        seen[name] += 1
        return name if n == 0 else f"{name}:{n}"

    for item in program:
        group = item.steps if isinstance(item, Parallel) else (item,)
        for step in group:
            if isinstance(step, Sleep):
                ids.append(key("nap"))
                continue
            k = key(step.name)
            ids.append(k)
            calls[k] = min(step.failures, RETRIES) + 1
            output.append(step.value if step.failures <= RETRIES else "fallback")
    return output, calls, ids


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """ "memory", "sqlite", or this xdist worker's PostgreSQL database (schema made)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database")
        return url
    kind: str = request.param
    return kind


def fresh_store(kind: str, folder: str) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        path = sqlitetest.fresh_database(os.path.join(folder, "stepline.db"))
        return SQLiteStore(path, synchronous="NORMAL")
    pgtest.empty_database(kind)
    return pgtest.warm_store(kind)


@settings(
    max_examples=int(os.environ.get("STEPLINE_PROPERTY_EXAMPLES", "40")),  # scripts/soak: 500
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
def test_any_program_replays_to_its_straight_reading(store_kind: str, program: list[Item]) -> None:
    with tempfile.TemporaryDirectory(prefix="stepline-property-") as folder:
        store = fresh_store(store_kind, folder)
        try:
            asyncio.run(_check(program, store))
        finally:
            store.close()


async def _check(program: list[Item], store: Store) -> None:
    app = App("property")
    calls: Counter[str] = Counter()

    def body(step: Run, key: str) -> Any:
        def run() -> int:
            calls[key] += 1
            if calls[key] <= step.failures:
                raise ValueError(f"attempt {calls[key]} of {key} fails")
            return step.value

        return run

    @app.function(id="program", trigger=TriggerEvent("go"), retries=RETRIES)
    async def run_program(ctx: Context) -> Any:
        seen: Counter[str] = Counter()
        output: list[Any] = []

        def key(name: str) -> str:
            n = seen[name]
            seen[name] += 1
            return name if n == 0 else f"{name}:{n}"

        async def guarded(step: Run) -> Any:
            try:
                return await ctx.step.run(step.name, body(step, key(step.name)))
            except StepError:
                return "fallback"

        for item in program:
            if isinstance(item, Sleep):
                key("nap")
                await ctx.step.sleep("nap", item.seconds)
            elif isinstance(item, Run):
                output.append(await guarded(item))
            else:
                output.extend(await asyncio.gather(*(guarded(s) for s in item.steps)))
        return output

    async with TestEngine(app, store=store, clock=MockClock()) as t:
        done = await t.trigger(Event("go"), timeout=60)
    want_output, want_calls, want_ids = expected(program)
    assert done.status == "COMPLETED", done.error
    assert done.output == want_output
    assert dict(calls) == dict(want_calls)
    assert [s.id for s in done.steps] == want_ids
