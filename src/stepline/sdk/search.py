"""Search runs by payload: a CEL expression over each run's events, output and error.

The expression sees ``event`` (the triggering event, as functions see it), ``events`` (all of
them, for a batch), ``output`` (the run's result, null until it completed), ``error`` (its error
or null) and ``run`` (``{"id", "function_id", "status"}``). Missing fields are null, as in every
Stepline expression. A search scans the newest runs (after the filters) up to a bound and says
how far it got, so a query that matches nothing reads differently from one that stopped early.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from stepline.expressions import Expression, ExpressionEvaluationError, compile_expression
from stepline.expressions._env import MISSING, constant
from stepline.expressions._lower import chain_path
from stepline.expressions._parse import (
    Binary,
    Call,
    Ident,
    Lit,
    Node,
    Select,
    Unary,
    Unsupported,
    emit,
    parse,
)
from stepline.sdk.run import Run
from stepline.serde import loads
from stepline.store._clauses import json_kind
from stepline.store.interface import Store
from stepline.store.records import EventRecord, RunFilter, RunRecord
from stepline.store.search_records import RunClause

SEARCH_VARIABLES = ("event", "events", "output", "error", "run")


@dataclass(frozen=True)
class RunSearch:
    """A search's answer: the matching ``runs`` (newest first, at most the limit asked),
    ``scanned`` runs read, ``complete`` whether every run the filters select was scanned,
    ``failed`` evaluations (a runtime error of the expression on a run: that run does not
    match), the first such ``error`` message, and ``next_cursor``: where the next page starts
    (pass it as ``App.search_runs(after=...)``; None when every run was scanned)."""

    runs: list[Run]
    scanned: int
    complete: bool
    failed: int = 0
    error: str | None = None
    next_cursor: tuple[float, str] | None = None


def compile_search(text: str) -> Expression:
    """Compile a search; raises ``ExpressionError`` (with the position) when it is invalid."""
    return compile_expression(text, variables=SEARCH_VARIABLES)


ALL_VARIABLES = frozenset(SEARCH_VARIABLES)


def search_activation(
    run: RunRecord,
    events: Sequence[EventRecord],
    used: frozenset[str] = ALL_VARIABLES,
    event_fields: frozenset[str] | None = None,
) -> dict[str, Any]:
    """What a search expression sees of one run: only the variables in ``used`` (see
    ``used_variables``; the expression reads no other), and of ``event`` only the fields in
    ``event_fields`` when given (``event_fields``): CEL converts every value it is handed, so
    what the expression does not read is not built."""
    activation: dict[str, Any] = {}
    if "event" in used:
        first = events[0] if events else None
        if first is None:
            activation["event"] = {}
        elif event_fields is None:
            activation["event"] = first.payload()
        else:
            activation["event"] = _event_view(first, event_fields)
    if "events" in used:
        activation["events"] = [e.payload() for e in events]
    if "output" in used:
        activation["output"] = loads(run.output_json)
    if "error" in used:
        activation["error"] = run.error
    if "run" in used:
        activation["run"] = {"id": run.run_id, "function_id": run.function_id, "status": run.status}
    return activation


_EVENT_FIELDS = frozenset(("id", "name", "data", "user", "ts"))


def _event_view(event: EventRecord, fields: frozenset[str]) -> dict[str, Any]:
    """The fields of ``event.payload()`` in ``fields`` (the usual one: ``data``)."""
    if fields == _DATA:
        return {"data": event.data}
    payload = event.payload()
    return {k: payload[k] for k in fields if k in payload}


_DATA = frozenset(("data",))


def search_clauses(text: str) -> tuple[RunClause, ...]:
    """The conjuncts of a search a store can decide by itself (``Store.search_window``): among
    its top-level ``&&`` conjuncts, those comparing one field with a literal (``==``, ``<``,
    ``<=``, ``>``, ``>=``; ``startsWith``, ``endsWith``, ``contains`` on text) where the field
    is under ``event.data``, ``output`` or ``error``, or is ``event.name``, ``run.status`` or
    ``run.function_id``.

    Every run the search matches holds each of them (a conjunct is true wherever the whole
    is). What a conjunct gives where its field is missing, null or of another type is learnt
    by evaluating it alone on such data, so a store keeps exactly the runs CEL could match
    there; none for a
    query of another shape (``||``, a ternary), paths through lists or escaped keys, or an
    expression whose missing fields are not modeled (see ``Expression.modeled``)."""
    if not compile_search(text).modeled:
        return ()
    clauses = (_clause(node) for node in _conjuncts(parse(text)))
    return tuple(dict.fromkeys(c for c in clauses if c is not None))


def _conjuncts(node: Node) -> Iterator[Node]:
    if isinstance(node, Binary) and node.op == "&&":
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


_AFFIXES = ("startsWith", "endsWith", "contains")
_FLIPPED = {"==": "==", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_COLUMNS = {("event", "name"): "event.name", ("run", "status"): "run.status"}
_COLUMNS[("run", "function_id")] = "run.function_id"
_JSON_FIELDS = {("event", "data"): "event.data", ("output",): "output", ("error",): "error"}


def _clause(node: Node) -> RunClause | None:
    """The clause ``node`` (one conjunct) is, if a store can decide it."""
    if isinstance(node, Binary) and node.op in _FLIPPED:
        for walk, other, op in ((node.left, node.right, node.op), (node.right, node.left, None)):
            value = _literal(other)
            field = _field(walk)
            if value is not MISSING and field is not None:
                return _decided(node, *field, op or _FLIPPED[node.op], value)
        return None
    if isinstance(node, Call) and node.name in _AFFIXES and node.target is not None:
        field = _field(node.target)
        value = _literal(node.args[0]) if len(node.args) == 1 else MISSING
        if field is not None and isinstance(value, str):
            return _decided(node, *field, node.name, value)
    return None


def _field(node: Node) -> tuple[str, tuple[str, ...]] | None:
    """(field, path) of a static field walk a store can read."""
    walk = chain_path(node, SEARCH_VARIABLES)
    if walk is None or not all(isinstance(k, str) and _plain_key(k) for k in walk):
        return None  # a list index, or a key a JSON path would have to escape
    keys = tuple(str(k) for k in walk)
    if keys in _COLUMNS:
        return _COLUMNS[keys], ()
    for head, field in _JSON_FIELDS.items():
        if keys[: len(head)] == head and len(keys) > len(head):
            return field, keys[len(head) :]
    return None


def _plain_key(segment: str) -> bool:
    """Whether a key can be written in a quoted JSON path as it is: no ``"``, no ``\\`` and no
    control character (JSON escapes these, so the stores' paths would not find them)."""
    return '"' not in segment and "\\" not in segment and all(ch >= " " for ch in segment)


def _literal(node: Node) -> Any:
    """The scalar a literal (or a negated number literal) is, else ``MISSING``."""
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Lit):
        number = node.operand.type in ("int", "double")
        value = constant(f"-{node.operand.text}") if number else MISSING
    elif isinstance(node, Lit):
        value = constant(node.text)
    else:
        return MISSING
    if isinstance(value, str) and "\x00" in value:
        # true for no event (expressions see values cut at a NUL): nothing a store need narrow
        # by, and PostgreSQL's text cannot hold it
        return MISSING
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float) and math.isfinite(value) and abs(value) < 2**53:
        return value
    return MISSING


