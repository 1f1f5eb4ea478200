"""Several real processes on one database, a SQLite file and PostgreSQL (``mp_db``): cron ticks
fire once, a concurrency limit holds across processes (measured by the steps themselves),
duplicate event ids sent at once from several processes start one run, and idempotency, rate
limits and singletons decided by 4 senders at once count exactly.

Every process of a test writes a ready file and then waits for one go file, so they start
together. Cron rows are read through the store's transaction verbs (``due_crons``), events with
their ``duplicate`` flag through ``list_events``; everything else through the public ``App`` API.
"""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest
from _subprocesses import Subprocesses, poll

from stepline import App, Event, Run
from stepline.store.records import CronRow, EventFilter, FunctionSet

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
APP_FILE = HERE / "multiprocess_app.py"


def _load_app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stepline_multiprocess_app", APP_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mp = _load_app_module()
WORKERS = 4  # worker (or sender) processes of each test


@pytest.fixture(params=["sqlite", "postgres"])
def mp_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the processes share: a SQLite file, or this xdist worker's emptied
    PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return str(tmp_path / "mp.db")


class Processes(Subprocesses):
    """The multi-process app's subprocesses, started together on a go signal."""

    clean_exit_ok = True

    def __init__(self, tmp_path: Path, db: str) -> None:
        self.go_file = tmp_path / "go"
        super().__init__(tmp_path, MP_DB=db, MP_DIR=str(tmp_path), MP_GO=str(self.go_file))

    def start(self, mode: str, **env: str) -> subprocess.Popen[bytes]:
        return self.spawn([str(APP_FILE), mode], **env)

    async def go(self, deadline: float) -> None:
        """Wait until every process is ready, then start them all at once."""
        await poll(
            "every process to be ready",
            lambda: len(list(self.dir.glob("ready-*"))) == len(self.procs),
            deadline,
            self,
            interval=0.01,
        )
        self.go_file.write_text("go")

    def stop(self) -> list[int]:
        """SIGTERM every process still running (workers finish their passes); exit codes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout=20) for proc in self.procs]


def cron_next_at(app: App) -> dict[str, float]:
    """Every cron row's next tick (those due before the end of time: all of them)."""
    engine = app.engine
    with engine.store.transaction() as tx:
        return {r.function_id: r.next_at for r in tx.due_crons(float("inf"), engine.served)}


def arm(app: App, rows: list[CronRow]) -> None:
    """Make these cron rows due now (replacing the stored rows of their functions alone, in one
    transaction). Replacing every function's rows (the yearly tick's re-arming did) let a
    worker whose start came late (under load) insert a minutely row again with a tick that had
    fired already, and that tick fired twice (a gate of the nineteenth stop): a worker's start
    keeps the rows it finds (INSERT OR IGNORE), not rows deleted under it."""
    engine = app.engine
    armed = FunctionSet(engine.app_id, tuple(dict.fromkeys(r.function_id for r in rows)))
    with engine.store.transaction() as tx:
        tx.sync_crons(armed, [])
        tx.sync_crons(armed, [replace(r, app_id=engine.app_id) for r in rows])


async def all_ended(app: App, function_id: str, total: int) -> bool:
    runs = await app.runs(function_id=function_id, limit=1000)
    return len(runs) == total and all(r.status == "COMPLETED" for r in runs)


async def runs_of(app: App, function_id: str) -> list[Run]:
    return await app.runs(function_id=function_id, limit=1000)


async def tick_of(app: App, run: Run) -> float:
    [event] = await app.engine.read(app.engine.store.get_events, run.event_ids)
    return event.ts


