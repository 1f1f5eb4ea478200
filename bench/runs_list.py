"""The runs list and a payload search over a million runs (issue 9's row: both answer in
<= 200 ms p95 over 1,000,000 runs):

    python -m bench.runs_list --runs 1000000                 # the issue's row
    python -m bench.runs_list --runs 100000 --json /tmp/runs_list.json
    python -m bench.runs_list --runs 1000000 --db /tmp/1m.db   # keep (or reuse) the file
    python -m bench.runs_list --runs 1000000 --pg /tmp/pg1m    # on PostgreSQL (a cluster kept
                                                               # in that folder, reused)

1. **Fill** (through the store seam, no engine, no worker): ``runs`` events of ``bench/order``
   (data ``{"n": i % 1000, "customer": "c-<i % 5000>"}``) go through the store's ``ingest``
   verb, 100 per verb (their runs share a creation time), 10,000 per transaction, each
   starting one run of one of ten functions (``fn-0`` ... ``fn-9``, round robin). They stay
   QUEUED, due in a year, except 1 % of them: leased (``lease_due``) and ended by
   ``commit_pass`` with one completed step — COMPLETED, one in ten of those FAILED — drawn at
   random (seeded) through the whole history. The file is made with ``synchronous=NORMAL`` (a
   bench file, not a durable one).
2. **Queries** over the REST API (ASGI in-process, server time, no network; 20 requests each
   after a warm-up, p50/p95): the first page of ``GET /api/v1/runs`` (50 runs with their
   steps), filtered by function, by status (COMPLETED: 0.9 % of the runs; FAILED with a
   function: 0.01 %), a cursor page 90 % deep in the list, the runs one event started; the
   dashboard's runs page (with a filter it counts up to 1,000 runs for its bulk actions); a
   payload search (``event.data.n == 7``, one run in a thousand) as the dashboard runs it
   (``/runs?q=``: the newest 2,000 runs scanned) and ``App.search_runs`` (its default scan of
   10,000 runs), and with a function filter; then ``App.search_runs`` of queries of other
   shapes (``SEARCHES``: comparisons, text calls, the run's status, its output; one CEL alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from starlette.applications import Starlette

from bench.common import percentile
from stepline import App, Context, TriggerEvent
from stepline._cursor import encode_cursor
from stepline._ids import new_id
from stepline.server import ServerSettings, create_app
from stepline.store import SQLiteStore, Store
from stepline.store.postgres import PostgresStore
from stepline.store.records import (
    Admission,
    EventIngest,
    EventRecord,
    FunctionSet,
    NewRun,
    PassCommit,
    RunEnd,
    RunFilter,
    StepRecord,
    WorkerRecord,
)

APP_ID = "bench-runs"
FUNCTIONS = tuple(f"fn-{i}" for i in range(10))
T0 = 1_700_000_000.0
TX_EVENTS = 10_000  # events per fill transaction
VERB_EVENTS = 100  # events per ingest verb (its runs share a creation time)
ENDED, FAILED = 0.01, 0.1  # runs that end; of those, runs that fail (the others complete)
LATER = 365 * 24 * 3600.0  # the QUEUED runs are due in a year (no lease takes them)
SAMPLES = 20
TOKEN = "bench-token"


def make_app(db: str) -> App:
    """The app the server serves: the ten functions (never run here)."""
    app = App(APP_ID, db=str(db))
    for function_id in FUNCTIONS:

        @app.function(id=function_id, trigger=TriggerEvent(f"bench/{function_id}"))
        async def handler(ctx: Context) -> Any:
            return await ctx.step.run("charge", lambda: {"n": ctx.event.data["n"]})

    return app


SEARCHES = {
    "event.data.n > 998": "a comparison (0.1 %)",
    "event.data.amount > 100": "a field no event has (none)",
    'event.data.customer.endsWith("-7")': "a text's end (0.02 %)",
    'run.status == "FAILED" && event.name.startsWith("bench")': "status and name (0.1 %)",
    "output.ok == true": "the output (0.9 %: 50 found)",
    'event.data.customer + "" == "c-7"': "CEL alone, every run (0.02 %)",
}


def fill(store: Store, runs: int) -> dict[str, Any]:
    """``runs`` runs in a new database through the store's verbs; returns what the queries
    need."""
    store.migrate()
    served = FunctionSet(APP_ID, FUNCTIONS)
    started = time.perf_counter()
    first_event = ""
    draw = random.Random(7)
    failing: set[str] = set()
    try:
        for first in range(0, runs, TX_EVENTS):
            items, ending = [], []
            for i in range(first, min(runs, first + TX_EVENTS)):
                at = T0 + i / 1000
                event_id, run_id = new_id(at), new_id(at)
                first_event = first_event or event_id
                data = {"n": i % 1000, "customer": f"c-{i % 5000}"}
                ends = draw.random() < ENDED
                admission = Admission(not_before=None if ends else at + LATER)
                run = NewRun(run_id, FUNCTIONS[i % 10], (event_id,), admission=admission)
                items.append(
                    EventIngest(EventRecord(event_id, "bench/order", data, {}, None, at), (run,))
                )
                if ends:
                    ending.append(run_id)
                    if draw.random() < FAILED:
                        failing.add(run_id)
            now = T0 + (first + len(items)) / 1000
            with store.transaction() as tx:
                for at in range(0, len(items), VERB_EVENTS):  # a creation time per verb
                    verb = items[at : at + VERB_EVENTS]
                    tx.ingest(verb, verb[-1].event.ts, _never)
                leases = tx.lease_due("bench", now, len(ending), 30.0, served)
                for held in leases:
                    failed = held.run_id in failing
                    tx.commit_pass(_ended(held.run_id, held.token, now, failed), now, _never)
            if first // TX_EVENTS % 10 == 0:
                print(f"  {first + len(items):>9,} runs", flush=True)
        seconds = time.perf_counter() - started
        # the run 90 % deep in the list (the newest created by then)
        [deep] = store.list_runs(RunFilter(created_before=T0 + runs / 10_000, limit=1))
    finally:
        store.close()
    print(f"filled {runs:,} runs in {seconds:.1f} s ({runs / seconds:,.0f} runs/s)", flush=True)
    cursor = (deep.created_at, deep.run_id)
    return {"fill_s": seconds, "deep_cursor": cursor, "first_event": first_event}


def _never(*_: Any) -> bool:
    return False


def _ended(run_id: str, token: str, now: float, failed: bool) -> PassCommit:
    step = StepRecord(run_id, "h-charge", "charge", "run", 0, "COMPLETED", b'{"ok":true}')
    end = (
        RunEnd("FAILED", error={"name": "Error", "message": "declined"})
        if failed
        else RunEnd("COMPLETED", output_json=b'{"ok":true}')
    )
    return PassCommit(run_id, token, steps=[step], started_at=now, end=end)


async def time_queries(app: App, facts: dict[str, Any]) -> dict[str, dict[str, float]]:
    settings = ServerSettings(dev=True, api_tokens=(TOKEN,))
    server: Starlette = create_app(app, settings)
    cursor = encode_cursor(tuple(facts["deep_cursor"]))
    search = "event.data.n == 7"
    rest = {
        "runs list, first page": "/api/v1/runs",
        "runs list, by function": "/api/v1/runs?function=fn-3",
        "runs list, status COMPLETED": "/api/v1/runs?status=COMPLETED",
        "runs list, fn-3 FAILED": "/api/v1/runs?function=fn-3&status=FAILED",
        "runs list, cursor 90 % deep": f"/api/v1/runs?cursor={cursor}",
        "runs of one event": f"/api/v1/runs?event={facts['first_event']}",
        "dashboard runs, first page": "/runs",
        "dashboard runs, by function": "/runs?function=fn-3",
        "dashboard runs, status COMPLETED": "/runs?status=COMPLETED",
        "dashboard runs, waiting: queued": "/runs?waiting=queued",
        "dashboard search (scans 2,000)": f"/runs?q={search.replace(' ', '%20')}",
    }
    found: dict[str, dict[str, float]] = {}
    transport = httpx.ASGITransport(app=server)
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers=headers
    ) as client:
        for name, path in rest.items():

            async def get(path: str = path) -> int:
                response = await client.get(path)
                response.raise_for_status()
                return len(response.content)

            found[name] = await _timed(name, get)
        # the "waiting on" filter with a live worker serving the functions (the runs due in
        # the fill's past are then "queued", read and decided up to the bulk bar's 1,000)
        worker = WorkerRecord("bench-worker", APP_ID, FUNCTIONS, time.time(), time.time(), 1e12)
        await app.engine.writer.write(lambda tx: tx.register_worker(worker))
        try:
            for kind in ("queued", "scheduled"):

                async def waiting(kind: str = kind) -> int:
                    response = await client.get(f"/runs?waiting={kind}")
                    response.raise_for_status()
                    return len(response.content)

                name = f"dashboard runs, waiting: {kind}, a worker"
                found[name] = await _timed(name, waiting)
        finally:
            await app.engine.writer.write(lambda tx: tx.unregister_worker(worker.worker_id))

    async def search_all() -> int:
        return len((await app.search_runs(search, limit=50)).runs)

    async def search_fn() -> int:
        return len((await app.search_runs(search, function_id="fn-7", limit=50)).runs)

    found["App.search_runs (scans 10,000)"] = await _timed("App.search_runs", search_all)
    found["App.search_runs, by function"] = await _timed("App.search_runs, fn-7", search_fn)
    for query in SEARCHES:

        async def search_one(query: str = query) -> int:
            return len((await app.search_runs(query, limit=50)).runs)

        found[f"App.search_runs {query}"] = await _timed(query[:34], search_one)
    return found


async def _timed(name: str, call: Any) -> dict[str, float]:
    await call()  # warm-up
    samples, cpu, size = [], [], 0
    for _ in range(SAMPLES):
        began, used = time.perf_counter(), time.process_time()
        size = await call()
        samples.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - used) * 1000)  # this process's CPU, every thread
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    cpu50, cpu95 = percentile(cpu, 50), percentile(cpu, 95)
    print(
        f"{name:34} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  (CPU p50 {cpu50:6.1f} p95 {cpu95:6.1f})",
        flush=True,
    )
    return {"p50_ms": p50, "p95_ms": p95, "cpu_p50_ms": cpu50, "cpu_p95_ms": cpu95, "size": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--db", type=Path, help="keep the file here (reused if it exists)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--pg", type=Path, help="on PostgreSQL: a cluster in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        if args.pg:
            with _pg_cluster(args.pg) as url:
                _run(url, args.pg / "facts.json", args, lambda: PostgresStore(url))
        else:
            path = args.db or Path(tmp) / "runs.db"
            opened = functools.partial(SQLiteStore, path, synchronous="NORMAL")
            _run(str(path), path.with_suffix(".facts.json"), args, opened)


def _run(db: str, facts_path: Path, args: argparse.Namespace, opened: Any) -> None:
    """Fill the database (unless ``facts_path`` says it was), then time the queries."""
    if facts_path.exists():
        facts = json.loads(facts_path.read_text())
        print(f"reusing {db} ({facts['runs']:,} runs)", flush=True)
    else:
        store = opened()
        try:
            facts = {"runs": args.runs, **fill(store, args.runs)}
        finally:
            store.close()
        facts_path.write_text(json.dumps(facts))
    load = os.getloadavg()[0]
    app = make_app(db)
    # as ``stepline server`` does before serving (``serve.run_serving``): the objects made so
    # far are left out of the collector's generations, so a full collection walks only what
    # the queries made (without it, one in two searches of 10,000 runs paid ~35 ms for one)
    gc.collect()
    gc.freeze()
    try:
        queries = asyncio.run(time_queries(app, facts))
    finally:
        app.close()
    print(f"load average at the start of the queries: {load:.1f}")
    result = {**facts, "load": load, "queries": queries}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


@contextlib.contextmanager
def _pg_cluster(folder: Path) -> Iterator[str]:
    """A PostgreSQL cluster in ``folder`` (made on first use, started again later; fsync off:
    the queries only read) and the URL of its database ``runs``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import pgcluster

    data, port = folder / "data", folder / "port"
    if port.exists():
        cluster = pgcluster.Cluster(str(data), int(port.read_text()), pgcluster.find_bindir())
        pgcluster.start_again(cluster)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        cluster = pgcluster.start_cluster(folder)
        port.write_text(str(cluster.port))
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE runs")
    try:
        yield cluster.url("runs")
    finally:
        pgcluster.stop_cluster(cluster)


if __name__ == "__main__":
    main()
