"""Search runs by payload: a CEL expression over each run's events, output and error.

The expression sees ``event`` (the triggering event, as functions see it), ``events`` (all of
them, for a batch), ``output`` (the run's result, null until it completed), ``error`` (its error
or null) and ``run`` (``{"id", "function_id", "status"}``). Missing fields are null, as in every
Stepline expression. A search scans the newest runs (after the filters) up to a bound and says
how far it got, so a query that matches nothing reads differently from one that stopped early.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stepline.expressions import Expression, compile_expression
from stepline.expressions._index import equalities
from stepline.sdk.run import Run
from stepline.serde import dumps
from stepline.store.records import EventRecord

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


def search_activation(run: Run, events: Sequence[EventRecord]) -> dict[str, Any]:
    """What a search expression sees of one run."""
    payloads = [e.payload() for e in events]
    return {
        "event": payloads[0] if payloads else {},
        "events": payloads,
        "output": run.output,
        "error": run.error,
        "run": {"id": run.run_id, "function_id": run.function_id, "status": run.status},
    }


def search_prefilter(text: str) -> tuple[tuple[str, str], ...]:
    """The conjuncts of a search a store can decide by itself (``RunFilter.event_data``): the
    ``event.data.<path> == <string, number or boolean>`` equalities among its top-level ``&&``
    conjuncts, as (path under ``data``, the value's JSON). Every run the search matches holds
    them all; none for a query of another shape (``||``, a ternary) or paths through lists."""
    pairs: list[tuple[str, str]] = []
    for path, value in equalities(text, "event"):
        segments = path.split(".")
        if segments[0] != "data" or len(segments) < 2:
            continue
        if any(s.isdigit() or not _plain_key(s) for s in segments[1:]):
            continue  # a list index, or a key a JSON path would have to escape
        if isinstance(value, bool | str) or (
            isinstance(value, int | float) and math.isfinite(value) and abs(value) < 2**53
        ):
            pairs.append((".".join(segments[1:]), dumps(value).decode()))
    return tuple(dict.fromkeys(pairs))


def _plain_key(segment: str) -> bool:
    """Whether a key can be written in a quoted JSON path as it is: no ``"``, no ``\\`` and no
    control character (JSON escapes these, so the stores' paths would not find them)."""
    return '"' not in segment and "\\" not in segment and all(ch >= " " for ch in segment)


def is_match(expression: Expression, activation: dict[str, Any]) -> bool:
    """Whether the search matches (``True`` only for a true result); raises
    ``ExpressionEvaluationError`` when the expression errors on this run."""
    return expression.evaluate(activation) is True