def _decided(
    node: Node, field: str, path: tuple[str, ...], op: str, value: Any
) -> RunClause | None:
    """The clause, with what the conjunct alone gives where the field is missing, null, or
    of another type than ``value``."""
    if isinstance(value, bool) and op != "==":
        return None
    if field in _COLUMNS.values() and not isinstance(value, str):
        return None
    alone = compile_search(emit(node))
    return RunClause(
        field,
        path,
        op,
        value,
        if_missing=_true_on(alone, _probe(field, path, MISSING)),
        if_null=_true_on(alone, _probe(field, path, None)),
        if_other=any(
            _true_on(alone, _probe(field, path, other))
            for other in _OTHERS
            if json_kind(other) != json_kind(value)
        ),
    )


_OTHERS: tuple[Any, ...] = (1, "x", True, [], {})
"""A value of each JSON type: CEL's answer across types depends on the types only."""


def _probe(field: str, path: tuple[str, ...], leaf: Any) -> dict[str, Any]:
    """An activation where ``field``'s ``path`` is missing (``leaf`` MISSING) or holds
    ``leaf``."""
    value: Any = {} if leaf is MISSING else leaf
    for key in reversed(path if leaf is not MISSING else ()):
        value = {key: value}
    activation: dict[str, Any] = {
        "event": {},
        "events": [],
        "output": None,
        "error": None,
        "run": {"id": "", "function_id": "", "status": ""},
    }
    if field == "event.data":
        activation["event"] = {"data": value}
    elif field in ("output", "error"):
        activation[field] = None if leaf is MISSING else value
    return activation


