"""Optimistic group commits on PostgreSQL (``PostgresStore.optimistic_transaction``, the writer's
first try): a batch's jobs without a savepoint each, their statements sent together with the
``COMMIT``, lease checks made by the server; anything failing makes the batch again, each job in
its own savepoint (``Replay``), so every job gets the outcome it would have had alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
import pytest
from tests.store.builders import (
    SERVED,
    T0,
    cel_matches,
    event,
    ingest,
    lease,
    start,
    step,
    suspend_on_wait,
    wait,
)

from stepline import App, Event, TriggerEvent
from stepline.engine.writer import BatchWriter
from stepline.errors import LeaseLostError
from stepline.store._admission_rules import DeferralRow
from stepline.store.postgres import PostgresStore
from stepline.store.postgres import queries as q
from stepline.store.records import (
    EventIngest,
    HistoryRecord,
    Lease,
    NewRun,
    PassCommit,
    RunFilter,
)

Job = Callable[[Any], Any]


def one_batch(store: PostgresStore, jobs: Sequence[Job]) -> tuple[list[Any], BatchWriter]:
    """Every job's outcome (a result or an exception), the jobs applied as one batch."""

    async def run() -> tuple[list[Any], BatchWriter]:
        writer = BatchWriter(store, loop_batch=0)  # the thread's path (loop: test_pg_loop_commits)
        try:
            found = await asyncio.gather(*map(writer.submit, jobs), return_exceptions=True)
        finally:
            writer.close()
        return list(found), writer

    return asyncio.run(run())


def commit_job(held: Lease, output: int) -> Job:
    commit = PassCommit(held.run_id, held.token, steps=[step(held.run_id, "h1", 0, output=output)])
    return lambda tx: tx.commit_pass(commit, T0, cel_matches)


def outputs(store: PostgresStore, *run_ids: str) -> dict[str, bytes | None]:
    return {r: s.output_json for r in run_ids for s in store.get_steps(r)}


def test_a_batch_of_pass_commits_is_sent_with_its_commit(pg_store: PostgresStore) -> None:
    start(pg_store, "r1", "r2", "r3")
    held = lease(pg_store)

    def trips(tx: Any) -> int:  # before the COMMIT is sent
        return int(tx.statements.round_trips)

    found, writer = one_batch(pg_store, [*(commit_job(h, i) for i, h in enumerate(held)), trips])
    assert found == [[], [], [], 0]  # three commits, not one round trip before the COMMIT's
    assert (writer.transactions, writer.replays) == (1, 0)
    assert outputs(pg_store, "r1", "r2", "r3") == {"r1": b"0", "r2": b"1", "r3": b"2"}


def test_a_lost_lease_makes_the_batch_again_and_fails_only_its_job(
    pg_store: PostgresStore, pg_url: str
) -> None:
    start(pg_store, "r1", "r2")
    held = {h.run_id: h for h in lease(pg_store, "w1")}
    with psycopg.connect(pg_url, autocommit=True) as conn:  # another process took r2 over
        conn.execute("UPDATE queue SET lease_token = 'theirs' WHERE run_id = 'r2'")
    found, writer = one_batch(pg_store, [commit_job(held["r1"], 1), commit_job(held["r2"], 2)])
    assert found[0] == [] and isinstance(found[1], LeaseLostError)
    assert (writer.transactions, writer.replays) == (1, 1)
    assert outputs(pg_store, "r1", "r2") == {"r1": b"1"}


def test_a_run_cancelled_during_its_pass_keeps_its_step_result(pg_store: PostgresStore) -> None:
    start(pg_store, "r1", "r2")
    held = {h.run_id: h for h in lease(pg_store)}
    with pg_store.transaction() as tx:
        assert tx.cancel_run("r1", T0, "by a test") == "fn"
    found, writer = one_batch(pg_store, [commit_job(held["r1"], 1), commit_job(held["r2"], 2)])
    assert found == [None, []]  # None: cancelled during its pass
    assert writer.replays == 1
    assert outputs(pg_store, "r1", "r2") == {"r1": b"1", "r2": b"2"}
    cancelled = pg_store.get_run("r1")
    assert cancelled is not None and cancelled.status == "CANCELLED"


