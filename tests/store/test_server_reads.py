"""The reads the HTTP server needs (issue 9), on every backend: listing events with filters and
a cursor, a page of runs' steps in one read, runs by creation time with a cursor, counts for
metrics, and which event ids are stored."""

from __future__ import annotations

from typing import Any

from stepline.store import Store
from stepline.store._rows import RECENT_EVENTS
from stepline.store.records import EventFilter, EventIngest, NewRun, PassCommit, RunEnd, RunFilter
from stepline.store.search_records import RunClause

from .builders import T0, commit, event, ingest, lease, lease_run, start, step


def test_list_events_newest_first_with_filters_and_a_cursor(store: Store) -> None:
    for i in range(5):
        name = "order/created" if i % 2 == 0 else "order/paid"
        ingest(store, EventIngest(event(f"e{i}", name, {"i": i})), now=T0 + i)
    every = store.list_events(EventFilter())
    assert [e.event.internal_id for e in every] == ["e4", "e3", "e2", "e1", "e0"]
    assert [e.received_at for e in every] == [T0 + 4, T0 + 3, T0 + 2, T0 + 1, T0]
    named = store.list_events(EventFilter(name="order/created"))
    assert [e.event.internal_id for e in named] == ["e4", "e2", "e0"]
    timed = store.list_events(EventFilter(received_after=T0 + 1, received_before=T0 + 3))
    assert [e.event.internal_id for e in timed] == ["e3", "e2", "e1"]
    first = store.list_events(EventFilter(limit=2))
    last = first[-1]
    rest = store.list_events(
        EventFilter(limit=10, after=(last.received_at, last.event.internal_id))
    )
    assert [e.event.internal_id for e in first + rest] == ["e4", "e3", "e2", "e1", "e0"]


def test_list_events_by_id_pages_each_event_once_whatever_their_received_order(
    store: Store,
) -> None:
    # ids in another order than their events were received (an SDK's seeded ids, two clocks)
    for at, i in enumerate((3, 0, 5, 1, 4, 2)):
        name = "order/created" if i % 2 == 0 else "order/paid"
        ingest(store, EventIngest(event(f"a{i}", name, {"i": i})), now=T0 + at)

    def ids(**filters: Any) -> list[str]:
        return [e.event.internal_id for e in store.list_events(EventFilter(**filters))]

    assert ids(id_below="z") == ["a5", "a4", "a3", "a2", "a1", "a0"]
    assert ids(id_below="a3") == ["a2", "a1", "a0"]
    assert ids(id_below="a35") == ["a3", "a2", "a1", "a0"]  # an id no event has
    assert ids(id_below="z", name="order/created") == ["a4", "a2", "a0"]
    # received at T0 + 1 .. T0 + 3: a0, a5, a1
    assert ids(id_below="z", received_after=T0 + 1, received_before=T0 + 3) == ["a5", "a1", "a0"]
    assert ids(id_below="z", limit=2) == ["a5", "a4"]
    for size in (1, 2, 4):
        paged: list[str] = []
        below = "z"
        while page := ids(id_below=below, limit=size):
            paged += page
            below = page[-1]
        assert paged == ["a5", "a4", "a3", "a2", "a1", "a0"]


