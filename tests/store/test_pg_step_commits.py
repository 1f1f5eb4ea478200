"""A pass's step commits on PostgreSQL: the run's RUNNING mark (``MARK_RUNNING``: RUNNING,
started, no pass spent) is sent by the first commit of a lease; once a transaction that sent it
committed, the later commits of that lease leave the run's row alone (it stays so until the
lease ends), and a new lease's first commit marks the run again. The memory is per run: the
runs one lease statement takes share its token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from tests.store.builders import T0, TTL, cel_matches, lease, start, step

from stepline.store.interface import Replay
from stepline.store.postgres import PostgresStore, _pipeline
from stepline.store.postgres import queries as q
from stepline.store.records import MAX_PASSES_WITHOUT_PROGRESS, Lease, PassCommit, RunEnd


class JobFailed(Exception):
    """A job's own error, raised after its pass commit was queued."""


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The text of every statement the store sends (its round trips, and single statements)."""
    texts: list[str] = []
    send_all, execute = _pipeline.send_all, psycopg.Connection.execute

    def sending(conn: Any, statements: Sequence[tuple[str, Any]]) -> Any:
        texts.extend(query for query, _ in statements)
        return send_all(conn, statements)

    def executing(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        texts.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(_pipeline, "send_all", sending)
    monkeypatch.setattr(psycopg.Connection, "execute", executing)
    return texts


def commit_step(store: PostgresStore, held: Lease, position: int, fail: bool = False) -> None:
    """One step's pass commit, in an optimistic transaction (the writer's first try); ``fail``:
    the job raises after its commit was queued, so nothing of the transaction commits."""
    commit = PassCommit(
        held.run_id, held.token, steps=[step(held.run_id, f"h{position}", position)]
    )
    with store.optimistic_transaction() as tx:
        assert tx.commit_pass(commit, T0 + position, cel_matches) == []
        if fail:
            raise JobFailed


def marks(texts: list[str]) -> int:
    return sum(text.count(q.MARK_RUNNING.strip()) for text in texts)


def run_row(url: str, run_id: str) -> tuple[str, int, float | None]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, passes, started_at FROM runs WHERE run_id = %s", (run_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def commit_marks(
    store: PostgresStore, url: str, sent: list[str], held: Lease, position: int
) -> None:
    """A commit of ``held`` whose run has a pass counted (``passes`` 1) sends the mark: the
    run's pass count goes back to 0."""
    assert run_row(url, held.run_id)[:2] == ("RUNNING", 1)
    sent.clear()
    commit_step(store, held, position)
    assert marks(sent) == 1
    assert run_row(url, held.run_id)[:2] == ("RUNNING", 0)


def test_the_later_commits_of_a_lease_leave_the_run_row_alone(
    pg_store: PostgresStore, pg_url: str, sent: list[str]
) -> None:
    start(pg_store, "r1")
    (held,) = lease(pg_store)  # the lease counts a pass; the first commit marks progress
    commit_marks(pg_store, pg_url, sent, held, 1)
    assert run_row(pg_url, "r1") == ("RUNNING", 0, T0)
    sent.clear()
    for position in range(2, 5):
        commit_step(pg_store, held, position)
    assert marks(sent) == 0  # nothing to change: not sent
    assert run_row(pg_url, "r1") == ("RUNNING", 0, T0)
    assert [s.hash for s in pg_store.get_steps("r1")] == ["h1", "h2", "h3", "h4"]


def test_a_new_lease_s_first_commit_marks_the_run_again(
    pg_store: PostgresStore, pg_url: str, sent: list[str]
) -> None:
    start(pg_store, "r1")
    (first,) = lease(pg_store)
    commit_step(pg_store, first, 1)
    suspend = PassCommit("r1", first.token, end=RunEnd("SLEEPING", due_at=T0))
    with pg_store.transaction() as tx:  # the pass ends: its lease with it
        assert tx.commit_pass(suspend, T0, cel_matches) == []
    (second,) = lease(pg_store, now=T0 + 1)
    assert second.token != first.token
    commit_marks(pg_store, pg_url, sent, second, 2)


def test_a_mark_whose_transaction_did_not_commit_is_sent_again(
    pg_store: PostgresStore, pg_url: str, sent: list[str]
) -> None:
    start(pg_store, "r1")
    (held,) = lease(pg_store)
    with pytest.raises(Replay):  # rolled back, for the writer to make again carefully
        commit_step(pg_store, held, 1, fail=True)
    assert pg_store.get_steps("r1") == []
    commit_marks(pg_store, pg_url, sent, held, 2)  # not marked by the commit rolled back


def test_a_careful_transaction_s_mark_is_not_taken_for_committed(
    pg_store: PostgresStore, pg_url: str, sent: list[str]
) -> None:
    """A careful transaction's verbs are rolled back alone (savepoints): its marks are sent
    every time, never remembered."""
    start(pg_store, "r1")
    (held,) = lease(pg_store)
    for position in (1, 2):
        commit = PassCommit("r1", held.token, steps=[step("r1", f"h{position}", position)])
        with pg_store.transaction() as tx:
            assert tx.commit_pass(commit, T0, cel_matches) == []
    assert marks(sent) == 2
    assert run_row(pg_url, "r1")[:2] == ("RUNNING", 0)


def test_each_run_of_a_shared_lease_token_is_marked_by_its_own_first_commit(
    pg_store: PostgresStore, pg_url: str, sent: list[str]
) -> None:
    """One lease statement gives every run it takes the same token: a commit of one of them
    marks that run only, so another run's first commit under the token still marks it."""
    start(pg_store, "r1", "r2")
    held = {h.run_id: h for h in lease(pg_store)}
    assert held["r1"].token == held["r2"].token  # one lease statement, one token
    commit_marks(pg_store, pg_url, sent, held["r1"], 1)
    commit_marks(pg_store, pg_url, sent, held["r2"], 1)  # progress committed: no pass spent
    sent.clear()
    commit_step(pg_store, held["r2"], 2)
    assert marks(sent) == 0  # r2's own mark is remembered


def test_runs_progressing_in_every_pass_are_not_failed_by_the_re_entry_cap(
    pg_store: PostgresStore,
) -> None:
    """Two runs leased together, each committing a step in every pass, their leases then lost
    (a worker killed) and taken again: neither is failed by the re-entry cap, since every
    pass of each made progress."""
    start(pg_store, "r1", "r2")
    for n in range(MAX_PASSES_WITHOUT_PROGRESS + 1):
        now = T0 + n * (TTL + 1)  # the last leases expired: taken again
        held = {h.run_id: h for h in lease(pg_store, now=now)}
        assert set(held) == {"r1", "r2"}, (n, set(held))
        for run_id in ("r1", "r2"):
            commit_step(pg_store, held[run_id], n + 1)


def test_statements_of_distinct_texts_are_left_as_they_are() -> None:
    """``_coalesce.coalesced`` gives back what it got when no text comes twice."""
    from stepline.store.postgres._coalesce import coalesced

    queued: list[tuple[str, Any]] = [
        (q.UPSERT_STEP, ("r1", "h1")),
        (q.INSERT_HISTORY, ("r1",)),
        (q.MARK_RUNNING, (T0, "r1")),
    ]
    tables: list[Any] = ["steps", "history", "runs"]
    found, found_tables = coalesced(queued, tables)
    assert found is queued and found_tables is tables