def test_a_job_catching_a_failed_statement_gets_its_savepoint_when_made_again(
    pg_store: PostgresStore,
) -> None:
    start(pg_store, "r1")
    (held,) = lease(pg_store)

    def catches(tx: Any) -> str:
        try:
            with tx.savepoint():
                tx.statements.run("SELECT 1 / 0")
        except psycopg.errors.DivisionByZero:
            return "caught"  # optimistic: the transaction is spoiled all the same
        return "not raised"

    found, writer = one_batch(pg_store, [commit_job(held, 1), catches])
    assert found == [[], "caught"]
    assert (writer.transactions, writer.replays) == (1, 1)
    assert outputs(pg_store, "r1") == {"r1": b"1"}


def test_events_sent_in_a_batch_made_again_are_stored_once(pg_url: str) -> None:
    """The send's group is applied twice (a failing job in its batch): its senders get
    their ids once, and its events and runs are stored once."""
    app = App("opt", db=pg_url)

    @app.function(id="fn", trigger=TriggerEvent("opt/ev"))
    async def fn(ctx: Any) -> None:
        return None

    def fails(tx: Any) -> None:
        with tx.savepoint():
            tx.statements.run("SELECT 1 / 0")

    async def run() -> list[str]:
        writer = app.engine.writer
        sending = asyncio.ensure_future(app.send_async([Event(name="opt/ev", data={})] * 2))
        await asyncio.sleep(0)  # the send's job is queued; this one joins its batch
        failing = writer.submit(fails)
        ids = await sending
        with pytest.raises(Exception, match="division by zero"):
            await failing
        assert writer.replays == 1
        return ids

    try:
        ids = asyncio.run(run())
        assert len(set(ids)) == 2
        assert app.engine.store.count_runs(RunFilter(function_id="fn")) == 2
    finally:
        app.close()


def test_a_run_that_spent_its_passes_is_failed_when_the_lease_is_made_again(
    pg_store: PostgresStore, pg_url: str
) -> None:
    start(pg_store, "r1", "r2")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # r1 entered 5 passes, no progress
        conn.execute("UPDATE runs SET passes = 5 WHERE run_id = 'r1'")

    def leasing(tx: Any) -> list[str]:
        return [h.run_id for h in tx.lease_due("w1", T0, 10, 30.0, SERVED, 3)]

    found, writer = one_batch(pg_store, [leasing])
    assert found == [["r2"]]
    assert writer.replays == 1  # the server refused the optimistic lease of r1
    failed = pg_store.get_run("r1")
    assert failed is not None and failed.status == "FAILED"


def test_a_due_debounce_is_flushed_when_the_housekeeping_is_made_again(
    pg_store: PostgresStore,
) -> None:
    ingest(pg_store, EventIngest(event("ev-d"), ()))  # the debounce's event, stored
    row = DeferralRow("debounce", "fn", "k", ["ev-d"], T0, T0 + 60, NewRun("rd", "fn", ("ev-d",)))
    with pg_store.transaction() as tx:
        tx.put_deferral(row)

    def housekeeping(tx: Any) -> list[list[str]]:
        return [list(r.run_ids) for r in tx.flush_deferrals(T0 + 61)]

    found, writer = one_batch(pg_store, [housekeeping])
    assert found == [[["rd"]]]
    assert writer.replays == 1  # the server refused the optimistic "none due"
    again, writer = one_batch(pg_store, [housekeeping])
    assert again == [[]] and writer.replays == 0  # read, not assumed, for a while


def test_an_event_a_run_waits_for_resolves_it_when_the_send_is_made_again(
    pg_store: PostgresStore,
) -> None:
    start(pg_store, "r1")
    (held,) = lease(pg_store)
    suspend_on_wait(pg_store, held, wait("r1", "w1", 'async.data.order == "o-1"'))

    def sending(n: int) -> Job:
        paid = event(f"pay-{n}", "payment/received", {"order": "o-1"})
        return lambda tx: [
            r.resumed_run_ids for r in tx.ingest([EventIngest(paid)], T0, cel_matches)
        ]

    found, writer = one_batch(pg_store, [sending(1)])
    assert found == [[("r1",)]]
    assert writer.replays == 1  # the server refused the optimistic "nobody waits for it"
    found, writer = one_batch(pg_store, [sending(2)])
    assert found == [[()]] and writer.replays == 0  # read, not assumed, from now on


