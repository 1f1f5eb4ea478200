"""`stepline db copy`: a SQLite installation with runs in flight moves to PostgreSQL and its runs
finish there, every step body run once; every table the schemas hold is copied, both ways."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _polling import until
from click.testing import CliRunner

from sqlitetest import file_at_version
from stepline import (
    App,
    BatchEvents,
    CancelOn,
    Context,
    Debounce,
    Event,
    RateLimit,
    Singleton,
    TriggerCron,
    TriggerEvent,
)
from stepline.cli import cli
from stepline.store import SQLiteStore
from stepline.store._copy import BY_NAME, TABLES, CopyRefused, Row, copy_database
from stepline.store.postgres import PostgresStore
from stepline.store.records import WorkerRecord
from stepline.testing import MockClock, TestEngine

HOUR = 3600.0


def _counting(calls: Counter[str], name: str) -> Callable[[], str]:
    def body() -> str:
        calls[name] += 1
        return name

    return body


def _mover_app(calls: Counter[str]) -> App:
    """Functions that leave runs in every in-flight state a copy must carry."""
    app = App("movers")

    @app.function(id="sleeper", trigger=TriggerEvent("go"))
    async def sleeper(ctx: Context) -> Any:
        n = ctx.event.data["n"]
        await ctx.step.run("before", _counting(calls, f"sleeper{n}.before"))
        await ctx.step.sleep("nap", "1h")
        await ctx.step.run("after", _counting(calls, f"sleeper{n}.after"))
        return f"slept{n}"

    @app.function(
        id="waiter",
        trigger=TriggerEvent("order/created"),
        cancel_on=[CancelOn("order/cancelled", match="data.orderId")],
        singleton=Singleton(key="event.data.orderId", mode="skip"),
    )
    async def waiter(ctx: Context) -> Any:
        await ctx.step.run("before", _counting(calls, "waiter.before"))
        paid = await ctx.step.wait_for_event(
            "paid", event="payment/received", match="data.orderId", timeout="1d"
        )
        await ctx.step.run("after", _counting(calls, "waiter.after"))
        return None if paid is None else paid.data["amount"]

    @app.function(id="flaky", trigger=TriggerEvent("call"))
    async def flaky(ctx: Context) -> Any:
        def call() -> str:
            calls["flaky.call"] += 1
            if calls["flaky.call"] == 1:
                raise RuntimeError("first attempt fails")
            return "answered"

        return await ctx.step.run("call", call)

    @app.function(id="debounced", trigger=TriggerEvent("typed"), debounce=Debounce(period="5m"))
    async def debounced(ctx: Context) -> Any:
        return await ctx.step.run("save", _counting(calls, "debounced.save"))

    @app.function(
        id="batched", trigger=TriggerEvent("item"), batch_events=BatchEvents(10, timeout="5m")
    )
    async def batched(ctx: Context) -> Any:
        await ctx.step.run("store", _counting(calls, "batched.store"))
        return len(ctx.events)

    @app.function(
        id="gated",
        trigger=TriggerEvent("sync"),
        idempotency="event.data.id",
        rate_limit=RateLimit(limit=1, period="1h", key="event.data.user"),
    )
    async def gated(ctx: Context) -> Any:
        return await ctx.step.run("sync", _counting(calls, "gated.sync"))

    @app.function(id="later", trigger=TriggerEvent("later"))
    async def later(ctx: Context) -> Any:
        return await ctx.step.run("work", _counting(calls, "later.work"))

    @app.function(id="yearly", trigger=TriggerCron("0 0 1 1 *"))
    async def yearly(ctx: Context) -> Any:
        return await ctx.step.run("tick", _counting(calls, "yearly.tick"))

    return app


async def _build_installation(path: Path, calls: Counter[str]) -> tuple[App, MockClock]:
    """A SQLite file holding a sleeping run, a run waiting for an event, a run in its retry
    backoff, a debounce and a batch not yet due, runs of a paused function, queued runs no
    worker has leased, and the flow-control state these leave (dedup ids, idempotency keys,
    GCRA buckets, skips, singleton keys, cancel matchers, cron schedules)."""
    app = _mover_app(calls)
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=path, clock=clock) as t:
        await app.pause_function("later")
        await t.send(
            [
                Event("go", {"n": 1}, v="2026-12-01.1"),
                Event("order/created", {"orderId": "o-1"}),
                Event("call"),
                Event("typed", {"text": "h"}),
                Event("item", {"i": 1}),
                Event("item", {"i": 2}),
                Event("sync", {"id": "s-1", "user": "u"}, id="sender-1"),
                Event("sync", {"id": "s-2", "user": "u"}),
                Event("later"),
            ]
        )
        await t.tick()
        await until(
            "the first steps before the copy",
            lambda: (
                calls["sleeper1.before"] == calls["waiter.before"] == calls["gated.sync"] == 1
                and calls["flaky.call"] == 1
            ),
        )

        async def settled() -> bool:
            status = {r.function_id: r.status for r in await t.runs(limit=100)}
            return status == {
                "sleeper": "SLEEPING",
                "waiter": "WAITING",
                "flaky": "RETRYING",
                "gated": "COMPLETED",
                "later": "QUEUED",
            }

        await until("runs sleeping, waiting and in their backoff", settled)
    # queued runs that no worker has leased yet
    app.attach(SQLiteStore(path), clock)
    await app.send_async([Event("go", {"n": 2}), Event("go", {"n": 3})])
    app.close()
    return app, clock


async def test_in_flight_runs_move_from_sqlite_to_postgresql_and_finish_there(
    tmp_path: Path, pg_url: str
) -> None:
    calls: Counter[str] = Counter()
    path = tmp_path / "before.db"
    app, clock = await _build_installation(path, calls)
    before = dict(calls)

    result = CliRunner().invoke(cli, ["db", "copy", f"sqlite:///{path}", pg_url])
    assert result.exit_code == 0, result.output
    assert "copied" in result.output

    moved = MockClock(clock.now(), autojump=False)
    async with TestEngine(app, store=pg_url, clock=moved) as t:
        assert calls == before  # nothing ran again on start
        await app.resume_function("later")
        await t.send(Event("payment/received", {"orderId": "o-1", "amount": 42}))
        await t.tick()

        seen: list[str] = []

        async def statuses(expected: list[str], of: str | None = None) -> bool:
            runs = await t.runs(function_id=of, limit=100)
            seen[:] = sorted(f"{r.function_id}:{r.status}" for r in runs)
            return seen == sorted(expected)

        done = ["batched", "debounced", "flaky", "gated", "later", "waiter"]
        try:
            # the queued runs start on PostgreSQL and begin their sleep there, before the clock
            # moves (a worker may take them at once: waiting for it keeps the test exact)
            sleeping = ["sleeper:SLEEPING"] * 3
            await until("the queued runs to sleep", lambda: statuses(sleeping, "sleeper"))
            assert calls["sleeper2.before"] == calls["sleeper3.before"] == 1
            moved.advance(HOUR + 600)  # the sleeps, the debounce, the batch and the backoff are due
            await t.tick()
            last = [f"{f}:COMPLETED" for f in done] + ["sleeper:COMPLETED"] * 3
            await until("the copied runs to complete", lambda: statuses(last), timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen}") from None
        runs = await t.runs(limit=100)
    outputs = sorted(str(r.output) for r in runs)
    expected = ["slept1", "slept2", "slept3", "42", "answered", "2", "gated.sync", "later.work"]
    assert outputs == sorted([*expected, "debounced.save"])
    assert calls == {
        "sleeper1.before": 1,
        "sleeper1.after": 1,
        "sleeper2.before": 1,
        "sleeper2.after": 1,
        "sleeper3.before": 1,
        "sleeper3.after": 1,
        "waiter.before": 1,
        "waiter.after": 1,
        "flaky.call": 2,  # the failed attempt before the copy, the retry after it
        "debounced.save": 1,
        "batched.store": 1,
        "gated.sync": 1,
        "later.work": 1,
    }


async def test_a_wait_resolved_on_sqlite_before_the_copy_is_not_resolved_again_on_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    # SQLite keeps a resolved wait's row (its step completed) until a worker's housekeeping
    # purges it: an event sent while the workers were stopped for the move leaves it there.
    # Copied as it is (seen with sqlite/_copy.py's filter taken out), PostgreSQL, where a wait
    # is pending while its row is there, takes it for pending: the next matching event, sent
    # before the workers start, completes the step again with its own payload, and the run
    # finishes with the second payment (99), not the first
    calls: Counter[str] = Counter()
    path = tmp_path / "resolved.db"
    app = _mover_app(calls)
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=path, clock=clock) as t:
        await t.send(Event("order/created", {"orderId": "o-1"}))
        await t.tick()

        async def waiting() -> bool:
            return [r.status for r in await t.runs(function_id="waiter")] == ["WAITING"]

        await until("the run to wait for its payment", waiting)
    app.attach(SQLiteStore(path), clock)  # a sender, no worker: nothing purges the wait's row
    await app.send_async(Event("payment/received", {"orderId": "o-1", "amount": 42}))
    app.close()
    with closing(sqlite3.connect(path)) as conn:  # the resolved wait's row, kept
        assert conn.execute("SELECT count(*) FROM waits").fetchone() == (1,)

    result = CliRunner().invoke(cli, ["db", "copy", f"sqlite:///{path}", pg_url])
    assert result.exit_code == 0, result.output
    with psycopg.connect(pg_url) as conn:  # not copied: no wait is pending
        assert conn.execute("SELECT count(*) FROM waits").fetchone() == (0,)

    moved = MockClock(clock.now(), autojump=False)
    app.attach(PostgresStore(pg_url), moved)  # senders on PostgreSQL before the workers
    await app.send_async(Event("payment/received", {"orderId": "o-1", "amount": 99}))
    app.close()
    async with TestEngine(app, store=pg_url, clock=moved) as t:
        await t.tick()

        async def ended() -> bool:
            return [r.status for r in await t.runs(function_id="waiter")] == ["COMPLETED"]

        await until("the run to complete", ended)
        [run] = await t.runs(function_id="waiter")
        history = await t.history(run.run_id)
    assert run.output == 42
    assert [h.kind for h in history].count("WAIT_MATCHED") == 1


def _dump(store: SQLiteStore | PostgresStore) -> dict[str, list[Row]]:
    with store.snapshot() as snap:
        return {t.name: [row for rows in snap.rows(t, 7) for row in rows] for t in TABLES}


async def test_every_table_is_copied_both_ways_unchanged(tmp_path: Path, pg_url: str) -> None:
    calls: Counter[str] = Counter()
    path = tmp_path / "source.db"
    await _build_installation(path, calls)
    source = SQLiteStore(path)
    with source.transaction() as tx:  # state a running installation holds besides runs
        tx.register_worker(WorkerRecord("w-1", "movers", ("sleeper",), 1.0, 2.0, 3.0))
        tx.put_sdk_app("movers", "js-app", b'{"functions": []}', 4.0)
        tx.deliver([("mailers", "welcome", "e-handed")], 5.0)  # an event handed to another app
    with closing(sqlite3.connect(path)) as conn, conn:  # PostgreSQL's: an event noted beside a take
        conn.execute("INSERT INTO cancel_notes (event_id, bucket) VALUES ('e-noted', 7)")
    original = _dump(source)
    versions = {row[BY_NAME["events"].columns.index("v")] for row in original["events"]}
    assert versions == {None, "2026-12-01.1"}  # an event's v is copied too
    empty = [name for name, rows in original.items() if not rows]
    assert not empty, f"the installation leaves these tables empty: {empty}"

    target = PostgresStore(pg_url)
    back = SQLiteStore(tmp_path / "back.db")
    try:
        plan = copy_database(source, target, batch=7)
        assert plan.counts == {name: len(rows) for name, rows in original.items()}
        assert _dump(target) == original
        copy_database(target, back, batch=5)
        assert _dump(back) == original
        # numbers PostgreSQL gives next follow the copied ones
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "INSERT INTO skips (event_id, function_id, reason, at) VALUES "
                "('e', 'f', 'r', 0) RETURNING seq"
            ).fetchone()
        assert row is not None
        assert row[0] > max(r[0] for r in original["skips"])
    finally:
        source.close()
        target.close()
        back.close()


def test_the_copy_knows_every_table_and_column_of_both_schemas(tmp_path: Path, pg_url: str) -> None:
    """A migration adding a table or a column without copy support fails here (and the copy
    itself refuses such a database)."""
    sqlite = SQLiteStore(tmp_path / "schema.db")
    postgres = PostgresStore(pg_url)
    try:
        sqlite.migrate()
        known = {t.name: set(t.columns) for t in TABLES}
        for store in (sqlite, postgres):
            found = {name: set(columns) for name, columns in store.table_columns().items()}
            assert found == known
        with psycopg.connect(pg_url) as conn:
            types = {
                (r[0], r[1]): r[2]
                for r in conn.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = current_schema()"
                )
            }
        for table in TABLES:
            for column in table.columns:
                kind = types[(table.name, column)]
                assert (kind == "boolean") == (column in table.flags), (table.name, column)
                assert (kind == "bytea") == (column in table.blobs), (table.name, column)
    finally:
        sqlite.close()
        postgres.close()


def test_a_table_without_copy_support_is_refused(tmp_path: Path, pg_url: str) -> None:
    source = SQLiteStore(tmp_path / "extra.db")
    target = PostgresStore(pg_url)
    try:
        source.migrate()
        with source.transaction():
            pass
        source._conn().execute("CREATE TABLE shiny_new_state (k TEXT)")
        with pytest.raises(CopyRefused, match="shiny_new_state"):
            copy_database(source, target)
    finally:
        source.close()
        target.close()


def test_a_non_empty_target_is_refused_unless_replaced(tmp_path: Path, pg_url: str) -> None:
    first, second = SQLiteStore(tmp_path / "a.db"), SQLiteStore(tmp_path / "b.db")
    try:
        for store, run in ((first, "a"), (second, "b")):
            store.migrate()
            with store.transaction() as tx:
                tx.put_sdk_app("app", run, b"{}", 1.0)
        runner = CliRunner()
        copied = runner.invoke(cli, ["db", "copy", f"sqlite:///{tmp_path / 'a.db'}", pg_url])
        assert copied.exit_code == 0, copied.output
        refused = runner.invoke(cli, ["db", "copy", f"sqlite:///{tmp_path / 'b.db'}", pg_url])
        assert refused.exit_code == 1
        assert "not empty" in refused.output
        replaced = runner.invoke(
            cli, ["db", "copy", f"sqlite:///{tmp_path / 'b.db'}", pg_url, "--replace"]
        )
        assert replaced.exit_code == 0, replaced.output
        target = PostgresStore(pg_url)
        try:
            assert [name for name, _ in target.sdk_apps("app")] == ["b"]
        finally:
            target.close()
    finally:
        first.close()
        second.close()


def test_live_workers_on_the_source_are_refused(tmp_path: Path, pg_url: str) -> None:
    source = SQLiteStore(tmp_path / "live.db")
    try:
        source.migrate()
        with source.transaction() as tx:
            tx.register_worker(WorkerRecord("w-9", "app", ("f",), 0.0, 0.0, 4e9))
    finally:
        source.close()
    url = f"sqlite:///{tmp_path / 'live.db'}"
    refused = CliRunner().invoke(cli, ["db", "copy", url, pg_url])
    assert refused.exit_code == 1
    assert "w-9" in refused.output
    forced = CliRunner().invoke(cli, ["db", "copy", url, pg_url, "--ignore-live-workers"])
    assert forced.exit_code == 0, forced.output


def _schema_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn, conn:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])


def test_a_source_of_the_schema_before_is_copied_with_its_workers_alive_and_left_as_it_was(
    tmp_path: Path, pg_url: str
) -> None:
    # a SQLite file of schema 19 with a worker of that version still alive on it: migration 20
    # waits until it stops (its version would read resolved waits as pending), so a copy that
    # was told to ignore the live workers stopped at that refusal. It now migrates a copy of
    # the file beside it and copies that one: the file stays at schema 19, as its worker reads it
    path = tmp_path / "old.db"
    file_at_version(path, 19, ("w-old", time.time() + 600))
    with closing(sqlite3.connect(path)) as conn, conn:  # a run of that version waiting for an event
        conn.execute(
            "INSERT INTO events (internal_id, name, data, user_data, ts, received_at) "
            "VALUES ('e-1', 'order/created', X'7B7D', X'7B7D', 1, 1)"
        )
        conn.execute(
            "INSERT INTO runs (run_id, function_id, status, event_ids, created_at, app_id) "
            "VALUES ('r-1', 'waiter', 'WAITING', '[\"e-1\"]', 1, 'app')"
        )
        conn.execute(
            "INSERT INTO waits (wait_id, run_id, step_hash, event_name, expires_at, created_at, "
            "step_id) VALUES ('w-1', 'r-1', 'h', 'payment/received', 4e9, 1, 'paid')"
        )
        conn.execute(  # its step, PENDING while it waits (schema 28: what makes it pending)
            "INSERT INTO steps (run_id, hash, step_id, kind, position, status) "
            "VALUES ('r-1', 'h', 'paid', 'wait', 0, 'PENDING')"
        )
    url = f"sqlite:///{path}"

    refused = CliRunner().invoke(cli, ["db", "copy", url, pg_url])
    assert refused.exit_code == 1 and "w-old" in refused.output, refused.output
    copied = CliRunner().invoke(cli, ["db", "copy", url, pg_url, "--ignore-live-workers"])
    assert copied.exit_code == 0, copied.output

    assert _schema_version(path) == 19
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []  # the copy aside gone
    target = PostgresStore(pg_url)
    try:
        run = target.get_run("r-1")
        assert run is not None and run.status == "WAITING"
        with target.snapshot() as snap:
            counts = {t.name: snap.count(t) for t in TABLES if snap.count(t)}
        assert counts == {"events": 1, "runs": 1, "steps": 1, "waits": 1, "workers": 1}
    finally:
        target.close()
