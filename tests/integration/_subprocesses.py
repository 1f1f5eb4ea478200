"""Real worker processes for the crash and multi-process tests: start, kill, read their output,
poll with a deadline, and never leave one behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import forkserver
from forkserver import Process

ROOT = Path(__file__).resolve().parent.parent.parent


class Subprocesses:
    """The subprocesses a test starts (output in ``<label>-<n>.out``); ``close()`` kills
    whatever is still alive. ``clean_exit_ok``: a process may end with code 0 on its own."""

    label = "process"
    clean_exit_ok = False

    def __init__(self, directory: Path, **env: str) -> None:
        self.dir = directory
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
            ),
            **env,
        }
        self.env.pop("STEPLINE_DB", None)
        self.procs: list[Process] = []
        self.killed: set[int] = set()

    def spawn(self, argv: Sequence[str], **env: str) -> Process:
        """Start ``python argv...`` with the test's environment (plus ``env``): a process of
        its own, forked from a warm interpreter (``forkserver``)."""
        out = self.dir / f"{self.label}-{len(self.procs)}.out"
        proc = forkserver.popen_logged(
            [sys.executable, *argv],
            env={**self.env, **env},
            cwd=self.dir,
            preload=forkserver.WORKER,
            log=out,
        )
        self.procs.append(proc)
        return proc

    def died(self) -> Process | None:
        """A process that ended on its own when it should not have."""
        for proc in self.procs:
            code = proc.poll()
            if proc.pid in self.killed or code is None or (code == 0 and self.clean_exit_ok):
                continue
            return proc
        return None

    def output(self) -> str:
        """The end of every process's output, for failure messages."""
        tails = []
        for i in range(len(self.procs)):
            text = (self.dir / f"{self.label}-{i}.out").read_text(errors="replace")
            tails.append(f"--- {self.label} {i} ---\n{text[-3000:]}")
        return "\n".join(tails)

    def mentions(self, text: str) -> str:
        """Every output line that contains ``text`` (a run id), for failure messages."""
        found = []
        for i in range(len(self.procs)):
            lines = (self.dir / f"{self.label}-{i}.out").read_text(errors="replace").splitlines()
            found += [f"{self.label} {i}: {line}" for line in lines if text in line]
        return "\n".join(found)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


async def poll(
    what: str,
    check: Callable[[], Any],
    deadline: float,
    procs: Subprocesses,
    interval: float = 0.05,
) -> None:
    """Wait until ``check()`` (sync or async) is truthy; fail with the processes' output at
    ``deadline`` (a ``time.monotonic()`` value) or as soon as a process died."""
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        dead = procs.died()
        if dead is not None:
            pytest.fail(f"{procs.label} {dead.pid} exited ({dead.returncode})\n{procs.output()}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}\n{procs.output()}")
        await asyncio.sleep(interval)  # real time: polls real processes; the deadline bounds it


def sigterm(proc: Process, timeout: float = 20) -> int:
    """SIGTERM (graceful: passes in flight finish) and wait; the exit code. A process still
    running after ``timeout`` is sent SIGUSR1 first (crash_app's workers then write every
    thread's stack to their output, for the failure to show where it hung)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)  # real time: the stacks written before the test's failure reads them
        raise
