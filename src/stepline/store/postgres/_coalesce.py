"""The queued writes of one round trip that do the same to different runs, made one statement.

A group commit of 80 pass commits used to send 80 statements that each upsert a step, append a
history row and mark a run RUNNING (``_merging._merged`` made each commit's three writes one
statement). Each statement costs this process its own parameter binding and result, and the
server its own execution start; here, the writes of one text (``UPSERT_STEP`` of every commit,
say) become one statement with all their rows, sent where the first of them stood.

Moving a write ahead of the statements queued between it and the first write of its text is
exact when it commutes with each of them. Two queued writes commute when they touch different
tables, or when each touches rows of one run only and the runs differ (``Shape``: the tables a
statement touches and the parameter that names its run; like ``write(table=…)``, a shaped write
reads nothing but the rows it writes). A write therefore joins the group of its text only when
each statement queued since the group began touches other tables, names another run, or itself
moved ahead of the group's place (it joined a group that began earlier, a move checked the same
way when it was made): every two statements whose order changes were checked when the later
one moved. A statement that is not shaped (a read, a lock, a ``SAVEPOINT``, any write whose
rows are not known here) ends every group. Rows of one group keep their order (a run's history
rows keep their sequence); a group whose rows must differ (``unique``: an upsert, or an update
joined to its rows, applies each row once) takes no row whose key it holds.

Groups form among the statements queued for one round trip only, so every statement still runs
in the same transaction, inside the same savepoints (a ``SAVEPOINT`` or ``RELEASE`` ends every
group), after every statement whose result an earlier verb read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from stepline.store.postgres import queries as q
from stepline.store.postgres._arrays import (
    BoolArray,
    ByteaArray,
    Float8Array,
    Int4Array,
    TextArray,
)

Params = Sequence[Any] | dict[str, Any] | None
MAX_VALUES = 100_000  # a group's values at most (one statement's arrays: its bind message)


@dataclass(frozen=True)
class Shape:
    """What a queued write touches, and how several of its text are made one statement.

    ``tables``: the tables it touches; ``run``: the index of the parameter naming the one run
    whose rows it touches (None: any rows of its tables); ``build``: the statement and the
    parameters doing what the given statements do, in order (None: never grouped);
    ``unique``: the key that must differ between the rows of one group (None: any rows)."""

    tables: frozenset[str]
    run: int | None = None
    build: Callable[[list[Sequence[Any]]], tuple[str, Sequence[Any]]] | None = None
    unique: Callable[[Sequence[Any]], Hashable] | None = None


_CONVERT: dict[str, Callable[[Any], Any] | None] = {
    "double precision": float,  # an int among floats: each value made the column's type
    "integer": int,
    "text": None,
    "bytea": None,
    "boolean": None,
}
# each column's list, of its type: dumped in binary element after element (``_arrays``), not by
# psycopg's list dumper, which looks up a dumper and packs in Python for each element (a
# fifth of the writer thread's CPU in the one-process throughput workload)
_ARRAY: dict[str, Callable[[Any], list[Any]]] = {
    "double precision": Float8Array,
    "integer": Int4Array,
    "text": TextArray,
    "bytea": ByteaArray,
    "boolean": BoolArray,
}


def _arrays(query: str) -> Callable[[list[Sequence[Any]]], tuple[str, Sequence[Any]]]:
    """``build`` for ``query``, a statement of several rows that takes for each parameter of
    the single statement, in its order, the array of that parameter's values (``%b::TYPE[]``):
    a constant text (prepared once), its arrays dumped in binary by psycopg. Each array holds
    one Python type (psycopg types an array by its elements): numbers are made the column's."""
    types = re.findall(r"%b::([a-z ]+)\[\]", query)
    if len(types) != query.count("%") or any(t not in _CONVERT for t in types):
        raise ValueError(f"not a statement of one typed array per parameter: {query}")
    converts = [(_CONVERT[t], _ARRAY[t]) for t in types]

    def build(rows: list[Sequence[Any]]) -> tuple[str, Sequence[Any]]:
        columns: list[Any] = []
        for (convert, array), column in zip(converts, zip(*rows, strict=True), strict=True):
            if convert is None:
                columns.append(array(column))
                continue
            try:  # each value made the column's type in one C loop (a None: TypeError)
                columns.append(array(map(convert, column)))
            except TypeError:
                columns.append(array([None if v is None else convert(v) for v in column]))
        return query, columns

    return build


SHAPES: dict[str, Shape] = {
    q.UPSERT_STEP: Shape(
        frozenset({"steps"}), 0, _arrays(q.UPSERT_STEP_MANY), lambda p: (p[0], p[1])
    ),
    q.INSERT_HISTORY: Shape(frozenset({"history"}), 0, _arrays(q.INSERT_HISTORY_MANY)),
    q.MARK_RUNNING: Shape(frozenset({"runs"}), 1, _arrays(q.MARK_RUNNING_MANY), lambda p: p[1]),
    q.END_RUN_TERMINAL: Shape(
        frozenset({"runs"}), 6, _arrays(q.END_RUN_TERMINAL_MANY), lambda p: p[6]
    ),
    q.END_RUN_SUSPENDED: Shape(frozenset({"runs"}), 3),
    q.FAIL_RUN: Shape(frozenset({"runs"}), 2),
    q.RESCHEDULE: Shape(frozenset({"queue"}), 2),
    q.WAKE: Shape(frozenset({"queue"}), 1),
    q.COMPLETE_STEP: Shape(frozenset({"steps"}), 2),
    q.INSERT_WAIT: Shape(frozenset({"waits"}), 1),
    q.DROP_RUN_WORK: Shape(
        frozenset({"queue", "waits", "matchers", "steps"}),
        0,
        _arrays(q.DROP_RUN_WORK_MANY),
    ),
    q.CREATE_RUN: Shape(
        frozenset({"runs", "queue", "run_events", "history"}),
        0,
        _arrays(q.CREATE_RUN_MANY),
        lambda p: p[0],
    ),
    q.INSERT_EVENT: Shape(frozenset({"events"}), None, _arrays(q.INSERT_EVENT_MANY)),
    # notes of events beside a take (``_late_cancels``): their arrays one after the other (the
    # function goes through them in order, as through each call's in turn); its bucket locks
    # (tried shared, held to the commit) are taken earlier, never later, than before, so still
    # before any cancel matcher of those events is read
    q.NOTE_UNLESS_SHARED: Shape(
        frozenset({"cancel_notes", "cancel buckets"}),
        None,
        lambda rows: (
            q.NOTE_UNLESS_SHARED,
            [
                TextArray([v for row in rows for v in row[0]]),
                Int4Array([v for row in rows for v in row[1]]),
            ],
        ),
    ),
}