# -- cron -----------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
async def test_cron_ticks_fire_once_across_worker_processes(tmp_path: Path, mp_db: str) -> None:
    """4 workers start at the same moment with four cron ticks due; each tick starts one run.
    Then the yearly tick is armed again 4 times while the workers poll (every 50 ms): each
    arming starts exactly one more run."""
    db = mp_db
    app = mp.build_app(db)
    procs = Processes(tmp_path, db)
    deadline = time.monotonic() + 45
    try:
        minute = math.floor(time.time() / 60) * 60  # the latest "* * * * *" tick
        new_year = datetime(datetime.now(UTC).year, 1, 1, tzinfo=UTC).timestamp()
        yearly = CronRow(mp.YEARLY_FUNCTION, mp.YEARLY, new_year)
        arm(app, [CronRow(f, mp.MINUTELY, minute) for f in mp.CRON_FUNCTIONS] + [yearly])
        for n in range(WORKERS):
            procs.start("worker", MP_WORKER_ID=f"w{n}", MP_CONCURRENCY="4")
        await procs.go(deadline)
        armed_at = {f: minute for f in mp.CRON_FUNCTIONS} | {mp.YEARLY_FUNCTION: new_year}
        await poll(
            "the due ticks to be consumed",
            lambda: all(cron_next_at(app)[f] > at for f, at in armed_at.items()),
            deadline,
            procs,
            interval=0.01,
        )
        # a tick's run is created in the transaction that moves next_at: the count is final now
        assert len(await runs_of(app, mp.YEARLY_FUNCTION)) == 1
        rounds = 5
        for armed in range(2, rounds + 1):
            arm(app, [yearly])
            await poll(
                f"arming {armed} of the yearly tick to be consumed",
                lambda: cron_next_at(app)[mp.YEARLY_FUNCTION] > time.time(),
                deadline,
                procs,
                interval=0.01,
            )
            assert len(await runs_of(app, mp.YEARLY_FUNCTION)) == armed
        for fn in mp.CRON_FUNCTIONS:
            await poll(f"{fn}'s runs", partial(_settled, app, fn), deadline, procs)
        yearly_done = partial(all_ended, app, mp.YEARLY_FUNCTION, rounds)
        await poll("the yearly runs", yearly_done, deadline, procs)
        assert procs.stop() == [0] * WORKERS, procs.output()

        recorded = Counter(
            line.split()[1] for line in (tmp_path / "cron.log").read_text().splitlines()
        )
        per_tick: dict[str, Counter[float]] = {}
        for fn in [*mp.CRON_FUNCTIONS, mp.YEARLY_FUNCTION]:
            runs = await runs_of(app, fn)
            per_tick[fn] = Counter([await tick_of(app, r) for r in runs])
            assert all(recorded[r.run_id] == 1 for r in runs), (fn, recorded)
        for fn in mp.CRON_FUNCTIONS:
            # the armed tick fired once (or the next one, if a minute boundary passed before the
            # workers started: one catch-up only), and so did any boundary passed since
            assert min(per_tick[fn]) in (minute, minute + 60), per_tick[fn]
            assert set(per_tick[fn].values()) == {1}, per_tick[fn]
        assert per_tick[mp.YEARLY_FUNCTION] == {new_year: rounds}
        assert sum(recorded.values()) == sum(sum(c.values()) for c in per_tick.values())
        pids = Counter(line.split()[2] for line in (tmp_path / "cron.log").read_text().splitlines())
        print(f"\n[multiprocess-cron] runs per tick {per_tick} executed by pids {dict(pids)}")
    finally:
        procs.close()
        app.close()


async def _settled(app: App, function_id: str) -> bool:
    runs = await runs_of(app, function_id)
    return bool(runs) and all(r.status == "COMPLETED" for r in runs)


# -- concurrency ----------------------------------------------------------------------------------


def read_track(tmp_path: Path, function_id: str) -> tuple[int, int, list[list[str]]]:
    """(steps inside now, peak, the log lines) of a tracked function."""
    current, peak = (tmp_path / f"{function_id}.count").read_text().split()
    lines = [line.split() for line in (tmp_path / f"{function_id}.log").read_text().splitlines()]
    return int(current), int(peak), lines


async def run_tracked(tmp_path: Path, db: str, jobs: dict[str, int]) -> App:
    """4 workers, each leasing one run at a time, run ``jobs`` (event name -> count), one
    event name after the other; returns the app once every run completed."""
    app: App = mp.build_app(db)
    procs = Processes(tmp_path, db)
    deadline = time.monotonic() + 40
    functions = {"free/job": mp.UNLIMITED, "limited/job": mp.LIMITED}
    try:
        for n in range(WORKERS):
            procs.start("worker", MP_WORKER_ID=f"w{n}", MP_CONCURRENCY="1", MP_STEP_SLEEP="0.15")
        await procs.go(deadline)
        for name, count in jobs.items():
            app.send([Event(name, {"n": n}) for n in range(count)])
            done = partial(all_ended, app, functions[name], count)
            await poll(f"the {name} runs", done, deadline, procs)
        assert procs.stop() == [0] * WORKERS, procs.output()
    except BaseException:
        app.close()
        raise
    finally:
        procs.close()
    return app


