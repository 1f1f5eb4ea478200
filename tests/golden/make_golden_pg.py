"""Regenerate ``sleeping_order.pg.json`` (only when the storage format changes on purpose), or
record another PostgreSQL golden database under another name:

    python tests/golden/make_golden_pg.py [sleeping_order_v17.pg.json]

It records one run of ``golden_app`` up to its sleep on a throwaway PostgreSQL, with the current
code, and writes its tables as data (``pgdump``)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from golden_app import T0, build_app  # noqa: E402
from pgdump import dump  # noqa: E402

from pgcluster import start_cluster, stop_cluster  # noqa: E402
from stepline import Event  # noqa: E402
from stepline.testing import MockClock, TestEngine  # noqa: E402


async def record(url: str) -> str:
    app = build_app()
    clock = MockClock(start=T0, autojump=False)
    async with TestEngine(app, store=url, clock=clock) as t:
        [event_id] = await t.send(Event("golden/order", {"sku": "sku-1", "qty": 2}, id="o-1"))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "SLEEPING")
    return run.run_id


def main() -> None:
    target = HERE / (sys.argv[1] if len(sys.argv) > 1 else "sleeping_order.pg.json")
    folder = Path(tempfile.mkdtemp(prefix="stepline-golden-"))
    cluster = start_cluster(folder)
    try:
        url = cluster.url()
        run_id = asyncio.run(record(url))
        dump(url, target)
    finally:
        stop_cluster(cluster)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"recorded {target} ({target.stat().st_size} bytes), run {run_id}")


if __name__ == "__main__":
    main()
