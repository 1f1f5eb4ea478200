"""Several worker processes on one PostgreSQL database (issue 8, "Tests"): racing workers, a
zombie worker (SIGSTOP past its lease), kill -9 under load.

Every step body of ``load_app`` writes a line to a side file once it ran: the file is the ground
truth of which bodies ran, in which process, when. Everything else is read through the public
``App`` API and the ``Store`` protocol (no table is read directly).

Sizes: the issue's figures are the defaults; ``STEPLINE_RACE_RUNS`` and ``STEPLINE_LOAD_RUNS``
lower or raise them (``scripts/soak`` runs them as they are, with fresh seeds).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import pytest
from _subprocesses import Subprocesses, poll, sigterm

from stepline import App, Event
from stepline.serde import loads
from stepline.store.records import RunFilter, RunRecord

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
LOAD_APP = HERE / "load_app.py"
RACE_RUNS = int(os.environ.get("STEPLINE_RACE_RUNS", "5000"))


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


load_app = _load(LOAD_APP, "stepline_load_app")


class LoadWorkers(Subprocesses):
    """``load_app`` worker subprocesses on one database; ``go()`` starts them together."""

    label = "worker"

    def __init__(self, tmp_path: Path, db: str, log: Path, **env: str) -> None:
        self.go_file = tmp_path / "go"
        super().__init__(tmp_path, LOAD_DB=db, LOAD_LOG=str(log), **env)

    def start(self, worker_id: str, **env: str) -> subprocess.Popen[bytes]:
        return self.spawn([str(LOAD_APP)], LOAD_WORKER_ID=worker_id, **env)

    async def go(self, deadline: float) -> None:
        """Wait until every worker opened its store, then let them all start at once."""
        await poll(
            "every worker to be ready",
            lambda: len(list(self.dir.glob("ready-*"))) == len(self.procs),
            deadline,
            self,
            interval=0.01,
        )
        self.go_file.write_text("go")

    def stop_all(self) -> list[int]:
        """SIGTERM every worker still running (passes in flight finish); their exit codes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout=30) for proc in self.procs]


def send_in_batches(app: App, name: str, total: int, batch: int = 500) -> dict[str, int]:
    """Send ``total`` events ``{"n": n}``; returns internal event id -> n."""
    ids: dict[str, int] = {}
    for start in range(0, total, batch):
        numbers = range(start, min(total, start + batch))
        sent = app.send([Event(name, {"n": n}) for n in numbers])
        ids.update(zip(sent, numbers, strict=True))
    return ids


async def status_counts(app: App) -> dict[str, int]:
    engine = app.engine
    stats = await engine.read(engine.store.stats, engine.clock.now())
    return stats.runs_by_status


async def all_runs(app: App, function_id: str, total: int) -> list[RunRecord]:
    engine = app.engine
    query = RunFilter(function_id=function_id, limit=total + 1)
    return await engine.read(engine.store.list_runs, query)


