"""``store/sqlite/_announcements.insert_unheard``: the events it writes, in pairs or not, are the
rows ``executemany`` of INSERT_UNHEARD_EVENT writes, in the same order."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from stepline.store.sqlite import queries as q
from stepline.store.sqlite._announcements import insert_unheard
from stepline.store.sqlite.schema import MIGRATIONS

NOW = 1_700_000_000.25
A, B = "inngest/function.finished", "inngest/function.cancelled"


_OPEN: list[sqlite3.Connection] = []  # closed after each test (3.13 warns of a connection
# collected unclosed, and the suite turns warnings into errors)


@pytest.fixture(autouse=True)
def _closed_after() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def database() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    _OPEN.append(conn)
    for script in MIGRATIONS:
        conn.executescript(script)
    return conn


def pairs(count: int) -> list[tuple[str, str, bytes]]:
    """``count`` runs' announcements: two names, each pair one data (the same object)."""
    events: list[tuple[str, str, bytes]] = []
    for run in range(count):
        data = b'{"run_id":"r%d"}' % run
        events += [(f"e{2 * run:04}", A, data), (f"e{2 * run + 1:04}", B, data)]
    return events


def written(events: list[tuple[str, str, bytes]]) -> tuple[list[object], list[object]]:
    """The events table after ``executemany``, then after ``insert_unheard``, of ``events``."""
    tables = []
    for write in ("executemany", "insert_unheard"):
        conn = database()
        if write == "executemany":
            rows = [(i, name, data, NOW, NOW) for i, name, data in events]
            conn.executemany(q.INSERT_UNHEARD_EVENT, rows)
        else:
            insert_unheard(conn, events, NOW)
        tables.append(conn.execute("SELECT rowid, * FROM events ORDER BY rowid").fetchall())
    return tables[0], tables[1]


@pytest.mark.parametrize("count", [1, 49, 50, 51, 107])
def test_announcements_in_pairs_are_written_as_each_alone(count: int) -> None:
    expected, got = written(pairs(count))
    assert got == expected and len(got) == 2 * count


def test_a_repeated_id_is_ignored_as_each_alone_ignores_it() -> None:
    events = pairs(3)
    events[4] = ("e0000", A, events[5][2])  # the third pair's first id is the first pair's
    expected, got = written(events)
    assert got == expected and len(got) == 5


@pytest.mark.parametrize(
    "shape",
    ["odd", "names differ", "data not shared", "names swapped"],
)
def test_events_not_in_pairs_are_written_one_row_each(shape: str) -> None:
    events = pairs(3)
    if shape == "odd":
        events = events[:-1]
    elif shape == "names differ":
        events[3] = (events[3][0], "other/name", events[3][2])
    elif shape == "data not shared":
        events[3] = (events[3][0], B, bytes(events[3][2]) + b" ")
    else:
        events[2], events[3] = (events[2][0], B, events[2][2]), (events[3][0], A, events[3][2])
    expected, got = written(events)
    assert got == expected and len(got) == len(events)
