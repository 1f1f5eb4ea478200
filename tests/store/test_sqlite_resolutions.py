"""SQLite: an event's sender that resolves a wait writes, in its transaction, the event, the
waiting step's output (which makes the wait resolved, schema 28; before, a mark), its
WAIT_MATCHED row (the run's link to the event) and the run's wake; whatever the run does next
(its pass's commits, its cancellation, another wait's timeout, the re-entry cap, the purge of
resolved waits, a replay, ``db copy``) comes after them. Migration 26 writes what senders of
schema 25 left to the runs' leases (the step and WAIT_MATCHED of a mark naming its event) as
those leases would have."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sqlitetest import file_at_version
from stepline.errors import ConfigError
from stepline.expressions import load_match
from stepline.serde import dumps_exact, loads
from stepline.store import SQLiteStore, Store, _cancel_rules
from stepline.store._copy import copy_database
from stepline.store.records import (
    RESUMED,
    Admission,
    EventIngest,
    EventRecord,
    HistoryRecord,
    MatcherSpec,
    NewRun,
    PassCommit,
    RunEnd,
)
from stepline.store.sqlite._cancels import SQLiteCancels
from stepline.store.sqlite._wait_queries import PENDING as WAIT_PENDING
from stepline.store.sqlite.schema import _KEEP_RESOLVED, MIGRATIONS, STOP_WORKERS_FIRST

from .builders import (
    DAY,
    SERVED,
    T0,
    TTL,
    commit,
    ingest,
    lease_run,
    start,
    step,
    suspend_on_wait,
    wait,
)

PAID_AT = T0 + 1


def _waiting(store: Store, run_id: str = "r1") -> None:
    """``run_id`` suspended on its wait ``w-<run_id>`` for ``payment/received`` of its order."""
    start(store, run_id)
    pending = wait(run_id, f"w-{run_id}", f'async.data.orderId == "{run_id}"')
    suspend_on_wait(store, lease_run(store, run_id), pending)


def _paid(order_id: str, internal_id: str = "p-1") -> EventRecord:
    return EventRecord(internal_id, "payment/received", {"orderId": order_id}, {}, None, T0)


def _pay(store: Store, order_id: str = "r1", internal_id: str = "p-1") -> None:
    [result] = ingest(store, EventIngest(_paid(order_id, internal_id)), now=PAID_AT)
    assert result.resumed_run_ids == (order_id,)


def _rows(path: Path, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(statement, params).fetchall()


def _written(path: Path, run_id: str = "r1") -> list[str]:
    """The history rows of the run as the file holds them, in order."""
    return [
        r[0] for r in _rows(path, "SELECT kind FROM history WHERE run_id = ? ORDER BY seq", run_id)
    ]


def _mark_columns(path: Path) -> list[str]:
    """The columns of the marks (26: no event, no time, as before 25; 28: no marks)."""
    return [r[1] for r in _rows(path, "PRAGMA table_info(waits_resolved)")]


def _reads(store: Store, run_id: str = "r1") -> tuple[Any, ...]:
    state = store.load_run(run_id)
    assert state is not None
    return (
        store.get_steps(run_id),
        store.get_history(run_id),
        sorted(state.steps.values(), key=lambda s: s.position),
        state.waits,
        store.steps_of([run_id])[run_id],
        [(r.event_id, r.effect, r.run.run_id) for r in store.event_runs(["p-1"])],
    )


PAYLOAD = dumps_exact(_paid("r1").payload())
# a pass waiting for a payment and a shipment at once (two waits of one run)
PENDING = [
    step("r1", "h-wait", 0, "PENDING", kind="wait"),
    step("r1", "h-ship", 1, "PENDING", kind="wait"),
]


def test_the_sender_writes_the_resolution(sqlite_store: SQLiteStore) -> None:
    _waiting(sqlite_store)
    _pay(sqlite_store)
    path = sqlite_store.path
    # the file: the step completed with the event, its WAIT_MATCHED row, the wait's row kept
    # (resolved: its step is not PENDING) for the purge
    memo = "SELECT status, output, ended_at FROM steps WHERE hash = 'h-wait'"
    assert [(st, bytes(out), at) for st, out, at in _rows(path, memo)] == [
        ("COMPLETED", PAYLOAD, PAID_AT)
    ]
    assert _written(path)[-1] == "WAIT_MATCHED"
    assert _rows(path, f"SELECT run_id, wait_id FROM waits WHERE NOT {WAIT_PENDING}") == [
        ("r1", "w-r1")
    ]
    steps, history, loaded, waits, of_runs, links = _reads(sqlite_store)
    [step_read] = [s for s in steps if s.hash == "h-wait"]
    assert (step_read.status, step_read.output_json, step_read.ended_at) == (
        "COMPLETED",
        PAYLOAD,
        PAID_AT,
    )
    assert loaded == steps == of_runs
    assert waits == []
    assert history[-1] == HistoryRecord(
        "r1", PAID_AT, "WAIT_MATCHED", "step-h-wait", data={"event_id": "p-1"}
    )
    assert links == [("p-1", RESUMED, "r1")]


def test_the_runs_next_commit_leaves_the_resolution_as_it_was(store: Store) -> None:
    # every backend: the reads before the run's next commit and after it agree
    _waiting(store)
    _pay(store)
    before = _reads(store)
    held = lease_run(store, "r1", now=T0 + 2)
    assert _reads(store) == before  # the lease writes none of it
    done = step("r1", "h-next", 1, output={"ok": True})
    commit(
        store, PassCommit("r1", held.token, steps=[done], end=RunEnd("SLEEPING", T0 + DAY)), T0 + 3
    )
    steps, history, _, _, _, links = _reads(store)
    assert [s for s in steps if s.hash == "h-wait"] == [s for s in before[0] if s.hash == "h-wait"]
    assert history == before[1]  # the commit wrote no history of its own
    assert links == before[5]


def test_the_resolutions_come_before_the_rows_of_the_passes_that_follow(
    sqlite_store: SQLiteStore,
) -> None:
    _waiting(sqlite_store, "r1")
    _waiting(sqlite_store, "r2")
    _pay(sqlite_store, "r1", "p-1")
    _pay(sqlite_store, "r2", "p-2")
    path = sqlite_store.path
    with sqlite_store.transaction() as tx:
        held = {h.run_id: h for h in tx.lease_due("w1", T0 + 2, 10, TTL, SERVED)}
    assert sorted(held) == ["r1", "r2"]
    for run_id, event_id in (("r1", "p-1"), ("r2", "p-2")):
        assert _written(path, run_id)[-1] == "WAIT_MATCHED"
        memo = "SELECT status, output, ended_at FROM steps WHERE run_id = ? AND hash = 'h-wait'"
        [(status, output, ended)] = _rows(path, memo, run_id)
        expected = dumps_exact(_paid(run_id, event_id).payload())
        assert (status, bytes(output), ended) == ("COMPLETED", expected, PAID_AT)
    state = sqlite_store.load_run("r1")
    assert state is not None and state.steps["h-wait"].output_json == PAYLOAD
    attempt = HistoryRecord("r1", T0 + 3, "STEP_COMPLETED", "step-h-next", 1, 0.1)
    done = step("r1", "h-next", 1, output=1)
    commit(
        sqlite_store, PassCommit("r1", held["r1"].token, steps=[done], history=[attempt]), T0 + 3
    )
    assert _written(path)[-2:] == ["WAIT_MATCHED", "STEP_COMPLETED"]


def test_a_wait_resolved_while_the_pass_runs_is_written_before_the_passs_next_rows(
    sqlite_store: SQLiteStore,
) -> None:
    start(sqlite_store, "r1")
    held = lease_run(sqlite_store, "r1")
    pay = wait("r1", "w-pay", 'async.data.orderId == "r1"')
    ship = wait(
        "r1", "w-ship", 'async.data.orderId == "r1"', event_name="shipment/sent", step_hash="h-ship"
    )
    pending = [
        step("r1", "h-wait", 0, "PENDING", kind="wait"),
        step("r1", "h-ship", 1, "PENDING", kind="wait"),
    ]
    commit(
        sqlite_store,
        PassCommit("r1", held.token, steps=pending, waits=[pay, ship], end=RunEnd("WAITING")),
    )
    _pay(sqlite_store)
    held = lease_run(sqlite_store, "r1", now=T0 + 2)
    first = HistoryRecord("r1", T0 + 3, "STEP_COMPLETED", "step-h-a", 1, 0.1)
    commit(
        sqlite_store,
        PassCommit("r1", held.token, steps=[step("r1", "h-a", 2)], history=[first]),
        T0 + 3,
    )
    shipped = EventRecord("s-1", "shipment/sent", {"orderId": "r1"}, {}, None, T0)
    [result] = ingest(sqlite_store, EventIngest(shipped), now=T0 + 4)  # while the pass runs
    assert result.resumed_run_ids == ("r1",)
    kinds = [h.kind for h in sqlite_store.get_history("r1")]
    assert kinds[-3:] == ["WAIT_MATCHED", "STEP_COMPLETED", "WAIT_MATCHED"]
    second = HistoryRecord("r1", T0 + 5, "STEP_COMPLETED", "step-h-b", 1, 0.1)
    commit(
        sqlite_store,
        PassCommit("r1", held.token, steps=[step("r1", "h-b", 3)], history=[second]),
        T0 + 5,
    )
    expected = ["WAIT_MATCHED", "STEP_COMPLETED", "WAIT_MATCHED", "STEP_COMPLETED"]
    assert _written(sqlite_store.path)[-4:] == expected
    assert [h.kind for h in sqlite_store.get_history("r1")][-4:] == expected


def test_a_cancellation_comes_after_the_resolution_it_follows(sqlite_store: SQLiteStore) -> None:
    _waiting(sqlite_store)
    _pay(sqlite_store)
    with sqlite_store.transaction() as tx:
        assert tx.cancel_run("r1", T0 + 2, "by hand") == "fn"
    assert _written(sqlite_store.path)[-2:] == ["WAIT_MATCHED", "RUN_CANCELLED"]
    assert [h.kind for h in sqlite_store.get_history("r1")][-2:] == [
        "WAIT_MATCHED",
        "RUN_CANCELLED",
    ]
    assert _rows(sqlite_store.path, "SELECT count(*) FROM waits") == [(0,)]


@pytest.mark.parametrize("order", ["cancel-only", "general"])
def test_a_cancelling_event_comes_after_the_resolution_it_follows(
    sqlite_store: SQLiteStore, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both ingest orders of a cancelling batch: the cancel-only one (``cancel_matched``, the
    # matcher cached as the engine leaves it) and ``_Batch``'s (``mark_cancelled``)
    expression = 'async.data.id == "r1"'
    load_match(expression)
    if order == "general":
        monkeypatch.setattr(_cancel_rules, "cancelling_only", lambda *args: None)
    quick: list[str] = []
    cancel_matched = SQLiteCancels.cancel_matched
    monkeypatch.setattr(
        SQLiteCancels,
        "cancel_matched",
        lambda tx, run_id, *rest: quick.append(run_id) or cancel_matched(tx, run_id, *rest),
    )
    matcher = MatcherSpec("order/cancelled", expression, "data.id", "r1", None)
    run = NewRun("r1", "fn", ("ev-r1",), admission=Admission(cancel_on=(matcher,)))
    created = EventRecord("ev-r1", "order/created", {}, {}, None, T0)
    ingest(sqlite_store, EventIngest(created, (run,)))
    pending = wait("r1", "w-r1", 'async.data.orderId == "r1"')
    suspend_on_wait(sqlite_store, lease_run(sqlite_store, "r1"), pending)
    _pay(sqlite_store)
    stop = EventRecord("c-1", "order/cancelled", {"id": "r1"}, {}, None, T0)
    [result] = ingest(sqlite_store, EventIngest(stop), now=T0 + 2)
    assert [run_id for run_id, _ in result.cancelled] == ["r1"]
    assert quick == (["r1"] if order == "cancel-only" else [])
    assert _written(sqlite_store.path)[-2:] == ["WAIT_MATCHED", "RUN_CANCELLED"]
    [memo] = [s for s in sqlite_store.get_steps("r1") if s.hash == "h-wait"]
    assert (memo.status, memo.output_json) == ("COMPLETED", PAYLOAD)


def test_another_waits_timeout_comes_after_the_resolution(sqlite_store: SQLiteStore) -> None:
    start(sqlite_store, "r1")
    held = lease_run(sqlite_store, "r1")
    pay = wait("r1", "w-pay", 'async.data.orderId == "r1"')
    ship = wait(
        "r1", "w-ship", None, event_name="shipment/sent", step_hash="h-ship", expires_at=T0 + 10
    )
    pending = [
        step("r1", "h-wait", 0, "PENDING", kind="wait"),
        step("r1", "h-ship", 1, "PENDING", kind="wait"),
    ]
    commit(
        sqlite_store,
        PassCommit(
            "r1", held.token, steps=pending, waits=[pay, ship], end=RunEnd("WAITING", T0 + 10)
        ),
    )
    _pay(sqlite_store)
    held = lease_run(sqlite_store, "r1", now=T0 + 20)
    with sqlite_store.transaction() as tx:
        assert tx.expire_waits("r1", held.token, T0 + 20) == ["h-ship"]
    assert _written(sqlite_store.path)[-2:] == ["WAIT_MATCHED", "WAIT_TIMED_OUT"]


def test_the_re_entry_cap_fails_the_run_after_the_resolution(sqlite_store: SQLiteStore) -> None:
    _waiting(sqlite_store)
    _pay(sqlite_store)
    lease_run(sqlite_store, "r1", now=T0 + 2)  # a pass that never commits (its worker died)
    with sqlite_store.transaction() as tx:
        assert tx.lease_due("w2", T0 + 3 + TTL, 10, TTL, SERVED, max_passes=1) == []
    assert _written(sqlite_store.path)[-2:] == ["WAIT_MATCHED", "RUN_FAILED"]


def test_the_purge_of_resolved_waits_leaves_the_resolution(sqlite_store: SQLiteStore) -> None:
    _waiting(sqlite_store)
    _pay(sqlite_store)
    before = _reads(sqlite_store)
    with sqlite_store.transaction() as tx:
        assert tx.purge_resolved_waits(100) == 1
    path = sqlite_store.path
    assert _rows(path, "SELECT count(*) FROM waits") == [(0,)]
    assert _written(path)[-1] == "WAIT_MATCHED"
    assert _reads(sqlite_store) == before


def test_the_retention_keeps_the_event_an_unwritten_resolution_names(
    sqlite_store: SQLiteStore,
) -> None:
    _waiting(sqlite_store)
    _pay(sqlite_store)
    with sqlite_store.transaction() as tx:
        tx.purge_before(T0 + 10 * DAY, 1000)
    assert [e.internal_id for e in sqlite_store.get_events(["p-1"])] == ["p-1"]
    [memo] = [s for s in sqlite_store.get_steps("r1") if s.hash == "h-wait"]
    assert memo.output_json == PAYLOAD


def test_a_replay_copies_the_resolved_step(sqlite_store: SQLiteStore) -> None:
    _waiting(sqlite_store)
    _pay(sqlite_store)
    with sqlite_store.transaction() as tx:
        assert tx.replay_run("r1", NewRun("r2", "fn", ("ev-r1",)), 1, T0 + 2)
    [copied] = sqlite_store.get_steps("r2")
    assert (copied.hash, copied.status, copied.output_json) == ("h-wait", "COMPLETED", PAYLOAD)


def test_a_copy_carries_the_resolution(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    _waiting(sqlite_store)
    _pay(sqlite_store)
    before = _reads(sqlite_store)
    target = SQLiteStore(tmp_path / "copy.db")
    try:
        target.migrate()
        copy_database(sqlite_store, target)
        assert _reads(target) == before
    finally:
        target.close()


@pytest.mark.parametrize("before", [24, 25])
def test_migrations_25_and_26_are_refused_while_a_worker_of_the_version_before_is_alive(
    tmp_path: Path, before: int
) -> None:
    # a worker of schema 24 would replay a resolved wait whose step it finds still PENDING (25
    # leaves it to the lease), and a worker of 25 would go on leaving it to leases that no
    # longer write it (26): either run would wait for ever, or time out
    assert {25, 26} <= STOP_WORKERS_FIRST
    path = tmp_path / "s.db"
    file_at_version(path, before, ("w-old", time.time() + 600))
    store = SQLiteStore(path)
    try:
        with pytest.raises(ConfigError) as refused:
            store.migrate()
        assert "w-old" in str(refused.value)
        assert _rows(path, "SELECT MAX(version) FROM schema_version") == [(before,)]
        store.migrate(force=True)
        assert _rows(path, "SELECT MAX(version) FROM schema_version") == [(len(MIGRATIONS),)]
    finally:
        store.close()


def test_a_wait_resolved_by_a_passs_event_is_written_at_once(sqlite_store: SQLiteStore) -> None:
    # an event a pass sends (inside ``commit_pass``) resolves the other run's wait as before:
    # its step and WAIT_MATCHED written with it, no mark left
    _waiting(sqlite_store, "r1")
    start(sqlite_store, "r2")
    held = lease_run(sqlite_store, "r2", now=T0 + 1)
    sent = EventIngest(_paid("r1"))
    commit(
        sqlite_store, PassCommit("r2", held.token, events=[sent], end=RunEnd("COMPLETED")), PAID_AT
    )
    assert _written(sqlite_store.path)[-1] == "WAIT_MATCHED"
    [memo] = [s for s in sqlite_store.get_steps("r1") if s.hash == "h-wait"]
    assert loads(memo.output_json or b"null")["data"] == {"orderId": "r1"}
    assert sqlite_store.get_history("r1")[-1].data == {"event_id": "p-1"}


PAYLOADS = [
    ({"orderId": "r1"}, {}, None),
    ({"orderId": "r1", "n": 1.0, "big": 2**63, "tiny": 1e-7, "neg": -0.0}, {"u": 1}, "s-1"),
    ({"orderId": "r1", "text": 'ñ"\\\n\t\u2028😀', "nested": [{"a": None}, True]}, {}, 'i"d'),
]


@pytest.mark.parametrize(("data", "user", "sender_id"), PAYLOADS)
def test_the_written_output_is_the_events_payload(
    sqlite_store: SQLiteStore, data: dict[str, Any], user: dict[str, Any], sender_id: str | None
) -> None:
    _waiting(sqlite_store)
    paid = EventRecord("p-1", "payment/received", data, user, sender_id, T0 + 0.0007)
    [result] = ingest(sqlite_store, EventIngest(paid), now=PAID_AT)
    assert result.resumed_run_ids == ("r1",)
    expected = dumps_exact(paid.payload())
    [read] = [s for s in sqlite_store.get_steps("r1") if s.hash == "h-wait"]
    assert read.output_json == expected
    [(written,)] = _rows(sqlite_store.path, "SELECT output FROM steps WHERE hash = 'h-wait'")
    assert bytes(written) == expected


# -- migration 26: what senders of schema 25 left to the runs' leases -----------------------------
def _as_schema_25_left_it(path: Path, resolutions: list[tuple[str, str, str, float]]) -> None:
    """The file as a sender of schema 25 would have left these resolutions (run, wait, event,
    time) that this version's sender wrote: each waiting step PENDING again, its WAIT_MATCHED row
    not written, its mark naming the event and the time; the file at schema 25 (its marks and
    21's trigger, which 28 drops, made again)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE waits_resolved (run_id TEXT NOT NULL, wait_id TEXT NOT NULL,"
            " event_id TEXT, at REAL, PRIMARY KEY (run_id, wait_id)) WITHOUT ROWID"
        )
        conn.executescript(_KEEP_RESOLVED)
        conn.executemany(
            "INSERT INTO waits_resolved (run_id, wait_id) VALUES (?, ?)",
            [(run_id, wait_id) for run_id, wait_id, _, _ in resolutions],
        )
        for run_id, wait_id, event_id, at in resolutions:
            conn.execute(
                "UPDATE steps SET status = 'PENDING', output = NULL, ended_at = NULL"
                " WHERE run_id = ?1 AND hash = (SELECT step_hash FROM waits"
                " WHERE run_id = ?1 AND wait_id = ?2)",
                (run_id, wait_id),
            )
            conn.execute(
                "DELETE FROM history WHERE run_id = ? AND kind = 'WAIT_MATCHED'"
                " AND data = json_object('event_id', ?)",
                (run_id, event_id),
            )
            conn.execute(
                "UPDATE waits_resolved SET event_id = ?, at = ? WHERE run_id = ? AND wait_id = ?",
                (event_id, at, run_id, wait_id),
            )
        conn.execute("DROP TABLE cancel_announcements")  # 27's
        conn.execute("ALTER TABLE events DROP COLUMN v")  # 29's
        conn.execute("ALTER TABLE gcra DROP COLUMN decided_at")  # 30's
        conn.execute("DELETE FROM schema_version WHERE version > 25")
        conn.commit()


