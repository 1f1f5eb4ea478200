"""The lease holds of an optimistic group commit's pass commits (``HOLD_LEASE``, each locking its
run's queue row and failing when the token is not its own) are sent as one statement per round
trip (``HOLD_LEASES``, rows locked in run id order, where the first hold stood): a batch of
pass commits makes one lock statement, and a lost lease among them still fails its job alone
once the batch is made again carefully. The hold and the writes after it are one statement
(``_statements._held_with``): a lone step's commit is one statement."""

from __future__ import annotations

import psycopg
from tests.store.builders import lease, start
from tests.store.test_pg_optimistic import commit_job, one_batch, outputs

from stepline.errors import LeaseLostError
from stepline.store.postgres import PostgresStore
from stepline.store.postgres import queries as q
from stepline.store.postgres._merging import _HOLD, Later, _held


def test_the_leases_of_a_batch_of_commits_are_held_in_one_statement(
    pg_store: PostgresStore, sent: list[str]
) -> None:
    start(pg_store, "r1", "r2", "r3")
    held = lease(pg_store)
    sent.clear()
    found, writer = one_batch(pg_store, [commit_job(h, i) for i, h in enumerate(held)])
    assert found == [[], [], []]
    assert (writer.transactions, writer.replays) == (1, 0)
    assert sum(q.HOLD_LEASES in statement for statement in sent) == 1
    assert not any(q.HOLD_LEASE in statement for statement in sent)
    assert outputs(pg_store, "r1", "r2", "r3") == {"r1": b"0", "r2": b"1", "r3": b"2"}


def test_a_lost_lease_among_held_ones_fails_only_its_job(
    pg_store: PostgresStore, pg_url: str
) -> None:
    start(pg_store, "r1", "r2", "r3")
    held = {h.run_id: h for h in lease(pg_store, "w1")}
    with psycopg.connect(pg_url, autocommit=True) as conn:  # another process took r2 over
        conn.execute("UPDATE queue SET lease_token = 'theirs' WHERE run_id = 'r2'")
    jobs = [commit_job(held[r], i) for i, r in enumerate(("r1", "r2", "r3"))]
    found, writer = one_batch(pg_store, jobs)
    assert found[0] == [] and isinstance(found[1], LeaseLostError) and found[2] == []
    assert (writer.transactions, writer.replays) == (1, 1)
    assert outputs(pg_store, "r1", "r2", "r3") == {"r1": b"0", "r3": b"2"}


def test_the_holds_of_a_round_trip_are_one_statement_where_the_first_stood() -> None:
    """``_merging._held``: the holds' (run, token) pairs, once each and in run id order, in one
    ``HOLD_LEASES`` where the first hold stood; the other statements keep their order, the
    other holds' places are gone. A single hold stays ``HOLD_LEASE`` (its table dropped)."""
    step = ("INSERT INTO steps VALUES (%s)", ("r2",))
    queued = [
        ("BEGIN", None),
        (q.HOLD_LEASE, ("r2", "t2")),
        step,
        (q.HOLD_LEASE, ("r1", "t1")),
        (q.HOLD_LEASE, ("r2", "t2")),
        step,
    ]
    tables: list[str | Later | None] = [None, _HOLD, "steps", _HOLD, _HOLD, "steps"]
    out, out_tables = _held(queued, tables)
    assert out == [("BEGIN", None), (q.HOLD_LEASES, (2, ["r1", "r2"], ["t1", "t2"])), step, step]
    assert out_tables == [None, None, "steps", "steps"]
    one = [step, (q.HOLD_LEASE, ("r1", "t1"))]
    assert _held(one, ["steps", _HOLD]) == (one, ["steps", None])