def _true_on(expression: Expression, activation: dict[str, Any]) -> bool:
    """Whether a store must keep a run where the conjunct gives what it gives on
    ``activation``: where it is true, and where it errors (the run is kept so that CEL reports
    the error in ``RunSearch.failed``: an error must read differently from no match)."""
    try:
        return expression.holds(activation)
    except ExpressionEvaluationError:
        return True


def used_variables(text: str) -> frozenset[str]:
    """The search variables ``text`` reads (all of them when its syntax is not modeled)."""
    try:
        tree = parse(text)
    except Unsupported:
        return ALL_VARIABLES
    return frozenset(n.name for n in _nodes(tree) if isinstance(n, Ident)) & ALL_VARIABLES


def event_fields(text: str) -> frozenset[str] | None:
    """The fields of ``event`` that ``text`` reads, when it reads ``event`` only as
    ``event.<field>``; None when it may read the whole event (``event["data"]``, ``size(event)``,
    ``event == ...``, a macro over it, syntax that is not modeled)."""
    try:
        tree = parse(text)
    except Unsupported:
        return None
    fields: set[str] = set()
    for node in _nodes(tree):
        if isinstance(node, Select) and node.operand == Ident("event"):
            fields.add(node.field)
        elif any(child == Ident("event") for child in _children(node)):
            return None  # the event read whole (or an iteration variable named so)
    return None if tree == Ident("event") else frozenset(fields)


def _nodes(node: Any) -> Iterator[Any]:
    """Every node of a syntax tree, depth first."""
    yield node
    for child in _children(node):
        yield from _nodes(child)


def _children(node: Any) -> Iterator[Any]:
    """The nodes directly under ``node``."""
    for name in getattr(node, "__slots__", ()):
        value = getattr(node, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, tuple):  # a map literal's (key, value)
                yield from item
            elif hasattr(item, "__slots__"):
                yield item


def is_match(expression: Expression, activation: dict[str, Any]) -> bool:
    """Whether the search matches (``True`` only for a true result); raises
    ``ExpressionEvaluationError`` when the expression errors on this run."""
    return expression.holds(activation)


def search(
    store: Store,
    runs_filter: RunFilter,
    scan: int,
    clauses: tuple[RunClause, ...],
    expression: Expression,
    used: frozenset[str],
    fields: frozenset[str] | None,
    limit: int,
) -> RunSearch:
    """``App.search_runs`` on a reader thread (one call: a hop between threads costs a wait
    for a core on a busy machine): the store's window of the newest ``scan`` runs that may
    hold ``clauses``, then ``expression`` evaluated on each, until ``limit`` match."""
    window = store.search_window(runs_filter, scan, clauses)
    found: list[Run] = []
    failed, first_error = 0, None
    candidates = window.candidates
    for start in range(0, len(candidates), 500):
        chunk = candidates[start : start + 500]
        events: dict[str, EventRecord] = {}
        if not used.isdisjoint(("event", "events")):
            ids = sorted({e for _, r in chunk for e in r.event_ids})
            events = {e.internal_id: e for e in store.get_events(ids)}
        for n, record in chunk:
            mine = [events[e] for e in record.event_ids if e in events]
            try:
                if is_match(expression, search_activation(record, mine, used, fields)):
                    found.append(Run.from_records(record, []))
            except ExpressionEvaluationError as exc:
                failed += 1
                first_error = first_error or str(exc)
            if len(found) >= limit:
                if window.more or record is not candidates[-1][1]:
                    cursor = (record.created_at, record.run_id)
                    return RunSearch(found, n, False, failed, first_error, cursor)
                return RunSearch(found, window.size, True, failed, first_error)
    edge = window.edge
    last = None if edge is None or not window.more else (edge.created_at, edge.run_id)
    return RunSearch(found, window.size, last is None, failed, first_error, last)
