"""The SQL of a payload search's window (``Store.search_window``) on SQLite: the clauses a
search pushes down (``RunClause``) written as SQL, the rule of ``store/_clauses.keeps``."""

from __future__ import annotations

import math
from typing import Any

from stepline.store.records import RunClause
from stepline.store.sqlite import queries as q

# the columns a clause reads, on the rows of SEARCH_WINDOW's window (event_*: the run's first
# event, NULL without one)
_TEXT_COLUMNS = {
    "run.status": "status",
    "run.function_id": "function_id",
    "event.name": "event_name",
}
_JSON_COLUMNS = {"event.data": "event_data", "output": "CAST(output AS TEXT)", "error": "error"}
_TEXT_OPS = {"==": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_AFFIXES = ("startsWith", "endsWith", "contains")


def window_joins(clauses: tuple[RunClause, ...]) -> tuple[str, str]:
    """The columns the window adds for the clauses (each ", ...") and the joins they need:
    the run's first event, its queue row."""
    added, joins = "", ""
    if any(c.field.startswith("event.") for c in clauses):
        added, joins = added + q.SEARCH_EVENT_COLUMNS, joins + q.SEARCH_EVENT_JOIN
    if any(c.field.startswith("queue.") for c in clauses):
        added, joins = added + q.SEARCH_QUEUE_COLUMNS, joins + q.SEARCH_QUEUE_JOIN
    return added, joins


def match_sql(clauses: tuple[RunClause, ...]) -> tuple[str, list[Any]]:
    """The clauses joined by AND (``1`` for none) and their parameters."""
    parts: list[str] = []
    params: list[Any] = []
    for clause in clauses:
        sql, own = _clause_sql(clause)
        parts.append(sql)
        params += own
    return (" AND ".join(parts) or "1"), params


def _clause_sql(clause: RunClause) -> tuple[str, list[Any]]:
    if clause.field == "queue.due_at":  # a number, or NULL
        test, params = _test("queue_due_at", clause)
        return f"(CASE WHEN queue_due_at IS NULL THEN ? ELSE {test} END)", [
            clause.if_missing,
            *params,
        ]
    column = _TEXT_COLUMNS.get(clause.field)
    if column is not None:  # text or NULL (a run without an event has no event name)
        test, params = _test(column, clause)
        if isinstance(clause.value, str):
            return f"(CASE WHEN {column} IS NULL THEN ? ELSE {test} END)", [
                clause.if_missing,
                *params,
            ]
        return f"(CASE WHEN {column} IS NULL THEN ? ELSE ? END)", [
            clause.if_missing,
            clause.if_other,
        ]
    source = _JSON_COLUMNS[clause.field]
    path = "$" + "".join(f'."{key}"' for key in clause.path)
    value = f"json_extract({source}, ?)"
    test, params = _test(value, clause)
    kinds = {bool: ("true", "false"), str: ("text",)}.get(type(clause.value), ("integer", "real"))
    if isinstance(clause.value, bool):  # a boolean equality: decided by the type alone
        branches = f"WHEN 'true' THEN {int(clause.value)} WHEN 'false' THEN {int(not clause.value)}"
        branch_params: list[Any] = []
    else:
        branches = " ".join(f"WHEN '{kind}' THEN {test}" for kind in kinds)
        branch_params = [p for _ in kinds for p in [path, *params]]
    sql = (
        f"(CASE COALESCE(json_type({source}, ?), 'missing') WHEN 'missing' THEN ? "
        f"WHEN 'null' THEN ? {branches} ELSE ? END)"
    )
    return sql, [path, clause.if_missing, clause.if_null, *branch_params, clause.if_other]


def _test(value: str, clause: RunClause) -> tuple[str, list[Any]]:
    """The SQL deciding the op on ``value`` (a text or a number of the clause's type)."""
    if isinstance(clause.value, str):
        if clause.op in _AFFIXES:
            if not clause.value:  # every text starts with, ends with and contains ""
                return f"{value} IS NOT NULL", []
            if clause.op == "contains":
                return f"instr({value}, ?) > 0", [clause.value]
            start = 1 if clause.op == "startsWith" else -len(clause.value)  # in characters
            return f"substr({value}, ?, ?) = ?", [start, len(clause.value), clause.value]
        return f"{value} {_TEXT_OPS[clause.op]} ?", [clause.value]
    if isinstance(clause.value, bool):
        return "1", []
    low, high = clause.bounds()
    if low == -math.inf:
        return f"{value} <= ?", [high]
    if high == math.inf:
        return f"{value} >= ?", [low]
    return f"{value} BETWEEN ? AND ?", [low, high]
