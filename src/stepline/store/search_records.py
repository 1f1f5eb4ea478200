"""What a payload search asks a store for and gets back: the fields it may look at
(``SEARCH_FIELDS``), the conjuncts a store decides over a run's rows (``RunClause``), and the
window of runs it reads at once (``SearchWindow``). Records that cross the Store seam, as in
``records.py``; no behaviour beyond a clause's numeric bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from stepline.store.records import RunRecord

SEARCH_FIELDS = (
    "event.data",
    "event.name",
    "output",
    "error",
    "run.status",
    "run.function_id",
    "queue.due_at",
)
"""What a ``RunClause`` may look at: the run's first event's data (JSON) and name, the run's
output and error (JSON), its status and function id (text, always present), and when its
queue row is due (a number; missing without a queue row or a due time)."""


@dataclass(frozen=True, slots=True)
class RunClause:
    """One conjunct of a payload search that a store decides over a run's rows, so the search
    evaluates its CEL on fewer runs. It may keep runs the conjunct is false for, never drop one
    it is true for.

    ``field`` is one of ``SEARCH_FIELDS``; ``path`` the keys under a JSON field (walked through
    objects only); ``op`` one of ``==``, ``<``, ``<=``, ``>``, ``>=``, and ``startsWith``,
    ``endsWith``, ``contains`` for texts; ``value`` a JSON scalar (a string, a finite number or
    a boolean). Where the field holds a value of
    the same JSON type as ``value`` the op decides (numbers compare by value within ``slack``:
    ``value - slack`` to ``value + slack`` counts as equal, so a store's rounding of a decimal
    never drops a run; texts by code point; booleans only by ``==``). A run whose path does not
    reach a value (no event, a missing key, a walk through a scalar or a list) is kept iff
    ``if_missing``, one where it reaches JSON null iff ``if_null``, one where it reaches a
    value of another type iff ``if_other``."""

    field: str
    path: tuple[str, ...]
    op: str
    value: str | float | bool
    if_missing: bool = False
    if_null: bool = False
    if_other: bool = True

    @property
    def slack(self) -> float:
        """How far from ``value`` a number still counts as equal to it."""
        assert isinstance(self.value, int | float) and not isinstance(self.value, bool)
        return abs(self.value) * 1e-12 + 1e-300

    def bounds(self) -> tuple[float, float]:
        """(low, high): a number kept by a numeric op lies in [low, high]."""
        assert isinstance(self.value, int | float) and not isinstance(self.value, bool)
        value, slack = float(self.value), self.slack
        low = -math.inf if self.op in ("<", "<=") else value - slack
        high = math.inf if self.op in (">", ">=") else value + slack
        return low, high


@dataclass(frozen=True, slots=True)
class SearchWindow:
    """The newest runs a filter selects, up to a window's size, read at once (one snapshot)
    for a payload search: ``candidates`` are those every clause keeps, newest first, each with
    its position in the window (1 = newest); ``size`` is how many runs the window holds,
    ``edge`` its oldest run (None when empty) and ``more`` whether older runs are selected
    too."""

    candidates: list[tuple[int, RunRecord]]
    size: int
    edge: RunRecord | None
    more: bool
