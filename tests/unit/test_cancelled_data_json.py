"""``cancelled_announcements`` makes the data of a cancelled run's ending events from its
trigger events' payloads still encoded: the same bytes as ``dumps_exact(ending_data(...))`` of
the decoded payloads, whatever the events hold, and the names ``ending_names`` gives (none, and
no data, for a run that announces nothing: one entry a run, in their order)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stepline.engine._system_events import (
    FUNCTION_CANCELLED,
    FUNCTION_FAILED,
    FUNCTION_FINISHED,
    FUNCTION_INVOKED,
    ending_data,
    ending_names,
    ending_names_after,
)
from stepline.serde import dumps_exact
from stepline.store._cancelled_data import cancelled_announcements
from stepline.store.records import EventRecord

T0 = 1_700_000_000.0
_keys = st.text(max_size=8)  # any string: quotes, backslashes, control characters, non-ASCII
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_events = st.builds(
    EventRecord,
    internal_id=st.text(min_size=1, max_size=30),
    name=st.text(min_size=1, max_size=20) | st.sampled_from([FUNCTION_INVOKED, "order/created"]),
    data=st.dictionaries(_keys, _values, max_size=5),
    user=st.dictionaries(_keys, _values, max_size=3),
    id=st.none() | st.text(min_size=1, max_size=20),
    ts=st.floats(min_value=0, max_value=4e9),
)


def _encoded(events: list[EventRecord]) -> list[tuple[str, bytes]]:
    """Each event as ``UnheardEvents.encoded_run_events`` gives it (its name and payload
    JSON)."""
    return [(e.name, dumps_exact(e.payload())) for e in events]


def cancelled_data_json(
    function_id: str, run_id: str, events: list[tuple[str, bytes]], reason: str
) -> bytes:
    """The data ``cancelled_announcements`` makes for one run (of a name announced)."""
    [(names, data)] = cancelled_announcements([(run_id, function_id)], [events], reason)
    assert names == (FUNCTION_FINISHED, FUNCTION_CANCELLED)
    return data


def _expected(function_id: str, run_id: str, events: list[EventRecord], reason: str) -> bytes:
    payloads = [e.payload() for e in events]
    return dumps_exact(ending_data(function_id, run_id, payloads, "CANCELLED", reason=reason))


@given(
    function_id=st.text(max_size=20),
    run_id=st.text(max_size=30),
    events=st.lists(_events, max_size=3).filter(
        lambda events: not events or events[0].name not in (FUNCTION_FINISHED, FUNCTION_FAILED)
    ),
    reason=st.text(max_size=40),
)
def test_the_same_bytes_as_ending_data_encoded(
    function_id: str, run_id: str, events: list[EventRecord], reason: str
) -> None:
    made = cancelled_data_json(function_id, run_id, _encoded(events), reason)
    assert made == _expected(function_id, run_id, events, reason)


def test_a_run_started_by_an_invoke_carries_its_correlation_id() -> None:
    metadata: dict[str, Any] = {"correlation_id": "parent-run.hash-1", "fn_id": "child"}
    invoked = EventRecord("e1", FUNCTION_INVOKED, {"n": 1, "_inngest": metadata}, {}, None, T0)
    made = cancelled_data_json("child", "r1", _encoded([invoked]), "cancelled by an event")
    assert made == _expected("child", "r1", [invoked], "cancelled by an event")
    assert b'"correlation_id":"parent-run.hash-1"' in made


def test_a_run_without_events_announces_empty_ones() -> None:
    made = cancelled_data_json("fn", "r1", [], "why")
    assert made == _expected("fn", "r1", [], "why")


@given(first=st.none() | st.text(max_size=30) | st.sampled_from(["inngest/function.failed"]))
def test_the_names_follow_the_first_event_as_ending_names(first: str | None) -> None:
    events = [] if first is None else [{"name": first}]
    for status in ("COMPLETED", "FAILED", "CANCELLED"):
        assert ending_names_after(status, first) == ending_names(status, events)
    if first in (FUNCTION_FINISHED, "inngest/function.failed"):
        assert ending_names_after("CANCELLED", first) == ()
    else:
        assert ending_names_after("CANCELLED", first) == (FUNCTION_FINISHED, FUNCTION_CANCELLED)


@given(
    runs=st.lists(
        st.tuples(
            st.text(max_size=10),
            st.sampled_from(["fn-a", "fn-b", 'fn"c']),
            st.lists(_events, max_size=2)
            | st.sampled_from([FUNCTION_FINISHED, FUNCTION_FAILED]).map(
                lambda name: [EventRecord("f1", name, {}, {}, None, T0)]
            ),
        ),
        max_size=6,
    ),
    reason=st.text(max_size=20),
)
def test_many_runs_each_as_one_and_no_names_for_a_run_started_by_an_ending(
    runs: list[tuple[str, str, list[EventRecord]]], reason: str
) -> None:
    cancelled = [(run_id, function_id) for run_id, function_id, _ in runs]
    made = cancelled_announcements(cancelled, [_encoded(events) for _, _, events in runs], reason)
    expected = [
        (names, _expected(function_id, run_id, events, reason) if names else b"")
        for run_id, function_id, events in runs
        for names in [ending_names("CANCELLED", [e.payload() for e in events])]
    ]
    assert made == expected