class _Group:
    __slots__ = ("forbidden", "indexes", "params", "sealed", "shape", "uniques")

    def __init__(self, shape: Shape, index: int, params: Sequence[Any]) -> None:
        self.shape = shape
        self.indexes = [index]
        self.params = len(params)
        self.forbidden: set[Any] = set()  # runs whose rows of its tables were touched since
        self.uniques: set[Hashable] = set()
        self.sealed = False  # rows of any run of its tables were touched since it began
        if shape.unique is not None:
            self.uniques.add(shape.unique(params))

    def joined(self, index: int, params: Sequence[Any]) -> bool:
        """Whether the statement ``index`` joins the group (taken: its rows added)."""
        shape = self.shape
        size = self.params + len(params)
        if self.sealed or size > MAX_VALUES:
            return False
        if shape.run is not None and params[shape.run] in self.forbidden:
            return False
        unique = shape.unique
        if unique is not None:
            key = unique(params)
            if key in self.uniques:
                return False
            self.uniques.add(key)
        self.indexes.append(index)
        self.params = size
        return True


_TABLE_SHAPES: dict[str, Shape] = {}


def _table_shape(table: Any) -> Shape | None:
    """The shape of a write to ``table`` only that this module does not know (``write(table=…)``:
    any rows of it), or None: unknown (a barrier)."""
    if type(table) is not str:
        return None
    shape = _TABLE_SHAPES.get(table)
    if shape is None:
        shape = _TABLE_SHAPES[table] = Shape(frozenset({table}))
    return shape


def coalesced(
    queued: list[tuple[str, Params]], tables: list[Any]
) -> tuple[list[tuple[str, Params]], list[Any]]:
    """``queued`` (with the ``tables`` of ``Statements.write``) with each group of writes of one
    text made one statement where the first of them stood (see the module's docstring)."""
    if len({query for query, _ in queued}) == len(queued):
        return queued, tables  # no text twice (one pass commit, say): no group can form
    # the shape of each statement (``SHAPES``, else its ``write`` table's); None: unknown (a
    # barrier), as is a statement of named parameters, or of none
    shapes = [
        (SHAPES.get(query) or _table_shape(table))
        if type(params) is tuple or type(params) is list
        else None
        for (query, params), table in zip(queued, tables, strict=True)
    ]
    open_: dict[str, _Group] = {}  # the open group of each text
    on_table: dict[str, list[_Group]] = {}  # the open groups touching each table
    starts: dict[int, _Group] = {}  # the index of each group's first statement: the group
    grouped = False
    params: Any  # a shaped statement's: a tuple or a list (``shapes``)
    for i, ((query, params), shape) in enumerate(zip(queued, shapes, strict=True)):
        if shape is None:  # a barrier: every group ends here
            open_.clear()
            on_table.clear()
            continue
        group: _Group | None = None
        at = i  # where the statement will stand: the start of the group it joins, or here
        new: _Group | None = None  # the group it begins
        if shape.build is not None:
            group = open_.get(query)
            if group is not None and group.joined(i, params):
                grouped = True
                at = group.indexes[0]
            else:
                if group is not None:  # closed: takes nothing more
                    for table in shape.tables:
                        on_table[table].remove(group)
                group = open_[query] = starts[i] = new = _Group(shape, i, params)
        run = None if shape.run is None else params[shape.run]
        for table in shape.tables:
            others = on_table.get(table)
            if others is None:
                others = on_table[table] = []
            for other in others:
                # a group that begins after where the statement will stand: its later
                # statements do not move ahead of this one (it is no longer between them)
                if other is group or other.indexes[0] > at:
                    continue
                if run is None or other.shape.run is None:
                    other.sealed = True
                else:
                    other.forbidden.add(run)
            if new is not None:
                others.append(new)
    if not grouped:
        return queued, tables
    out: list[tuple[str, Params]] = []
    out_tables: list[Any] = []
    moved = {i for g in starts.values() for i in g.indexes[1:]}
    for i, entry in enumerate(queued):
        if i in moved:
            continue
        group = starts.get(i)
        if group is None or len(group.indexes) == 1:
            out.append(entry)
            out_tables.append(tables[i])
            continue
        assert group.shape.build is not None
        rows = [queued[j][1] for j in group.indexes]
        out.append(group.shape.build(rows))  # type: ignore[arg-type]
        out_tables.append(tables[i] if len(group.shape.tables) == 1 else None)
    return out, out_tables