def _file(path: Path) -> list[list[tuple[Any, ...]]]:
    """The steps and history rows the file holds, in their order (``seq`` left out)."""
    steps = "SELECT run_id, hash, status, output, ended_at FROM steps ORDER BY run_id, hash"
    history = "SELECT run_id, ts, kind, step_id, data FROM history ORDER BY run_id, seq"
    return [_rows(path, steps), _rows(path, history)]


def _migrated(path: Path) -> None:
    store = SQLiteStore(path)
    try:
        store.migrate()
    finally:
        store.close()


@pytest.mark.parametrize(("data", "user", "sender_id"), PAYLOADS)
def test_migration_26_writes_what_a_sender_of_25_left_as_its_sender_writes_it(
    tmp_path: Path, data: dict[str, Any], user: dict[str, Any], sender_id: str | None
) -> None:
    # r1: a wait stored with its step's id; r2: two waits, resolved by two events in turn (the
    # second one first in key order); r3: a wait stored without it (schema 18: the step's is read)
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    try:
        store.migrate()
        start(store, "r1")
        pending = replace(wait("r1", "w-r1", 'async.data.orderId == "r1"'), step_id="step-h-wait")
        suspend_on_wait(store, lease_run(store, "r1"), pending)
        start(store, "r2")
        held = lease_run(store, "r2")
        pay = wait("r2", "w-2b", 'async.data.orderId == "r2"', created_at=T0 - 1)
        ship = wait(
            "r2",
            "w-2a",
            'async.data.orderId == "r2"',
            event_name="shipment/sent",
            step_hash="h-ship",
        )
        steps = [
            step("r2", "h-wait", 0, "PENDING", kind="wait"),
            step("r2", "h-ship", 1, "PENDING", kind="wait"),
        ]
        commit(
            store,
            PassCommit("r2", held.token, steps=steps, waits=[pay, ship], end=RunEnd("WAITING")),
        )
        _waiting(store, "r3")
        paid = EventRecord("p-1", "payment/received", data | {"orderId": "r1"}, user, sender_id, T0)
        ingest(store, EventIngest(paid), now=PAID_AT)
        ingest(
            store, EventIngest(_paid("r2", "p-2")), EventIngest(_paid("r3", "p-3")), now=PAID_AT + 1
        )
        shipped = EventRecord("s-1", "shipment/sent", {"orderId": "r2"}, {}, None, T0)
        ingest(store, EventIngest(shipped), now=PAID_AT + 2)
        reads = {run_id: _reads(store, run_id)[:5] for run_id in ("r1", "r2", "r3")}
    finally:
        store.close()
    written = _file(path)
    resolutions = [
        ("r1", "w-r1", "p-1", PAID_AT),
        ("r2", "w-2b", "p-2", PAID_AT + 1),
        ("r3", "w-r3", "p-3", PAID_AT + 1),
        ("r2", "w-2a", "s-1", PAID_AT + 2),
    ]
    _as_schema_25_left_it(path, resolutions)
    assert _file(path) != written
    _migrated(path)
    assert _file(path) == written
    assert _mark_columns(path) == []  # 28: the marks are gone, the rows they named purged
    assert _rows(path, "SELECT count(*) FROM waits") == [(0,)]
    store = SQLiteStore(path)
    try:
        assert {run_id: _reads(store, run_id)[:5] for run_id in reads} == reads
    finally:
        store.close()


def test_migration_26_writes_null_for_an_event_gone(tmp_path: Path) -> None:
    # schema 25's retention kept an event a mark named, so none is gone; if one were (a file
    # edited by hand), its step gets null, as a wait that ended without an event
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    try:
        store.migrate()
        _waiting(store)
        _pay(store)
    finally:
        store.close()
    _as_schema_25_left_it(path, [("r1", "w-r1", "p-1", PAID_AT)])
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM events WHERE internal_id = 'p-1'")
        conn.commit()
    _migrated(path)
    memo = "SELECT status, output, ended_at FROM steps WHERE hash = 'h-wait'"
    assert [(st, bytes(out), at) for st, out, at in _rows(path, memo)] == [
        ("COMPLETED", b"null", PAID_AT)
    ]
    assert _written(path)[-1] == "WAIT_MATCHED"
