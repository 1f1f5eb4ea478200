"""``python -m bench [--only NAME] [--quick] [--no-dbos] [--json PATH]``: run and print the table.

Every (workload, system) pair runs in its own fresh Python process on fresh SQLite files in a
temporary folder on the repository's disk; progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import WORKLOADS as CORE_WORKLOADS
from bench.common import REPO_ROOT, RESULT_PREFIX, Sizes, scratch_root
from bench.report import Results, render, table_rows

# Flow control and cancellation (issue 3): admission cost per option, cancel_on matching;
# the HTTP event API (issue 9).
WORKLOADS = (
    *CORE_WORKLOADS,
    *(
        w
        for w in ("flow", "cancel_on", "scale", "fairness", "http_events", "inngest_sdk")
        if w not in CORE_WORKLOADS
    ),
)
# python -m bench --pg: the workloads that compare with DBOS on one PostgreSQL server, plus
# throughput with several worker processes and event latency from another process
PG_WORKLOADS = (
    "floor", "per_step", "throughput", "latency", "recovery", "processes", "remote_latency",
    "fairness",
)  # fmt: skip


def _dbos_status() -> tuple[bool, str]:
    if importlib.util.find_spec("dbos") is None:
        return False, "dbos is not installed (pip install dbos, or scripts/bench installs it)"
    try:
        return True, importlib.metadata.version("dbos")
    except importlib.metadata.PackageNotFoundError:
        return True, "unknown version"


def _run_one(
    workload: str, system: str, root: Path, sizes: Sizes, quick: bool, loop: str = "asyncio"
) -> dict[str, Any]:
    workdir = root / f"{workload}-{system}"
    log = root / f"{workload}-{system}.log"
    command = [
        sys.executable, "-m", "bench._runner", workload, system,
        "--dir", str(workdir), "--sizes", json.dumps(sizes.to_json()), "--loop", loop,
    ]  # fmt: skip
    timeout = 180 if quick else 1200
    if workload == "scale":  # ~1,000 runs/s to create, plus the wake window
        timeout = 600 + sizes.scale_runs // 200
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with open(log, "wb") as stderr:
        try:
            done = subprocess.run(
                command,
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout}s (log: {log})"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if "error" in result:
                result["error"] += f" (log: {log})"
            return result
    return {"error": f"exited {done.returncode} without a result (log: {log})"}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_before": _load(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Stepline benchmarks (and DBOS, where installed)."
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this workload (repeatable or comma-separated): {', '.join(WORKLOADS)}",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a ~20 s smoke run")
    parser.add_argument("--no-dbos", action="store_true", help="do not run the DBOS workloads")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    parser.add_argument("--dir", metavar="PATH", help="make the scratch folder under PATH")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (and logs)")
    parser.add_argument("--plain", action="store_true", help="plain text table, no colours")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default=os.environ.get("STEPLINE_BENCH_LOOP", "uvloop"),
        help="the event loop of the workloads' processes (default uvloop, the loop of "
        "`stepline worker`, `stepline dev` and `stepline server`; `stepline server` in "
        "http_events runs on uvloop either way); named in the title: compare the two "
        "loops by two runs, each labelled; also STEPLINE_BENCH_LOOP",
    )
    parser.add_argument(
        "--pg",
        action="store_true",
        help="run on PostgreSQL: a durable throwaway cluster (fsync on) started in the scratch "
        f"folder, Stepline and DBOS on it; workloads {', '.join(PG_WORKLOADS)}",
    )
    parser.add_argument(
        "--scale-runs",
        type=int,
        metavar="N",
        default=int(os.environ.get("STEPLINE_BENCH_SCALE_RUNS", "0")) or None,
        help="runs of the scale workload (default 100,000; 10,000 with --quick; the issue's "
        "row: 1000000); also STEPLINE_BENCH_SCALE_RUNS",
    )
    parser.add_argument(
        "--scale-concurrency",
        type=int,
        metavar="N",
        default=None,
        help="the scale workload's worker concurrency (default 100, the worker's default)",
    )
    args = parser.parse_args(argv)

    known = PG_WORKLOADS if args.pg else WORKLOADS
    selected = list(known)
    if args.only:
        wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in known]
        if unknown:
            parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(known)}")
        selected = [w for w in known if w in wanted]
    sizes = Sizes.quick() if args.quick else Sizes.full()
    if args.scale_runs:
        sizes = dataclasses.replace(sizes, scale_runs=args.scale_runs)
    if args.scale_concurrency:
        sizes = dataclasses.replace(sizes, scale_concurrency=args.scale_concurrency)
    dbos_ok, dbos_info = _dbos_status()
    if args.no_dbos:
        dbos_ok, dbos_info = False, "skipped (--no-dbos)"
    machine = _machine()
    machine["loop"] = args.loop
    root = scratch_root(args.dir)
    print(
        f"stepline bench: {'quick' if args.quick else 'full'} sizes; scratch {root}; "
        f"load {machine['load_before']}; {args.loop} loop; dbos: {dbos_info}",
        file=sys.stderr,
        flush=True,
    )
    results: Results = {}
    started = time.perf_counter()
    cluster = _start_pg(root) if args.pg else None
    try:
        for workload in selected:
            results[workload] = {}
            for system in ("stepline", "dbos"):
                if system == "dbos" and not dbos_ok:
                    results[workload][system] = {"skipped": dbos_info}
                    continue
                t0 = time.perf_counter()
                print(f"  {workload:<11} {system:<9}", end="", file=sys.stderr, flush=True)
                figure = _run_one(workload, system, root, sizes, args.quick, args.loop)
                results[workload][system] = figure
                status = "error: " + figure["error"] if "error" in figure else "ok"
                print(f"{time.perf_counter() - t0:6.1f} s  {status}", file=sys.stderr, flush=True)
    finally:
        if cluster is not None:
            _stop_pg(cluster)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    machine["load_after"] = _load()
    machine["seconds"] = round(time.perf_counter() - started, 1)

    entries = table_rows(sizes, results, postgres=cluster is not None)
    database = f"PostgreSQL {cluster.version}" if cluster else f"SQLite {machine['sqlite']}"
    title = (
        f"Stepline benchmarks ({'quick' if args.quick else 'full'}; {machine['cpus']} CPUs; "
        f"{database}; {args.loop} event loop; DBOS {dbos_info if dbos_ok else 'not run'}; "
        f"load {machine['load_before'][0]:.2f}→{machine['load_after'][0]:.2f})"
    )
    render(entries, title, plain=args.plain)
    for line in _notes(results):
        print(line)
    if args.json:
        payload = {
            "machine": machine,
            "sizes": sizes.to_json(),
            "dbos": dbos_info,
            "results": results,
            "table": entries,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


@dataclasses.dataclass
class _Cluster:
    cluster: Any
    version: str


def _start_pg(root: Path) -> _Cluster:
    """A durable throwaway cluster (fsync, synchronous_commit and full_page_writes on) in the
    scratch folder, the same way the test run starts its own (``tests/pgcluster.py``)."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from pgcluster import start_cluster

    root.chmod(0o755)  # PostgreSQL's own user must reach the cluster's folder inside
    folder = root / "pg"
    folder.mkdir()
    cluster = start_cluster(folder, durable=True)
    os.environ["STEPLINE_BENCH_PG"] = cluster.url("postgres")
    os.environ["STEPLINE_BENCH_PG_DATA"] = cluster.data
    version = subprocess.run(
        [f"{cluster.bindir}/postgres", "--version"], capture_output=True, text=True
    ).stdout.split()[2]  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    print(f"PostgreSQL {version} (durable) on port {cluster.port}", file=sys.stderr, flush=True)
    return _Cluster(cluster, version)


