"""A step's commit on PostgreSQL, the two ways the writer makes it, interleaved.

``python -m bench.pg_commit_path [--blocks N]`` starts a durable throwaway cluster
(``tests/pgcluster.py``), leases one run and writes one-step pass commits through the group-commit
writer, alternating in blocks of 10: committed on the event loop (``LoopCommits``, the writer's
default on PostgreSQL), through the writer thread (the loop path turned off), and a bare
autocommit ``INSERT`` on a connection of its own (the floor). For each: wall time per write
(p25, p50, p75), process CPU per write, and the process's context switches per write (all its
threads: what the hop to the writer thread and back costs, whatever the machine's load)."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = ("loop", "thread", "bare")


def _switches() -> int:
    """Context switches (voluntary and not) of every thread of this process so far."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/status") as status:
                for line in status:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:  # the thread ended meanwhile
            pass
    return total


async def _workload(url: str, blocks: int) -> dict[str, dict[str, float]]:
    import psycopg

    sys.path.insert(0, str(REPO_ROOT))
    from tests.store.builders import T0, cel_matches, lease, start, step

    from stepline.engine.writer import BatchWriter
    from stepline.store.postgres import PostgresStore
    from stepline.store.records import PassCommit

    store = PostgresStore(url)
    store.migrate()
    start(store, "r1")
    [held] = lease(store)
    store.load_run("r1")  # a connection in the read pool, where the writer's commits go
    writer = BatchWriter(store)
    on_loop = writer._on_loop
    bare = psycopg.connect(url, autocommit=True)
    bare.execute("CREATE TABLE IF NOT EXISTS floor (x int)")
    written = 0

    def job(tx: Any) -> Any:
        nonlocal written
        written += 1
        done = step("r1", f"h{written}", written, output=written)
        return tx.commit_pass(PassCommit("r1", held.token, steps=[done]), T0, cel_matches)

    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu = dict.fromkeys(MODES, 0.0)
    switches = dict.fromkeys(MODES, 0)
    try:
        for _ in range(blocks):
            for mode in MODES:
                writer._on_loop = on_loop if mode == "loop" else None
                before, cpu0 = _switches(), time.process_time()
                for _ in range(10):
                    t0 = time.perf_counter()
                    if mode == "bare":
                        bare.execute("INSERT INTO floor VALUES (1)")
                    else:
                        await writer.write(job)
                    wall[mode].append(time.perf_counter() - t0)
                cpu[mode] += time.process_time() - cpu0
                switches[mode] += _switches() - before
    finally:
        writer._on_loop = on_loop
        writer.close()
        bare.close()
        store.close()
    found: dict[str, dict[str, float]] = {}
    for mode in MODES:
        times, n = sorted(wall[mode]), len(wall[mode])
        found[mode] = {
            "p25_ms": times[n // 4] * 1000,
            "p50_ms": statistics.median(times) * 1000,
            "p75_ms": times[3 * n // 4] * 1000,
            "cpu_ms": cpu[mode] / n * 1000,
            "switches": switches[mode] / n,
        }
    found["loop"]["commits"] = writer.loop_commits
    return found


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_commit_path")
    parser.add_argument("--blocks", type=int, default=60, help="blocks of 10 writes each way")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from pgcluster import start_cluster, stop_cluster

    with tempfile.TemporaryDirectory(prefix="stepline-pgpath-") as folder:
        root = Path(folder)
        root.chmod(0o755)  # PostgreSQL's own user must reach the cluster's folder inside
        (root / "pg").mkdir()
        cluster = start_cluster(root / "pg", durable=True)
        try:
            found = asyncio.run(_workload(cluster.url("postgres"), args.blocks))
        finally:
            stop_cluster(cluster)
    print(f"load {os.getloadavg()[0]:.1f}; {args.blocks * 10} writes each way, interleaved")
    for mode in MODES:
        row = found[mode]
        print(
            f"{mode:6s} p25 {row['p25_ms']:.3f}  p50 {row['p50_ms']:.3f}  p75 "
            f"{row['p75_ms']:.3f} ms   CPU {row['cpu_ms']:.3f} ms   "
            f"context switches {row['switches']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
