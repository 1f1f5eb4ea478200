"""tests/report_guard.py: a failure whose report pytest is still making when the test's timeout
fires is reported as itself (it was an INTERNALERROR that killed the xdist worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent

# the report of a failure takes longer to make than is left of the test's timeout: the first
# traceback entry pytest formats waits 1.5 s (parsing a big module's source under load did)
SLOW_REPORT = """
import time
import _pytest._code.code as code

formatting = code.ExceptionInfoFormatter.repr_traceback_entry

def slow(self, *args, **kwargs):
    time.sleep(1.5)  # real time: the report outlasts the test's 1 s timeout (the point)
    return formatting(self, *args, **kwargs)

code.ExceptionInfoFormatter.repr_traceback_entry = slow
"""

FAILING = """
import pytest

@pytest.mark.timeout(1)
def test_fails_fast():
    assert 1 + 1 == 3, "the failure itself"
"""


def test_a_failure_whose_report_outlasts_the_timeout_is_reported(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(SLOW_REPORT)
    (tmp_path / "test_inner.py").write_text(FAILING)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "report_guard", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout + done.stderr
    assert "INTERNALERROR" not in out, out
    assert "1 failed" in out and "the failure itself" in out, out
