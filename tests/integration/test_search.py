"""Payload search (issue 9): the ``event.data`` equalities of a query are decided by the store
first (``Store.search_window``'s clauses), which changes how fast a search is, never what it
finds."""

from __future__ import annotations

import dataclasses

import pgtest
from stepline import App, Context, Event, TriggerEvent
from stepline.sdk.search import search_clauses
from stepline.store.search_records import RunClause
from stepline.testing import MockClock, TestEngine

QUERIES = [
    'event.data.n == 1 && event.data.kind == "a"',  # decided by the store, then CEL
    'event.data.n + 0 == 1 && event.data.kind + "" == "a"',  # the same, CEL alone
    "event.data.n == 1 || event.data.n == 2",  # no prefilter
    'event.data.n == 1.0 && run.status == "COMPLETED"',
]


def test_the_clauses_are_comparisons_of_a_field_with_a_literal() -> None:
    n1, kind = (
        RunClause("event.data", ("n",), "==", 1),
        RunClause("event.data", ("kind",), "==", "a"),
    )
    assert search_clauses(QUERIES[0]) == (
        dataclasses.replace(n1, if_other=False),
        dataclasses.replace(kind, if_other=False),
    )
    assert search_clauses(QUERIES[1]) == ()
    assert search_clauses(QUERIES[2]) == ()
    assert [c.field for c in search_clauses("event.data.ok == true && output.x == 1")] == [
        "event.data",
        "output",
    ]
    assert search_clauses("event.data.items[0] == 1 && event.data.v == null") == ()
    assert search_clauses("event.data.w == [1] && event.data.n != 1") == ()
    assert search_clauses("event.data.n > now_minus('1h') && event.data.n > size('ab')") == ()
    # keys a JSON path would have to escape: JSON escapes control characters, " and \
    assert search_clauses("event.data['a\\tb'] == 1 && event.data['q\"'] == 1") == ()
    # what the conjunct alone gives where the field is missing or null: unknown < x is true,
    # a null compares as the literal type's zero; another type errors, so that run is kept
    # (CEL reports the error)
    [below] = search_clauses("event.data.n < 5")
    assert (below.op, below.if_missing, below.if_null, below.if_other) == ("<", True, True, True)
    [above] = search_clauses("5 < event.data.n")
    assert (above.op, above.if_missing, above.if_null) == (">", False, False)
    [negative] = search_clauses("event.data.n > -5")
    assert (negative.value, negative.if_null) == (-5, True)
    [name, status] = search_clauses('event.name.startsWith("order") && run.status == "FAILED"')
    assert (name.field, name.op, status.field) == ("event.name", "startsWith", "run.status")


async def test_a_prefiltered_search_finds_what_cel_alone_finds(store_kind: str) -> None:
    app = App("search-app")

    @app.function(id="echo", trigger=TriggerEvent("item"))
    async def echo(ctx: Context) -> int:
        return int(ctx.event.data["n"])

    clock = MockClock(autojump=False)
    async with TestEngine(app, store=pgtest.engine_store(store_kind), clock=clock) as t:
        events = [Event("item", {"n": i % 3, "kind": "ab"[i % 2]}) for i in range(30)]
        runs = [(await t.runs(event_id=e))[0].run_id for e in await t.send(events)]
        for run_id in runs:
            await t.wait_for_run(run_id)
        # n == 1 and kind "a": i = 4, 10, 16, 22, 28, newest first
        expected = [runs[i] for i in reversed(range(30)) if i % 3 == 1 and i % 2 == 0]
        pushed, alone = [await app.search_runs(q, limit=100) for q in QUERIES[:2]]
        assert [r.run_id for r in pushed.runs] == [r.run_id for r in alone.runs] == expected
        assert len(expected) == 5
        assert (pushed.scanned, pushed.complete) == (30, True)
        assert len((await app.search_runs(QUERIES[2])).runs) == 20
        assert len((await app.search_runs(QUERIES[3])).runs) == 10
        window = await app.search_runs(QUERIES[0], scan=12)
        assert (window.scanned, window.complete) == (12, False)
        assert [r.run_id for r in window.runs] == expected[:2]  # among the 12 newest runs
        first = await app.search_runs(QUERIES[0], limit=1)
        assert [r.run_id for r in first.runs] == expected[:1] and not first.complete


