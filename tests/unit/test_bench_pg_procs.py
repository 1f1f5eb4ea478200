"""``bench/pg_procs.py``: the PostgreSQL server's CPU is read to the nanosecond. Counted in
clock ticks (10 ms), a 100-step run's server CPU came in steps of 0.1 ms a step: the per-step
row's "the PostgreSQL server 0.300 ms" was 30 ticks, give or take one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.pg_procs import TICK, cpu_seconds, server_cpu_seconds


def _wait_for_exec(pid: int, name: str) -> None:
    """Until process ``pid`` runs ``name`` and sleeps in it (its exec done and its CPU time
    accounted, which the kernel does as it stops running), at most 10 s."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 10
    while True:
        fields = stat.read_text()  # "pid (comm) state ..."
        comm = fields[fields.index("(") + 1 : fields.rindex(")")]
        state = fields[fields.rindex(")") + 2]
        if comm == name and state == "S":
            return
        assert time.monotonic() < deadline, f"process {pid} never slept in {name}"
        time.sleep(0.001)  # real time: a child process's exec; the deadline bounds it


def test_a_server_process_cpu_is_read_finer_than_a_clock_tick() -> None:
    child = subprocess.Popen(["sleep", "30"])  # single-threaded, as a server process
    try:
        _wait_for_exec(child.pid, "sleep")  # started: it ran for well under a tick since
        exact = server_cpu_seconds(child.pid)
        assert 0 < exact < 1
        assert exact * TICK != round(exact * TICK)  # not a whole number of ticks
    finally:
        child.kill()
        child.wait()
    assert server_cpu_seconds(child.pid) == cpu_seconds(child.pid) == 0.0  # gone: nothing
