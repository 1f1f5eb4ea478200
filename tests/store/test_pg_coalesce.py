"""The queued writes of one round trip that do the same to different runs are one statement
(``store/postgres/_coalesce.py``): a group commit of many pass commits sends a statement per
text, not per commit, and applies exactly what the commits one after the other apply. A write
never moves ahead of a statement that touches its run's rows in its tables, nor ahead of an
unknown statement, and rows that must differ are never in one statement."""

from __future__ import annotations

from typing import Any

import psycopg
from tests.store.builders import T0, cel_matches, lease, start, step
from tests.store.test_pg_optimistic import one_batch

from stepline.store.postgres import PostgresStore
from stepline.store.postgres import queries as q
from stepline.store.postgres._coalesce import MAX_VALUES, coalesced
from stepline.store.records import HistoryRecord, Lease, PassCommit, RunEnd


def _steps(run: str, digest: str = "h") -> tuple[str, tuple[Any, ...]]:
    return q.UPSERT_STEP, (run, digest, "s", "run", 0, "COMPLETED", b"1", None, 1, None, T0, T0)


def _history(run: str, kind: str = "STEP_COMPLETED") -> tuple[str, tuple[Any, ...]]:
    return q.INSERT_HISTORY, (run, T0, kind, "s", 0, 0.0, None, "w1")


def _running(run: str) -> tuple[str, tuple[Any, ...]]:
    return q.MARK_RUNNING, (T0, run)


def _ended(run: str) -> tuple[str, tuple[Any, ...]]:
    return q.END_RUN_TERMINAL, ("COMPLETED", b"3", None, T0, None, T0, run)


def _dropped(run: str) -> tuple[str, tuple[Any, ...]]:
    return q.DROP_RUN_WORK, (run,) * 4


def _tables(queued: list[tuple[str, Any]]) -> list[Any]:
    table = {q.UPSERT_STEP: "steps", q.INSERT_HISTORY: "history", q.MARK_RUNNING: "runs"}
    return [
        table.get(query, "runs" if query == q.END_RUN_TERMINAL else None) for query, _ in queued
    ]


def _texts(queued: list[tuple[str, Any]]) -> list[str]:
    """Each resulting statement: the name of its query, or "n x NAME" for a group of n."""
    names = {
        q.UPSERT_STEP: "steps",
        q.INSERT_HISTORY: "history",
        q.MARK_RUNNING: "running",
        q.END_RUN_TERMINAL: "ended",
        q.DROP_RUN_WORK: "dropped",
        q.COMPLETE_STEP: "completed",
    }
    groups = {  # a group's statement (an array per parameter): its name
        q.UPSERT_STEP_MANY: "steps",
        q.INSERT_HISTORY_MANY: "history",
        q.MARK_RUNNING_MANY: "running",
        q.END_RUN_TERMINAL_MANY: "ended",
        q.DROP_RUN_WORK_MANY: "dropped",
    }
    out, _ = coalesced(queued, _tables(queued))
    found = []
    for query, params in out:
        if query in groups:
            assert isinstance(params, list)
            found.append(f"{len(params[0])} x {groups[query]}")
        else:
            found.append(names.get(query, query))
    return found


def test_the_writes_of_one_text_are_one_statement_where_the_first_stood() -> None:
    queued = [
        *(_steps("r1"), _history("r1"), _running("r1")),
        *(_steps("r2"), _history("r2"), _running("r2")),
        *(_steps("r3"), _history("r3"), _running("r3")),
    ]
    assert _texts(queued) == ["3 x steps", "3 x history", "3 x running"]
    out, _ = coalesced(queued, _tables(queued))
    assert out[1][1][0] == ["r1", "r2", "r3"]  # the rows in their order
    assert out[2][1] == [[T0, T0, T0], ["r1", "r2", "r3"]]


