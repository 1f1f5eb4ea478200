"""A value PostgreSQL cannot hold in one job of a group commit: refused by the server (a data
exception, SQLSTATE class 22: an integer out of range) or by psycopg before it is sent (a NUL
in a text: a ``DataError`` without a SQLSTATE). Either way the job gets ``StoreRefusedValue``
(the worker counts it as a failed attempt of that run, ``tests/integration/
test_refused_values.py``) and the other jobs of its batch commit. Before, psycopg's own
refusal in an optimistic transaction lost the whole batch (every job got a ``StoreError``,
and each worker whose pass commit was in it stopped), and either refusal was a plain
``StoreError`` (the worker stopped)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from tests.store.builders import T0, cel_matches, lease, start, step
from tests.store.test_pg_optimistic import one_batch, outputs

from stepline.errors import StoreRefusedValue
from stepline.store.postgres import PostgresStore
from stepline.store.records import Admission, Lease, NewRun, PassCommit

Job = Callable[[Any], Any]


def good(held: Lease, output: int) -> Job:
    commit = PassCommit(held.run_id, held.token, steps=[step(held.run_id, "h1", 0, output=output)])
    return lambda tx: tx.commit_pass(commit, T0, cel_matches)


def refused(held: Lease, how: str) -> Job:
    commit = PassCommit(held.run_id, held.token, steps=[step(held.run_id, "h1", 0, output=1)])
    if how == "by psycopg":  # a NUL in a text column: psycopg refuses it before sending it
        commit.steps[0] = replace(commit.steps[0], step_id="a\x00b")
    else:  # a concurrency limit over a 32-bit integer: the server refuses it (22003)
        admission = Admission(concurrency=(("fn\x1fkey", 2**31),))
        child = NewRun("child", "fn", ("e-child",), held.run_id, "h2", admission, "app")
        commit.child_runs.append(child)
    return lambda tx: tx.commit_pass(commit, T0, cel_matches)


@pytest.mark.parametrize("how", ["by psycopg", "by the server"])
def test_a_refused_value_fails_its_job_alone(pg_store: PostgresStore, how: str) -> None:
    start(pg_store, "r1", "r2", "r3")
    held = {h.run_id: h for h in lease(pg_store)}
    jobs = [good(held["r1"], 1), refused(held["r2"], how), good(held["r3"], 3)]
    found, writer = one_batch(pg_store, jobs)
    assert found[0] == [] and found[2] == []
    assert isinstance(found[1], StoreRefusedValue), found[1]
    assert "refused a value" in str(found[1])
    assert outputs(pg_store, "r1", "r2", "r3") == {"r1": b"1", "r3": b"3"}
    assert writer.replays >= 1  # the optimistic batch, then each job in its savepoint


@pytest.mark.parametrize("how", ["by psycopg", "by the server"])
def test_a_refused_value_in_a_loop_commit_fails_its_job_alone(
    pg_store: PostgresStore, how: str
) -> None:
    # the event loop's commit (``commit_on_loop``) gives it up (``Replay``): the writer's
    # thread makes it again, each job in its savepoint
    from stepline.engine.writer import BatchWriter

    start(pg_store, "r1", "r2")
    held = {h.run_id: h for h in lease(pg_store)}
    pg_store.load_run("none")  # an idle connection in the read pool: loop commits are possible

    async def run() -> list[Any]:
        writer = BatchWriter(pg_store)
        try:
            jobs = [good(held["r1"], 1), refused(held["r2"], how)]
            return list(await asyncio.gather(*map(writer.submit, jobs), return_exceptions=True))
        finally:
            writer.close()

    found = asyncio.run(run())
    assert found[0] == []
    assert isinstance(found[1], StoreRefusedValue), found[1]
    assert outputs(pg_store, "r1", "r2") == {"r1": b"1"}


def test_a_refused_value_in_the_commits_round_trip_is_not_an_unknown_outcome(
    pg_store: PostgresStore,
) -> None:
    # writes alone go with the COMMIT (an optimistic transaction's one round trip): psycopg's
    # refusal there sent nothing, yet it was taken for a commit of unknown outcome
    # (StoreUnavailable for every job of the batch: "retry later")
    def sync(name: str) -> Job:
        return lambda tx: tx.put_sdk_app("app", name, b"{}", 1.0)

    found, _ = one_batch(pg_store, [sync("a1"), sync("a\x00b"), sync("a3")])
    assert found[0] is None and found[2] is None, found
    assert isinstance(found[1], StoreRefusedValue), found[1]
    assert {name for name, _ in pg_store.sdk_apps("app")} == {"a1", "a3"}


def test_a_refused_value_in_a_loop_commits_round_trip_is_not_an_unknown_outcome(
    pg_store: PostgresStore,
) -> None:
    from stepline.engine.writer import BatchWriter

    def sync(name: str) -> Job:
        return lambda tx: tx.put_sdk_app("app", name, b"{}", 1.0)

    pg_store.load_run("none")  # an idle connection in the read pool: loop commits are possible

    async def run() -> list[Any]:
        writer = BatchWriter(pg_store)
        try:
            jobs = [sync("a1"), sync("a\x00b")]
            return list(await asyncio.gather(*map(writer.submit, jobs), return_exceptions=True))
        finally:
            writer.close()

    found = asyncio.run(run())
    assert found[0] is None, found
    assert isinstance(found[1], StoreRefusedValue), found[1]
    assert {name for name, _ in pg_store.sdk_apps("app")} == {"a1"}