def test_a_pass_commit_sent_whole_has_no_begin_and_commit(
    pg_store: PostgresStore, sent: list[str]
) -> None:
    """All of it in one round trip: the pipeline's statements are one transaction, committed by
    its sync (two statements fewer for the server); the lease lock comes first, in the one
    statement of the hold and the writes (``_statements._held_with``)."""
    start(pg_store, "r1")
    (held,) = lease(pg_store)
    sent.clear()
    found, writer = one_batch(pg_store, [commit_job(held, 1)])
    assert found == [[]] and (writer.transactions, writer.replays) == (1, 0)
    [statement] = sent
    assert statement.startswith(f"WITH h AS ({q.HOLD_LEASE})") and "INSERT INTO steps" in statement
    assert not {"BEGIN", "COMMIT"} & {text.strip() for text in sent}
    assert outputs(pg_store, "r1") == {"r1": b"1"}


def test_a_pass_commit_sent_without_begin_is_undone_whole_when_its_lease_was_lost(
    pg_store: PostgresStore, pg_url: str
) -> None:
    start(pg_store, "r1")
    (held,) = lease(pg_store, "w1")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # another process took r1 over
        conn.execute("UPDATE queue SET lease_token = 'theirs' WHERE run_id = 'r1'")
    history = pg_store.get_history("r1")
    commit = PassCommit(
        "r1",
        held.token,
        steps=[step("r1", "h1", 0, output=1)],
        history=[HistoryRecord("r1", T0 + 1, "STEP_COMPLETED", "s1")],
    )
    found, writer = one_batch(pg_store, [lambda tx: tx.commit_pass(commit, T0, cel_matches)])
    assert isinstance(found[0], LeaseLostError) and writer.replays == 1
    assert outputs(pg_store, "r1") == {}
    assert pg_store.get_history("r1") == history


AT_COMMIT = """
CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION {raised}; END $$;
CREATE CONSTRAINT TRIGGER refused AFTER INSERT ON steps {deferred} FOR EACH ROW
EXECUTE FUNCTION refuse();
"""


@contextmanager
def installed(pg_url: str, create: str, drop: str) -> Iterator[None]:
    """The statements ``create`` run on the database for the block, ``drop`` after it."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(create.encode())
        try:
            yield
        finally:  # the database is the next test's too
            conn.execute(drop.encode())


def _refusing(pg_url: str, raised: str, deferred: str) -> AbstractContextManager[None]:
    """Every insert into steps refused (``raised``), at the commit when ``deferred``."""
    create = AT_COMMIT.format(raised=raised, deferred=deferred)
    return installed(pg_url, create, "DROP FUNCTION refuse CASCADE")


def test_a_pass_commit_refused_by_the_commit_is_made_again_never_reported_committed(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """Sent without BEGIN, its commit's error (a deferred constraint here, a full NOTIFY queue
    or a serialization failure alike) comes after the last statement's: the transaction was
    rolled back, so it is made again carefully, where its COMMIT fails the job (review2's
    finding 1: the job was told it committed, and its step was lost)."""
    start(pg_store, "r1")
    (held,) = lease(pg_store)
    with _refusing(pg_url, "'refused at commit'", "DEFERRABLE INITIALLY DEFERRED"):
        found, writer = one_batch(pg_store, [commit_job(held, 1)])
    assert isinstance(found[0], BaseException), f"told it committed: {found}"
    assert writer.replays == 1  # known not committed, not an unknown outcome
    assert outputs(pg_store, "r1") == {}


def test_a_statement_cancelled_in_a_pass_commit_sent_without_begin_is_known_not_committed(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """A statement's error of class 57 (a statement_timeout, a cancel) in a transaction sent
    without BEGIN: the sync rolled it back (with BEGIN, it was left failed), so the batch is
    made again carefully, its outcome not reported unknown."""
    start(pg_store, "r1")
    (held,) = lease(pg_store)
    with _refusing(pg_url, "USING ERRCODE = 'query_canceled'", ""):
        found, writer = one_batch(pg_store, [commit_job(held, 1)])
    assert isinstance(found[0], BaseException)
    assert writer.replays == 1
    assert outputs(pg_store, "r1") == {}
