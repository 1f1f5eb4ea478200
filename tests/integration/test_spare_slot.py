"""A worker serving several functions keeps its last slot for a function with no pass running
in it (``engine/_spare_slot.py``, issue 8: the first step of a function behind another's
backlog): one function's backlog uses ``concurrency - 1`` slots, and a run of another function
sent meanwhile starts at once, without waiting for a pass of the backlog to end. Before, the
backlog filled every slot and the other run waited for the backlog's passes to end (here: for
ever, they are held in their steps). The worker's concurrency is never exceeded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from _polling import until

import pgtest
from stepline import App, Context, Event, TriggerEvent
from stepline.engine._new_runs import lease_job
from stepline.engine._spare_slot import fitting
from stepline.engine.engine import Engine
from stepline.store.interface import StoreTx
from stepline.store.records import FunctionSet, Lease
from stepline.testing import MockClock

T0 = 1_700_000_000.0


class _Held:
    """Steps that wait for ``release`` and count how many run at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running: dict[str, int] = {}
        self.most = 0  # steps running at once, at most, across functions

    def step(self, name: str) -> Any:
        async def held() -> int:
            self.running[name] = self.running.get(name, 0) + 1
            self.most = max(self.most, sum(self.running.values()))
            try:
                await self.release.wait()
            finally:
                self.running[name] -= 1
            return 1

        return held

    def now(self, name: str) -> int:
        return self.running.get(name, 0)


def _functions(app: App, held: _Held, names: tuple[str, ...]) -> None:
    for name in names:

        def register(name: str) -> None:
            @app.function(id=name, trigger=TriggerEvent(name))
            async def fn(ctx: Context) -> Any:
                return await ctx.step.run("held", held.step(name))

        register(name)


async def test_a_backlog_leaves_the_last_slot_and_another_functions_run_starts_at_once(
    app: App, store_kind: str, tmp_path: Path
) -> None:
    held = _Held()
    _functions(app, held, ("backlog", "quiet", "other"))
    app.attach(pgtest.opened_store(store_kind, tmp_path / "stepline.db"), MockClock(start=T0))
    try:
        await app.send_async([Event("backlog", {"k": k}) for k in range(8)])
        worker = app.make_worker(concurrency=3, worker_id="w", poll_interval=None)
        task = asyncio.create_task(worker.run())
        try:
            await until("the backlog's passes", lambda: held.now("backlog") == 2)
            # sent in the worker's loop while the backlog holds its passes: leased at once
            await app.send_async(Event("quiet"))
            await until("the quiet run's step, the backlog still held", lambda: held.now("quiet"))
            assert held.now("backlog") == 2
            # the worker is full now: a run of a third function waits for a slot
            await app.send_async(Event("other"))
            assert held.now("other") == 0 and len(worker.active) == 3
            held.release.set()
            await until("every run", lambda: worker.passes == 10 and not worker.active)
        finally:
            held.release.set()
            worker.stop()
            await task
    finally:
        app.close()
    assert held.most == 3  # the worker's concurrency, never more


async def test_the_last_slot_is_not_taken_by_a_function_with_a_pass_here(
    app: App, store_kind: str, tmp_path: Path
) -> None:
    held = _Held()
    _functions(app, held, ("a", "b", "c"))
    app.attach(pgtest.opened_store(store_kind, tmp_path / "stepline.db"), MockClock(start=T0))
    try:
        # queued with no worker: its first attempt leases a and b (the fair order), and the
        # last slot is left: both have a pass here, so neither's next run takes it
        await app.send_async([Event("a", {"k": k}) for k in range(2)])
        await app.send_async([Event("b", {"k": k}) for k in range(2)])
        worker = app.make_worker(concurrency=3, worker_id="w", poll_interval=None)
        task = asyncio.create_task(worker.run())
        try:
            await until("the first attempt", lambda: worker.loops >= 1 and worker.active)
            entered = lambda: sum(held.running.values()) == len(worker.active)  # noqa: E731
            await until("every leased pass in its step", entered)
            assert (held.now("a"), held.now("b"), len(worker.active)) == (1, 1, 2)
            await app.send_async(Event("c"))  # a function with no pass here: the last slot
            await until("c's step", lambda: held.now("c"))
            assert len(worker.active) == 3
            held.release.set()
            await until("every run", lambda: worker.passes == 5 and not worker.active)
        finally:
            held.release.set()
            worker.stop()
            await task
    finally:
        app.close()
    assert held.most == 3


