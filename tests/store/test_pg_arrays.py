"""Lists of a known element type sent as arrays without psycopg's look at their elements
(``store/postgres/_arrays.py``): the server reads the values a plain list gives, and an event
handed over from its sender's transaction sends no list through psycopg's list dumpers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.array import BaseListDumper
from tests.store.test_pg_handoffs import Heard, register, send

from stepline.store.postgres import PostgresStore
from stepline.store.postgres._arrays import (
    _MOST_KNOWN,
    BoolArray,
    ByteaArray,
    Float8Array,
    Int4Array,
    TextArray,
)

TEXTS = [
    [],
    ["r1"],
    [None],
    [f"r{i}" for i in range(9)],  # from _MANY elements on, packed in one comprehension
    [*(f"r{i}" for i in range(8)), None, "grüße"],
    ["a", None, 'b"c', "", "d,e", "{f}", "g\\h", "grüße \u2603", "NULL", " x ", "\t"],
]
INTS = [[], [5], [None], [0, -2, None, 2**31 - 1, -(2**31)], [*range(9), 2**31 - 1]]
# the arrays of the statements of several rows (``_coalesce``): each type, with nulls
TYPED = [
    (
        Float8Array,
        "double precision",
        [
            [],
            [1.5],
            [None],
            [0.0, -2.25, None, 1e300, -0.0, 1765123456.123456],
            [float(i) / 3 for i in range(9)],
        ],
    ),
    (
        ByteaArray,
        "bytea",
        [
            [],
            [b"x"],
            [None],
            [b"", None, b"\x00\xff", bytes(range(256))],
            [b"a", bytearray(b"b"), memoryview(b"cd")],
            [b"%d" % i for i in range(9)],
            [*(b"%d" % i for i in range(8)), memoryview(b"cd"), None],
        ],
    ),
    (BoolArray, "boolean", [[], [True], [None], [False, None, True], [True, False] * 5]),
]


@pytest.fixture
def heard(pg_url: str) -> Iterator[Heard]:
    listening = Heard(pg_url)
    yield listening
    listening.conn.close()


@pytest.mark.parametrize("values", TEXTS)
def test_a_text_array_reaches_the_server_as_the_list_does(
    pg_url: str, values: list[str | None]
) -> None:
    with psycopg.connect(pg_url) as conn:
        sent = "SELECT %s::text[], pg_typeof(%s)::text"
        typed = conn.execute(sent, (TextArray(values), TextArray(values))).fetchone()
        plain = conn.execute("SELECT %s::text[]", (list(values),)).fetchone()
    assert typed is not None and plain is not None
    assert typed == (values, "text[]")
    assert plain[0] == values


def test_text_arrays_of_texts_dumped_before_reach_the_server_as_the_lists_do(pg_url: str) -> None:
    """A connection's dumper writes the texts of arrays of many it wrote before as it kept them
    (``_TextArrayDumper._known``): arrays of known, new, and known then None elements, and past
    its bound of kept texts (cleared), each read back as it was sent."""
    ids = [f"r{i}" for i in range(_MOST_KNOWN + 50)]
    arrays = [ids[:9], ids[:9], ids[4:13], [*ids[:8], None], ["grüße", *ids[:8]], ids, ids[-9:]]
    arrays += [ids[:9], ["grüße", *ids[:8]]]
    with psycopg.connect(pg_url) as conn:  # one statement: its parameters dumped by one dumper
        sent = "SELECT " + ", ".join(["%s::text[]"] * len(arrays))
        row = conn.execute(sent, [TextArray(values) for values in arrays]).fetchone()
    assert row == tuple(arrays)


@pytest.mark.parametrize("values", INTS)
def test_an_int4_array_reaches_the_server_as_the_list_does(
    pg_url: str, values: list[int | None]
) -> None:
    with psycopg.connect(pg_url) as conn:
        sent = "SELECT %s::int[], pg_typeof(%s)::text"
        typed = conn.execute(sent, (Int4Array(values), Int4Array(values))).fetchone()
        plain = conn.execute("SELECT %s::int[]", (list(values),)).fetchone()
    assert typed is not None and plain is not None
    assert typed == (values, "integer[]")
    assert plain[0] == values


@pytest.mark.parametrize(("kind", "sql", "values"), [(k, t, v) for k, t, vs in TYPED for v in vs])
def test_a_typed_array_reaches_the_server_as_the_list_does(
    pg_url: str, kind: type[list[Any]], sql: str, values: list[Any]
) -> None:
    with psycopg.connect(pg_url) as conn:
        sent = f"SELECT %b::{sql}[], pg_typeof(%b)::text"
        typed = conn.execute(sent, (kind(values), kind(values))).fetchone()
        plain = conn.execute(f"SELECT %b::{sql}[]", (list(values),)).fetchone()
    assert typed is not None and plain is not None
    assert typed == (values, f"{sql}[]")
    assert plain[0] == values


def test_a_float8_array_keeps_nan_and_infinities(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT %b::double precision[]", (Float8Array([math.nan, math.inf, -math.inf]),)
        ).fetchone()
    assert row is not None
    assert math.isnan(row[0][0]) and row[0][1:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    ("kind", "sql", "value"),
    [
        (TextArray, "text", 5),
        (Int4Array, "integer", 2**31),
        (Int4Array, "integer", "5"),
        (Float8Array, "double precision", "1.5"),
        (ByteaArray, "bytea", 5),
        (BoolArray, "boolean", "yes"),
    ],
)
@pytest.mark.parametrize("nulls", [True, False], ids=["among-nulls", "no-null"])
@pytest.mark.parametrize("size", [2, 10], ids=["few", "many"])
def test_a_value_not_of_the_arrays_type_is_refused_before_anything_is_sent(
    pg_url: str, kind: type[list[Any]], sql: str, value: Any, nulls: bool, size: int
) -> None:
    """As psycopg's own dumpers refuse a value (``DataError``): the statement is not sent
    (an array of ``_MANY`` elements or more is dumped in one comprehension; the refusal is
    the same)."""
    values = [None if nulls else value, *([value] * (size - 1))]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.DataError):
            conn.execute(f"SELECT %b::{sql}[]", (kind(values),))
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_event_handed_over_sends_no_list_through_psycopgs_look(
    pg_store: PostgresStore, heard: Heard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest's note (``NOTE_UNLESS_SHARED``), its look for waits and cancel matchers of
    the event's name (``NO_WAITS_NOR_MATCHERS``) and the hand-off (``HAND_OFF``): every list
    they send is typed."""
    register(pg_store, "w1")
    send(pg_store, "r0")  # the statements' first sends (the store's own reads, caches)
    looked: list[Any] = []
    find = BaseListDumper._find_list_element

    def looking(self: BaseListDumper, items: list[Any], format: Any) -> Any:
        looked.append(items)
        return find(self, items, format)

    monkeypatch.setattr(BaseListDumper, "_find_list_element", looking)
    send(pg_store, "r1")
    assert heard.of("r1")[1][0].owner == "w1"  # handed
    assert looked == []
