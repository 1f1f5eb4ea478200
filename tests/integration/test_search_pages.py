"""Payload search in pages (issue 9): ``App.search_runs(after=...)`` continues below where the
previous page stopped (its ``next_cursor``), decided by the store first or by CEL alone; pages
joined equal one search with no bound, also while runs are added between pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pgtest
from stepline import App, Context, Event, TriggerEvent
from stepline.sdk.search import RunSearch
from stepline.testing import MockClock, TestEngine

PUSHED = 'event.data.x == 1 && event.data.k == "a"'  # decided by the store, then CEL
ALONE = 'event.data.x + 0 == 1 && event.data.k + "" == "a"'  # the same, CEL alone


def _app() -> App:
    app = App("pages-app")

    @app.function(id="echo", trigger=TriggerEvent("item"))
    async def echo(ctx: Context) -> int:
        return 1

    return app


async def _start(t: TestEngine, clock: MockClock, first: int, count: int) -> list[str]:
    """Runs of events i = first .. first+count-1 ({"x": i % 3, "k": "ab"[i % 2]}), each a
    second newer than the one before."""
    runs: list[str] = []
    for i in range(first, first + count):
        clock.advance(1)
        [event_id] = await t.send(Event("item", {"x": i % 3, "k": "ab"[i % 2]}))
        runs.append((await t.runs(event_id=event_id))[0].run_id)
    for run_id in runs:
        await t.wait_for_run(run_id)
    return runs


async def _pages(app: App, query: str, limit: int, scan: int) -> list[RunSearch]:
    pages = [await app.search_runs(query, limit=limit, scan=scan)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 100, "the pages do not end"
        after = pages[-1].next_cursor
        pages.append(await app.search_runs(query, limit=limit, scan=scan, after=after))
    return pages


async def test_pages_joined_equal_one_search(store_kind: str) -> None:
    app = _app()
    clock = MockClock(autojump=False)
    async with TestEngine(app, store=pgtest.engine_store(store_kind), clock=clock) as t:
        runs = await _start(t, clock, 0, 40)
        # x == 1 and k == "a": i = 4, 10, 16, 22, 28, 34, newest first
        expected = [runs[i] for i in reversed(range(40)) if i % 3 == 1 and i % 2 == 0]
        for query in (PUSHED, ALONE):
            whole = await app.search_runs(query, limit=100, scan=100)
            assert [r.run_id for r in whole.runs] == expected, query
            assert whole.complete and whole.next_cursor is None
            # stopped by the limit, by the scan bound, by both in turn
            for limit, scan in ((2, 100), (100, 7), (1, 5), (6, 40), (3, 9)):
                pages = await _pages(app, query, limit, scan)
                joined = [r.run_id for p in pages for r in p.runs]
                assert joined == expected, (query, limit, scan, joined)
                assert pages[-1].complete and all(not p.complete for p in pages[:-1])
                assert all(len(p.runs) <= limit and p.scanned <= scan for p in pages)
            # a page the scan bound stopped continues below the oldest run it scanned
            page = await app.search_runs(query, limit=100, scan=7)
            assert (page.scanned, page.complete, page.runs[0].run_id) == (7, False, runs[34])
            assert page.next_cursor == (await t.runs(limit=7))[6].cursor


async def test_pages_stay_exact_while_runs_are_added(store_kind: str) -> None:
    app = _app()
    clock = MockClock(autojump=False)
    async with TestEngine(app, store=pgtest.engine_store(store_kind), clock=clock) as t:
        runs = await _start(t, clock, 0, 30)
        expected = [runs[i] for i in reversed(range(30)) if i % 3 == 1 and i % 2 == 0]
        firsts = {q: await app.search_runs(q, limit=2, scan=100) for q in (PUSHED, ALONE)}
        await _start(t, clock, 30, 12)  # newer runs, two of them matches (i = 34, 40)
        for query, first in firsts.items():
            assert [r.run_id for r in first.runs] == expected[:2]
            joined = [r.run_id for r in first.runs]
            after = first.next_cursor
            while after is not None:
                page = await app.search_runs(query, limit=2, scan=100, after=after)
                joined += [r.run_id for r in page.runs]
                after = page.next_cursor
            assert joined == expected, query
            assert len((await app.search_runs(query, limit=100)).runs) == len(expected) + 2


async def test_a_search_reads_its_window_and_where_it_ends_in_one_read(
    store_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the runs a search counts, its candidates and the window's end were three reads (runs
    # purged between them left no run at the window's end): now one statement, one snapshot
    app = _app()
    clock = MockClock(autojump=False)
    async with TestEngine(app, store=pgtest.engine_store(store_kind), clock=clock) as t:
        runs = await _start(t, clock, 0, 12)
        store = app.engine.store
        reads: list[str] = []
        for verb in ("search_window", "list_runs", "count_runs"):
            monkeypatch.setattr(store, verb, _counted(reads, verb, getattr(store, verb)))
        for query in (PUSHED, ALONE):
            page = await app.search_runs(query, scan=5)
            # among the 5 newest (i = 11 .. 7) the only match is i = 10, the second newest
            assert ([r.run_id for r in page.runs], page.complete) == ([runs[10]], False)
            assert (page.scanned, page.next_cursor) == (5, (await t.runs(limit=12))[4].cursor)
            stopped = await app.search_runs(query, scan=5, limit=1)
            assert (stopped.scanned, stopped.next_cursor) == (2, page.runs[0].cursor)
        assert reads.count("search_window") == 4 and "count_runs" not in reads


def _counted(reads: list[str], verb: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any) -> Any:
        reads.append(verb)
        return call(*args)

    return counted
