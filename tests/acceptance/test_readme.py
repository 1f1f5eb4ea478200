"""The README's Python examples run as a reader pastes them (issue 7: stale pages)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    """The README's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_python_examples_run_as_pasted(tmp_path: Path) -> None:
    # issue 7 "README example helpers that are never defined: a pasted README example must run"
    blocks = python_blocks()
    assert len(blocks) >= 3
    (tmp_path / "readme_example.py").write_text("\n\n".join(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "readme_example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()  # main() prints the run it started
    run_id, status = line.split()
    assert len(run_id) == 26 and status in {"QUEUED", "RUNNING", "WAITING"}