def test_list_events_by_id_is_exact_from_the_newest_events_or_from_every_match(
    store: Store,
) -> None:
    # ``_rows.listed_by_id``: the newest events below the cursor first (RECENT_EVENTS of them
    # for a small page), then every match when they hold too few: a name sent only long ago
    # (none among the newest), one sent throughout, and a window of received times
    total = RECENT_EVENTS + 200
    names = [
        "old/name" if i < 150 else ("x/mix" if i % 3 == 0 else "x/other") for i in range(total)
    ]
    items = [EventIngest(event(f"b{i:05d}", name)) for i, name in enumerate(names)]
    for start_at in range(0, total, 400):  # received one second apart per 400
        ingest(store, *items[start_at : start_at + 400], now=T0 + start_at // 400)

    def ids(**filters: Any) -> list[str]:
        return [e.event.internal_id for e in store.list_events(EventFilter(**filters))]

    def expected(name: str | None, below: str, limit: int, after: float = T0) -> list[str]:
        every = [
            f"b{i:05d}"
            for i in reversed(range(total))
            if (name is None or names[i] == name) and f"b{i:05d}" < below and T0 + i // 400 >= after
        ]
        return every[:limit]

    for name in ("old/name", "x/mix", None):
        for below in ("z", "b00900", "b00149", "b00003"):
            for limit in (1, 5, 60):
                assert ids(id_below=below, name=name, limit=limit) == expected(name, below, limit)
    late = T0 + 2  # the window holds the last 400 only: old/name has none there
    assert ids(id_below="z", name="old/name", received_after=late) == []
    for name in ("x/mix", None):
        for limit in (5, 500):
            found = ids(id_below="z", name=name, received_after=late, limit=limit)
            assert found == expected(name, "z", limit, late)
    assert ids(id_below="z", received_after=T0 + 9) == []  # a quiet last hour


def test_list_events_of_one_id_and_without_inngests_own(store: Store) -> None:
    ingest(store, EventIngest(event("c1", "order/created")), now=T0)
    ingest(store, EventIngest(event("c2", "inngest/function.finished")), now=T0 + 1)
    ingest(store, EventIngest(event("c3", "Inngest/not-reserved")), now=T0 + 2)

    def ids(**filters: Any) -> list[str]:
        return [e.event.internal_id for e in store.list_events(EventFilter(**filters))]

    for order in ({}, {"id_below": "z"}):
        assert ids(**order) == ["c3", "c2", "c1"]
        assert ids(include_internal=False, **order) == ["c3", "c1"]  # the prefix, its case
        assert ids(include_internal=False, name="inngest/function.finished", **order) == []
        for one in ("c1", "c2", "c3"):
            assert ids(internal_id=one, **order) == [one]
        assert ids(internal_id="c2", include_internal=False, **order) == []
        assert ids(internal_id="c2", name="order/created", **order) == []
        assert ids(internal_id="nope", **order) == []
    [shown] = store.list_events(EventFilter(internal_id="c2"))
    assert (shown.received_at, shown.event.name) == (T0 + 1, "inngest/function.finished")


def test_list_events_says_which_were_duplicates(store: Store) -> None:
    ingest(store, EventIngest(event("a", sender_id="s1")))
    ingest(store, EventIngest(event("b", sender_id="s1")), now=T0 + 1)
    found = {e.event.internal_id: e.duplicate for e in store.list_events(EventFilter())}
    assert found == {"a": False, "b": True}


def test_stored_event_ids(store: Store) -> None:
    ingest(store, EventIngest(event("a")))
    with store.transaction() as tx:
        assert tx.stored_event_ids(["a", "b"]) == {"a"}
        assert tx.stored_event_ids([]) == set()


def test_runs_by_creation_time_with_a_cursor(store: Store) -> None:
    for i in range(4):
        start(store, f"r{i}", now=T0 + i)
    page = store.list_runs(RunFilter(limit=2))
    assert [r.run_id for r in page] == ["r3", "r2"]
    cursor = (page[-1].created_at, page[-1].run_id)
    assert [r.run_id for r in store.list_runs(RunFilter(after=cursor))] == ["r1", "r0"]
    window = store.list_runs(RunFilter(created_after=T0 + 1, created_before=T0 + 2))
    assert [r.run_id for r in window] == ["r2", "r1"]


def test_steps_of_several_runs_in_one_read(store: Store) -> None:
    start(store, "r1", "r2", "r3")
    held = {h.run_id: h for h in lease(store)}
    for run_id in ("r1", "r2"):
        steps = [step(run_id, "h2", 1, output=2), step(run_id, "h1", 0, output=1)]
        commit(store, PassCommit(run_id, held[run_id].token, steps=steps))
    found = store.steps_of(["r1", "r2", "r3", "missing"])
    assert sorted(found) == ["r1", "r2"]
    assert [s.hash for s in found["r1"]] == ["h1", "h2"]
    assert found["r2"][0].output_json == b"1"


def test_stats_count_runs_and_the_due_queue(store: Store) -> None:
    start(store, "r1", now=T0)
    start(store, "r2", now=T0 + 5)
    start(store, "r3", now=T0 + 10)
    lease_run(store, "r1", now=T0)
    stats = store.stats(T0 + 6)
    assert stats.runs_by_status == {"RUNNING": 1, "QUEUED": 2}
    assert stats.queue_depth == 3
    assert (stats.due_now, stats.oldest_due_at) == (1, T0 + 5)
    empty = store.stats(T0 - 1)
    assert (empty.due_now, empty.oldest_due_at) == (0, None)


def _runs_with_data(store: Store, *datas: dict[str, Any]) -> list[str]:
    """One run per data (oldest first), each started by an event carrying it."""
    run_ids = [f"r{i}" for i in range(len(datas))]
    for i, (run_id, data) in enumerate(zip(run_ids, datas, strict=True)):
        run = NewRun(run_id, "fn", (f"e{i}",))
        ingest(store, EventIngest(event(f"e{i}", data=data), (run,)), now=T0 + i)
    return run_ids


def test_a_search_window_keeps_the_runs_its_clauses_may_hold(store: Store) -> None:
    # issue 9: the conjuncts of a payload search a store decides, among the newest runs
    _runs_with_data(
        store,
        {"n": 7, "who": {"name": 'a "b"'}},  # r0
        {"n": 7.0, "who": {"name": "c"}},  # r1: 7.0 equals 7
        {"n": "7"},  # r2: a string is not the number
        {"m": 7},  # r3
        {"n": 8, "who": {"name": 'a "b"'}},  # r4
        {"n": 7, "who": {"name": 'a "b"'}},  # r5
    )

    def ids(*clauses: RunClause, window: int = 100, **changes: Any) -> list[str]:
        found = store.search_window(RunFilter(**changes), window, clauses)
        return [r.run_id for _, r in found.candidates]

    n7 = RunClause("event.data", ("n",), "==", 7, if_other=False)
    named = RunClause("event.data", ("who", "name"), "==", 'a "b"', if_other=False)
    assert ids(n7) == ["r5", "r1", "r0"]
    assert ids(RunClause("event.data", ("n",), "==", 7.0, if_other=False)) == ["r5", "r1", "r0"]
    assert ids(RunClause("event.data", ("n",), "==", "7", if_other=False)) == ["r2"]
    assert ids(RunClause("event.data", ("n",), "==", 7)) == ["r5", "r2", "r1", "r0"]
    assert ids(named) == ["r5", "r4", "r0"]
    assert ids(n7, named) == ["r5", "r0"]
    assert ids(n7, window=3) == ["r5"]  # among r5, r4, r3
    assert ids(n7, window=5, status="QUEUED") == ["r5", "r1"]
    assert ids(n7, window=2, after=(T0 + 4, "r4")) == []
    assert ids(RunClause("event.data", ("absent",), "==", 1)) == []
    assert ids(RunClause("event.data", ("absent",), "<", 1, if_missing=True)) == ids()
    assert ids(RunClause("event.data", ("n",), ">", 7.5)) == ["r4", "r2"]  # a string: if_other
    assert ids(RunClause("event.data", ("n",), ">=", 7, if_other=False)) == ["r5", "r4", "r1", "r0"]
    assert ids(RunClause("event.data", ("n",), "<", 7.5, if_other=False)) == ["r5", "r1", "r0"]
    assert ids(RunClause("event.data", ("who", "name"), "startsWith", "a ")) == ["r5", "r4", "r0"]
    assert ids(RunClause("event.data", ("who", "name"), ">", "b", if_other=False)) == ["r1"]
    assert ids(RunClause("event.name", (), "startsWith", "order/")) == ids()
    assert ids(RunClause("event.name", (), "==", "other")) == []
    assert ids(RunClause("run.status", (), "==", "QUEUED"), window=2) == ["r5", "r4"]
    assert ids(RunClause("run.function_id", (), "==", "other")) == []


def test_a_search_window_is_read_whole_with_its_edge(store: Store) -> None:
    _runs_with_data(store, *({"i": i} for i in range(5)))
    first = store.search_window(RunFilter(), 3, (RunClause("event.data", ("i",), "==", 3),))
    assert [(n, r.run_id) for n, r in first.candidates] == [(2, "r3")]
    assert (first.size, first.more) == (3, True)
    assert first.edge is not None and first.edge.run_id == "r2"
    whole = store.search_window(RunFilter(), 10)
    assert [n for n, _ in whole.candidates] == [1, 2, 3, 4, 5]
    assert (whole.size, whole.more) == (5, False)
    assert whole.edge is not None and whole.edge.run_id == "r0"
    exact = store.search_window(RunFilter(), 5, (RunClause("run.status", (), "==", "x"),))
    assert (exact.candidates, exact.size, exact.more) == ([], 5, False)
    assert exact.edge is not None and exact.edge.run_id == "r0"
    empty = store.search_window(RunFilter(function_id="other"), 5)
    assert (empty.candidates, empty.size, empty.edge, empty.more) == ([], 0, None, False)


def test_a_search_window_reads_outputs_and_errors(store: Store) -> None:
    _runs_with_data(store, {}, {}, {})
    held = {h.run_id: h for h in lease(store, now=T0 + 10)}
    completed = RunEnd("COMPLETED", output_json=b'{"x": 1}')
    commit(store, PassCommit("r0", held["r0"].token, end=completed), now=T0 + 10)
    failed = RunEnd("FAILED", error={"name": "Error", "message": "boom!"})
    commit(store, PassCommit("r1", held["r1"].token, end=failed), now=T0 + 10)

    def ids(clause: RunClause) -> list[str]:
        return [r.run_id for _, r in store.search_window(RunFilter(), 10, (clause,)).candidates]

    assert ids(RunClause("output", ("x",), "==", 1)) == ["r0"]
    assert ids(RunClause("output", ("x",), "<", 0.5, if_missing=True)) == ["r2", "r1"]
    assert ids(RunClause("error", ("message",), "startsWith", "boom")) == ["r1"]
    assert ids(RunClause("run.status", (), "==", "FAILED")) == ["r1"]


def test_count_runs_counts_up_to_the_limit(store: Store) -> None:
    _runs_with_data(store, *({"i": i} for i in range(5)))
    assert store.count_runs(RunFilter(limit=100)) == 5
    assert store.count_runs(RunFilter(limit=3)) == 3
    assert store.count_runs(RunFilter(function_id="other", limit=100)) == 0
    assert store.count_runs(RunFilter(created_after=T0 + 3, limit=100)) == 2


def test_a_search_window_reads_queue_rows(store: Store) -> None:
    # the runs list's "waiting on" filter: due by now ("queued") or later ("scheduled")
    start(store, "r0", now=T0)
    start(store, "r1", now=T0 + 100)  # due at its creation
    start(store, "r2", now=T0 + 1)
    held = {h.run_id: h for h in lease(store, now=T0 + 1, limit=2)}
    commit(store, PassCommit("r2", held["r2"].token, end=RunEnd("COMPLETED")), now=T0 + 1)

    def ids(query: RunFilter, *clauses: RunClause) -> list[str]:
        return [r.run_id for _, r in store.search_window(query, 10, clauses).candidates]

    due_by = RunClause("queue.due_at", (), "<=", T0 + 50, if_missing=True)
    assert ids(RunFilter(), due_by) == ["r2", "r0"]  # r2 has no queue row
    assert ids(RunFilter(), RunClause("queue.due_at", (), ">", T0 + 50)) == ["r1"]
