"""Property: any sequence of lease / heartbeat / commit / release operations agrees with a model
of the queue, so a run is never held by two leases and only the latest token can commit."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import pgtest
from stepline.errors import LeaseLostError
from stepline.store.records import Lease, PassCommit, RunEnd

from .builders import T0, TTL, commit, heartbeat, lease, start
from .conftest import open_backend

OWNERS = st.sampled_from(["w1", "w2", "w3"])


@dataclass
class _Run:
    """The model of one run's queue row."""

    status: str = "QUEUED"
    due_at: float | None = None
    owner: str | None = None
    token: str | None = None
    expires_at: float | None = None

    def eligible_at(self, now: float) -> float | None:
        """Its place in the queue (its due time), if it is leasable at ``now``: due and not
        leased, or leased with an expired lease (a crashed pass keeps its original place)."""
        if self.status == "COMPLETED":
            return None
        if self.owner is None:
            return self.due_at if self.due_at is not None and self.due_at <= now else None
        assert self.expires_at is not None
        return self.due_at if self.expires_at <= now else None


class LeaseMachine(RuleBasedStateMachine):
    """Drives one store and the model side by side."""

    backend = "memory"
    pg_url: str | None = None  # the database of the PostgreSQL machine, emptied per example
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp()
        if self.pg_url is not None:
            pgtest.empty_database(self.pg_url)
        self.store = open_backend(self.backend, Path(self.tmp) / "s.db", self.pg_url)
        self.now = T0
        self.runs: dict[str, _Run] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule()
    def add_run(self) -> None:
        run_id = f"r{len(self.runs)}"
        start(self.store, run_id, now=self.now)
        self.runs[run_id] = _Run(due_at=self.now)

    @rule(seconds=st.sampled_from([0.0, 1.0, 10.0, TTL, TTL + 1]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(target=leases, owner=OWNERS, limit=st.integers(1, 4))
    def lease_due(self, owner: str, limit: int) -> object:
        eligible = {
            run_id: t
            for run_id, run in self.runs.items()
            if (t := run.eligible_at(self.now)) is not None
        }
        got = lease(self.store, owner, now=self.now, limit=limit, ttl=TTL)
        taken = [held.run_id for held in got]
        assert len(taken) == len(set(taken)) == min(limit, len(eligible))
        assert set(taken) <= set(eligible)
        times = [eligible[r] for r in taken]
        assert times == sorted(times), "leases come earliest first"
        skipped = [t for r, t in eligible.items() if r not in taken]
        assert not times or not skipped or max(times) <= min(skipped)
        for held in got:
            run = self.runs[held.run_id]
            assert held.token != run.token
            run.owner, run.token, run.expires_at = owner, held.token, self.now + TTL
            run.status = "RUNNING"  # a leased run is RUNNING (its pass executes)
        return multiple(*got)

    @rule(owner=OWNERS)
    def beat(self, owner: str) -> None:
        run_ids = sorted(self.runs)
        lost = heartbeat(self.store, owner, run_ids, now=self.now, ttl=TTL)
        assert sorted(lost) == [r for r in run_ids if self.runs[r].owner != owner]
        for run in self.runs.values():
            if run.owner == owner:
                run.expires_at = self.now + TTL

    @rule(held=leases, end=st.sampled_from([None, "SLEEPING", "COMPLETED"]))
    def commit_pass(self, held: Lease, end: str | None) -> None:
        run = self.runs[held.run_id]
        until = self.now + 5
        pass_commit = PassCommit(
            held.run_id, held.token, end=None if end is None else RunEnd(end, due_at=until)
        )
        if run.token != held.token:
            with pytest.raises(LeaseLostError):
                commit(self.store, pass_commit, now=self.now)
            return
        commit(self.store, pass_commit, now=self.now)
        run.status = end or "RUNNING"
        if end is not None:
            run.owner = run.token = run.expires_at = None
            run.due_at = until if end == "SLEEPING" else None

    @rule(owner=OWNERS)
    def release(self, owner: str) -> None:
        with self.store.transaction() as tx:
            released = tx.release_owner(owner, self.now)
        mine = [run for run in self.runs.values() if run.owner == owner]
        assert released == len(mine)
        for run in mine:
            run.owner = run.token = run.expires_at = None
            # released runs keep their place in the queue (due no later than now)
            run.due_at = self.now if run.due_at is None else min(run.due_at, self.now)

    @invariant()
    def same_next_due_and_statuses(self) -> None:
        times = [
            run.due_at if run.owner is None else run.expires_at
            for run in self.runs.values()
            if run.status != "COMPLETED"
        ]
        assert self.store.next_due_at() == min((t for t in times if t is not None), default=None)
        for run_id, run in self.runs.items():
            stored = self.store.get_run(run_id)
            assert stored is not None
            assert stored.status == run.status


class SQLiteLeaseMachine(LeaseMachine):
    backend = "sqlite"


TestLeasesOnMemory = LeaseMachine.TestCase
TestLeasesOnMemory.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLeasesOnSQLite = SQLiteLeaseMachine.TestCase
TestLeasesOnSQLite.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)


def test_leases_on_postgres(pg_database: str) -> None:
    class PostgresLeaseMachine(LeaseMachine):
        backend = "postgres"
        pg_url = pg_database

    run_state_machine_as_test(
        PostgresLeaseMachine,
        settings=settings(max_examples=15, stateful_step_count=25, deadline=None),
    )
