"""Golden database: a run recorded (by an earlier version) while it slept must resume on every
change — same schema (migrated), same step keys and hashes, nothing completed runs again. On
SQLite the recording is a database file; on PostgreSQL its tables as data at their schema version
(``sleeping_order.pg.json``, schema 2, and ``sleeping_order_v17.pg.json``, whose steps' rows keep
STEP_COMPLETED lines; ``pgdump``), loaded into a database of that version and migrated."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
import pytest  # noqa: E402
from golden_app import CALLS, T0, build_app  # noqa: E402
from pgdump import restore  # noqa: E402

import pgtest  # noqa: E402
from stepline.store import SQLiteStore  # noqa: E402
from stepline.store.interface import Store  # noqa: E402
from stepline.store.postgres import PostgresStore  # noqa: E402
from stepline.store.postgres.schema import MIGRATIONS  # noqa: E402
from stepline.testing import MockClock, TestEngine  # noqa: E402


async def test_a_recorded_sleeping_run_resumes_without_rerunning_its_steps(
    tmp_path: Path,
) -> None:
    db = tmp_path / "golden.db"
    shutil.copy(HERE / "sleeping_order.db", db)
    await resume_the_recorded_run(SQLiteStore(db))


@pytest.mark.parametrize(
    "recording",
    [
        "sleeping_order.pg.json",  # schema 2
        # schema 17: two of its steps' STEP_COMPLETED lines kept in their rows (history_seq)
        "sleeping_order_v17.pg.json",
    ],
)
async def test_a_run_recorded_on_postgresql_resumes_without_rerunning_its_steps(
    recording: str,
) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    url = pgtest.create_database(pgtest.cluster(), f"stepline_golden_{worker}")
    recorded = restore(HERE / recording, url)
    assert 1 <= recorded <= len(MIGRATIONS)
    if recorded >= 17:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM steps WHERE history_seq IS NOT NULL")
            assert row.fetchone() == (2,)  # the recording holds lines kept in steps' rows
    store = PostgresStore(url)
    store.migrate()  # the migrations newer than the recording's, if any
    assert store.schema_version() == (len(MIGRATIONS), len(MIGRATIONS))
    await resume_the_recorded_run(store)


async def resume_the_recorded_run(store: Store) -> None:
    CALLS.clear()
    app = build_app()
    clock = MockClock(start=T0 + 1800, autojump=False)  # half-way through the 1 h sleep
    async with TestEngine(app, store=store, clock=clock) as t:
        [recorded] = await t.runs(function_id="golden-order")
        # read before the sleep is over: a worker leasing the due run (RUNNING) cannot race it
        # (issue 6 item 8)
        assert recorded.status == "SLEEPING"
        # what its event did, recorded before events kept their effects: it started the run
        [started] = await t.app.event_runs(recorded.event_ids[0])
        assert (started.effect, started.run.run_id) == ("started", recorded.run_id)
        clock.set(T0 + 2 * 3600)  # the sleep is over
        await t.tick()
        done = await t.wait_for_run(recorded.run_id)
        history = [(h.kind, h.step_id) for h in await t.history(done.run_id)]
    assert done.status == "COMPLETED", done.error
    assert done.output == {"reserved": {"sku": "sku-1"}, "charged": {"amount": 6}}
    assert dict(CALLS) == {"charge": 1}  # the recorded steps were replayed from the memo
    assert [(s.id, s.status) for s in done.steps] == [
        ("reserve", "COMPLETED"),
        ("quote", "COMPLETED"),
        ("quote:1", "COMPLETED"),
        ("settle", "COMPLETED"),
        ("charge", "COMPLETED"),
    ]
    assert history == [
        ("RUN_QUEUED", None),
        ("RUN_STARTED", None),
        ("STEP_COMPLETED", "reserve"),
        ("STEP_COMPLETED", "quote"),
        ("STEP_COMPLETED", "quote:1"),
        ("SLEEP", "settle"),
        ("STEP_COMPLETED", "charge"),
        ("RUN_COMPLETED", None),
    ]
