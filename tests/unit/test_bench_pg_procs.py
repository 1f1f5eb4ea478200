"""``bench/pg_procs.py``: the PostgreSQL server's CPU is read to the nanosecond. Counted in
clock ticks (10 ms), a 100-step run's server CPU came in steps of 0.1 ms a step: the per-step
row's "the PostgreSQL server 0.300 ms" was 30 ticks, give or take one."""

from __future__ import annotations

import subprocess
import time

from bench.pg_procs import TICK, cpu_seconds, server_cpu_seconds


def test_a_server_process_cpu_is_read_finer_than_a_clock_tick() -> None:
    child = subprocess.Popen(["sleep", "30"])  # single-threaded, as a server process
    try:
        time.sleep(0.2)  # started: it ran for well under a tick since
        exact = server_cpu_seconds(child.pid)
        assert 0 < exact < 1
        assert exact * TICK != round(exact * TICK)  # not a whole number of ticks
    finally:
        child.kill()
        child.wait()
    assert server_cpu_seconds(child.pid) == cpu_seconds(child.pid) == 0.0  # gone: nothing