@pytest.mark.timeout(60)
async def test_concurrency_limit_holds_across_worker_processes(tmp_path: Path, mp_db: str) -> None:
    """4 workers, each leasing one run at a time. The control function (no limit) has 3 or 4
    steps executing at once, so the processes could exceed a limit of 2; ``limited``
    (``concurrency=2``) never has more than 2 steps executing, measured by the steps."""
    jobs = 20
    app = await run_tracked(tmp_path, mp_db, {"free/job": 8, "limited/job": jobs})
    try:
        free_now, free_peak, _ = read_track(tmp_path, mp.UNLIMITED)
        now, peak, lines = read_track(tmp_path, mp.LIMITED)
        assert free_now == 0
        # the processes could exceed the limit: the control ran more steps at once than it allows
        # (up to one per worker; a loaded machine may not overlap all 4)
        assert mp.LIMIT < free_peak <= WORKERS, f"the control peaked at {free_peak} steps at once"
        assert now == 0
        assert max(int(fields[2]) for fields in lines) == peak
        assert 1 <= peak <= mp.LIMIT, f"limited peaked at {peak} steps executing at once"
        entered = [fields for fields in lines if fields[0] == "in"]
        assert len(entered) == 2 * jobs  # every step body ran once
        # the runs' outputs (how many were inside when each step entered) agree with the log
        outputs = [v for r in await runs_of(app, mp.LIMITED) for v in r.output]
        assert sorted(outputs) == sorted(int(fields[2]) for fields in entered)
        by_pid = Counter(fields[1] for fields in entered)
        at_peak = sum(1 for fields in entered if int(fields[2]) == peak)
        print(
            f"\n[multiprocess-concurrency] control peak={free_peak}; limited peak={peak} "
            f"({at_peak} of {len(entered)} step entries at the peak); "
            f"steps per worker pid {dict(by_pid)}"
        )
    finally:
        app.close()


@pytest.mark.timeout(60)
async def test_concurrency_limit_is_used_fully_across_worker_processes(
    tmp_path: Path, mp_db: str
) -> None:
    """With 4 workers leasing one run at a time, ``concurrency=2`` has two steps executing at
    once in two processes (the slots are used, not just bounded)."""
    app = await run_tracked(tmp_path, mp_db, {"limited/job": 8})
    try:
        _, peak, lines = read_track(tmp_path, mp.LIMITED)
        pids_at_peak = {fields[1] for fields in lines if fields[0] == "in"}
        assert peak == mp.LIMIT, f"limited peaked at {peak} steps executing at once"
        assert len(pids_at_peak) >= 2
    finally:
        app.close()


# -- duplicate event ids --------------------------------------------------------------------------
@pytest.mark.timeout(60)
async def test_duplicate_event_ids_from_concurrent_senders_start_one_run(
    tmp_path: Path, mp_db: str
) -> None:
    """4 processes send the same 25 event ids at once, one transaction per event: every id is
    stored 4 times (3 flagged duplicate) and starts exactly one run, with its copy that was
    not flagged."""
    db = mp_db
    app = mp.build_app(db)
    app.engine  # noqa: B018 - create the schema before the senders start
    procs = Processes(tmp_path, db)
    deadline = time.monotonic() + 45
    keys = [f"dup-{i}" for i in range(25)]
    senders = WORKERS
    try:
        for _ in range(senders):
            procs.start("send", MP_SEND_IDS=",".join(keys))
        await procs.go(deadline)
        codes = [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in procs.procs]
        assert codes == [0] * senders, procs.output()
        sent_by: dict[str, int] = {}
        windows = []
        for proc in procs.procs:
            sent = json.loads((tmp_path / f"sent-{proc.pid}.json").read_text())
            assert len(sent["ids"]) == len(keys)
            sent_by.update({internal: proc.pid for internal in sent["ids"]})
            windows.append((sent["began"], sent["ended"]))
        assert len(sent_by) == senders * len(keys)  # every copy got its own internal id
        # the senders ran at the same time
        assert max(b for b, _ in windows) < min(e for _, e in windows), windows

        stored: dict[str, list[tuple[str, bool]]] = defaultdict(list)
        query = EventFilter(name="dup/event", limit=10 * senders * len(keys))
        for found in await app.engine.read(app.engine.store.list_events, query):
            assert found.event.id is not None
            stored[found.event.id].append((found.event.internal_id, found.duplicate))
        assert sorted(stored) == sorted(keys)
        runs = await runs_of(app, mp.DUP)
        assert len(runs) == len(keys)
        run_event = {r.event_ids[0]: r for r in runs}
        assert all(len(r.event_ids) == 1 for r in runs)
        winners: Counter[int] = Counter()
        for key in keys:
            copies = stored[key]
            assert len(copies) == senders
            [original] = [c for c in copies if not c[1]]
            assert sum(c[1] for c in copies) == senders - 1
            # the copy not flagged duplicate started the run; the others start nothing
            assert original[0] in run_event, key
            assert all(c[0] not in run_event for c in copies if c[1])
            winners[sent_by[original[0]]] += 1
        print(
            f"\n[multiprocess-dup] {senders} senders x {len(keys)} ids: "
            f"{len(runs)} runs, {senders * len(keys) - len(runs)} duplicates stored; "
            f"first copies per sender pid {dict(winners)}"
        )
    finally:
        procs.close()
        app.close()


