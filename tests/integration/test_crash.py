"""Crash tests: a real worker process is SIGKILLed mid-flight and restarted.

Each step body of ``crash_app`` appends ``run_id step_id attempt pid time`` to a side file before
it returns, so the file is the ground truth of which step bodies ran, where and when. The tests
check that every run completes with the right output, that a step body ran more than once only
when the process running it was killed before its result was committed, and that a committed step
never runs again (a run's step ``i`` never runs after its step ``i + 1`` started: step ``i + 1``
starts only once step ``i``'s result is committed).

Every test runs on a SQLite file and on PostgreSQL (``crash_db``). Leases are read through the
``Store`` protocol (``queue_states``: whether a run is leased at a given time; the run's
``worker_id``: who leased it), everything else through the public ``App`` API: no table is read
directly.

``test_kill_9_under_load`` is issue 8's "kill -9 under load": several workers, a random one
SIGKILLed every few seconds while 1,000 runs x 5 steps execute (``CRASH_LOAD_RUNS``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from _subprocesses import Subprocesses, poll, sigterm

import pgtest
from pgcluster import restart_cluster, start_again, stop_cluster
from stepline import App, Event, Run, StoreUnavailable
from stepline.store.records import RunFilter

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CRASH_APP = HERE / "crash_app.py"
LEASE_TTL = 2.0
SEED = int(os.environ.get("CRASH_SEED", "5"))
# scripts/soak raises these (more runs, more kills, many seeds); the suite keeps them small
RUNS = int(os.environ.get("CRASH_RUNS", "100"))
MAX_KILLS = int(os.environ.get("CRASH_KILLS", "6"))
LOAD_RUNS = int(os.environ.get("CRASH_LOAD_RUNS", "1000"))
RESTART_RUNS = int(os.environ.get("CRASH_RESTART_RUNS", "500"))


@pytest.fixture(params=["sqlite", "postgres"])
def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the crash app's workers share: a SQLite file, or this xdist worker's
    emptied PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return str(tmp_path / "crash.db")


def _load_crash_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stepline_crash_app", CRASH_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crash_app = _load_crash_app()


# -- the side file ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Execution:
    """One line of the side file: a step body that started (or the function reaching its end)."""

    line: int
    run_id: str
    step_id: str
    attempt: str
    pid: int
    at: float


def read_log(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    executions = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines()):
        fields = text.split()
        assert len(fields) == 5, f"malformed side-file line {number}: {text!r}"
        run_id, step_id, attempt, pid, at = fields
        executions.append(Execution(number, run_id, step_id, attempt, int(pid), float(at)))
    return executions


# -- worker processes ---------------------------------------------------------------------------
class Workers(Subprocesses):
    """The crash app's worker subprocesses."""

    label = "worker"

    def __init__(
        self, tmp_path: Path, db: str, log: Path, lease_ttl: float = LEASE_TTL, **env: str
    ) -> None:
        super().__init__(
            tmp_path,
            CRASH_DB=db,
            CRASH_LOG=str(log),
            CRASH_LEASE_TTL=str(lease_ttl),
            **env,
        )
        self.kill_times: list[float] = []
        self.db = db

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        # libpq names the process's sessions, so that a kill can wait for the server to end them
        return self.spawn([str(CRASH_APP)], PGAPPNAME=self.session_name(len(self.procs)), **env)

    @staticmethod
    def session_name(index: int) -> str:
        return f"stepline-crash-worker-{index}"

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL and reap; the process is gone when this returns, and on PostgreSQL so are its
        sessions: a transaction it had sent whole before it died (its COMMIT included) may still
        commit after the process is gone, so what it held is read only once the server has ended
        every session of it."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.killed.add(proc.pid)
        self.kill_times.append(time.time())
        if self.db.startswith("postgresql"):
            self.wait_for_sessions_to_end(self.session_name(self.procs.index(proc)))

    def wait_for_sessions_to_end(self, name: str) -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(self.db, autocommit=True) as conn:
            while conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone() != (0,):
                # real time: a poll with a deadline: the server ends a dead client's sessions
                # when it next reads from their sockets
                assert time.monotonic() < deadline, f"the server kept {name}'s sessions 60 s"
                time.sleep(0.01)

    def resumed(self, proc: subprocess.Popen[bytes], worker_id: str) -> int | None:
        """How many runs ``proc`` said it reclaimed from its predecessor with ``worker_id`` at
        start (its "resuming N runs of worker ..." line), or None before it said so."""
        out = self.dir / f"{self.label}-{self.procs.index(proc)}.out"
        pattern = re.compile(rf"resuming (\d+) runs? of worker {re.escape(worker_id)}$", re.M)
        found = pattern.search(out.read_text(errors="replace"))
        return None if found is None else int(found.group(1))

    def said_resuming(self, proc: subprocess.Popen[bytes], worker_id: str) -> Callable[[], bool]:
        """A check: ``proc`` said how many runs it resumes of ``worker_id``."""
        return lambda: self.resumed(proc, worker_id) is not None

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM (graceful: passes in flight finish) and wait; returns the exit code. A worker
        that does not stop fails the test with every worker's output (its threads' stacks
        written by SIGUSR1: ``sigterm``)."""
        try:
            return sigterm(proc)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.procs.index(proc)} did not stop\n{self.output()}")


async def leased_by(app: App, owner: str, at: float | None = None) -> set[str]:
    """The runs whose lease ``owner`` holds at time ``at`` (default: now)."""
    engine = app.engine
    query = RunFilter(function_id=crash_app.FUNCTION_ID, limit=100_000)
    runs = [r for r in await engine.read(engine.store.list_runs, query) if r.worker_id == owner]
    when = time.time() if at is None else at
    states = await engine.read(engine.store.queue_states, [r.run_id for r in runs], when)
    return {s.run_id for s in states if s.leased}


def shows_leases(app: App, owner: str) -> Callable[[], Awaitable[bool]]:
    """A check: some run shows ``owner`` as its worker and is leased now (a run's worker is
    written with its RUNNING mark or its first commit, a little after its lease: killed before
    that, the worker held leases no run names it for)."""

    async def check() -> bool:
        return bool(await leased_by(app, owner))

    return check


def resumed_or_taken(
    app: App, workers: Workers, proc: subprocess.Popen[bytes], worker_id: str, held: set[str]
) -> Callable[[], Awaitable[bool]]:
    """A check: ``proc`` (restarted with ``worker_id``) said how many runs of its predecessor it
    resumes, or none of ``held`` (its predecessor's leases) is that worker's any more: other
    workers took them first (PostgreSQL: the predecessor's presence lock went with it)."""

    async def check() -> bool:
        if workers.resumed(proc, worker_id) is not None:
            return True
        return not held & await leased_by(app, worker_id)

    return check


async def lease_expiry(app: App, run_id: str, leased_at: float, horizon: float) -> float:
    """When the lease that ``run_id`` has at ``leased_at`` expires (to a microsecond, by
    bisection over ``queue_states``' "leased at this time"; ``horizon``: later than the expiry).
    Only while no other worker touches the run."""
    engine = app.engine

    async def leased(at: float) -> bool:
        [state] = await engine.read(engine.store.queue_states, [run_id], at)
        return state.leased

    low, high = leased_at, horizon
    assert await leased(low) and not await leased(high), (run_id, low, high)
    while high - low > 1e-6:
        middle = (low + high) / 2
        low, high = (middle, high) if await leased(middle) else (low, middle)
    return high


def ran_steps(log: Path, pid: int, at_least: int = 1) -> Callable[[], bool]:
    """A check: process ``pid`` has started ``at_least`` step bodies."""
    return lambda: sum(1 for e in read_log(log) if e.pid == pid) >= at_least


async def completed(app: App, total: int) -> bool:
    engine = app.engine
    query = RunFilter(function_id=crash_app.FUNCTION_ID, status="COMPLETED", limit=total + 1)
    return len(await engine.read(engine.store.list_runs, query)) == total


def registered_since(app: App, worker_id: str, since: float) -> Callable[[], Any]:
    """A check: a worker ``worker_id`` started at ``since`` or later has registered (so it
    handles SIGTERM: a process still starting up would die of it)."""

    async def check() -> bool:
        workers = await app.live_workers()
        return any(w.worker_id == worker_id and w.started_at >= since for w in workers)

    return check


async def completed_at_least(app: App, count: int) -> bool:
    engine = app.engine
    query = RunFilter(function_id=crash_app.FUNCTION_ID, status="COMPLETED", limit=count)
    return len(await engine.read(engine.store.list_runs, query)) >= count


def send_runs(app: App, count: int) -> dict[str, int]:
    """Send ``count`` ``crash/start`` events; returns event id -> n."""
    events = [Event(name=crash_app.EVENT_NAME, data={"n": n}) for n in range(count)]
    ids = app.send(events)
    return {event_id: n for n, event_id in enumerate(ids)}


# -- the checks both tests share ----------------------------------------------------------------
async def check_outcome(
    app: App,
    event_n: dict[str, int],
    executions: list[Execution],
    workers: Workers,
    rerun_ok: Callable[[Execution], bool] | None = None,
    said: str = "",
) -> dict[tuple[str, str], list[Execution]]:
    """Assert every run completed right and exactly-once-after-commit held; returns the
    executions of each (run, step). A step body may have run more than once only in a process
    killed meanwhile (once per process), or where ``rerun_ok`` accepts the earlier executions
    (``said``: what it accepts, in its failure's message)."""
    limit = len(event_n) + 1
    runs: list[Run] = await app.runs(function_id=crash_app.FUNCTION_ID, limit=limit)
    assert len(runs) == len(event_n)
    step_ids = [f"s{i}" for i in range(crash_app.STEPS)]
    by_step: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    first_end: dict[str, int] = {}
    for e in executions:
        if e.step_id == crash_app.END_MARK:
            first_end.setdefault(e.run_id, e.line)
        else:
            by_step[(e.run_id, e.step_id)].append(e)
    engine = app.engine
    for run in runs:
        assert run.status == "COMPLETED", (run.run_id, run.status, run.error)
        n = event_n[run.event_ids[0]]
        expected = crash_app.expected_output(n)
        assert run.output == expected, (run.run_id, n)
        # exactly five COMPLETED steps, each committed from one attempt, with the right value
        assert [s.id for s in run.steps] == step_ids, run.steps
        for step, value in zip(run.steps, expected["values"], strict=True):
            assert (step.status, step.attempts, step.output) == ("COMPLETED", 1, value), step
        # one committed attempt per step in the history
        history = await app.history(run.run_id)
        committed = [str(h.step_id) for h in history if h.kind == "STEP_COMPLETED"]
        assert sorted(committed) == step_ids, (run.run_id, committed)
        assert run.run_id in first_end, f"run {run.run_id} never reached its end"
        records = {r.step_id: r for r in await engine.read(engine.store.get_steps, run.run_id)}
        for index, step_id in enumerate(step_ids):
            runs_of_step = by_step.get((run.run_id, step_id), [])
            assert runs_of_step, f"{run.run_id} {step_id} has a result but its body never ran"
            # no crash is a failed attempt: every body ran as attempt 0
            assert {e.attempt for e in runs_of_step} == {"0"}, runs_of_step
            # a committed step never runs again: all its executions precede the first execution
            # of the next step (or the function's end), which only starts after the commit
            later = (
                by_step[(run.run_id, step_ids[index + 1])][0].line
                if index + 1 < len(step_ids)
                else first_end[run.run_id]
            )
            assert all(e.line < later for e in runs_of_step), (
                f"{run.run_id} {step_id} ran again after its result was committed: "
                f"{runs_of_step}, next step started at line {later}"
            )
            # a re-run only replaces an execution whose process was killed, once per process
            earlier, last = runs_of_step[:-1], runs_of_step[-1]
            if rerun_ok is not None:
                assert all(rerun_ok(e) for e in earlier), (
                    runs_of_step,
                    said,
                    workers.mentions(run.run_id),
                )
            else:
                assert len({e.pid for e in runs_of_step}) == len(runs_of_step), runs_of_step
                assert all(e.pid in workers.killed for e in earlier), (
                    f"{run.run_id} {step_id} ran twice without a kill: {runs_of_step}"
                )
            # the committed result is the last execution's: it started after every earlier one
            started = records[step_id].started_at
            assert started is not None
            assert all(e.at < started for e in earlier), (records[step_id], runs_of_step)
            assert started <= last.at, (records[step_id], runs_of_step)
    assert not set(r for r, _ in by_step) - {r.run_id for r in runs}, "steps of unknown runs"
    return by_step


# -- the tests ----------------------------------------------------------------------------------
@pytest.mark.timeout(180 * max(1, RUNS // 100))
async def test_repeated_sigkill_loses_nothing_and_reruns_only_uncommitted_steps(
    tmp_path: Path, crash_db: str
) -> None:
    """100 runs x 5 steps; the worker is SIGKILLed 4-6 times at random moments and restarted
    with the same worker id, which frees its predecessor's leases at once (no lease_ttl wait)."""
    total, concurrency, worker_id = RUNS, 20, "crash-worker"
    db, log = crash_db, tmp_path / "steps.log"
    rng = random.Random(SEED)
    planned_kills = rng.randint(min(4, MAX_KILLS), MAX_KILLS)
    app = crash_app.build_app(db)
    workers = Workers(
        tmp_path,
        db,
        log,
        # far longer than a restart on a loaded machine: a same-id restart reclaims the leases
        # long before they could expire (issue 6 item 8)
        lease_ttl=30.0,
        CRASH_WORKER_ID=worker_id,
        CRASH_CONCURRENCY=str(concurrency),
        CRASH_STEP_SLEEP="0.3",
    )
    began = time.monotonic()
    try:
        event_n = send_runs(app, total)
        # ~10 s on an idle 2-core machine; the margin is for a loaded one
        deadline = time.monotonic() + 90 * max(1, total // 100)
        proc = workers.start()
        release_delays: list[float] = []
        while len(workers.killed) < planned_kills:
            await poll(
                f"worker {proc.pid} to run steps", ran_steps(log, proc.pid), deadline, workers
            )
            # real time: a random moment to SIGKILL at (what the test is about), not a wait for
            # something to happen: the steps ran (polled above)
            await asyncio.sleep(rng.uniform(0.1, 0.7))
            if await completed(app, total):
                break
            workers.kill(proc)
            held = await leased_by(app, worker_id)
            spawned = time.time()
            proc = workers.start()
            # the restarted worker (same id) reclaims its predecessor's leases at once, in its
            # start transaction, and says so (an expired lease it would announce as such): no
            # wall-clock "freed before expiry" comparison (issue 6 item 8: that one failed on a
            # loaded machine)
            if held:
                await poll(
                    f"worker {proc.pid} to announce it resumes its predecessor's runs",
                    workers.said_resuming(proc, worker_id),
                    deadline,
                    workers,
                    interval=0.01,
                )
                assert workers.resumed(proc, worker_id) == len(held), workers.output()
                release_delays.append(time.time() - workers.kill_times[-1])
        await poll("all runs to complete", lambda: completed(app, total), deadline, workers, 0.2)
        if workers.killed:
            up = registered_since(app, worker_id, spawned)
            await poll(f"worker {proc.pid} to be up", up, deadline, workers)
        assert workers.stop(proc) == 0, workers.output()
        elapsed = time.monotonic() - began

        executions = read_log(log)
        by_step = await check_outcome(app, event_n, executions, workers)
        kills = len(workers.killed)
        assert kills == planned_kills, f"only {kills} of {planned_kills} kills happened"
        reruns = {key: len(found) - 1 for key, found in by_step.items() if len(found) > 1}
        rerun_count = sum(reruns.values())
        for pid in workers.killed:
            lost_here = sum(1 for found in by_step.values() for e in found[:-1] if e.pid == pid)
            assert lost_here <= concurrency, (pid, lost_here)
        assert rerun_count <= kills * concurrency
        assert rerun_count > 0, "no kill hit a step in flight: the test exercised nothing"
        per_run: dict[str, int] = defaultdict(int)
        for (run_id, _), count in reruns.items():
            per_run[run_id] += count
        histogram: dict[int, int] = defaultdict(int)
        for count in per_run.values():
            histogram[count] += 1
        histogram[0] = total - len(per_run)
        print(
            f"\n[crash] seed={SEED} kills={kills} step bodies re-run={rerun_count} "
            f"(bound {kills * concurrency}) runs by re-runs {dict(sorted(histogram.items()))} "
            f"leases freed after kill (s)={[round(d, 2) for d in release_delays]} "
            f"elapsed={elapsed:.1f}s"
        )
    finally:
        workers.close()
        app.close()


@pytest.mark.timeout(90)
async def test_other_worker_takes_over_only_after_the_lease_expires(
    tmp_path: Path, crash_db: str
) -> None:
    """Worker A is killed; worker B (another id) picks up A's leased runs only once their
    leases have expired (lease_ttl 2 s), and every run still completes. On PostgreSQL A's
    presence lock ended with its process, so B may take them at once (not before the kill)."""
    total = 20
    db, log = crash_db, tmp_path / "steps.log"
    app = crash_app.build_app(db)
    workers = Workers(tmp_path, db, log, CRASH_STEP_SLEEP="0.05")
    try:
        event_n = send_runs(app, total)
        deadline = time.monotonic() + 60
        proc_a = workers.start(CRASH_WORKER_ID="crash-A", CRASH_CONCURRENCY="10")
        await poll(
            "worker A to run steps",
            ran_steps(log, proc_a.pid, 3),
            deadline,
            workers,
            interval=0.01,
        )
        await poll(
            "worker A's runs to be shown as its", shows_leases(app, "crash-A"), deadline, workers
        )
        workers.kill(proc_a)
        killed_at = workers.kill_times[-1]  # not after the wait for its sessions to end
        horizon = killed_at + LEASE_TTL + 5  # no lease outlives its TTL after the kill
        held = {
            run_id: await lease_expiry(app, run_id, killed_at, horizon)
            for run_id in await leased_by(app, "crash-A", killed_at)
        }
        assert held, "worker A held no lease when it was killed"
        assert not await leased_by(app, "crash-B")

        proc_b = workers.start(CRASH_WORKER_ID="crash-B", CRASH_CONCURRENCY="20")
        await poll("all runs to complete", lambda: completed(app, total), deadline, workers, 0.1)
        assert workers.stop(proc_b) == 0, workers.output()

        executions = read_log(log)
        by_step = await check_outcome(app, event_n, executions, workers)
        first_by_b: dict[str, Execution] = {}
        for e in executions:
            if e.pid == proc_b.pid:
                first_by_b.setdefault(e.run_id, e)
        for run_id, expires in held.items():
            taken = first_by_b.get(run_id)
            assert taken is not None, f"B never ran a step of A's run {run_id}"
            if crash_db.startswith("postgresql"):
                assert taken.at >= killed_at, f"B ran {run_id} before A was killed"
                continue
            assert taken.at >= expires, (
                f"B ran {run_id} {taken.at - expires:.3f}s before A's lease expired"
            )
            assert taken.at - expires < 10, f"B took {taken.at - expires:.1f}s to take {run_id}"
        reruns = sum(len(found) - 1 for found in by_step.values())
        assert reruns <= len(held)
        delays = [first_by_b[r].at - held[r] for r in held]
        unleased = [first_by_b[r].at for r in first_by_b if r not in held]
        print(
            f"\n[crash-takeover] A held {len(held)} leases at the kill; B took them "
            f"{min(delays):.2f}-{max(delays):.2f}s after expiry; B started {len(unleased)} other "
            f"runs; step bodies re-run={reruns}"
        )
    finally:
        workers.close()
        app.close()


@pytest.mark.timeout(120)
async def test_a_killed_workers_runs_are_taken_over_before_its_leases_expire(
    tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL: worker A is killed holding leases of a 60 s TTL; worker B (another id) sees
    that A's presence lock went with A's session and finishes A's runs long before those
    leases would have expired."""
    total, ttl = 20, 60.0
    log = tmp_path / "steps.log"
    app = crash_app.build_app(pg_url)
    workers = Workers(tmp_path, pg_url, log, lease_ttl=ttl, CRASH_STEP_SLEEP="0.05")
    try:
        event_n = send_runs(app, total)
        proc_a = workers.start(CRASH_WORKER_ID="crash-A", CRASH_CONCURRENCY="10")
        started = time.monotonic()
        await poll("worker A to run steps", ran_steps(log, proc_a.pid, 3), started + 60, workers)
        await poll(
            "worker A's runs to be shown as its",
            shows_leases(app, "crash-A"),
            started + 60,
            workers,
        )
        workers.kill(proc_a)
        killed_at = workers.kill_times[-1]  # not after the wait for its sessions to end
        held = await leased_by(app, "crash-A", killed_at)
        assert held, "worker A held no lease when it was killed"
        proc_b = workers.start(CRASH_WORKER_ID="crash-B", CRASH_CONCURRENCY="20")
        # half the TTL: only a takeover before the leases expire completes in time
        deadline = time.monotonic() + ttl / 2
        await poll("all runs to complete", lambda: completed(app, total), deadline, workers, 0.1)
        assert workers.stop(proc_b) == 0, workers.output()
        executions = read_log(log)
        await check_outcome(app, event_n, executions, workers)
        taken = {e.run_id for e in executions if e.pid == proc_b.pid}
        assert held <= taken
        after = time.time() - killed_at
        print(f"\n[presence] B finished A's {len(held)} runs {after:.2f}s after the kill")
    finally:
        workers.close()
        app.close()


@pytest.mark.timeout(900)
async def test_kill_9_under_load(tmp_path: Path, pg_url: str) -> None:
    """1,000 runs x 5 steps on 4 worker processes sharing PostgreSQL; every 1-3 s a random
    worker is SIGKILLed and restarted with its id (which reclaims at once the leases other
    workers did not take first, having seen that the killed one's presence lock was gone): every run
    started completes, and no committed step runs again (checked by ``check_outcome`` on the
    side file, and counted here)."""
    total, processes, concurrency = LOAD_RUNS, 4, 20
    log = tmp_path / "steps.log"
    rng = random.Random(SEED)
    app = crash_app.build_app(pg_url)
    workers = Workers(
        tmp_path,
        pg_url,
        log,
        lease_ttl=30.0,  # a same-id restart reclaims long before a lease could expire
        CRASH_CONCURRENCY=str(concurrency),
        CRASH_STEP_SLEEP="0.05",
    )
    began = time.monotonic()
    try:
        event_n = send_runs(app, total)
        deadline = time.monotonic() + 600 * max(1, total // 1000)
        spawned: dict[str, float] = {}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for n in range(processes):
            spawned[f"load-{n}"] = time.time()
            procs[f"load-{n}"] = workers.start(CRASH_WORKER_ID=f"load-{n}")
        resumed: list[int] = []
        while not await completed(app, total):
            # real time: a random moment to SIGKILL at (what the test is about), not a wait for
            # something to happen
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            if await completed(app, total):
                break
            dead = workers.died()
            if dead is not None:
                pytest.fail(f"worker {dead.pid} exited ({dead.returncode})\n{workers.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out with {len(workers.killed)} kills\n{workers.output()}")
            worker_id = rng.choice(sorted(procs))
            workers.kill(procs[worker_id])
            held = await leased_by(app, worker_id)
            spawned[worker_id] = time.time()
            proc = procs[worker_id] = workers.start(CRASH_WORKER_ID=worker_id)
            if held:
                await poll(
                    f"{worker_id} to resume its predecessor's runs",
                    resumed_or_taken(app, workers, proc, worker_id, held),
                    deadline,
                    workers,
                    interval=0.01,
                )
                resumed.append(len(held))
        await poll("all runs to complete", lambda: completed(app, total), deadline, workers, 0.2)
        for worker_id, since in spawned.items():
            check = registered_since(app, worker_id, since)
            await poll(f"{worker_id} to be up", check, deadline, workers)
        codes = [workers.stop(proc) for proc in procs.values()]
        assert codes == [0] * processes, workers.output()
        elapsed = time.monotonic() - began

        executions = read_log(log)
        by_step = await check_outcome(app, event_n, executions, workers)
        kills = len(workers.killed)
        assert kills >= 1, "the runs completed before the first kill: nothing was exercised"
        runs = await app.runs(function_id=crash_app.FUNCTION_ID, limit=total + 1)
        completed_runs = sum(1 for r in runs if r.status == "COMPLETED")
        first_end: dict[str, int] = {}
        for e in executions:
            if e.step_id == crash_app.END_MARK:
                first_end.setdefault(e.run_id, e.line)
        committed_again = 0
        for (run_id, step_id), found in by_step.items():
            index = int(step_id[1:])
            following = by_step.get((run_id, f"s{index + 1}"))
            committed_at = following[0].line if following else first_end[run_id]
            committed_again += sum(1 for e in found if e.line > committed_at)
        reruns = sum(len(found) - 1 for found in by_step.values())
        assert committed_again == 0
        assert completed_runs == len(runs) == total
        print(
            f"\n[kill-9-under-load] seed={SEED} {processes} workers x concurrency {concurrency}: "
            f"runs started={len(runs)} completed={completed_runs}; steps committed="
            f"{len(by_step)} step bodies run={sum(len(f) for f in by_step.values())} "
            f"uncommitted steps re-run={reruns} committed steps re-executed={committed_again}; "
            f"SIGKILLs={kills} (leases reclaimed at restart {resumed}) elapsed={elapsed:.1f}s"
        )
    finally:
        workers.close()
        app.close()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("loop", [None, "asyncio"], ids=["default-loop", "asyncio"])
async def test_database_restart_mid_run(tmp_path: Path, loop: str | None) -> None:
    """500 runs x 5 steps on 2 worker processes, on a durable cluster of the test's own.
    PostgreSQL is crashed and restarted (``pg_ctl restart -m immediate``: the server killed,
    recovery from its WAL at start) once a fifth of the runs completed, and stopped for a while
    once three fifths did: a ``send`` during that outage raises ``StoreUnavailable`` within a
    bound or succeeds (never hangs, never loses the event; a retry with its id is safe). Every
    run completes, no committed step runs again (a step body re-runs only if it ran before the
    database was back: its commit may have failed), the workers log the outage and their
    recovery, and none exits. The workers run on the default loop (uvloop's:
    ``stepline._loops``) and on asyncio's (``STEPLINE_LOOP=asyncio``): a worker on uvloop once
    hung here."""
    total, processes = RESTART_RUNS, 2
    log = tmp_path / "steps.log"
    with pgtest.private_cluster(durable=True) as cluster:
        url = pgtest.migrated_database(cluster)
        # the sender gives up on the outage after 2 s (its connect timeout), not the default 10
        app = crash_app.build_app(url + "?connect_timeout=2")
        workers = Workers(
            tmp_path,
            # the workers meet the outage within 2 s too (a call waits its pool's connect
            # timeout for a connection): "every worker to log the outage" waited up to 10 s
            url + "?connect_timeout=2",
            log,
            # a lease attempt the server committed as it went down, its reply lost, leaves its
            # runs leased to a worker that does not know it: they wait for the TTL (~22 s of
            # the test's 44 with 30 s); 10 s stays far above a heartbeat's delay under load
            lease_ttl=10.0,
            CRASH_CONCURRENCY="20",
            CRASH_STEP_SLEEP="0.05",
            **({} if loop is None else {"STEPLINE_LOOP": loop}),
        )
        began = time.monotonic()
        try:
            event_n = send_runs(app, total)
            deadline = time.monotonic() + 600 * max(1, total // 500)
            procs = [workers.start(CRASH_WORKER_ID=f"restart-{n}") for n in range(processes)]
            await poll(
                "a fifth of the runs to complete",
                lambda: completed_at_least(app, total // 5),
                deadline,
                workers,
                interval=0.1,
            )
            # immediate: the server process is killed and recovers from its WAL on start, as
            # after a crash; the cluster is durable (fsync on), so what it acknowledged survives
            await asyncio.to_thread(restart_cluster, cluster, mode="immediate")
            await poll(
                "three fifths of the runs to complete",
                lambda: completed_at_least(app, total * 3 // 5),
                deadline,
                workers,
                interval=0.1,
            )
            await asyncio.to_thread(stop_cluster, cluster, mode="fast")
            late = Event(crash_app.EVENT_NAME, {"n": total}, id="sent-during-the-outage")
            sending = time.monotonic()
            refused: StoreUnavailable | None = None
            try:
                # never a hang: the bound is the store's connect timeout (2 s) and the margin
                await asyncio.wait_for(asyncio.to_thread(app.send, late), 60)
            except StoreUnavailable as exc:
                refused = exc
            send_took = time.monotonic() - sending

            def every_worker_noticed() -> bool:
                outputs = [tmp_path / f"worker-{n}.out" for n in range(processes)]
                return all(
                    "retrying with backoff" in out.read_text(errors="replace") for out in outputs
                )

            # the outage lasts until each worker has met it (a call fails once its pool's
            # connect timeout passed): a shorter one may end before a worker notices
            await poll("every worker to log the outage", every_worker_noticed, deadline, workers)
            await asyncio.to_thread(start_again, cluster)
            back_at = time.time()
            # the sender retries with the event's id: stored once, whatever the first call did
            [late_id] = app.send(late)
            event_n[late_id] = total
            await poll(
                "all runs to complete",
                lambda: completed(app, total + 1),
                deadline,
                workers,
                interval=0.2,
            )
            codes = [workers.stop(proc) for proc in procs]
            assert codes == [0] * processes, workers.output()
            elapsed = time.monotonic() - began

            by_step = await check_outcome(
                app,
                event_n,
                read_log(log),
                workers,
                rerun_ok=lambda e: e.at < back_at,
                said=f"a re-run only of a body that ran before the database was back at {back_at}",
            )
            reruns = sum(len(found) - 1 for found in by_step.values())
            for n in range(processes):
                said = (tmp_path / f"worker-{n}.out").read_text(errors="replace")
                assert "retrying with backoff until it recovers" in said, workers.output()
                assert "the store is available again" in said, workers.output()
            print(
                f"\n[pg-restart] {total} runs x {crash_app.STEPS} steps on {processes} workers: "
                f"crash-restarted once and stopped once mid-run; all {total + 1} runs completed; "
                f"uncommitted step bodies re-run={reruns}, committed steps re-executed=0; send "
                f"during the outage: "
                f"{'StoreUnavailable' if refused else 'stored'} after {send_took:.1f}s"
                f"{f' ({refused})' if refused else ''}; elapsed={elapsed:.1f}s"
            )
        finally:
            workers.close()
            app.close()
