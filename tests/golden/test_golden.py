"""Golden database: a run recorded (by an earlier version) while it slept must resume on every
change — same schema (migrated), same step keys and hashes, nothing completed runs again."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from golden_app import CALLS, T0, build_app  # noqa: E402

from stepline.store import SQLiteStore  # noqa: E402
from stepline.testing import MockClock, TestEngine  # noqa: E402


async def test_a_recorded_sleeping_run_resumes_without_rerunning_its_steps(
    tmp_path: Path,
) -> None:
    db = tmp_path / "golden.db"
    shutil.copy(HERE / "sleeping_order.db", db)
    CALLS.clear()
    app = build_app()
    clock = MockClock(start=T0 + 1800, autojump=False)  # half-way through the 1 h sleep
    async with TestEngine(app, store=SQLiteStore(db), clock=clock) as t:
        [recorded] = await t.runs(function_id="golden-order")
        # read before the sleep is over: a worker leasing the due run (RUNNING) cannot race it
        # (issue 6 item 8)
        assert recorded.status == "SLEEPING"
        clock.set(T0 + 2 * 3600)  # the sleep is over
        await t.tick()
        done = await t.wait_for_run(recorded.run_id)
        history = [(h.kind, h.step_id) for h in await t.history(done.run_id)]
    assert done.status == "COMPLETED", done.error
    assert done.output == {"reserved": {"sku": "sku-1"}, "charged": {"amount": 6}}
    assert dict(CALLS) == {"charge": 1}  # the recorded steps were replayed from the memo
    assert [(s.id, s.status) for s in done.steps] == [
        ("reserve", "COMPLETED"),
        ("quote", "COMPLETED"),
        ("quote:1", "COMPLETED"),
        ("settle", "COMPLETED"),
        ("charge", "COMPLETED"),
    ]
    assert history == [
        ("RUN_QUEUED", None),
        ("RUN_STARTED", None),
        ("STEP_COMPLETED", "reserve"),
        ("STEP_COMPLETED", "quote"),
        ("STEP_COMPLETED", "quote:1"),
        ("SLEEP", "settle"),
        ("STEP_COMPLETED", "charge"),
        ("RUN_COMPLETED", None),
    ]
