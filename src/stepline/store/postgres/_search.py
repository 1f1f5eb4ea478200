"""The SQL of a payload search's window (``Store.search_window``) on PostgreSQL: what the
window joins and adds for the clauses a search pushes down (``RunClause``), and PostgreSQL's
primitives for writing them (``store/_clauses.match_sql``)."""

from __future__ import annotations

from typing import Any

from stepline.store._clauses import ClauseSql
from stepline.store.postgres import _read_queries as rq
from stepline.store.search_records import RunClause

# how the window adds the columns a clause reads (event_*: the run's first event, NULL
# without one): JSON decoded once a row
_ADDED = {
    "event.name": "e.name AS event_name",
    "event.data": "convert_from(e.data, 'UTF8')::jsonb AS event_data",
    "output": "convert_from(newest.output, 'UTF8')::jsonb AS output_data",
    "error": "newest.error::jsonb AS error_data",
    "queue.due_at": "qr.due_at AS queue_due_at",
}
_AFFIXES = {
    "startsWith": "starts_with({v}, %s)",
    "endsWith": "right({v}, char_length(%s)) = %s",
    "contains": "strpos({v}, %s) > 0",
}


def window_joins(clauses: tuple[RunClause, ...]) -> tuple[str, str]:
    """The columns the window adds for the clauses (each ", ...", in a stable order) and the
    joins they need: the run's first event, its queue row."""
    fields = {c.field for c in clauses}
    added = "".join(f", {sql}" for field, sql in _ADDED.items() if field in fields)
    joins = rq.SEARCH_EVENT_JOIN if any(f.startswith("event.") for f in fields) else ""
    joins += rq.SEARCH_QUEUE_JOIN if any(f.startswith("queue.") for f in fields) else ""
    return added, joins


def _affix(op: str, value: str, text: str) -> tuple[str, list[Any]]:
    template = _AFFIXES[op]
    return template.format(v=value), [text] * template.count("%s")


CLAUSES = ClauseSql(
    mark="%s",
    true="true",
    columns={
        "run.status": "status",
        "run.function_id": "function_id",
        "event.name": "event_name",
        "queue.due_at": "queue_due_at",
    },
    sources={"event.data": "event_data", "output": "output_data", "error": "error_data"},
    kinds={"number": ("number",), "text": ("string",), "boolean": ("boolean",)},
    json_type="jsonb_typeof({source} #> %s::text[])",
    json_value="({source} #>> %s::text[])",
    number="({v})::numeric",
    bound="%s::numeric",
    text='{v} COLLATE "C" {op} %s',  # byte order: code point order in UTF-8
    affix=_affix,
    path=list,
    boolean=lambda value: "true" if value else "false",  # #>> gives the JSON text
)
