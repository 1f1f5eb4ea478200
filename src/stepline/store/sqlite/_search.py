"""The SQL of a payload search's window (``Store.search_window``) on SQLite: what the window
joins for the clauses a search pushes down (``RunClause``), and SQLite's primitives for
writing them (``store/_clauses.match_sql``)."""

from __future__ import annotations

from typing import Any

from stepline.store._clauses import ClauseSql
from stepline.store.search_records import RunClause
from stepline.store.sqlite import queries as q


def window_joins(clauses: tuple[RunClause, ...]) -> tuple[str, str]:
    """The columns the window adds for the clauses (each ", ...") and the joins they need:
    the run's first event, its queue row."""
    added, joins = "", ""
    if any(c.field.startswith("event.") for c in clauses):
        added, joins = added + q.SEARCH_EVENT_COLUMNS, joins + q.SEARCH_EVENT_JOIN
    if any(c.field.startswith("queue.") for c in clauses):
        added, joins = added + q.SEARCH_QUEUE_COLUMNS, joins + q.SEARCH_QUEUE_JOIN
    return added, joins


def _affix(op: str, value: str, text: str) -> tuple[str, list[Any]]:
    if op == "contains":
        return f"instr({value}, ?) > 0", [text]
    start = 1 if op == "startsWith" else -len(text)  # in characters, as Python's
    return f"substr({value}, ?, ?) = ?", [start, len(text), text]


CLAUSES = ClauseSql(
    mark="?",
    true="1",
    # on the rows of SEARCH_WINDOW's window (event_*: the run's first event, NULL without one)
    columns={
        "run.status": "status",
        "run.function_id": "function_id",
        "event.name": "event_name",
        "queue.due_at": "queue_due_at",
    },
    sources={"event.data": "event_data", "output": "CAST(output AS TEXT)", "error": "error"},
    kinds={"number": ("integer", "real"), "text": ("text",), "boolean": ("true", "false")},
    json_type="json_type({source}, ?)",
    json_value="json_extract({source}, ?)",
    number="{v}",
    bound="?",
    text="{v} {op} ?",  # BINARY collation: UTF-8 bytes, in code point order
    affix=_affix,
    path=lambda keys: "$" + "".join(f'."{key}"' for key in keys),
    boolean=int,  # json_extract gives 1 and 0
)
