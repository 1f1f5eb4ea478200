"""Reading the queue per function a worker serves: one index range per (app, function)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from stepline.serde import dumps
from stepline.store.records import FunctionSet
from stepline.store.sqlite import queries as q

ARMS_PER_STATEMENT = 200  # functions per lease statement (SQLite allows 500 compound arms)
GROUP_VISITS = 16  # concurrency-key groups of a function visited per lease, at least


def chunks(function_ids: Sequence[str]) -> list[Sequence[str]]:
    """Function ids in groups small enough for one statement."""
    step = ARMS_PER_STATEMENT
    return [function_ids[i : i + step] for i in range(0, len(function_ids), step)]


def app_ids(conn: sqlite3.Connection, functions: FunctionSet) -> tuple[str, ...]:
    """The app ids whose queue rows ``functions`` serves: its own, and "" while rows recorded
    before runs carried their app remain (an index probe)."""
    if functions.app_id and conn.execute(q.ANY_UNOWNED).fetchone() is not None:
        return (functions.app_id, "")
    return (functions.app_id,)


def unpaused(conn: sqlite3.Connection, functions: FunctionSet) -> list[str]:
    """The function ids of ``functions`` not paused in its app (nor in every app)."""
    ids = list(functions.function_ids)
    found = conn.execute(q.PAUSED_AMONG, (functions.app_id, dumps(ids).decode()))
    paused = {r[0] for r in found}
    return [f for f in ids if f not in paused] if paused else ids
