"""Lists of a known element type sent as arrays without psycopg's look at their elements
(``store/postgres/_arrays.py``): the server reads the values a plain list gives, and an event
handed over from its sender's transaction sends no list through psycopg's list dumpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.array import BaseListDumper
from tests.store.test_pg_handoffs import Heard, register, send

from stepline.store.postgres import PostgresStore
from stepline.store.postgres._arrays import Int4Array, TextArray

TEXTS = [
    [],
    ["r1"],
    [None],
    ["a", None, 'b"c', "", "d,e", "{f}", "g\\h", "grüße \u2603", "NULL", " x ", "\t"],
]
INTS = [[], [5], [None], [0, -2, None, 2**31 - 1, -(2**31)]]


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