async def test_the_prefilter_never_finds_fewer_than_cel_for_awkward_data(store_kind: str) -> None:
    # a string holding U+0000 (PostgreSQL's jsonb refuses it: the pushed search failed on every
    # query once such an event was among the runs searched) and keys holding control characters
    # (SQLite's JSON path did not find them: the pushed search found nothing)
    app = App("awkward-app")

    @app.function(id="echo", trigger=TriggerEvent("item"))
    async def echo(ctx: Context) -> int:
        return 1

    async with TestEngine(
        app, store=pgtest.engine_store(store_kind), clock=MockClock(autojump=False)
    ) as t:
        sent = await t.send(
            [
                Event("item", {"n": 1, "a\tb": 1, "note": "nul \u0000 inside"}),
                Event("item", {"n": 2, "a\tb": 2}),
                Event("item", {"n": 1, "a\tb": 1}),
            ]
        )
        runs = [(await t.runs(event_id=e))[0].run_id for e in sent]
        for run_id in runs:
            await t.wait_for_run(run_id)
        expected = [runs[2], runs[0]]  # newest first
        for pushed, alone in [
            ("event.data.n == 1", "event.data.n + 0 == 1"),
            ("event.data['a\\tb'] == 1", "event.data['a\\tb'] + 0 == 1"),
        ]:
            found = [r.run_id for r in (await app.search_runs(pushed)).runs]
            cel = [r.run_id for r in (await app.search_runs(alone)).runs]
            assert found == cel == expected, (pushed, found, cel)


async def test_a_search_stopped_by_its_limit_says_how_far_it_read(store_kind: str) -> None:
    # decided by the store first or by CEL alone, a search that found `limit` matches read the
    # runs down to its last match: `scanned` counts those, not the whole window
    app = App("limit-app")

    @app.function(id="echo", trigger=TriggerEvent("item"))
    async def echo(ctx: Context) -> int:
        return 1

    async with TestEngine(
        app, store=pgtest.engine_store(store_kind), clock=MockClock(autojump=False)
    ) as t:
        sent = await t.send([Event("item", {"x": i % 2}) for i in range(20)])
        for e in sent:
            await t.wait_for_run((await t.runs(event_id=e))[0].run_id)
        for query in ("event.data.x == 1", "event.data.x + 0 == 1"):
            found = await app.search_runs(query, limit=3, scan=100)
            assert len(found.runs) == 3 and not found.complete, query
            # the newest run has x == 1 (i = 19): the third match is the fifth newest run
            assert found.scanned == 5, (query, found.scanned)


async def test_a_pushed_conjunct_that_errors_on_a_run_reports_the_error(store_kind: str) -> None:
    # `"150" > 100` errors in CEL (no overload): the store's prefilter kept only the runs where
    # the conjunct is true, so the erroring run was dropped and `failed` stayed 0; an error must
    # read differently from an empty result, whether the conjunct is pushed or not
    app = App("error-app")

    @app.function(id="echo", trigger=TriggerEvent("item"))
    async def echo(ctx: Context) -> int:
        return 1

    async with TestEngine(
        app, store=pgtest.engine_store(store_kind), clock=MockClock(autojump=False)
    ) as t:
        sent = await t.send([Event("item", {"amount": "150"}), Event("item", {"amount": 150})])
        runs = [(await t.runs(event_id=e))[0].run_id for e in sent]
        for run_id in runs:
            await t.wait_for_run(run_id)
        for pushed in ("event.data.amount > 100", 'event.data.amount.startsWith("1")'):
            assert search_clauses(pushed), pushed
            for query in (pushed, f"({pushed}) || false"):
                found = await app.search_runs(query)
                assert found.failed == 1 and found.error, (query, found)
                assert len(found.runs) == 1, (query, found)


async def test_a_query_whose_result_has_no_python_form_fails_on_each_run() -> None:
    # an optional result (`event.?data`): the binding's value could not be read back, and the
    # search raised a TypeError (a 500 on the dashboard) instead of counting the runs it failed
    # on; a query reading one event field is given that field only, and finds as before
    app = App("optional-app")

    @app.function(id="echo", trigger=TriggerEvent("item"))
    async def echo(ctx: Context) -> int:
        return 1

    async with TestEngine(app, store="sqlite", clock=MockClock(autojump=False)) as t:
        sent = await t.send([Event("item", {"n": 1}), Event("item", {"n": 2})])
        for e in sent:
            await t.wait_for_run((await t.runs(event_id=e))[0].run_id)
        found = await app.search_runs("event.?data")
        assert (len(found.runs), found.failed, found.scanned) == (0, 2, 2)
        assert found.error and "unsupported result" in found.error
        assert len((await app.search_runs("event.?data.orValue({}).n == 2")).runs) == 1
        assert len((await app.search_runs('event.name == "item" && size(event) == 5')).runs) == 2
