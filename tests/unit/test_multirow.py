"""``store/sqlite/_multirow``: rows written in multi-row statements are the rows
``executemany`` of the one-row statement writes, in the same order, with the same conflicts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from stepline.store.sqlite._multirow import (
    CHUNK,
    blob,
    insert_rows,
    insert_shared,
    insert_sharing,
    update_among,
    write_among,
)

INSERT = "INSERT OR IGNORE INTO t (k, v) VALUES (?, ?)"
UPDATE = "UPDATE t SET v = ? WHERE k = ?"
UPDATE_AMONG = "UPDATE t SET v = ? WHERE k IN ({})"


_OPEN: list[sqlite3.Connection] = []  # closed after each test (3.13 warns of a connection
# collected unclosed, and the suite turns warnings into errors)


@pytest.fixture(autouse=True)
def _closed_after() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    _OPEN.append(conn)
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)")
    return conn


@pytest.mark.parametrize("count", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7])
def test_rows_are_inserted_as_executemany_inserts_them(count: int) -> None:
    # every fifth key repeats an earlier one (ignored, within a chunk or across chunks)
    rows = [(f"k{i - 3 if i % 5 == 4 else i}", f"v{i}") for i in range(count)]
    expected, written = table(), table()
    expected.executemany(INSERT, rows)
    insert_rows(written, INSERT, rows)
    query = "SELECT seq, k, v FROM t ORDER BY seq"
    assert written.execute(query).fetchall() == expected.execute(query).fetchall()


@pytest.mark.parametrize("count", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7])
def test_rows_sharing_all_but_their_key_are_inserted_as_executemany_inserts_them(
    count: int,
) -> None:
    keys = [f"k{i - 3 if i % 5 == 4 else i}" for i in range(count)]  # some repeated: ignored
    expected, written = table(), table()
    for conn in (expected, written):
        conn.execute("ALTER TABLE t ADD COLUMN w TEXT")
        conn.execute("ALTER TABLE t ADD COLUMN n INTEGER")
    insert = "INSERT OR IGNORE INTO t (k, v, w, n) VALUES (?, ?, NULL, ?)"
    expected.executemany(insert, [(key, "shared", 7) for key in keys])
    insert_sharing(written, insert, keys, ("shared", 7))
    query = "SELECT seq, k, v, w, n FROM t ORDER BY seq"
    assert written.execute(query).fetchall() == expected.execute(query).fetchall()


@pytest.mark.parametrize("count", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7])
def test_rows_with_shared_values_are_inserted_as_executemany_inserts_them(count: int) -> None:
    # ?1 and ?2 are the same in every row (bound once a statement), the bare ? each row's own
    rows = [(f"k{i - 3 if i % 5 == 4 else i}", f"w{i}") for i in range(count)]
    expected, written = table(), table()
    for conn in (expected, written):
        conn.execute("ALTER TABLE t ADD COLUMN w TEXT")
        conn.execute("ALTER TABLE t ADD COLUMN n INTEGER")
    one = "INSERT OR IGNORE INTO t (k, v, w, n) VALUES (?, ?, ?, ?)"
    expected.executemany(one, [(key, "shared", w, 7) for key, w in rows])
    insert_shared(
        written, "INSERT OR IGNORE INTO t (k, v, w, n) VALUES (?, ?1, ?, ?2)", rows, ("shared", 7)
    )
    query = "SELECT seq, k, v, w, n FROM t ORDER BY seq"
    assert written.execute(query).fetchall() == expected.execute(query).fetchall()


def test_a_shared_value_the_statement_numbers_past_the_shared_ones_is_refused() -> None:
    with pytest.raises(ValueError, match="shared"):
        insert_shared(table(), "INSERT INTO t (k, v) VALUES (?, ?3)", [("k",)], ("a", "b"))


@pytest.mark.parametrize("count", [0, 1, CHUNK, CHUNK + 3, 2 * CHUNK + 7])
def test_an_update_among_keys_updates_the_rows_executemany_updates(count: int) -> None:
    keys = [f"k{i % (count - 2) if count > 2 else i}" for i in range(count)]  # some twice
    expected, written = table(), table()
    for conn in (expected, written):
        conn.executemany(INSERT, [(f"k{i}", "old") for i in range(3 * CHUNK)])
    expected.executemany(UPDATE, [("new", key) for key in keys])
    update_among(written, UPDATE, UPDATE_AMONG, ("new",), keys)
    query = "SELECT k, v FROM t ORDER BY seq"
    assert written.execute(query).fetchall() == expected.execute(query).fetchall()


@pytest.mark.parametrize("count", [0, 1, CHUNK, CHUNK + 3, 2 * CHUNK + 7])
def test_rows_written_among_values_are_the_rows_executemany_writes(count: int) -> None:
    # rows (k, v): an insert of each key that is in the table, some absent, some twice
    one = "INSERT OR IGNORE INTO u (k, v) SELECT k, ? FROM t WHERE k = ?"
    among = (
        "INSERT OR IGNORE INTO u (k, v) SELECT t.k, r.column1 FROM (VALUES {}) AS r "
        "CROSS JOIN t WHERE t.k = r.column2"
    )
    rows = [(f"v{i}", f"k{i}") for i in range(count)]
    rows += [("again", f"k{i}") for i in range(0, count, 4)] + [("v", "absent")]
    expected, written = table(), table()
    for conn in (expected, written):
        conn.executemany(INSERT, [(f"k{i}", "v") for i in range(3 * CHUNK)])
        conn.execute("CREATE TABLE u (seq INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)")
    before = expected.total_changes
    expected.executemany(one, rows)
    assert write_among(written, one, among, rows) == expected.total_changes - before
    query = "SELECT k, v FROM u ORDER BY seq"
    assert written.execute(query).fetchall() == expected.execute(query).fetchall()


def test_a_blob_parameter_is_stored_as_the_bytes_are() -> None:
    conn = table()
    conn.execute(INSERT, ("bytes", b'{"a":1}'))
    conn.execute(INSERT, ("blob", blob(b'{"a":1}')))
    rows = conn.execute("SELECT k, v, typeof(v) FROM t ORDER BY seq").fetchall()
    assert rows == [("bytes", b'{"a":1}', "blob"), ("blob", b'{"a":1}', "blob")]