def _stop_pg(found: _Cluster) -> None:
    from pgcluster import stop_cluster

    stop_cluster(found.cluster)
    os.environ.pop("STEPLINE_BENCH_PG", None)
    os.environ.pop("STEPLINE_BENCH_PG_DATA", None)


def _notes(results: Results) -> list[str]:
    """Details under the table: derived figures, n/a reasons and errors."""
    notes: list[str] = []

    def get(workload: str, system: str) -> dict[str, Any]:
        return results.get(workload, {}).get(system) or {}

    per_step = get("per_step", "stepline")
    if "ratio_to_floor" in per_step:
        notes.append(
            f"per-step overhead = {per_step['ratio_to_floor']:.2f}x one durable commit timed "
            f"alongside ({per_step['floor_ms']:.3f} ms; {per_step['transactions_per_run']:g} "
            f"transactions per {per_step['steps']}-step run; runs {per_step['ms_per_step_min']:.3f}"
            f"-{per_step['ms_per_step_max']:.3f} ms/step)"
        )
    parts = per_step.get("breakdown") or {}
    if "wall_ms" in parts:
        notes.append(
            f"per-step breakdown (one instrumented run): {parts['wall_ms']:.3f} ms = "
            f"transaction {parts['transaction_ms']:.3f} (BEGIN, SQL, COMMIT+fsync) + writer "
            f"hand-off {parts['writer_hop_ms']:.3f} (its queue, its thread or the loop's commit) "
            f"+ executor/asyncio {parts['engine_ms']:.3f}"
        )
    if "cpu_ms_per_step" in per_step:
        notes.append(
            f"CPU per step (median of the runs): this process {per_step['cpu_ms_per_step']:.3f} "
            f"ms, the PostgreSQL server {per_step['server_cpu_ms_per_step']:.3f} ms (0: SQLite)"
        )
    floor = get("floor", "stepline")
    if "commit_ms" in floor:
        notes.append(
            f"floor: {floor['commits']} commits (WAL, synchronous=FULL): median "
            f"{floor['commit_p50_ms']:.3f} ms, mean {floor['commit_ms']:.3f} ms, p99 "
            f"{floor['commit_p99_ms']:.3f} ms"
        )
    dfloor = get("floor", "dbos")
    if "commit_ms" in dfloor:
        notes.append(
            f"DBOS floor column: {dfloor.get('note', '')}: median "
            f"{dfloor['commit_p50_ms']:.3f} ms, mean {dfloor['commit_ms']:.3f} ms"
        )
    tp = get("throughput", "stepline")
    if "transactions" in tp:
        notes.append(
            f"throughput: {tp['jobs']} write jobs in {tp['transactions']} transactions "
            f"({tp['fsyncs_per_run']:.3f} fsyncs per run); worker concurrency "
            f"{tp['concurrency']}; {tp['wall_s']:.2f} s wall"
        )
    waits = get("waits", "stepline")
    if "match_store_resolved" in waits:
        notes.append(
            f"waits: {waits['waits']:,} pending waits set up in {waits['setup_s']:.1f} s; the "
            f"store-only matching batches resolved {waits['match_store_resolved']} of "
            f"{waits['matched_events']} waits; matching batches (whole / store only, "
            f"alternated): {waits.get('match_rounds_us')} / {waits.get('match_store_rounds_us')} "
            f"µs per event, the whole batches' checkpoints "
            f"{waits.get('match_checkpoint_rounds_us')} µs per event; full garbage collections in "
            f"the whole batches: "
            f"{waits.get('match_full_collections')}; CPU of the whole batches [writer, event "
            f"loop]: {waits.get('match_cpu_us')} µs per event"
        )
    rec = get("recovery", "stepline")
    if "same_id_from_kill_s" in rec:
        notes.append(
            f"recovery: same id {rec['same_id_from_kill_s']:.2f} s from the kill including "
            f"process start; lease TTL {rec['lease_ttl_s']:g} s"
        )
    flow = get("flow", "stepline")
    if "none_us" in flow:
        from bench.flow import OPTIONS

        notes.append(
            f"flow: {flow['keys']:,} events with distinct keys per option, batches of "
            f"{flow['batch']:,}, no worker; median of {flow['rounds']} round(s); one more batch "
            "split into plan (event loop) + store ingest (in the transaction) + commit/hand-off:"
        )
        for option in OPTIONS:
            if f"{option}_plan_us" not in flow:
                continue
            rounds = ", ".join(f"{v:.1f}" for v in flow.get(f"{option}_rounds_us", []))
            notes.append(
                f"  {option:<13} plan {flow[f'{option}_plan_us']:5.1f} + store "
                f"{flow[f'{option}_store_us']:5.1f} + commit {flow[f'{option}_commit_us']:5.1f}"
                f" = {flow[f'{option}_split_us']:5.1f} µs; rounds {rounds} µs; "
                f"{flow.get(f'{option}_runs', 0):,} runs, "
                f"{flow.get(f'{option}_deferrals', 0):,} deferrals, "
                f"{flow.get(f'{option}_skips', 0):,} skips, "
                f"{flow.get(f'{option}_matchers', 0):,} matchers"
            )
    cancel = get("cancel_on", "stepline")
    if "match_us" in cancel:
        notes.append(
            f"cancel_on: {cancel['runs']:,} cancellable runs ({cancel['queued_before']:,} "
            f"QUEUED), batches of {cancel['events']:,}; the matching batches cancelled "
            f"{cancel['cancelled']:,} runs and emitted {cancel['cancelled_events']:,} "
            f"inngest/function.cancelled; SLEEPING: {cancel.get('sleeping_setup_s', 0):.1f} s "
            f"to set up, {cancel.get('sleeping_cancelled', 0):,} runs cancelled; matching "
            f"batches (whole / store only, alternated): {cancel.get('match_rounds_us')} / "
            f"{cancel.get('match_store_rounds_us')} µs per event (SLEEPING: "
            f"{cancel.get('sleeping_match_rounds_us')} / "
            f"{cancel.get('sleeping_match_store_rounds_us')})"
        )
    scale = get("scale", "stepline")
    if "create_s" in scale:
        statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(scale.get("statuses", {}).items()))
        notes.append(
            f"scale: {scale['runs']:,} runs (+1,000 warm-up) suspended in "
            f"{scale['create_s']:.0f} s ({statuses}); worker concurrency "
            f"{scale.get('concurrency')}; wakers all asleep before the window: "
            f"{scale.get('wakers_asleep_before_window')}; lateness min "
            f"{scale.get('late_min_ms', math.nan):.1f} ms, max "
            f"{scale.get('late_max_ms', math.nan):.1f} ms; of which until the lease: p50 "
            f"{scale.get('late_until_leased_p50_ms', math.nan):.1f} ms, p99 "
            f"{scale.get('late_until_leased_p99_ms', math.nan):.1f} ms; "
            f"{scale.get('wake_transactions', 0):,} write transactions while waking "
            f"({scale.get('wake_jobs_per_transaction', 0):.1f} jobs each); RSS after the wake "
            "window "
            f"{scale.get('rss_end_mb', math.nan):.1f} MB; database at the end "
            f"{scale.get('db_end_mb', math.nan):,.1f} MB"
        )
    for workload, systems in results.items():
        for system, figures in systems.items():
            if "error" in figures:
                notes.append(f"{workload}/{system}: ERROR {figures['error']}")
            for key, value in figures.items():
                if key == "na" or key.endswith("_na"):
                    notes.append(f"{workload}/{system}: n/a: {value}")
    return notes


if __name__ == "__main__":
    sys.exit(main())
