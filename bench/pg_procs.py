"""What the PostgreSQL workloads share: worker processes and CPU accounting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, pg_server

TICK = os.sysconf("SC_CLK_TCK")


def start_workers(url: str, count: int, concurrency: int) -> list[subprocess.Popen[str]]:
    """``count`` worker processes (``bench.pg_child``) on ``url``, each ready (leasing)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.pg_child", url, f"w{i}", str(concurrency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
        for i in range(count)
    ]
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != "ready":
            stop_workers(children)
            raise RuntimeError(f"a worker process did not start (it said {line!r})")
    return children


def stop_workers(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.stdin is not None:
            child.stdin.close()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds of a single-threaded process (a PostgreSQL server process), to the
    nanosecond: the time its task ran (``/proc/<pid>/schedstat``), where ``cpu_seconds``
    counts clock ticks (10 ms: a 100-step run's server CPU came in steps of 0.1 ms a step).
    ``cpu_seconds`` where the kernel has no schedstat; 0 if the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return cpu_seconds(pid)


def postgres_pids() -> list[int]:
    """The bench cluster's server processes (the postmaster and its children)."""
    data = os.environ.get("STEPLINE_BENCH_PG_DATA")
    if not data:
        return []
    try:
        postmaster = int(Path(data, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == postmaster:
                pids.append(int(entry.name))
    return pids


def wal_syncs() -> tuple[int, int]:
    """(WAL syncs, WAL writes) of the bench cluster since it started (``pg_stat_wal``)."""
    import psycopg

    server = pg_server()
    assert server is not None
    with psycopg.connect(server, autocommit=True) as conn:
        row = conn.execute("SELECT wal_sync, wal_write FROM pg_stat_wal").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


class CpuMeter:
    """CPU seconds used by the given processes and the PostgreSQL server between two points."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.server0 = {pid: server_cpu_seconds(pid) for pid in postgres_pids()}
        self.workers0 = {pid: cpu_seconds(pid) for pid in pids}

    def read(self) -> dict[str, Any]:
        server = sum(
            server_cpu_seconds(pid) - self.server0.get(pid, 0.0) for pid in postgres_pids()
        )
        workers = sum(cpu_seconds(pid) - self.workers0[pid] for pid in self.pids)
        return {"server_cpu_s": server, "workers_cpu_s": workers}
