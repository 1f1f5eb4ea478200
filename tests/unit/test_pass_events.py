"""The events a pass gives its function (``executor.event_of``): each as
``Event.from_payload(record.payload())`` makes it, the sender's id or Stepline's, ``ts`` in
milliseconds, empty data and user data as ``{}``, ``v`` only when the sender gave one."""

from __future__ import annotations

import pytest

from stepline.engine.executor import event_of
from stepline.sdk.event import Event
from stepline.store.records import EventRecord


@pytest.mark.parametrize(
    "record",
    [
        EventRecord("e1", "order/created", {"n": 1}, {"u": 2}, "sender-id", 1765000000.25),
        EventRecord("e2", "order/created", {}, {}, None, 1765000000.0, data_json=b"{}"),
        EventRecord("e3", "a/b", {"x": [1]}, {}, None, 1.5, v="2024-01-01.1"),
        EventRecord("e4", "a/b", None, None, "", 0.001),  # type: ignore[arg-type]
    ],
)
def test_a_pass_sees_each_event_as_its_payload_gives_it(record: EventRecord) -> None:
    made = event_of(record)
    assert made == Event.from_payload(record.payload())
    assert type(made.data) is dict and type(made.user) is dict
