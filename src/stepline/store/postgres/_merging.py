"""How the statements queued for one round trip are sent: merged, and planned once per shape.

``_merged`` makes each run of adjacent writes to different tables (``Statements.write(table=…)``)
one statement, with a lease hold right before it joined (``_held_with``: a lone step's commit is
one statement); ``_held`` makes several lease holds one; ``_coalesce.coalesced`` groups writes of
one text. ``_planned`` applies the three, worked out once for each shape of a round trip (its
texts and tables) when the outcome depends on the shape only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import compress
from operator import itemgetter
from typing import Any

from stepline.store.postgres import queries as q
from stepline.store.postgres._arrays import TextArray
from stepline.store.postgres._coalesce import coalesced

Params = Sequence[Any] | dict[str, Any] | None
_HOLD = "\x00hold"  # the table of a queued lease hold (Statements.hold): combined, never merged


class Later:
    """The result of a statement queued by ``read_later``: its ``rows`` once it was sent."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[Any] | None = None


# how the statements of one shape (texts and ``write`` tables) are sent (``_planned``): each
# statement sent, with the index of the queued statement whose parameters it takes as they are,
# or the indexes of those whose parameters it takes one after the other; None: no plan
Plan = list[tuple[str, int | tuple[int, ...]]]
_PLANS: dict[tuple[tuple[str, ...], tuple[object, ...]], Plan | None] = {}
_MOST_PLANS = 4096  # shapes come from the code's texts: a bound, never reached in practice
_UNPLANNED: Plan = []
# the plan of a shape sent as queued (nothing merged, coalesced nor held together: a send's)
_AS_QUEUED: Plan = [("", -1)]
_TEXT = itemgetter(0)  # a queued statement's text


