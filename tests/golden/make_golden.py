"""Regenerate ``sleeping_order.db`` (only when the storage format changes on purpose):

    python tests/golden/make_golden.py

It records one run of ``golden_app`` up to its sleep, with the current code."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from golden_app import T0, build_app  # noqa: E402

from stepline import Event  # noqa: E402
from stepline.store import SQLiteStore  # noqa: E402
from stepline.testing import MockClock, TestEngine  # noqa: E402


async def main() -> None:
    target = HERE / "sleeping_order.db"
    target.unlink(missing_ok=True)
    app = build_app()
    clock = MockClock(start=T0, autojump=False)
    async with TestEngine(app, store=SQLiteStore(target), clock=clock) as t:
        [event_id] = await t.send(Event("golden/order", {"sku": "sku-1", "qty": 2}, id="o-1"))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "SLEEPING")
    print(f"recorded {target} ({target.stat().st_size} bytes), run {run.run_id}")


if __name__ == "__main__":
    asyncio.run(main())
