"""Announcements of cancelled runs: a sender's transaction stores them with the cancellation
(``inngest/function.finished`` / ``inngest/function.cancelled``, nothing owed), on every store.
SQLite's version before owed them when nothing heard them (schema 24, ``OwedAnnouncements``:
the cancellation committed with an owed row, the two events written later); those a process of
that version left are written by a worker's housekeeping (``Engine.announce_owed``) with the
data, names, order and time they would have had, and never lost: a copy of the database waits
for them, and a listener that appeared meanwhile gets them as any event (SQLite only: no other
store had that version)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from _polling import until

import pgtest
from stepline import App, CancelOn, Context, Event, TriggerEvent
from stepline.engine._system_events import ending_data
from stepline.store import SQLiteStore, Store
from stepline.store._copy import CopyRefused, copy_database
from stepline.store.records import EventFilter, EventRecord
from stepline.testing import MockClock, TestEngine

T0 = 1_700_000_000.0
FINISHED, CANCELLED = "inngest/function.finished", "inngest/function.cancelled"
REASON = "cancelled by an event"


def _subject_app() -> App:
    app = App("subject-app")

    @app.function(
        id="subject", trigger=TriggerEvent("go"), cancel_on=CancelOn("stop", match="data.id")
    )
    async def subject(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    return app


async def _cancelling(store: Store, clock: MockClock) -> tuple[App, str, dict[str, Any]]:
    """The subject app on ``store`` with no worker: a run made (QUEUED) and cancelled by its
    ``stop`` event; the run's id and its trigger event's payload."""
    app = _subject_app()
    app.attach(store, clock)
    [go] = await app.send_async(Event("go", {"id": "a", "note": 'ñ"\\'}))
    [run] = await app.runs(event_id=go)
    await app.send_async(Event("stop", {"id": "a"}))
    payload = app.engine.store.list_events(EventFilter(name="go"))[0].event.payload()
    return app, run.run_id, payload


async def _owing(path: Path, clock: MockClock) -> tuple[App, str, dict[str, Any]]:
    """``_cancelling``, the run's announcements then left owed as a sender of the version
    before left them (schema 24): its two events not written (here a row standing for them,
    schema 27), an owed row instead."""
    app, run_id, payload = await _cancelling(SQLiteStore(path, synchronous="NORMAL"), clock)
    with closing(sqlite3.connect(path)) as conn, conn:
        gone = conn.execute("DELETE FROM cancel_announcements WHERE run_id = ?", (run_id,))
        assert gone.rowcount == 1
        owed = "INSERT INTO owed_announcements (run_id, reason, at) VALUES (?, ?, ?)"
        conn.execute(owed, (run_id, REASON, T0))
    return app, run_id, payload


def _owed(path: Path) -> list[tuple[str, str, float]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute("SELECT run_id, reason, at FROM owed_announcements").fetchall()


def _both(found: list[EventRecord]) -> list[EventRecord]:
    """``found`` once it holds both announcements (else nothing: poll again)."""
    return found if len(found) == 2 else []


def _announced(store: Store) -> list[EventRecord]:
    found = [s.event for n in (FINISHED, CANCELLED) for s in store.list_events(EventFilter(n))]
    return sorted(found, key=lambda e: e.internal_id)


def _announcements(path: Path) -> list[EventRecord]:
    store = SQLiteStore(path)
    try:
        return _announced(store)
    finally:
        store.close()


async def test_the_run_is_cancelled_and_announced_when_send_returns(
    store_kind: str, tmp_path: Path
) -> None:
    # on every store (the rest of this module: SQLite's rows of the version before, schema 24)
    clock = MockClock(start=T0, autojump=False)
    store = pgtest.opened_store(store_kind, tmp_path / "a.db")
    app, run_id, payload = await _cancelling(store, clock)
    try:
        [run] = await app.runs(function_id="subject")
        assert run.status == "CANCELLED"
        if store_kind == "sqlite":
            assert _owed(tmp_path / "a.db") == []
        finished, cancelled = _announced(store)
    finally:
        app.close()
    assert [finished.name, cancelled.name] == [FINISHED, CANCELLED]
    data = ending_data("subject", run_id, [payload], "CANCELLED", reason=REASON)
    assert finished.data == data and cancelled.data == data
    assert finished.ts == cancelled.ts == T0


async def test_owed_announcements_are_written_with_the_time_of_the_cancellation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    clock = MockClock(start=T0, autojump=False)
    app, run_id, payload = await _owing(path, clock)
    try:
        assert _owed(path) == [(run_id, REASON, T0)]
        assert _announcements(path) == []
        clock.advance(60.0)  # written a minute later: with the time of the cancellation
        engine = app.engine
        _, more = await engine.writer.write(lambda tx: engine.announce_owed(tx, clock.now()))
        assert more is False
    finally:
        app.close()
    finished, cancelled = _announcements(path)
    assert [finished.name, cancelled.name] == [FINISHED, CANCELLED]
    data = ending_data("subject", run_id, [payload], "CANCELLED", reason=REASON)
    assert finished.data == data and cancelled.data == data
    assert finished.ts == cancelled.ts == T0
    assert _owed(path) == []


async def test_announcements_a_sender_left_owed_are_written_by_a_worker(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    clock = MockClock(start=T0, autojump=False)
    app, run_id, _ = await _owing(path, clock)
    app.close()
    assert len(_owed(path)) == 1 and _announcements(path) == []
    async with TestEngine(_subject_app(), path=path, clock=clock):  # its worker's housekeeping
        # both, as _announcements reads each name apart: a commit between its two reads showed
        # one (a gate saw [cancelled] alone: pg-002702.log)
        made = await until("the owed announcements", lambda: _both(_announcements(path)))
    assert [(e.name, e.data["run_id"], e.ts) for e in made] == [
        (FINISHED, run_id, T0),
        (CANCELLED, run_id, T0),
    ]
    assert _owed(path) == []


async def test_a_listener_that_appeared_since_gets_them_as_any_event(tmp_path: Path) -> None:
    """Owed (by the version before) while nothing listened; another app's function on
    function.cancelled registered before they are written: they are ingested (its inbox gets
    the event), not only stored."""
    path = tmp_path / "a.db"
    clock = MockClock(start=T0, autojump=False)
    app, run_id, _ = await _owing(path, clock)
    other = App("other-app")

    @other.function(id="cleanup", trigger=TriggerEvent(CANCELLED))
    async def cleanup(ctx: Context) -> Any:
        return ctx.event.data["run_id"]

    try:
        engine = app.engine
        rows = other.attach(SQLiteStore(path, synchronous="NORMAL"), clock).trigger_rows()
        await engine.writer.write(lambda tx: tx.sync_triggers("other-app", rows, T0))
        made, _ = await engine.writer.write(lambda tx: engine.announce_owed(tx, T0 + 5.0))
        assert len(made) == 2
    finally:
        app.close()
        other.close()
    _, cancelled = _announcements(path)
    assert cancelled.data["run_id"] == run_id
    with closing(sqlite3.connect(path)) as conn, conn:
        inbox = conn.execute("SELECT app_id, function_id, event_id FROM inbox").fetchall()
    assert inbox == [("other-app", "cleanup", cancelled.internal_id)]
    assert _owed(path) == []


async def test_a_copy_waits_until_no_announcement_is_owed(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    app, _, _ = await _owing(path, MockClock(start=T0, autojump=False))
    app.close()
    source = SQLiteStore(path)
    target = SQLiteStore(tmp_path / "copy.db")
    try:
        with pytest.raises(CopyRefused, match="announcements of 1 cancelled runs"):
            copy_database(source, target)
        async with TestEngine(_subject_app(), path=path, clock=MockClock(start=T0)):
            await until("the owed announcements", lambda: not _owed(path))
        copy_database(source, target)
    finally:
        source.close()
        target.close()
    assert len(_announcements(tmp_path / "copy.db")) == 2


async def test_owed_announcements_that_raise_are_logged_and_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As a failed run's announcements (``announce_failed``): an error other than the store
    being unavailable never makes a worker's housekeeping fail again and again."""
    path = tmp_path / "a.db"
    app, _, _ = await _owing(path, MockClock(start=T0, autojump=False))
    try:
        engine = app.engine

        def failing(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("no announcement today")

        monkeypatch.setattr(engine, "_announce", failing)
        made, more = await engine.writer.write(lambda tx: engine.announce_owed(tx, T0))
        assert (made, more) == ([], False)
        assert _owed(path) == [] and _announcements(path) == []
        assert "could not announce the end of 1 cancelled runs" in caplog.text
        assert "no announcement today" in caplog.text
    finally:
        app.close()
