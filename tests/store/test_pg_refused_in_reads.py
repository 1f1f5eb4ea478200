"""A value psycopg refuses (a NUL in a text) in a round trip that also carries reads
(``Statements.run`` after queued writes, ``run_all``), inside a savepoint (as a store verb's)
of a careful group commit: the refusing job fails alone, and the job before it keeps the
writes it was told committed. A round trip sent by the store's own pipeline
(``_pipeline.send_all``, which pg's 375b7de gives ``run_all``) sends nothing when a parameter is
refused, so what was queued must stay queued: counted as sent, the refusing job's savepoint
was taken as sent and its ``ROLLBACK TO s0`` went to the previous job's savepoint, whose
``RELEASE`` was in that unsent trip, undoing that job's writes (review, seventeenth stop: the
same in ``flush``; checked here: with 375b7de's ``nothing_sent`` branch of ``run_all`` removed,
``{'r3': b'3'} == {'r1': b'1', 'r3': b'3'}`` fails in all three cases)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.store.builders import lease, start
from tests.store.test_pg_optimistic import one_batch, outputs
from tests.store.test_pg_refused_values import good

from stepline.errors import StoreRefusedValue
from stepline.store.postgres import PostgresStore


def _refused_write_then(read: str) -> Any:
    def job(tx: Any) -> Any:
        s = tx._s
        with s.savepoint():  # as a store verb's
            s.write(
                "INSERT INTO wal_flushes (backend, flushes) VALUES (5000, length(%s))", ("a\x00",)
            )
            if read == "run":
                return s.run("SELECT 1").fetchall()
            return s.run_all([("SELECT 1", None), ("SELECT 2", None)])

    return job


def _refused_read(tx: Any) -> Any:
    s = tx._s
    with s.savepoint():  # as a store verb's
        s.write("INSERT INTO wal_flushes (backend, flushes) VALUES (5001, 1)")
        return s.run_all([("SELECT 1", None), ("SELECT length(%s)", ("a\x00",))])


@pytest.mark.parametrize("where", ["queued write, run", "queued write, run_all", "read"])
def test_a_refused_value_in_a_round_trip_of_reads_fails_its_job_alone(
    pg_store: PostgresStore, where: str
) -> None:
    start(pg_store, "r1", "r2", "r3")
    held = {h.run_id: h for h in lease(pg_store)}
    refused = _refused_read if where == "read" else _refused_write_then(where.split(", ")[1])
    found, writer = one_batch(pg_store, [good(held["r1"], 1), refused, good(held["r3"], 3)])
    assert found[0] == [] and found[2] == [], found
    assert isinstance(found[1], StoreRefusedValue), found[1]
    assert outputs(pg_store, "r1", "r2", "r3") == {"r1": b"1", "r3": b"3"}
    assert writer.replays >= 1  # the optimistic batch, then each job in its savepoint