@pytest.mark.parametrize(
    ("names", "concurrency", "backlog"),
    [
        (("backlog",), 3, 3),  # one function served: no spare, every slot
        (("backlog", "quiet"), 1, 1),  # a worker of one slot keeps none
    ],
)
async def test_no_spare_slot_with_one_function_or_one_slot(
    app: App,
    store_kind: str,
    tmp_path: Path,
    names: tuple[str, ...],
    concurrency: int,
    backlog: int,
) -> None:
    held = _Held()
    _functions(app, held, names)
    app.attach(pgtest.opened_store(store_kind, tmp_path / "stepline.db"), MockClock(start=T0))
    try:
        await app.send_async([Event("backlog", {"k": k}) for k in range(5)])
        worker = app.make_worker(concurrency=concurrency, worker_id="w", poll_interval=None)
        task = asyncio.create_task(worker.run())
        try:
            await until("the backlog's passes", lambda: held.now("backlog") == backlog)
            held.release.set()
            await until("every run", lambda: worker.passes == 5 and not worker.active)
        finally:
            held.release.set()
            worker.stop()
            await task
    finally:
        app.close()
    assert held.most == concurrency


@pytest.mark.parametrize(
    ("free", "runs", "here", "taken"),
    [
        (3, [("1", "a"), ("2", "a"), ("3", "a")], set(), ["1", "2"]),  # not a function twice
        (2, [("1", "a"), ("2", "b")], {"b"}, ["1"]),  # b has a pass here
        (2, [("1", "a"), ("2", "a"), ("3", "b")], {"a"}, ["1", "3"]),  # the next that fits
        (1, [("1", "a"), ("2", "b")], {"a"}, ["2"]),  # the spare alone
        (1, [("1", None)], set(), []),  # a run whose function is not known: not in the spare
        (3, [("1", "a"), ("2", "b")], {"a", "b"}, ["1", "2"]),  # not filling: all fit
        (0, [("1", "a")], set(), []),
    ],
)
def test_which_runs_fit_when_the_last_slot_is_the_spare(
    free: int, runs: list[tuple[str, str | None]], here: set[str | None], taken: list[str]
) -> None:
    assert fitting(free, runs, here) == taken


