"""The modules tests/integration/test_dev_mode.py runs under ``-X dev -W error`` run only there in
a run that collects both (tests/conftest.py ``_in_dev_mode_only``), but that deselection must
come after pytest's own ``-m`` and ``-k``: a run that leaves test_dev_mode out by ``-m "not
slow"`` (it is ``slow``) or by ``-k`` must still run the modules' tests (review R4 of the
fourteenth stop: before a07f238 they ran nowhere, in silence)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _collected(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    return done.stdout.decode(errors="replace")


def test_a_run_that_leaves_test_dev_mode_out_by_mark_or_keyword_still_runs_its_modules() -> None:
    both = ("tests/integration/test_waits.py", "tests/integration/test_dev_mode.py")
    by_mark = _collected(*both, "-m", "not slow")
    assert "tests/integration/test_waits.py::" in by_mark, by_mark[-2000:]
    by_keyword = _collected(*both, "-k", "wait")
    assert "tests/integration/test_waits.py::" in by_keyword, by_keyword[-2000:]
