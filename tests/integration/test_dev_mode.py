"""Integration modules run clean under ``python -X dev -W error``: asyncio's debug checks (a
callback scheduled on a loop from another thread raises "Non-thread-safe operation"), coroutines
never awaited, unclosed resources (ResourceWarning) and every other warning fail the run.

A representative subset, in one subprocess, to keep the suite fast; the whole integration suite
is clean too: ``python -X dev -W error -m pytest tests/integration -q``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pgcluster
import pgtest

ROOT = Path(__file__).resolve().parent.parent.parent
MODULES = [
    "tests/integration/test_write_path_threads.py",  # senders in several loops and threads
    "tests/integration/test_store_unavailable.py",  # outages: backoff, retries, recovery
    "tests/integration/test_steps.py",  # steps, parallel steps, sync functions
    "tests/integration/test_waits.py",  # waits, timeouts, events from other runs
]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_representative_integration_modules_are_clean_under_dev_mode(tmp_path: Path) -> None:
    # issue 6 "What it must show": python -X dev -W error runs of the integration suite are clean
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "PYTEST_"))}
    # the test run's PostgreSQL cluster (a database of its own in it, tests/conftest.py
    # pg_database), started by the first process that needs it and stopped when the run ends:
    # starting a cluster of its own cost ~1.3 s of CPU, 1.5-2.5 s of this long pole
    run = (pgtest.DIR_VARIABLE, pgcluster.WATCH_PID_VARIABLE, pgcluster.TEMPLATE_VARIABLE)
    env.update({k: v for k, v in os.environ.items() if k in run})
    pytest_args = ["-q", "-p", "no:xdist", "--basetemp", str(tmp_path / "base"), *MODULES]
    if (3, 12) <= sys.version_info < (3, 13):
        # early 3.12 releases' sqlite3 warns of numbered placeholders (?1) bound by a sequence,
        # which SQLite documents and the stores use; 3.13 binds them without a word (so do
        # later 3.12 releases): scripts/test-pythons filters the same warning (pytest's own -W:
        # the ini's "error" is applied in each test, after the interpreter's options)
        pytest_args += ["-W", "ignore:Binding:DeprecationWarning"]
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-m", "pytest", *pytest_args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=280,
    )
    output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, output[-6000:]
    assert "passed" in output and "warning" not in output.lower(), output[-3000:]
