"""The test harness's PostgreSQL clusters stop when the run that started them is killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pgcluster import WATCH_PID_VARIABLE, find_bindir

TESTS = Path(__file__).resolve().parent.parent
STARTER = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from pgcluster import start_cluster
found = start_cluster(Path(sys.argv[2]))
print(found.data, flush=True)
sys.stdin.read()  # until killed
"""


def _running(data: str) -> bool:
    return (Path(data) / "postmaster.pid").exists()


@pytest.mark.slow
def test_a_cluster_stops_when_the_process_that_started_it_is_killed() -> None:
    # a killed test run (SIGKILL, a gate stopped by hand) left its clusters running for hours
    find_bindir()  # missing binaries: NoPostgres, a failure here as anywhere in the suite
    folder = Path(tempfile.mkdtemp(prefix="stepline-pg-watch-"))
    env = {k: v for k, v in os.environ.items() if k != WATCH_PID_VARIABLE}
    with subprocess.Popen(
        [sys.executable, "-c", STARTER, str(TESTS), str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    ) as starter:
        assert starter.stdout is not None
        data = starter.stdout.readline().decode().strip()
        assert data and _running(data)
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    deadline = time.monotonic() + 60
    while _running(data):  # the watcher looks once a second, pg_ctl stops it at once
        assert time.monotonic() < deadline, "the cluster outlived the process that started it"
        time.sleep(0.02)  # real time: the poll interval; the deadline bounds the wait
    shutil.rmtree(folder, ignore_errors=True)
