"""``python -m stepline.cli ARGS`` for the CLI tests, as processes forked from a warm interpreter
(``tests/forkserver.py``: each command a process of its own, with its own argv, environment,
working directory, stdio, signals and exit code; not the ~0.17 s of CPU a new interpreter spent
importing modules, a few hundred times a test run). The start-up tests
(test_cli_startup.py) start new interpreters; ``STEPLINE_TEST_FRESH_PROCESSES=1`` runs every
command in one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import forkserver


def run_cli(
    args: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float, fresh: bool = False
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, "-m", "stepline.cli", *args], env=env, cwd=cwd,
    stdin=DEVNULL, capture_output=True, text=True, timeout=timeout)``, forked from the warm
    server, or with ``fresh`` in a new interpreter."""
    argv = [sys.executable, "-m", "stepline.cli", *args]
    return forkserver.run(
        argv, env=env, cwd=cwd, timeout=timeout, preload=forkserver.CLI, fresh=fresh
    )


def start_cli(
    args: Sequence[str], *, env: dict[str, str], cwd: Path, output: int
) -> forkserver.Process:
    """``subprocess.Popen([sys.executable, "-m", "stepline.cli", *args], env=env, cwd=cwd,
    stdin=DEVNULL, stdout=output, stderr=STDOUT)``, forked from the warm server."""
    argv = [sys.executable, "-m", "stepline.cli", *args]
    return forkserver.popen(
        argv,
        env=env,
        cwd=cwd,
        preload=forkserver.CLI,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
