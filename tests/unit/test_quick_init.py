"""``quick_init``: the records made per event keep their constructor's contract (positional and
keyword arguments, defaults, frozen fields, equality and hashing) with the cheaper ``__init__``."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from stepline.store._primitives import EndedRun, EventJson, ResumedWait
from stepline.store._quick_init import quick_init
from stepline.store.records import (
    EventIngest,
    EventRecord,
    HistoryRecord,
    IngestResult,
    Lease,
    NewRun,
    WaitRecord,
)


def test_records_keep_arguments_defaults_and_stay_frozen() -> None:
    event = EventRecord("e1", "order/created", {"n": 1}, {}, None, 1.5)
    assert (event.data_json, event.payload()["data"]) == (None, {"n": 1})
    assert event == EventRecord(
        internal_id="e1", name="order/created", data={"n": 1}, user={}, id=None, ts=1.5
    )
    item = EventIngest(event)
    assert (item.new_runs, item.deferrals, item.sender) == ((), (), None)
    wait = WaitRecord("w1", "r1", "h", "paid", None, None, None, None, 2.0)
    assert wait.step_id is None
    assert hash(wait) == hash(WaitRecord("w1", "r1", "h", "paid", None, None, None, None, 2.0))
    named = dataclasses.replace(wait, step_id="pay")
    assert (named.step_id, named.wait_id) == ("pay", "w1")
    result = IngestResult("e1", False, ("r1",), ())
    assert (result.skipped, result.cancelled, result.delivered) == ((), (), ())
    assert HistoryRecord("r1", 1.0, "RUN_QUEUED").worker_id is None
    assert NewRun("r1", "fn", ("e1",)).app_id == ""
    resumed = ResumedWait("r1", "h", EventJson(dict), "e1")
    assert (resumed.step_id, resumed.wait_id, resumed.event_json) == (None, "", b"{}")
    assert EndedRun("fn", None, None).function_id == "fn"
    lease = Lease("r1", "tok", function_id="fn")
    assert (lease.taken_over_from, lease.due_at, lease.loaded) == (None, None, None)
    assert lease == Lease("r1", "tok", loaded=list)  # neither loaded nor function_id compared
    assert dataclasses.replace(lease, loaded=list).function_id == "fn"
    for record in (event, item, wait, result, lease):
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.__setattr__(dataclasses.fields(record)[0].name, "changed")
    with pytest.raises(TypeError):
        WaitRecord("w1", "r1")  # type: ignore[call-arg]
    for record in (event, item, wait, result, lease):  # made again by the constructor
        assert copy.copy(record) == record == copy.deepcopy(record)
        assert pickle.loads(pickle.dumps(record)) == record
    assert copy.copy(resumed) == resumed  # its EventJson the same object


def test_quick_init_refuses_what_it_cannot_build() -> None:
    @dataclasses.dataclass(slots=True)
    class Plain:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    for cls in (Plain, Factory):
        with pytest.raises(TypeError):
            quick_init(cls)
