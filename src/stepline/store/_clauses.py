"""How a store decides a ``RunClause`` (a conjunct of a payload search) on one run's value:
the rule the SQL backends write as SQL and the memory store runs as it is."""

from __future__ import annotations

from typing import Any, Final

from stepline.store.records import RunClause

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
    return bool(_TEXT_OPS[clause.op](found, clause.value))


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
