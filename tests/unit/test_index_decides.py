"""``index_decides``: the wait candidates an index lookup alone decides (one string equality),
``values_at`` noting the events whose value is a string, and SQLite deciding a wait by its stored
text (``_wait_queries.DECIDED``, read by ``decided_waits`` for a resolving-only batch): never one
``index_decides`` would not decide (such a wait skips the matcher), and every one whose value
``prepare_match`` writes as a plain literal (the common case: nothing left to ``_Batch``)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stepline.errors import ExpressionError
from stepline.expressions import (
    forget_matchers,
    index_decides,
    load_match,
    prepare_match,
    stored_matches,
    string_holders,
    value_at,
    values_at,
)
from stepline.store.sqlite._wait_queries import DECIDED


def event(**data: Any) -> dict[str, Any]:
    return {"name": "order/created", "data": data}


def test_values_at_notes_the_events_whose_value_is_a_string() -> None:
    events = [event(x="o-1"), event(x=1), event(x=["o-1"]), event(), event(x="")]
    strings: set[int] = set()
    assert values_at(events, "data.x", strings) == ["o-1", "1", '["o-1"]', None, ""]
    assert strings == {0, 4}


def test_values_at_a_key_of_the_data_is_value_at_it() -> None:
    # an event's data and a one-segment path (the ingest's usual lookup): read without a walk
    datas = [{"x": "o-1"}, {"x": "a\x00b"}, {"x": 2.0}, {"x": None}, {}, {"y": {"x": "o"}}]
    assert values_at(datas, "x") == [value_at(d, "x") for d in datas]
    assert values_at(datas, "x") == ["o-1", value_at({"x": "a\x00b"}, "x"), "2", None, None, None]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(
    datas=st.lists(st.dictionaries(st.sampled_from(["x", "y", "0"]), json_values), max_size=6),
    path=st.sampled_from(["x", "y", "0", "x.y", "x.0"]),
)
def test_string_holders_are_the_first_events_of_each_string_value(
    datas: list[dict[str, Any]], path: str
) -> None:
    # the one pass an ingest makes over a batch's data: values_at's strings, each with the
    # first position holding it; None where a value is there and is not a string
    positions = [10 + 3 * at for at in range(len(datas))]
    strings: set[int] = set()
    values = values_at(datas, path, strings)
    expected: dict[str, int] | None = {}
    for at, value in enumerate(values):
        if value is not None and at not in strings:
            expected = None
            break
        if value is not None and expected is not None:
            expected.setdefault(value, positions[at])
    assert string_holders(datas, positions, path) == expected


def test_the_index_decides_one_string_equality_only() -> None:
    forget_matchers()
    assert not index_decides('async.data.x == "o-1"', "data.x", "o-1")  # not cached: ask
    string = prepare_match("event.data.x == async.data.x", event(x="o-1")).text
    number = prepare_match("event.data.x == async.data.x", event(x=7)).text
    both = load_match('async.data.x == "o-1" && async.data.y == 2').text
    assert index_decides(string, "data.x", "o-1")
    assert not index_decides(string, "data.x", "o-2")
    assert not index_decides(string, "data.y", "o-1")
    assert not index_decides(number, "data.x", "7")
    assert not index_decides(both, "data.x", "o-1")
    assert not index_decides(None, "data.x", "o-1")


def test_the_index_decides_by_the_text_prepare_match_stores_when_the_cache_is_empty() -> None:
    # issue 6 (matching costs): a process that did not store the matcher parses nothing for it
    string = prepare_match("event.data.x == async.data.x", event(x="o-1")).text
    quoted = prepare_match("event.data.x == async.data.x", event(x='a"\\b\n')).text
    number = prepare_match("event.data.x == async.data.x", event(x=7)).text
    forget_matchers()
    assert index_decides(string, "data.x", "o-1")
    assert index_decides(quoted, "data.x", 'a"\\b\n')
    assert not index_decides(string, "data.x", "o-2")
    assert not index_decides(string, "data.y", "o-1")
    assert not index_decides(number, "data.x", "7")
    assert not index_decides('async.data.x == "o-1"', "data.x", "o-1")  # not that text: ask
    assert not index_decides(string + " && true", "data.x", "o-1")


_JSON_SCALARS = st.one_of(
    st.text(max_size=4),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=2), max_leaves=4)


@settings(max_examples=400, deadline=None)
@given(own=_JSON, incoming=_JSON, same=st.booleans())
def test_what_the_index_decides_the_matcher_matches(own: Any, incoming: Any, same: bool) -> None:
    """An event whose string value at a matcher's index path is the matcher's index value,
    where ``index_decides`` says the index decides, satisfies the matcher."""
    incoming = own if same else incoming
    try:
        match = prepare_match("event.data.x == async.data.x", event(x=own))
    except ExpressionError:
        return  # a value CEL cannot represent: no matcher
    for path, key in match.index_keys:
        strings: set[int] = set()
        [value] = values_at([event(x=incoming)], path, strings)
        if strings and value == key and index_decides(match.text, path, key):
            assert stored_matches(match.text, event(x=incoming))
            assert match.matches(event(x=incoming))
        forget_matchers()  # decided by the text alone: the same decision, never a wrong one
        cold = strings and value == key and index_decides(match.text, path, key)
        if cold:
            assert stored_matches(match.text, event(x=incoming))
        assert cold == (strings and value == key and index_decides(match.text, path, key))


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=6), path=st.sampled_from(["data.x", "data.a.b", "id"]))
def test_the_text_decided_without_the_cache_is_the_one_prepare_match_stores(
    value: str, path: str
) -> None:
    forget_matchers()
    try:
        match = prepare_match(f"event.{path} == async.{path}", _at(path, value))
    except ExpressionError:
        return  # a string CEL cannot write: no matcher
    for key_path, key in match.index_keys:
        warm = index_decides(match.text, key_path, key)  # prepare_match cached it
        forget_matchers()
        assert index_decides(match.text, key_path, key) == warm


def _at(path: str, value: Any) -> dict[str, Any]:
    """An event holding ``value`` at dotted ``path``."""
    root: dict[str, Any] = {}
    here = root
    *parents, last = path.split(".")
    for key in parents:
        here = here.setdefault(key, {})
    here[last] = value
    return root


def _decided_in_sql(expression: str | None, path: str, value: str) -> bool:
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE waits (expression TEXT, index_value TEXT)")
        conn.execute("INSERT INTO waits VALUES (?, ?)", (expression, value))
        [(decided,)] = conn.execute(f"SELECT {DECIDED} FROM waits", (None, path)).fetchall()
        return bool(decided)


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
