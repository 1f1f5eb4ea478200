"""How a store decides a ``RunClause`` (a conjunct of a payload search) on one run's value:
the rule the memory store runs as it is (``keeps``) and the SQL backends write as SQL
(``match_sql``, from the primitives each supplies: ``ClauseSql``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from stepline.store.search_records import RunClause

MISSING: Final = object()
"""The value of a path that reaches nothing."""


def value_at(root: Any, path: tuple[str, ...]) -> Any:
    """The value ``path`` reaches in ``root`` walking objects only, or ``MISSING``."""
    found = root
    for key in path:
        if not isinstance(found, dict) or key not in found:
            return MISSING
        found = found[key]
    return found


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value: missing, null, number, text, boolean or other."""
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "text" if isinstance(value, str) else "other"


def keeps(clause: RunClause, found: Any) -> bool:
    """Whether a store keeps a run whose field's value at the clause's path is ``found``."""
    kind = json_kind(found)
    if kind == "missing":
        return clause.if_missing
    if kind == "null":
        return clause.if_null
    if kind != json_kind(clause.value):
        return clause.if_other
    if kind == "number":
        low, high = clause.bounds()
        return bool(low <= found <= high)
    if kind == "boolean":
        return bool(found == clause.value)
    assert isinstance(clause.value, str)
    # a string as expressions see it: cut at its first NUL (docs/expressions.md)
    return bool(_TEXT_OPS[clause.op](found.partition("\x00")[0], clause.value))


_TEXT_OPS: dict[str, Any] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": lambda a, b: b in a,
    "==": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class ClauseSql:
    """What a SQL backend supplies to write clauses (``match_sql``): its placeholder and true
    literal, the window's columns (``columns``: text or number, NULL where missing) and JSON
    sources by field, its JSON type names for numbers, texts and booleans, and templates:
    ``json_type`` and ``json_value`` (``{source}``, the path a parameter), ``number`` (a value
    compared as a number, ``{v}``), ``bound`` (a number's parameter), ``text`` (``{v}``,
    ``{op}``: a text comparison by code point); ``affix`` writes startsWith/endsWith/contains
    on a value (op, value SQL, text) with its parameters, ``path`` a JSON path's parameter,
    ``boolean`` the parameter a JSON boolean's value equals."""

    mark: str
    true: str
    columns: Mapping[str, str]
    sources: Mapping[str, str]
    kinds: Mapping[str, tuple[str, ...]]
    json_type: str
    json_value: str
    number: str
    bound: str
    text: str
    affix: Callable[[str, str, str], tuple[str, list[Any]]]
    path: Callable[[tuple[str, ...]], Any]
    boolean: Callable[[bool], Any]


_SQL_OPS = {"==": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def match_sql(clauses: tuple[RunClause, ...], sql: ClauseSql) -> tuple[str, list[Any]]:
    """The clauses as one SQL condition (joined by AND; true for none) and its parameters:
    ``keeps`` written in a backend's SQL."""
    parts: list[str] = []
    params: list[Any] = []
    for clause in clauses:
        part, own = _clause_sql(clause, sql)
        parts.append(part)
        params += own
    return (" AND ".join(parts) or sql.true), params


def _clause_sql(clause: RunClause, sql: ClauseSql) -> tuple[str, list[Any]]:
    m = sql.mark
    column = sql.columns.get(clause.field)
    if column is not None:  # a text or a number, NULL where missing (no event, no queue row)
        fits = isinstance(clause.value, str) == (clause.field != "queue.due_at")
        test, params = _test(column, clause, sql) if fits else (m, [clause.if_other])
        return f"(CASE WHEN {column} IS NULL THEN {m} ELSE {test} END)", [
            clause.if_missing,
            *params,
        ]
    source, path = sql.sources[clause.field], sql.path(clause.path)
    kind = json_kind(clause.value)
    test, params = _test(sql.json_value.format(source=source), clause, sql)
    branches = " ".join(f"WHEN '{name}' THEN {test}" for name in sql.kinds[kind])
    kind_of = sql.json_type.format(source=source)
    text = (
        f"(CASE COALESCE({kind_of}, 'missing') WHEN 'missing' THEN {m} WHEN 'null' THEN {m} "
        f"{branches} ELSE {m} END)"
    )
    branch_params = [p for _ in sql.kinds[kind] for p in [path, *params]]
    return text, [path, clause.if_missing, clause.if_null, *branch_params, clause.if_other]


def _test(value: str, clause: RunClause, sql: ClauseSql) -> tuple[str, list[Any]]:
    """The SQL deciding the op on ``value`` (SQL of the clause's type); its parameters come
    after ``value``'s own."""
    if isinstance(clause.value, bool):
        return f"{value} = {sql.mark}", [sql.boolean(clause.value)]
    if isinstance(clause.value, str):
        if clause.op not in _SQL_OPS:
            if not clause.value:  # every text starts with, ends with and contains ""
                return f"{value} IS NOT NULL", []
            return sql.affix(clause.op, value, clause.value)
        return sql.text.format(v=value, op=_SQL_OPS[clause.op]), [clause.value]
    low, high = clause.bounds()
    number, bound = sql.number.format(v=value), sql.bound
    if low == -math.inf:
        return f"{number} <= {bound}", [high]
    if high == math.inf:
        return f"{number} >= {bound}", [low]
    return f"{number} BETWEEN {bound} AND {bound}", [low, high]
