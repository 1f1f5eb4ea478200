"""The SQL of a payload search's window (``Store.search_window``) on PostgreSQL: the clauses a
search pushes down (``RunClause``) written as SQL, the rule of ``store/_clauses.keeps``."""

from __future__ import annotations

from typing import Any

from stepline.store.postgres import queries as q
from stepline.store.records import RunClause

# the columns a clause reads on the rows of SEARCH_WINDOW's window, and how the window adds
# each (event_*: the run's first event, NULL without one)
_TEXT_COLUMNS = {
    "run.status": "status",
    "run.function_id": "function_id",
    "event.name": "event_name",
}
_JSON_COLUMNS = {"event.data": "event_data", "output": "output_data", "error": "error_data"}
_ADDED = {
    "event.name": "e.name AS event_name",
    "event.data": "convert_from(e.data, 'UTF8')::jsonb AS event_data",
    "output": "convert_from(newest.output, 'UTF8')::jsonb AS output_data",
    "error": "newest.error::jsonb AS error_data",
    "queue.due_at": "qr.due_at AS queue_due_at",
}
_TEXT_OPS = {"==": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_AFFIXES = {
    "startsWith": "starts_with({v}, %s)",
    "endsWith": "right({v}, char_length(%s)) = %s",
    "contains": "strpos({v}, %s) > 0",
}
_KINDS = {bool: "boolean", str: "string"}


def window_joins(clauses: tuple[RunClause, ...]) -> tuple[str, str]:
    """The columns the window adds for the clauses (each ", ...", in a stable order) and the
    joins they need: the run's first event, its queue row."""
    fields = {c.field for c in clauses}
    added = "".join(f", {sql}" for field, sql in _ADDED.items() if field in fields)
    joins = q.SEARCH_EVENT_JOIN if any(f.startswith("event.") for f in fields) else ""
    joins += q.SEARCH_QUEUE_JOIN if any(f.startswith("queue.") for f in fields) else ""
    return added, joins


def match_sql(clauses: tuple[RunClause, ...]) -> tuple[str, list[Any]]:
    """The clauses joined by AND (``true`` for none) and their parameters."""
    parts: list[str] = []
    params: list[Any] = []
    for clause in clauses:
        sql, own = _clause_sql(clause)
        parts.append(sql)
        params += own
    return (" AND ".join(parts) or "true"), params


def _clause_sql(clause: RunClause) -> tuple[str, list[Any]]:
    if clause.field == "queue.due_at":  # a number, or NULL
        test, params = _test("queue_due_at", clause)
        return f"(CASE WHEN queue_due_at IS NULL THEN %s ELSE {test} END)", [
            clause.if_missing,
            *params,
        ]
    column = _TEXT_COLUMNS.get(clause.field)
    if column is not None:  # text or NULL (a run without an event has no event name)
        if not isinstance(clause.value, str):
            return f"(CASE WHEN {column} IS NULL THEN %s ELSE %s END)", [
                clause.if_missing,
                clause.if_other,
            ]
        test, params = _test(column, clause)
        return f"(CASE WHEN {column} IS NULL THEN %s ELSE {test} END)", [
            clause.if_missing,
            *params,
        ]
    source = _JSON_COLUMNS[clause.field]
    path = list(clause.path)
    test, params = _test(f"({source} #>> %s::text[])", clause)
    kind = _KINDS.get(type(clause.value), "number")
    sql = (
        f"(CASE COALESCE(jsonb_typeof({source} #> %s::text[]), 'missing') WHEN 'missing' "
        f"THEN %s WHEN 'null' THEN %s WHEN '{kind}' THEN {test} ELSE %s END)"
    )
    return sql, [path, clause.if_missing, clause.if_null, path, *params, clause.if_other]


def _test(value: str, clause: RunClause) -> tuple[str, list[Any]]:
    """The SQL deciding the op on ``value`` (a text, or a JSON value's text, of the clause's
    type); its parameters follow the value's own."""
    if isinstance(clause.value, bool):
        return f"{value} = %s", ["true" if clause.value else "false"]
    if isinstance(clause.value, str):
        if clause.op in _AFFIXES:
            if not clause.value:  # every text starts with, ends with and contains ""
                return f"{value} IS NOT NULL", []
            template = _AFFIXES[clause.op]
            return template.format(v=value), [clause.value] * template.count("%s")
        return f'{value} COLLATE "C" {_TEXT_OPS[clause.op]} %s', [clause.value]
    low, high = clause.bounds()
    if clause.op in ("<", "<="):
        return f"({value})::numeric <= %s::numeric", [high]
    if clause.op in (">", ">="):
        return f"({value})::numeric >= %s::numeric", [low]
    return f"({value})::numeric BETWEEN %s::numeric AND %s::numeric", [low, high]
