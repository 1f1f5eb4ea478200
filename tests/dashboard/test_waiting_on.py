"""Why an unfinished run is not running (``sdk/waiting.py``), and the Store verbs behind it and
the event stream (``queue_states``, ``list_events``) on both stores."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pgtest
import stepline
from stepline import App, Context, Event
from stepline.sdk.run import Run
from stepline.sdk.waiting import WAITING_KINDS, readable, waiting_on
from stepline.store.records import EventFilter, QueueState, WaitRecord, WorkerRecord
from stepline.testing import MockClock, TestEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from _polling import until

NOW = 1_800_000_000.0
WORKER = WorkerRecord("w", "shop", ("f",), NOW - 10, NOW, NOW + 10)


def _run(status: str, function_id: str = "f") -> Run:
    at = datetime.fromtimestamp(NOW - 5, UTC)
    return Run("r", function_id, status, None, None, [], at, at, None, 0, [], "shop")


def _state(
    due: float | None = None,
    leased: bool = False,
    full: tuple[str, ...] = (),
    waits: tuple[WaitRecord, ...] = (),
) -> QueueState:
    return QueueState("r", due, leased, full, waits)


def _why(run: Run, state: QueueState | None, **kw: object) -> tuple[str, str]:
    options: dict[str, object] = {"now": NOW, "paused": (), "workers": [WORKER], "function": None}
    options.update(kw)
    reason = waiting_on(run, state, **options)  # type: ignore[arg-type]
    assert reason is not None and reason.kind in WAITING_KINDS
    return reason.kind, reason.text


def test_each_reason() -> None:
    wait = WaitRecord("w1", "r", "h", "pay/ok", 'async.data.id == dyn("o-1")', None, None, None, 0)
    timed = WaitRecord("w2", "r", "h", "pay/ok", None, None, None, NOW + 60, 0)
    assert _why(_run("RUNNING"), _state(NOW, leased=True))[0] == "running"
    assert _why(_run("SLEEPING"), _state(NOW + 3600))[1].startswith("sleeping until 2027-01-15")
    kind, text = _why(_run("WAITING"), _state(None, waits=(wait,)))
    assert (kind, text) == ("event", 'waiting for event pay/ok if async.data.id == "o-1"')
    assert "times out at" in _why(_run("WAITING"), _state(NOW + 60, waits=(timed,)))[1]
    assert _why(_run("WAITING"), _state(None))[0] == "invoke"
    assert _why(_run("RETRYING"), _state(NOW + 30))[1].startswith("retry backoff: next attempt")
    assert _why(_run("QUEUED"), _state(NOW, full=("fn:f:u1",))) == (
        "concurrency",
        "held by concurrency key fn:f:u1 (limit reached)",
    )
    assert _why(_run("QUEUED"), _state(NOW + 30))[0] == "scheduled"
    assert _why(_run("QUEUED"), _state(NOW - 1))[0] == "queued"
    assert _why(_run("SLEEPING"), _state(NOW + 5), paused={"f"})[0] == "paused"
    assert _why(_run("QUEUED"), _state(NOW), workers=[])[0] == "worker"
    other_app = WorkerRecord("w", "other", ("f",), 0, NOW, NOW + 10)
    assert _why(_run("QUEUED"), _state(NOW), workers=[other_app])[0] == "worker"
    assert (
        waiting_on(_run("COMPLETED"), None, now=NOW, paused=(), workers=[], function=None) is None
    )


def test_a_throttled_function_says_throttled() -> None:
    app = App("shop")

    @app.function(id="f", trigger=stepline.TriggerEvent("e"), throttle=stepline.Throttle(1, "1m"))
    async def f(ctx: Context) -> None:
        return None

    assert _why(_run("QUEUED"), _state(NOW + 30), function=f)[0] == "throttle"


def test_readable_drops_dyn_around_literals() -> None:
    assert readable('a == dyn("x\\"y") && b == dyn(-1.5e3) && c == dyn(true)') == (
        'a == "x\\"y" && b == -1.5e3 && c == true'
    )


async def test_queue_states_and_list_events_on_both_stores(store_kind: str, tmp_path: Path) -> None:
    app = App("shop")

    @app.function(
        id="hold",
        trigger=stepline.TriggerEvent("hold"),
        concurrency=[stepline.Concurrency(limit=1, key="event.data.k")],
    )
    async def hold(ctx: Context) -> None:
        await ctx.step.wait_for_event("w", event="go", match="data.k", timeout="1h")

    clock = MockClock(autojump=False)
    async with TestEngine(
        app, store=pgtest.engine_store(store_kind), path=tmp_path / "db", clock=clock
    ):
        ids = await app.send_async([Event("hold", {"k": "a"}), Event("other", {"n": 1})])
        [run] = await app.runs(event_id=ids[0])

        async def waiting() -> bool:
            current = await app.get_run(run.run_id)
            return current is not None and current.status == "WAITING"

        await until("the run to wait", waiting)
        store = app.engine.store
        [state] = store.queue_states([run.run_id, "missing"], clock.now())
        assert state.run_id == run.run_id and not state.leased and state.full_keys == ()
        assert state.due_at is not None and state.due_at > clock.now()
        [wait] = state.waits
        assert wait.event_name == "go" and wait.expires_at == state.due_at
        names = [e.event.name for e in store.list_events(EventFilter(limit=10))]
        assert names[:2] == ["other", "hold"]
        held = store.list_events(EventFilter(name="hold", limit=10))
        assert [e.event.internal_id for e in held] == [ids[0]]
        assert store.list_events(EventFilter(limit=1))[0].event.name == "other"
        reasons = await app.waiting_on([await app.get_run(run.run_id)])  # type: ignore[list-item]
        assert reasons[run.run_id].kind == "event"
        events = await app.events(name="other")
        assert [e.event.data for e in events] == [{"n": 1}]
