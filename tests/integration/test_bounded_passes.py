"""No run is re-entered without bound (issue 6 item 1), even when the engine cannot load the run
or cannot commit anything for it: a run that cannot be loaded counts failed attempts of the run
(backoff, the function's ``retries``) and then fails; a run whose passes never commit is failed
by the store once it has been leased ``max_passes`` times without progress."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _polling import until
from tests.integration._commit_hook import CommitPass, hook_commit_pass, hook_verb

from stepline import App, Context, Event, TriggerEvent
from stepline.store.records import Lease
from stepline.store.sqlite import SQLiteStore
from stepline.testing import MockClock, TestEngine


def _count_loads(t: TestEngine, fail: Callable[[str], Exception | None]) -> list[str]:
    """Count the loads of leased runs (one per pass begun: ``load_run``, or the state a lease
    carries, read by its own transaction: PostgreSQL's ``lease_due``, SQLite's
    ``load_leased``); ``fail(run_id)`` may give an error to raise instead of loading."""
    store = t.app.engine.store
    load_run = store.load_run
    loads: list[str] = []

    def counting(run_id: str, load: Callable[[], Any] | None = None) -> Any:
        loads.append(run_id)
        error = fail(run_id)
        if error is not None:
            raise error
        return load_run(run_id) if load is None else load()

    def leasing(lease_due: Callable[..., list[Lease]]) -> Callable[..., list[Lease]]:
        def leased(*args: Any, **kwargs: Any) -> list[Lease]:
            return [
                lease
                if lease.loaded is None
                else replace(lease, loaded=partial(counting, lease.run_id, lease.loaded))
                for lease in lease_due(*args, **kwargs)
            ]

        return leased

    store.load_run = counting  # type: ignore[method-assign]
    hook_verb(store, "lease_due", leasing)
    if isinstance(store, SQLiteStore):  # its lease attempts read the runs they lease
        hook_verb(store, "load_leased", leasing)
    if hasattr(store, "take_handed"):  # PostgreSQL: a run handed to the worker by its sender
        take_handed = store.take_handed

        def taken(*args: Any) -> tuple[list[Lease], list[str]]:
            leases, old = take_handed(*args)
            return leasing(lambda: leases)(), old

        store.take_handed = taken
    if hasattr(store, "lease_named_alone"):  # PostgreSQL: a run its notification named
        named = store.lease_named_alone

        async def leased_named(*args: Any, **kwargs: Any) -> list[Lease]:
            found = await named(*args, **kwargs)
            return leasing(lambda: found)()

        store.lease_named_alone = leased_named
    return loads


async def test_a_run_that_cannot_be_loaded_fails_after_its_attempts(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 1: load_run raising (undecodable stored data, an unknown step record) never
    # reached the executor's failed-attempt path: the run was leased again after every TTL
    # without end
    @app.function(id="unloadable", trigger=TriggerEvent("go"), retries=2)
    async def unloadable(ctx: Context) -> Any:
        return "never"

    async with make_engine() as t:
        loads = _count_loads(t, lambda run_id: ValueError(f"cannot decode run {run_id}"))
        run = await t.trigger(Event("go"), timeout=60)
        history = await t.history(run.run_id)
    assert run.status == "FAILED"
    assert run.error is not None and run.error["name"] == "ValueError"
    assert "cannot decode run" in run.error["message"]
    assert len(loads) == 3  # retries=2: three attempts, then the run failed
    retries = [h for h in history if h.kind == "FUNCTION_FAILED"]
    assert [h.attempt for h in retries] == [0, 1]
    assert all(h.data and "retry_at" in h.data for h in retries)
    [failed] = [h for h in history if h.kind == "RUN_FAILED"]
    assert failed.data is not None and "cannot decode run" in failed.data["message"]


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)
async def test_a_run_whose_stored_event_is_corrupt_fails_after_its_attempts(
    app: App, make_engine: Callable[..., TestEngine], store_kind: str, tmp_path: Path
) -> None:
    # issue 6 item 1: the run's trigger event stored in the database no longer decodes
    @app.function(id="napper", trigger=TriggerEvent("go"), retries=1)
    async def napper(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1m")
        return "woke"

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("go", {"n": 1}))
        [run] = await app.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "SLEEPING", timeout=30)
        _corrupt_events(store_kind, tmp_path / "stepline.db")
        loads = _count_loads(t, lambda run_id: None)
        clock.autojump = True
        clock.advance(61)
        t.worker.wake()  # type: ignore[union-attr]
        ended = await t.wait_for_run(run.run_id, timeout=60)
        history = await t.history(run.run_id)
    assert ended.status == "FAILED"
    assert len(loads) == 2  # retries=1: two attempts
    assert [h.attempt for h in history if h.kind == "FUNCTION_FAILED"] == [0]
    assert [h.kind for h in history if h.kind == "RUN_FAILED"] == ["RUN_FAILED"]


def _corrupt_events(store_kind: str, path: Path) -> None:
    """Every stored event's data no JSON any more (``make_engine``'s SQLite file, or the
    emptied PostgreSQL database of ``store_kind``)."""
    if store_kind == "sqlite":
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE events SET data = x'ff00fe'")
    else:
        with psycopg.connect(store_kind, autocommit=True) as conn:
            conn.execute("UPDATE events SET data = '\\xff00fe'::bytea")


@pytest.mark.parametrize("fault", ["commit", "load_and_commit"])
async def test_a_run_whose_commits_always_fail_is_failed_after_max_passes(
    app: App, make_engine: Callable[..., TestEngine], fault: str
) -> None:
    # issue 6 item 1: when even the failed attempt's commit keeps failing (not a store outage,
    # not a lost lease), the store's count of passes begun without progress bounds the run
    entered: list[int] = []

    @app.function(id="stuck", trigger=TriggerEvent("go"), retries=3)
    async def stuck(ctx: Context) -> Any:
        entered.append(1)
        return await ctx.step.run("work", lambda: 1)

    async with make_engine() as t:
        assert t.worker is not None
        t.worker.max_passes = 4
        load_fault = fault == "load_and_commit"
        loads = _count_loads(t, lambda run_id: RuntimeError("bad row") if load_fault else None)
        _refuse_commits(t)
        run = await t.trigger(Event("go"), timeout=60)
        history = await t.history(run.run_id)
    assert len(loads) == 4  # passes begun: the cap, then the store failed the run
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["name"] == "LimitExceededError"
    assert run.error["message"] == f"run {run.run_id} re-entered 4 times without progress"
    [failed] = [h for h in history if h.kind == "RUN_FAILED"]
    assert failed.data is not None and failed.data["limit"] == "passes"


async def test_a_run_failed_by_the_re_entry_cap_announces_its_failure(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6: a run the store fails at lease time emits inngest/function.finished and
    # inngest/function.failed as every other failed run does (Inngest's finalize), with the
    # run's events and the cap's error; a function listening to function.failed runs
    seen: list[dict[str, Any]] = []

    @app.function(id="stuck", trigger=TriggerEvent("go"))
    async def stuck(ctx: Context) -> Any:
        return await ctx.step.run("work", lambda: 1)

    @app.function(
        id="on-failure",
        trigger=TriggerEvent("inngest/function.failed", if_='event.data.function_id == "stuck"'),
    )
    async def on_failure(ctx: Context) -> Any:
        seen.append(dict(ctx.event.data))

    async with make_engine() as t:
        assert t.worker is not None
        t.worker.max_passes = 3
        _refuse_commits(t, only_run_of="stuck")
        run = await t.trigger(Event("go", {"order": 7}), timeout=60)
        [handler] = await until(
            "the function.failed handler's run", lambda: t.runs(function_id="on-failure")
        )
        await t.wait_for_run(handler.run_id, timeout=60)
        announced = {
            name: [e.event.data for e in await app.events(name=name)]
            for name in ("inngest/function.finished", "inngest/function.failed")
        }
    assert run.status == "FAILED"
    error = {
        "name": "LimitExceededError",
        "message": f"run {run.run_id} re-entered 3 times without progress",
    }
    for name, [data] in announced.items():
        assert data["function_id"] == "stuck" and data["run_id"] == run.run_id, name
        assert data["error"] == error, name
        assert data["event"]["name"] == "go" and data["event"]["data"] == {"order": 7}
        assert data["events"] == [data["event"]]
        assert data["_inngest"] == {"status": "Failed"}
    assert [d["run_id"] for d in seen] == [run.run_id]


def _refuse_commits(t: TestEngine, only_run_of: str | None = None) -> None:
    """Make every ``commit_pass`` raise (a fault that never clears); ``only_run_of``: only
    those of runs of this function."""
    store = t.app.engine.store
    refused: set[str] = set()

    def refusing(commit_pass: CommitPass) -> CommitPass:
        def refused_commit(commit: Any, now: float, matcher: Any) -> Any:
            if only_run_of is not None and commit.run_id not in refused:
                run = store.get_run(commit.run_id)
                if run is None or run.function_id != only_run_of:
                    return commit_pass(commit, now, matcher)
                refused.add(commit.run_id)
            raise RuntimeError("injected commit fault")

        return refused_commit

    hook_commit_pass(store, refusing)
