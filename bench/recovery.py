"""Recovery after a SIGKILL: how long until a killed worker's in-flight runs resume.

A worker process (``bench.recovery_child``) starts 20 runs of a 3-step function whose middle step
sleeps; once every run is inside that step the process is SIGKILLed. Then:

- ``same_id_s``: a worker restarted with the **same** identity: seconds from the new process
  being ready (imports done, before its worker starts) until every run is COMPLETED. It reclaims
  its predecessor's leases at once. ``same_id_from_kill_s`` also counts the process start.
- ``new_id_s``: on a fresh database, a worker with a **different** identity started right after
  the kill: seconds from the kill until every run is COMPLETED; the leases must expire first,
  so this is bounded by the lease TTL (10 s by default).

In the resumed runs the middle step returns at once, so the figures are the recovery itself.
DBOS: a process restarted with the same ``executor_id`` recovers its pending workflows at launch;
DBOS (without Conductor) never hands a dead executor's workflows to a different executor, so the
second figure is n/a for DBOS.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Sizes, dbos_db, stepline_db

IN_FLIGHT_SLEEP = 60.0


class Child:
    """A ``bench.recovery_child`` process whose stdout lines are read on a thread."""

    def __init__(
        self, workdir: Path, system: str, mode: str, db: str, worker_id: str, sizes: Sizes, tag: str
    ) -> None:
        command = [
            sys.executable, "-m", "bench.recovery_child",
            "--system", system, "--mode", mode, "--db", db, "--worker-id", worker_id,
            "--runs", str(sizes.recovery_runs), "--lease-ttl", str(sizes.lease_ttl),
            "--sleep", str(IN_FLIGHT_SLEEP if mode == "start" else 0.0),
        ]  # fmt: skip
        self.log = workdir / f"recovery-{system}-{tag}-{mode}.log"
        self._stderr = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def expect(self, word: str, timeout: float) -> float:
        """The epoch time the child printed with ``word``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {word} from the child after {timeout}s (see {self.log})")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(
                    f"the child exited ({self.proc.wait()}) before {word} (see {self.log})"
                )
            if line.startswith(word + " "):
                return float(line.split()[1])

    def kill(self) -> float:
        os.kill(self.proc.pid, signal.SIGKILL)
        killed = time.time()
        self.proc.wait()
        return killed

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def _scenario(
    workdir: Path, system: str, db: str, sizes: Sizes, tag: str, new_id: bool
) -> dict[str, float]:
    first = Child(workdir, system, "start", db, "bench-worker-1", sizes, tag)
    second: Child | None = None
    try:
        first.expect("INFLIGHT", 120)
        time.sleep(0.2)
        killed = first.kill()
        worker_id = "bench-worker-2" if new_id else "bench-worker-1"
        second = Child(workdir, system, "resume", db, worker_id, sizes, tag)
        ready = second.expect("READY", 60)
        done = second.expect("DONE", sizes.lease_ttl + 120)
        second.proc.wait(timeout=60)
    finally:
        first.close()
        if second is not None:
            second.close()
    return {"from_ready": done - ready, "from_kill": done - killed}


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    same = _scenario(
        workdir, "stepline", stepline_db(workdir, "recovery-same"), sizes, "same", new_id=False
    )
    other = _scenario(
        workdir, "stepline", stepline_db(workdir, "recovery-new"), sizes, "new", new_id=True
    )
    return {
        "same_id_s": same["from_ready"],
        "same_id_from_kill_s": same["from_kill"],
        "new_id_s": other["from_kill"],
        "lease_ttl_s": sizes.lease_ttl,
        "runs": sizes.recovery_runs,
    }


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from bench import dbos_support

    same = _scenario(
        workdir, "dbos", dbos_db(workdir, "recovery-same"), sizes, "same", new_id=False
    )
    return {
        "same_id_s": same["from_ready"],
        "same_id_from_kill_s": same["from_kill"],
        "new_id_na": "DBOS recovers only its own executor's workflows (no lease takeover)",
        "runs": sizes.recovery_runs,
        "version": dbos_support.version(),
    }