# -- racing workers -------------------------------------------------------------------------------
@pytest.mark.timeout(300 + RACE_RUNS // 20)
async def test_racing_workers_run_every_ready_run_exactly_once(pg_url: str, tmp_path: Path) -> None:
    """5,000 ready runs, 4 worker processes started at the same moment: exactly 5,000
    completions, every step body ran once (so never in two workers at once), nothing lost."""
    total, processes = RACE_RUNS, 4
    log = tmp_path / "race.log"
    app = load_app.build_app(pg_url)
    workers = LoadWorkers(
        tmp_path, pg_url, log, LOAD_GO=str(tmp_path / "go"), LOAD_CONCURRENCY="16"
    )
    try:
        event_n = send_in_batches(app, load_app.RACE_EVENT, total)
        assert (await status_counts(app)) == {"QUEUED": total}
        deadline = time.monotonic() + 240 + total / 25
        for n in range(processes):
            workers.start(f"racer-{n}")
        await workers.go(deadline)
        began = time.monotonic()

        async def done() -> bool:
            return (await status_counts(app)).get("COMPLETED", 0) >= total

        await poll("every run to complete", done, deadline, workers, interval=0.2)
        elapsed = time.monotonic() - began
        assert workers.stop_all() == [0] * processes, workers.output()

        assert await status_counts(app) == {"COMPLETED": total}
        runs = await all_runs(app, load_app.RACE_FUNCTION, total)
        assert len(runs) == total
        bodies: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        for line in log.read_text().splitlines():
            run_id, pid, start, end = line.split()
            bodies[run_id].append((int(pid), float(start), float(end)))
        twice = {r: b for r, b in bodies.items() if len(b) != 1}
        assert not twice, f"step bodies that ran more than once: {list(twice.items())[:5]}"
        assert set(bodies) == {r.run_id for r in runs}
        engine = app.engine
        steps = await engine.read(engine.store.steps_of, [r.run_id for r in runs])
        pids = {w.pid for w in workers.procs}
        for run in runs:
            [(pid, _, _)] = bodies[run.run_id]
            assert pid in pids
            assert run.output_json is not None
            assert loads(run.output_json) == {"n": event_n[run.event_ids[0]], "pid": pid}, run
            [step] = steps[run.run_id]
            assert (step.status, step.attempts) == ("COMPLETED", 1), step
        per_pid = Counter(b[0][0] for b in bodies.values())
        assert len(per_pid) >= 2, f"only one worker ran anything: {per_pid}"
        print(
            f"\n[pg-race] {total} runs, {processes} worker processes: {total} completions, "
            f"{sum(len(b) for b in bodies.values())} step bodies, runs per worker pid "
            f"{dict(per_pid)}, {elapsed:.1f}s ({total / elapsed:.0f} runs/s)"
        )
    finally:
        workers.close()
        app.close()


# -- zombie worker --------------------------------------------------------------------------------
def side_lines(log: Path, kind: str, pid: int) -> list[list[str]]:
    if not log.exists():
        return []
    lines = [line.split() for line in log.read_text().splitlines()]
    return [f for f in lines if f[0] == kind and int(f[2]) == pid]


@pytest.mark.timeout(120)
async def test_a_zombie_workers_late_commit_is_refused(pg_url: str, tmp_path: Path) -> None:
    """Worker A is SIGSTOPped inside a step, past its lease's expiry (2 s); worker B takes the
    run over and finishes it; A is SIGCONTed, its step returns and its commit is refused: the
    run's output, its step and its history are B's, and stay so."""
    log = tmp_path / "zombie.log"
    app = load_app.build_app(pg_url)
    workers = LoadWorkers(tmp_path, pg_url, log, LOAD_LEASE_TTL="2", LOAD_CONCURRENCY="1")
    deadline = time.monotonic() + 90
    try:
        [event_id] = app.send(Event(load_app.ZOMBIE_EVENT, {}))
        zombie = workers.start("zombie-A", LOAD_STEP_SLEEP="4")
        await poll(
            "A to start the step",
            lambda: side_lines(log, "start", zombie.pid),
            deadline,
            workers,
            interval=0.01,
        )
        zombie.send_signal(signal.SIGSTOP)
        stopped_at = time.time()
        [run] = await app.runs(event_id=event_id)
        other = workers.start("worker-B", LOAD_STEP_SLEEP="0.01")

        async def finished() -> bool:
            found = await app.get_run(run.run_id)
            return found is not None and found.status == "COMPLETED"

        await poll("B to finish the run", finished, deadline, workers, interval=0.05)
        [(_, _, _, b_started)] = side_lines(log, "start", other.pid)
        assert float(b_started) >= stopped_at  # B ran the step only after A was stopped
        assert not side_lines(log, "return", zombie.pid)  # A computed nothing yet
        zombie.send_signal(signal.SIGCONT)
        zombie_out = tmp_path / f"worker-{workers.procs.index(zombie)}.out"
        await poll(
            "A's step to return (its result computed)",
            lambda: side_lines(log, "return", zombie.pid),
            deadline,
            workers,
            interval=0.02,
        )
        await poll(
            "A to find its lease lost",
            lambda: "lease lost" in zombie_out.read_text(),
            deadline,
            workers,
            interval=0.02,
        )
        assert sigterm(zombie) == 0, workers.output()
        assert sigterm(other) == 0, workers.output()

        done = await app.get_run(run.run_id)
        assert done is not None
        assert (done.status, done.output) == ("COMPLETED", other.pid), workers.output()
        [step] = done.steps
        assert (step.id, step.status, step.output, step.attempts) == (
            "compute",
            "COMPLETED",
            other.pid,
            1,
        )
        history = await app.history(run.run_id)
        committed = [h for h in history if h.kind == "STEP_COMPLETED"]
        assert len(committed) == 1, history
        print(
            f"\n[pg-zombie] A (pid {zombie.pid}) stopped inside the step; B (pid {other.pid}) "
            f"finished the run; A's result computed after SIGCONT was refused: output "
            f"{done.output}, {len(committed)} committed step"
        )
    finally:
        for proc in workers.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        workers.close()
        app.close()