def test_a_write_does_not_move_ahead_of_another_write_to_its_run_in_its_table() -> None:
    queued = [_running("r1"), _ended("r2"), _running("r2"), _running("r3")]
    # r2's MARK_RUNNING stays after r2's end; r3's joins r2's (the groups are closed in order)
    assert _texts(queued) == ["running", "ended", "2 x running"]
    queued = [_running("r1"), _ended("r9"), _running("r2")]  # another run: it moves
    assert _texts(queued) == ["2 x running", "ended"]


def test_a_write_moves_past_statements_that_moved_ahead_of_its_group() -> None:
    # r3's step and end join groups that began before r1's ending: they no longer stand
    # between the two endings, so r3's ending joins r1's (still after every write of r3)
    queued = [
        *(_steps("r1"), _ended("r1"), _dropped("r1")),
        *(_steps("r2"), _running("r2")),
        *(_steps("r3"), _ended("r3"), _dropped("r3")),
    ]
    assert _texts(queued) == ["3 x steps", "2 x ended", "2 x dropped", "running"]


def test_a_write_that_stays_between_keeps_a_later_one_of_its_run_behind_it() -> None:
    completed = (q.COMPLETE_STEP, (b"1", T0, "r3", "h"))  # known, never grouped: it stays
    queued = [_dropped("r1"), completed, _dropped("r3"), _dropped("r4")]
    assert _texts(queued) == ["dropped", "completed", "2 x dropped"]


def test_the_notes_of_events_beside_a_take_are_one_statement_taken_earlier() -> None:
    first = (q.NOTE_UNLESS_SHARED, (["e1"], [7]))  # event ids, their name buckets
    second = (q.NOTE_UNLESS_SHARED, (["e2", "e3"], [3, 7]))
    out, _ = coalesced([first, _steps("r1"), second, _steps("r2")], [None, "steps", None, "steps"])
    assert out[0] == (q.NOTE_UNLESS_SHARED, [["e1", "e2", "e3"], [7, 3, 7]])
    assert [query for query, _ in out[1:]] == [q.UPSERT_STEP_MANY]


def test_an_unknown_statement_ends_every_group() -> None:
    queued = [_running("r1"), ("SELECT pg_advisory_xact_lock(1)", ()), _running("r2")]
    assert _texts(queued) == ["running", "SELECT pg_advisory_xact_lock(1)", "running"]


def test_a_write_of_unknown_rows_in_a_table_ends_its_groups_only() -> None:
    other = "INSERT INTO history (run_id, ts, kind) VALUES (%s, %s, 'X')"
    queued = [_history("r1"), _running("r1"), (other, ("r9", T0)), _history("r2"), _running("r2")]
    tables = ["history", "runs", "history", "history", "runs"]
    out, _ = coalesced(queued, tables)
    assert [query for query, _ in out][2:] == [other, q.INSERT_HISTORY]  # history: in order
    assert out[1] == (q.MARK_RUNNING_MANY, [[T0, T0], ["r1", "r2"]])


def test_rows_that_must_differ_are_never_in_one_statement() -> None:
    queued = [_steps("r1", "h1"), _steps("r1", "h1"), _steps("r1", "h2")]
    assert _texts(queued) == ["steps", "2 x steps"]  # an upsert applies each row once