class _Tx:
    """A transaction that records the lease verbs an in-process send's lease calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def heartbeat(self, owner: str, run_ids: list[str], now: float, ttl: float) -> list[str]:
        self.calls.append(("heartbeat", len(run_ids)))
        return []

    def lease_due(
        self, owner: str, now: float, limit: int, ttl: float, functions: Any, *_: Any
    ) -> list[Lease]:
        self.calls.append(("lease_due", (limit, functions.function_ids)))
        return [Lease(f"r{limit}", "t", function_id=functions.function_ids[0])]


@pytest.mark.parametrize(
    ("free", "started", "here", "calls"),
    [
        # the spare alone: from the functions with no pass here, without a heartbeat (it reads
        # none of the running passes' functions)
        (1, 1, {"a"}, [("lease_due", (1, ("b", "c")))]),
        # filling the worker: the others first (after the heartbeat), then the spare
        (
            2,
            5,
            {"a"},
            [("heartbeat", 2), ("lease_due", (1, ("a", "b", "c"))), ("lease_due", (1, ("b", "c")))],
        ),
        # not filling it: one lease of every function
        (3, 1, {"a"}, [("heartbeat", 2), ("lease_due", (1, ("a", "b", "c")))]),
        # no spare kept (one function, one slot, a send in flight)
        (1, 1, None, [("heartbeat", 2), ("lease_due", (1, ("a", "b", "c")))]),
    ],
)
def test_an_in_process_sends_lease_of_the_spare_slot(
    free: int, started: int, here: set[str | None] | None, calls: list[tuple[str, Any]]
) -> None:
    engine = cast(Engine, SimpleNamespace(served=FunctionSet("app", ("a", "b", "c"))))
    job = lease_job(engine, "w", ["x", "y"], free, T0, 10.0, 3, here)
    tx = _Tx()
    job(cast(StoreTx, tx), [f"n{i}" for i in range(started)])
    assert tx.calls == calls


class _NamingTx(_Tx):
    """A transaction that leases its new runs by name (``LeasesNewRuns``, as PostgreSQL's)."""

    def __init__(self, new_runs: dict[str, str]) -> None:
        super().__init__()
        self.new_runs = new_runs

    def leasable_new_runs(self) -> dict[str, str]:
        return self.new_runs

    def lease_new_runs(
        self, owner: str, now: float, run_ids: list[str], ttl: float, functions: Any, *_: Any
    ) -> Any:
        self.calls.append(("lease_new_runs", run_ids))
        return lambda: [Lease(r, "t", function_id=self.new_runs[r]) for r in run_ids]


@pytest.mark.parametrize(
    ("free", "started", "new_runs", "here", "calls"),
    [
        # every run started is a leasable new run: those that fit, by name, nothing read
        (3, ["n1", "n2"], {"n1": "a", "n2": "b"}, None, [("lease_new_runs", ["n1", "n2"])]),
        (1, ["n1", "n2"], {"n1": "a", "n2": "b"}, None, [("lease_new_runs", ["n1"])]),
        # the last slot is the spare: not for a function with a pass here
        (2, ["n1", "n2"], {"n1": "a", "n2": "a"}, {"a"}, [("lease_new_runs", ["n1"])]),
        (1, ["n1", "n2"], {"n1": "a", "n2": "b"}, {"a"}, [("lease_new_runs", ["n2"])]),
        # none fits the spare: the fair order's lease of the spare, from the other functions
        (1, ["n1"], {"n1": "a"}, {"a"}, [("lease_due", (1, ("b", "c")))]),
        # a run started that is not leasable by name (keyed, due later): the fair order's lease
        (
            3,
            ["n1", "k1"],
            {"n1": "a"},
            None,
            [("heartbeat", 2), ("lease_due", (2, ("a", "b", "c")))],
        ),
        # a run of a function the worker does not serve: the same
        (3, ["n1"], {"n1": "z"}, None, [("heartbeat", 2), ("lease_due", (1, ("a", "b", "c")))]),
    ],
)
def test_an_in_process_sends_lease_by_name(
    free: int,
    started: list[str],
    new_runs: dict[str, str],
    here: set[str | None] | None,
    calls: list[tuple[str, Any]],
) -> None:
    """A transaction that leases its new runs by name (PostgreSQL: with its commit, no read
    before it) is asked for the runs the send started that fit the worker's free slots, when
    every one of them is a leasable new run of a served function; otherwise the fair order's
    lease as before. Each lease says its function (the spare slot goes by them)."""
    engine = cast(Engine, SimpleNamespace(served=FunctionSet("app", ("a", "b", "c"))))
    job = lease_job(engine, "w", ["x", "y"], free, T0, 10.0, 3, here)
    tx = _NamingTx(new_runs)
    leased, _ = job(cast(StoreTx, tx), started)
    assert tx.calls == calls
    if calls[0][0] == "lease_new_runs":
        assert [(lease.run_id, lease.function_id) for lease in leased()] == [
            (r, new_runs[r]) for r in calls[0][1]
        ]
