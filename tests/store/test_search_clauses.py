"""Property (issue 9): the conjuncts of a payload search a store decides (``search_clauses``,
``Store.search_window``) never change what the search finds. On every backend, for random
queries over runs whose fields hold every JSON type (missing, null, numbers, texts, booleans,
lists, objects), the runs CEL matches among the store's candidates are exactly the runs CEL
matches among all runs, and so are the runs it fails to evaluate on (an error must read
differently from an empty result); the candidates are evaluated as ``App.search_runs`` does,
on the variables and event fields the query reads only (``used_variables``,
``event_fields``), all runs on everything a run shows."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepline.errors import ExpressionError
from stepline.expressions import ExpressionEvaluationError
from stepline.sdk.search import (
    ALL_VARIABLES,
    compile_search,
    event_fields,
    is_match,
    search_activation,
    search_clauses,
    used_variables,
)
from stepline.serde import dumps
from stepline.store import Store
from stepline.store.records import EventIngest, NewRun, PassCommit, RunEnd, RunFilter, RunRecord

from .builders import T0, commit, event, ingest, lease

_ABSENT = object()
VALUES: list[Any] = [
    _ABSENT, None, 0, 7, -3, 7.0, 7.5, 1e20, "7", "", "a", "ab", "b", "é", True, False, [1],
    {"p": 1},
]  # fmt: skip
NAMES = ("order/created", "order/paid", "other")


def _data(i: int) -> dict[str, Any]:
    inner = _present({"p": VALUES[(i * 7 + 1) % len(VALUES)]})
    picked = {
        "n": VALUES[i % len(VALUES)],
        "s": VALUES[(i * 5 + 3) % len(VALUES)],
        "o": inner if i % 4 else VALUES[i % len(VALUES)],
    }
    return _present(picked)


def _present(picked: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in picked.items() if v is not _ABSENT}


def _fill(store: Store) -> None:
    """One run per data shape (and a run without events): a third completed (output
    ``{"n": ...}``), a third failed (error messages "boom", "bad", ""), the rest queued."""
    count = 2 * len(VALUES)
    for i in range(count):
        run = NewRun(f"r{i:02}", "fn-a" if i % 2 else "fn-b", (f"e{i}",))
        sent = event(f"e{i}", NAMES[i % 3], _data(i))
        ingest(store, EventIngest(sent, (run,)), now=T0 + i)
    ingest(store, EventIngest(event("lone", "lonely"), (NewRun("r-none", "fn-a", ()),)), now=T0)
    now = T0 + count
    for held in lease(store, now=now):
        i = int(held.run_id[1:]) if held.run_id != "r-none" else 0
        if i % 3 == 0:
            output = dumps(_present({"n": VALUES[i * 3 % len(VALUES)]}))
            end = RunEnd("COMPLETED", output_json=output)
        elif i % 3 == 1:
            end = RunEnd("FAILED", error={"name": "Error", "message": ("boom", "bad", "")[i % 3]})
        else:
            continue
        commit(store, PassCommit(held.run_id, held.token, end=end), now=now)


FIELDS = st.sampled_from(
    [
        "event.data.n",
        "event.data.s",
        "event.data.o.p",
        "event.data['n']",
        "output.n",
        "error.message",
        "event.name",
        "run.status",
        "run.function_id",
    ]
)
LITERALS = st.one_of(
    st.integers(-10, 10).map(str),
    st.sampled_from(["7.0", "7.5", "-0.5", "1e20", "true", "false", "null", "-3"]),
    st.sampled_from(["7", "a", "ab", "b", "", "order/", "FAILED", "COMPLETED", "fn-a", "é", "bo"])
    .map(lambda s: f'"{s}"'),
)  # fmt: skip
COMPARED = st.builds(
    lambda field, op, literal, flip: (
        f"{literal} {op} {field}" if flip else f"{field} {op} {literal}"
    ),
    FIELDS,
    st.sampled_from(["==", "<", "<=", ">", ">=", "!="]),
    LITERALS,
    st.booleans(),
)
PREFIXED = st.builds(
    lambda field, call, literal: f"{field}.{call}({literal})",
    FIELDS,
    st.sampled_from(["startsWith", "endsWith", "contains"]),
    LITERALS,
)
OTHER = st.sampled_from(
    [
        "size(events) > 0",
        "event.data.n + 0 == 7",
        "has(event.data.s)",
        'event.id != ""',
        "size(event) > 3",
        "has(event.user)",
        "event.ts > 0",
        'events.exists(event, event.name == "other")',
        'event["name"] == "other"',
    ]
)
ATOMS = st.one_of(COMPARED, PREFIXED, OTHER)
QUERIES = st.builds(
    lambda atoms, joiner: joiner.join(atoms),
    st.lists(ATOMS, min_size=1, max_size=3),
    st.sampled_from([" && ", " && ", " || "]),
)


def _matches(
    store: Store, query: str, runs: list[RunRecord], *, trimmed: bool = False
) -> tuple[list[str], list[str]]:
    """The runs CEL matches, and the runs it fails to evaluate on (``trimmed``: given only
    what the query reads)."""
    expression = compile_search(query)
    used, fields = (
        (used_variables(query), event_fields(query)) if trimmed else (ALL_VARIABLES, None)
    )
    events = {e.internal_id: e for e in store.get_events([e for r in runs for e in r.event_ids])}
    found, errored = [], []
    for run in runs:
        mine = [events[e] for e in run.event_ids if e in events]
        try:
            if is_match(expression, search_activation(run, mine, used, fields)):
                found.append(run.run_id)
        except ExpressionEvaluationError:
            errored.append(run.run_id)
    return found, errored


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=QUERIES)
def test_pushed_clauses_never_change_what_a_search_finds(store: Store, query: str) -> None:
    if not store.search_window(RunFilter(), 1).size:
        _fill(store)
    try:
        compile_search(query)
    except ExpressionError:
        return  # a query the checker refuses (the search would raise)
    window = store.search_window(RunFilter(), 1000)
    everything = [r for _, r in window.candidates]
    assert len(everything) == window.size == 2 * len(VALUES) + 1
    clauses = search_clauses(query)
    kept = [r for _, r in store.search_window(RunFilter(), 1000, clauses).candidates]
    assert _matches(store, query, kept, trimmed=True) == _matches(store, query, everything), clauses