def test_a_group_stops_at_its_bound_of_values() -> None:
    queued = [_steps(f"r{i}") for i in range(MAX_VALUES // 12 + 10)]
    groups = [int(t.split()[0]) for t in _texts(queued)]
    assert groups == [MAX_VALUES // 12, 10]


def _pass(held: Lease, output: int, end: bool) -> Any:
    history = [HistoryRecord(held.run_id, T0 + i, "STEP_COMPLETED", f"s{i}") for i in range(2)]
    commit = PassCommit(
        held.run_id,
        held.token,
        steps=[step(held.run_id, "h1", 0, output=output)],
        history=history,
        end=RunEnd("COMPLETED", output_json=b"%d" % output) if end else None,
    )
    return lambda tx: tx.commit_pass(commit, T0, cel_matches)


def test_a_group_commit_of_many_passes_applies_what_each_applies(
    pg_store: PostgresStore, sent: list[str]
) -> None:
    runs = [f"r{i}" for i in range(6)]
    start(pg_store, *runs)
    held = sorted(lease(pg_store), key=lambda h: h.run_id)
    sent.clear()
    # r0, r2, r4 go on running; r1, r3, r5 end (their queue rows dropped)
    found, writer = one_batch(pg_store, [_pass(h, i, i % 2 == 1) for i, h in enumerate(held)])
    assert found == [[]] * 6
    assert (writer.transactions, writer.replays) == (1, 0)
    many = [q.UPSERT_STEP_MANY, q.MARK_RUNNING_MANY, q.END_RUN_TERMINAL_MANY]
    many.append(q.DROP_RUN_WORK_MANY)  # the endings, after the writes of their runs
    # each sent once (a part of a WITH … statement, some: adjacent writes to other tables)
    assert [sum(query in text for text in sent) for query in many] == [1, 1, 1, 1]
    for i, run_id in enumerate(runs):
        record = pg_store.get_run(run_id)
        assert record is not None
        assert record.status == ("COMPLETED" if i % 2 else "RUNNING")
        assert [s.output_json for s in pg_store.get_steps(run_id)] == [b"%d" % i]
        kinds = [(h.kind, h.step_id) for h in pg_store.get_history(run_id)]
        assert kinds[-2:] == [("STEP_COMPLETED", "s0"), ("STEP_COMPLETED", "s1")]
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        queued = {r[0] for r in conn.execute("SELECT run_id FROM queue")}
    assert queued == {"r0", "r2", "r4"}


def test_a_pass_commit_rewrites_its_runs_row_only_when_it_changes(pg_store: PostgresStore) -> None:
    start(pg_store, "r1")
    [held] = lease(pg_store)  # RUNNING, one pass spent

    def version() -> tuple[str, int]:
        with psycopg.connect(pg_store.url, autocommit=True) as conn:
            row = conn.execute("SELECT xmin::text, passes FROM runs WHERE run_id = 'r1'").fetchone()
        assert row is not None
        return str(row[0]), int(row[1])

    leased = version()
    commit = PassCommit("r1", held.token, steps=[step("r1", "h1", 0, output=1)])
    one_batch(pg_store, [lambda tx: tx.commit_pass(commit, T0, cel_matches)])
    first = version()
    assert first[0] != leased[0] and first[1] == 0  # progress: no pass spent
    commit = PassCommit("r1", held.token, steps=[step("r1", "h2", 1, output=2)])
    one_batch(pg_store, [lambda tx: tx.commit_pass(commit, T0, cel_matches)])
    assert version() == first  # nothing of the row changed: no new version of it
    assert [s.output_json for s in pg_store.get_steps("r1")] == [b"1", b"2"]


def test_a_group_takes_numbers_of_either_type_and_columns_of_nulls_only(
    pg_store: PostgresStore,
) -> None:
    start(pg_store, "r1", "r2")
    held = sorted(lease(pg_store), key=lambda h: h.run_id)
    steps = [step(h.run_id, "h1", 0, output=i) for i, h in enumerate(held)]
    steps[0].started_at, steps[1].started_at = 1_700_000_000, 1_700_000_000.5  # int, float
    history = [HistoryRecord(h.run_id, T0, "NOTE", None, None, None, None) for h in held]
    commits = [
        PassCommit(h.run_id, h.token, steps=[s], history=[r])
        for h, s, r in zip(held, steps, history, strict=True)
    ]
    jobs = [lambda tx, c=c: tx.commit_pass(c, T0, cel_matches) for c in commits]
    found, writer = one_batch(pg_store, jobs)
    assert found == [[], []] and (writer.transactions, writer.replays) == (1, 0)
    assert [s.started_at for r in ("r1", "r2") for s in pg_store.get_steps(r)] == [
        1_700_000_000.0,
        1_700_000_000.5,
    ]
    notes = [h for r in ("r1", "r2") for h in pg_store.get_history(r) if h.kind == "NOTE"]
    assert [(h.step_id, h.attempt, h.data) for h in notes] == [(None, None, None)] * 2
