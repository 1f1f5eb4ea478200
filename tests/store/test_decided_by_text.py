"""SQLite: a resolving-only batch reads its waits decided by their stored text
(``_wait_queries.DECIDED``, ``SQLiteWaitVerbs.decided_waits``): never one that ``index_decides``
would not decide (a wait decided so skips the matcher), and every one whose value
``prepare_match`` writes as a plain literal (the common case: nothing left to ``_Batch``)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stepline.errors import ExpressionError
from stepline.expressions import forget_matchers, index_decides, prepare_match
from stepline.store.sqlite._wait_queries import DECIDED


def _decided_in_sql(expression: str | None, path: str, value: str) -> bool:
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE waits (expression TEXT, index_value TEXT)")
        conn.execute("INSERT INTO waits VALUES (?, ?)", (expression, value))
        [(decided,)] = conn.execute(f"SELECT {DECIDED} FROM waits", (None, path)).fetchall()
        return bool(decided)


def _at(path: str, value: Any) -> dict[str, Any]:
    root: dict[str, Any] = {}
    here = root
    *parents, last = path.split(".")
    for key in parents:
        here = here.setdefault(key, {})
    here[last] = value
    return root


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=8), path=st.sampled_from(["data.x", "data.a.b", "id"]))
def test_a_wait_is_decided_by_its_text_only_where_the_index_decides_it(
    value: str, path: str
) -> None:
    try:
        match = prepare_match(f"event.{path} == async.{path}", _at(path, value))
    except ExpressionError:
        return  # a string CEL cannot write: no matcher
    forget_matchers()  # decided by the text alone, as in a process that did not store it
    for key_path, key in match.index_keys:
        in_sql = _decided_in_sql(match.text, key_path, key)
        assert not in_sql or index_decides(match.text, key_path, key)
        if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
            assert in_sql  # the common case: a plain literal


def test_other_texts_are_not_decided_by_their_text() -> None:
    decided = 'async.data.x == dyn("o-1")'
    assert _decided_in_sql(decided, "data.x", "o-1")
    for text, path, value in [
        (decided, "data.x", "o-2"),
        (decided, "data.y", "o-1"),
        ('async.data.x == "o-1"', "data.x", "o-1"),  # an equality stored otherwise: the matcher
        (decided + " && true", "data.x", "o-1"),
        ('async.data.x == dyn("a") || dyn("b")', "data.x", 'a") || dyn("b'),
        (None, "data.x", "o-1"),
    ]:
        assert not _decided_in_sql(text, path, value)