# -- flow control decided at send time ------------------------------------------------------------
@pytest.mark.timeout(90)
async def test_flow_control_counts_exactly_with_concurrent_senders(
    tmp_path: Path, mp_db: str
) -> None:
    """4 processes send at once, for each of 10 keys, twice, one event to each of five
    functions (one transaction per event, no worker running): idempotency starts one run per
    key, the rate limit exactly its burst per key (4), the singleton one run per key; every
    other event is recorded as skipped, with the right reason. The batch and the throttle see
    every event in one group: the batch starts a run per 3 events, each event in one run at
    most; the throttle starts a run per event, 3 of them due at once (a lease an hour later
    takes exactly those)."""
    app = mp.build_app(mp_db)
    app.engine  # noqa: B018 - create the schema before the senders start
    procs = Processes(tmp_path, mp_db)
    deadline = time.monotonic() + 60
    keys = [f"k{i}" for i in range(10)]
    senders, rounds = WORKERS, 2
    try:
        for _ in range(senders):
            procs.start("flow", MP_FLOW_KEYS=",".join(keys), MP_FLOW_ROUNDS=str(rounds))
        await procs.go(deadline)
        codes = [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in procs.procs]
        assert codes == [0] * senders, procs.output()
        windows = []
        for proc in procs.procs:
            sent = json.loads((tmp_path / f"sent-{proc.pid}.json").read_text())
            windows.append((sent["began"], sent["ended"]))
        assert max(b for b, _ in windows) < min(e for _, e in windows), windows

        per_key = senders * rounds  # events per function and key
        expected = {mp.IDEM: 1, mp.RATE: mp.RATE_BURST, mp.SINGLE: 1}
        reasons = {mp.IDEM: "idempotency", mp.RATE: "rate_limit", mp.SINGLE: "singleton"}
        counts: dict[str, Counter[str]] = {}
        for function_id, allowed in expected.items():
            runs = await runs_of(app, function_id)
            events = await app.engine.read(
                app.engine.store.get_events, [r.event_ids[0] for r in runs]
            )
            counts[function_id] = Counter(e.data["key"] for e in events)
            assert counts[function_id] == dict.fromkeys(keys, allowed), (function_id, counts)
            skips = await app.skipped(function_id, limit=10 * per_key * len(keys))
            assert len(skips) == (per_key - allowed) * len(keys), (function_id, len(skips))
            assert {s.reason for s in skips} == {reasons[function_id]}, skips[:3]
        # every event of the batch and the throttle is of one group: the 4 senders decide on
        # one batch row and one bucket all along. The batch: a run per 3 events, no event in
        # two runs (nor skipped); the throttle: a run per event, exactly 3 due within the hour
        grouped = per_key * len(keys)
        batches = await runs_of(app, mp.BATCH)
        batched = [e for r in batches for e in r.event_ids]
        assert len(batched) == len(set(batched)), "an event in two batches"
        assert {len(r.event_ids) for r in batches} == {mp.BATCH_SIZE}, batches
        assert len(batches) == grouped // mp.BATCH_SIZE, (len(batches), grouped)
        assert await app.skipped(mp.BATCH) == []
        throttled = await runs_of(app, mp.THROTTLE)
        assert len(throttled) == grouped
        engine = app.engine
        with engine.store.transaction() as tx:
            due = tx.lease_due(
                "probe",
                time.time() + 3600,
                grouped,
                3600.0,
                FunctionSet(engine.app_id, (mp.THROTTLE,)),
            )
        assert len(due) == mp.THROTTLE_LIMIT, len(due)
        print(
            f"\n[multiprocess-flow] {senders} senders x {rounds} rounds x {len(keys)} keys: runs "
            f"per key idempotency={counts[mp.IDEM]['k0']} rate limit={counts[mp.RATE]['k0']} "
            f"(burst {mp.RATE_BURST}) singleton={counts[mp.SINGLE]['k0']} of {per_key} events; "
            f"one group's {grouped} events: {len(batches)} batches of {mp.BATCH_SIZE}, "
            f"{len(due)} throttled runs due at once"
        )
    finally:
        procs.close()
        app.close()
