"""SQLite: what a batch of resolved waits writes, made cheaper, is what the plain statements write:
``complete_steps`` (a CASE per statement of one hash) as COMPLETE_STEP run per row, and
``resolution_texts`` as ``step_output`` and ``event_id_data``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from stepline.store.records import EventRecord
from stepline.store.sqlite import _wait_queries as w
from stepline.store.sqlite._event_rows import event_id_data
from stepline.store.sqlite._waits import complete_steps, resolution_texts, step_output

STEPS = """CREATE TABLE steps (run_id TEXT NOT NULL, hash TEXT NOT NULL, status TEXT NOT NULL,
    output BLOB, ended_at REAL, PRIMARY KEY (run_id, hash)) WITHOUT ROWID"""


@pytest.fixture
def conns() -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    with closing(sqlite3.connect(":memory:")) as one, closing(sqlite3.connect(":memory:")) as two:
        for conn in (one, two):
            conn.execute(STEPS)
            conn.executemany(
                "INSERT INTO steps VALUES (?, ?, 'PENDING', NULL, NULL)",
                [(f"r{i:03}", h) for i in range(120) for h in ("h-a", "h-b")],
            )
        yield one, two


@pytest.mark.parametrize(
    "count", [0, 1, w.STEPS_CHUNK - 1, w.STEPS_CHUNK, w.STEPS_CHUNK + 1, 3 * w.STEPS_CHUNK + 7]
)
@pytest.mark.parametrize("mixed", [False, True])
def test_steps_completed_together_are_the_steps_completed_one_by_one(
    conns: tuple[sqlite3.Connection, sqlite3.Connection], count: int, mixed: bool
) -> None:
    # ``mixed``: two hashes, and a run listed twice for one of them (the later output wins)
    runs = [f"r{i:03}" for i in range(count)]
    hashes = ["h-b" if mixed and i % 3 == 0 else "h-a" for i in range(count)]
    if mixed and count:
        runs.append(runs[0])
        hashes.append(hashes[0])
    outputs = [bytearray(b'{"n":%d}' % i) for i in range(len(runs))]
    expected, written = conns
    rows = zip(outputs, [7.5] * len(runs), runs, hashes, strict=True)
    expected.executemany(w.COMPLETE_STEP, rows)
    complete_steps(written, outputs, runs, hashes, 7.5)
    query = "SELECT *, typeof(output) FROM steps ORDER BY run_id, hash"
    assert written.execute(query).fetchall() == expected.execute(query).fetchall()


@pytest.mark.parametrize(
    "event",
    [
        EventRecord("06H4S5QVZQ7MH2F7FSNA4S6YJG", "pay", {"o": "1"}, {}, None, 1.25, b'{"o":"1"}'),
        EventRecord("06H4S5QVZQ7MH2F7FSNA4S6YJH", "pay", {"o": 1}, {}, None, 2.0),  # no JSON
        EventRecord("e-1", "pay", {}, {}, None, 3.0, b"{}"),  # an id that is not alphanumeric
        EventRecord("e1", "pay", {}, {"u": 1}, None, 4.0, b"{}"),  # user data
        EventRecord("e2", "pay", {}, {}, 'i"d', 5.0, b"{}"),  # a sender id
        EventRecord("é3", "pay", {}, {}, None, 6.0, b"{}"),  # not ASCII
        EventRecord("e4", 'n"ew', {}, {}, None, 7.0, b"{}"),  # a name not written yet
    ],
)
def test_the_texts_of_a_resolution_are_its_step_output_and_its_link(event: EventRecord) -> None:
    for _ in range(2):  # the second time, the name's JSON is remembered
        assert resolution_texts(event) == (step_output(event), event_id_data(event.internal_id))