def _planned(
    queued: list[tuple[str, Params]], tables: list[str | Later | None]
) -> tuple[list[tuple[str, Params]], list[Later | None] | None]:
    """``_merged(*coalesced(*_held(queued, tables)))``: what is sent for ``queued`` (each
    statement's text and parameters), and with each the ``Later`` that keeps its result
    (None: none does). Those steps look at the texts and tables only (and at the parameters
    only to group rows, or to make several lease holds one: never planned), so each shape is
    worked out once (``_plan``) and its plan applied to the parameters (a pass commit's
    statement: a few list operations instead of the three passes)."""
    key = (tuple(map(_TEXT, queued)), tuple(tables))
    plan = _PLANS.get(key, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _plan(queued, tables)
        if plan is not None and _unchanged(plan, queued):
            plan = _AS_QUEUED
        if not any(type(table) is Later for table in tables):  # a Later is one round trip's
            if len(_PLANS) >= _MOST_PLANS:
                _PLANS.clear()
            _PLANS[key] = plan
    if plan is _AS_QUEUED:  # (the caller's list: ``Statements._take`` keeps none of it)
        return queued, None
    if plan is None:
        merged = _merged(*coalesced(*_held(queued, tables)))
        return [(text, params) for text, params, _ in merged], [later for *_, later in merged]
    out: list[tuple[str, Params]] = []  # (a plan is made of no Later: ``_plan``)
    for text, source in plan:
        if type(source) is int:
            out.append((text, queued[source][1]))
            continue
        params: list[Any] = []
        for index in source:  # type: ignore[union-attr]
            taken = queued[index][1]
            if taken:
                params.extend(taken)
        out.append((text, params))
    return out, None


def _unchanged(plan: Plan, queued: list[tuple[str, Params]]) -> bool:
    """Whether ``plan`` sends ``queued`` as it is: each statement, in order, alone."""
    return len(plan) == len(queued) and all(
        source == at and text == queued[at][0] for at, (text, source) in enumerate(plan)
    )


class _Part:
    """The parameters of queued statement ``index`` in ``_plan``'s dry run."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _plan(queued: list[tuple[str, Params]], tables: list[str | Later | None]) -> Plan | None:
    """The plan of ``queued``'s shape: ``_merged(*coalesced(*_held(…)))`` run on stand-ins of
    each statement's parameters, read back. None when the outcome may depend on the
    parameters: a ``Later`` (a read), several lease holds (made one from their runs), a text
    queued twice (``coalesced`` groups rows by their runs)."""
    queries = [query for query, _ in queued]
    if (
        any(isinstance(table, Later) for table in tables)
        or sum(1 for table in tables if table == _HOLD) > 1
        or len(set(queries)) != len(queries)
    ):
        return None
    stand_ins = [(_Part(index),) for index in range(len(queued))]
    dry: list[tuple[str, Params]] = [(q, stand_ins[i]) for i, q in enumerate(queries)]
    plan: Plan = []
    for text, params, _ in _merged(*coalesced(*_held(dry, list(tables)))):
        if isinstance(params, tuple) and len(params) == 1 and isinstance(params[0], _Part):
            if params is not stand_ins[params[0].index]:
                return None
            plan.append((text, params[0].index))
        elif isinstance(params, list) and all(isinstance(part, _Part) for part in params):
            plan.append((text, tuple(part.index for part in params)))
        else:
            return None
    return plan


def _held(
    queued: list[tuple[str, Params]], tables: list[str | Later | None]
) -> tuple[list[tuple[str, Params]], list[str | Later | None]]:
    """``queued`` with its lease holds (``Statements.hold``) made one statement where the first
    stood (a single hold stays ``HOLD_LEASE``). Its runs and tokens are ``TextArray``s (dumped
    by ``_arrays``, not by psycopg's list dumper), the lists filtered by ``compress``: a group
    commit of a hundred pass commits has as many holds."""
    holds = tables.count(_HOLD)
    if not holds:
        return queued, tables
    first = tables.index(_HOLD)
    if holds == 1:
        tables = tables.copy()
        tables[first] = None
        return queued, tables
    kept = [table != _HOLD for table in tables]
    holds_params: list[Any] = [
        entry[1] for entry, table in zip(queued, tables, strict=True) if table == _HOLD
    ]
    pairs = sorted({(p[0], p[1]) for p in holds_params})  # each hold's (run id, lease token)
    held = (
        q.HOLD_LEASES,
        (len(pairs), TextArray([r for r, _ in pairs]), TextArray([t for _, t in pairs])),
    )
    out = list(compress(queued, kept))
    out_tables = list(compress(tables, kept))
    out.insert(first, held)
    out_tables.insert(first, None)
    return out, out_tables


def _merged(
    queued: list[tuple[str, Params]], tables: list[str | Later | None]
) -> list[tuple[str, Params, Later | None]]:
    """``queued`` with each run of adjacent writes to different tables (``write(table=…)``) made
    one statement: ``WITH w0 AS (first), w1 AS (second) last``. Its parts see one snapshot and
    run to completion; as none of them reads a table another writes, and no two write one
    table, the result is the same as theirs one after the other. A lease hold right before
    such a run joins it (``_held_with``) when none of its writes touches the queue (the rows
    the hold locks) and each is an ``INSERT``, ``UPDATE`` or ``DELETE``. With each statement,
    the ``Later`` that keeps its result (``read_later``), if any."""
    out: list[tuple[str, Params, Later | None]] = []
    group: list[tuple[str, Params]] = []
    seen: set[str] = set()
    head: list[tuple[str, Params]] = []  # a hold the next run of writes may join

    def close() -> None:
        if head and group and "queue" not in seen and all(_modifies(w) for w, _ in group):
            params = [p for _, ps in (*head, *group) for p in (ps or ())]
            out.append((_held_with(head[0][0], tuple(w for w, _ in group)), params, None))
        else:
            out.extend((*entry, None) for entry in head)
            if len(group) == 1:
                out.append((*group[0], None))
            elif group:
                params = [p for _, ps in group for p in (ps or ())]
                out.append((_with(tuple(query for query, _ in group)), params, None))
        head.clear()
        group.clear()
        seen.clear()

    for entry, table in zip(queued, tables, strict=True):
        if not isinstance(table, str):
            close()
            if table is None and entry[0] in _HOLDS:
                head.append(entry)
            else:
                out.append((*entry, table if isinstance(table, Later) else None))
            continue
        if table in seen:
            close()
        group.append(entry)
        seen.add(table)
    close()
    return out


_HOLDS = (q.HOLD_LEASE, q.HOLD_LEASES)


@functools.lru_cache(maxsize=1024)
def _with(queries: tuple[str, ...]) -> str:
    """The statement ``_merged`` makes of ``queries``: ``WITH w0 AS (first), … last`` (one text
    object for each sequence of texts, made once)."""
    parts = ", ".join(f"w{i} AS ({query})" for i, query in enumerate(queries[:-1]))
    return f"WITH {parts} {queries[-1]}"


@functools.lru_cache(maxsize=1024)
def _held_with(hold: str, queries: tuple[str, ...]) -> str:
    """The statement of a lease ``hold`` and the writes ``queries`` after it: ``WITH h AS
    (hold), w0 AS (first), … SELECT * FROM h``. The statement reads the hold first (its rows
    locked, or the statement failed), and its data-modifying parts run to completion after
    (as every such part is run, whether or not the statement reads it): the same order, locks
    and failures as the hold and then the writes, in one statement (one execution for the
    server, one result for this process, a step commit's lone statement)."""
    parts = ", ".join(f"w{i} AS ({query})" for i, query in enumerate(queries))
    return f"WITH h AS ({hold}), {parts} SELECT * FROM h"


@functools.lru_cache(maxsize=1024)
def _modifies(query: str) -> bool:
    """Whether ``query`` is a plain ``INSERT``, ``UPDATE`` or ``DELETE`` (a part ``WITH`` runs
    whether or not it is read; a ``SELECT`` part, as ``pg_notify``'s, only if it is)."""
    return query.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")
