"""Statements and round trips per run on PostgreSQL, by store verb (issue 8's throughput row).

``python -m bench.pg_statements [--runs N] [--url URL]``: the throughput workload (N runs of
3 steps, one process, sender and worker) on a fresh database, with psycopg's ``execute``,
``executemany`` and its transaction commands (``BEGIN``, ``SAVEPOINT``, ``RELEASE``, ``COMMIT``)
counted, each under the store verb (``PostgresTx`` method, or the store read) that issued it.
Without ``--url`` it starts a throwaway cluster (``tests/pgcluster.py``, fsync off: only counts
and CPU are measured). Also printed: the CPU time this process and the server used per run
(``--no-count``: without the counting, which costs CPU itself). A round trip is one statement
sent and its result awaited; ``executemany``'s and a pipeline's statements share theirs
(counted once, at their sync), as do those of a round trip of the store's own pipeline
(``store/postgres/_pipeline.send_all``). Statements queued by the store are counted under the
verb that sends them.

This is a measurement tool: it patches psycopg in its own process only.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Sizes
from bench.pg_procs import CpuMeter

_state = threading.local()
statements: Counter[tuple[str, str]] = Counter()  # (verb, statement kind) -> count
round_trips: Counter[str] = Counter()  # verb -> round trips
calls: Counter[str] = Counter()  # verb -> calls
cpu: dict[str, float] = {}  # CPU seconds of this process and of the server during the workload


def _verb() -> str:
    return getattr(_state, "verb", None) or "(transaction)"


def _kind(query: Any) -> str:
    text = query if isinstance(query, str) else bytes(query).decode(errors="replace")
    words = text.split()
    if not words:
        return "?"
    head = words[0].upper()
    if head in ("SELECT", "WITH") and "pg_advisory" in text:
        return "advisory lock"
    if head == "INSERT" and len(words) > 2:
        return f"INSERT {words[2]}"
    if head == "UPDATE" and len(words) > 1:
        return f"UPDATE {words[1]}"
    if head == "DELETE" and len(words) > 2:
        return f"DELETE {words[2]}"
    if head == "SELECT" and "FROM" in (w.upper() for w in words):
        upper = [w.upper() for w in words]
        return f"SELECT {words[upper.index('FROM') + 1]}"
    return head


def _count(kind: str, trips: int = 1) -> None:
    verb = _verb()
    statements[(verb, kind)] += 1
    round_trips[verb] += trips


def install() -> None:
    """Count every statement psycopg sends in this process, by store verb."""
    import psycopg
    from psycopg import Connection, Cursor

    from stepline.store.postgres import _pipeline
    from stepline.store.postgres.store import PostgresStore
    from stepline.store.postgres.tx import PostgresTx

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        in_pipeline = self.connection._pipeline is not None
        _count(_kind(query), 0 if in_pipeline else 1)
        return execute.original(self, query, *args, **kwargs)  # type: ignore[attr-defined]

    def executemany(self: Any, query: Any, params: Any, *args: Any, **kwargs: Any) -> Any:
        rows = list(params)
        verb = _verb()
        statements[(verb, _kind(query))] += len(rows)
        if self.connection._pipeline is None:
            round_trips[verb] += 1
        return executemany.original(self, query, rows, *args, **kwargs)  # type: ignore[attr-defined]

    def exec_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        _count(_kind(command), 0 if self._pipeline is not None else 1)
        return exec_command.original(self, command, *args, **kwargs)  # type: ignore[attr-defined]

    def sync(self: Any) -> Any:
        round_trips[_verb()] += 1
        return sync.original(self)  # type: ignore[attr-defined]

    def pipeline_exit(self: Any, *args: Any) -> Any:  # the sync that ends a pipeline block
        if self.level == 1:
            round_trips[_verb()] += 1
        return pipeline_exit.original(self, *args)  # type: ignore[attr-defined]

    def send_all(conn: Any, sent: Any) -> Any:  # store/postgres/_pipeline: one round trip
        for query, _ in sent:
            _count(_kind(query), 0)
        round_trips[_verb()] += 1
        return send_all.original(conn, sent)  # type: ignore[attr-defined]

    send_all.original = _pipeline.send_all  # type: ignore[attr-defined]
    _pipeline.send_all = send_all  # type: ignore[assignment]
    execute.original = Cursor.execute  # type: ignore[attr-defined]
    executemany.original = Cursor.executemany  # type: ignore[attr-defined]
    exec_command.original = Connection._exec_command  # type: ignore[attr-defined]
    sync.original = psycopg.Pipeline.sync  # type: ignore[attr-defined]
    pipeline_exit.original = psycopg.Pipeline.__exit__  # type: ignore[attr-defined]
    Cursor.execute = execute  # type: ignore[method-assign,assignment]
    Cursor.executemany = executemany  # type: ignore[method-assign,assignment]
    Connection._exec_command = exec_command  # type: ignore[method-assign,assignment]
    psycopg.Pipeline.sync = sync  # type: ignore[method-assign,assignment]
    psycopg.Pipeline.__exit__ = pipeline_exit  # type: ignore[method-assign,assignment]

    def labelled(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = getattr(_state, "verb", None)
            if outer is not None:  # a verb calling another: counted under the outer one
                return method(*args, **kwargs)
            _state.verb = name
            calls[name] += 1
            try:
                return method(*args, **kwargs)
            finally:
                _state.verb = None

        return wrapper

    for cls, prefix in ((PostgresTx, "tx."), (PostgresStore, "store.")):
        for name, method in list(vars(cls).items()):
            if name.startswith("_") or not callable(method) or name in ("transaction",):
                continue
            setattr(cls, name, labelled(prefix + name, method))


async def _workload(url: str, runs: int) -> float:
    from bench.throughput import FUNCTION_ID, STEPS
    from stepline import App, Event, TriggerEvent

    app = App("bench", db=url)
    done = 0

    async def noop(i: int) -> int:
        return i

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent("bench/throughput"))
    async def three_steps(ctx: Any) -> int:
        nonlocal done
        for i in range(STEPS):
            await ctx.step.run(f"s{i}", noop, i)
        done += 1
        return STEPS

    try:
        async with app.worker(concurrency=Sizes().throughput_concurrency) as worker:
            await worker.ready.wait()
            statements.clear()
            round_trips.clear()
            calls.clear()
            meter = CpuMeter([os.getpid()])
            t0 = time.perf_counter()
            await app.send_async(
                [Event(name="bench/throughput", data={"i": i}) for i in range(runs)]
            )
            deadline = time.monotonic() + 300
            while done < runs and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - t0
            cpu.update(meter.read())
            snapshot = (Counter(statements), Counter(round_trips), Counter(calls))
    finally:
        app.close()
    statements.clear()
    round_trips.clear()
    calls.clear()
    statements.update(snapshot[0])
    round_trips.update(snapshot[1])
    calls.update(snapshot[2])
    if done < runs:
        raise TimeoutError(f"{done} of {runs} runs completed")
    return elapsed


def report(runs: int, elapsed: float) -> str:
    by_verb: dict[str, Counter[str]] = {}
    for (verb, kind), n in statements.items():
        by_verb.setdefault(verb, Counter())[kind] += n
    total = sum(statements.values())
    trips = sum(round_trips.values())
    per_run = {k: v / runs * 1000 for k, v in cpu.items()}
    lines = [
        f"{runs} runs x 3 steps in {elapsed:.2f} s ({runs / elapsed:.0f} runs/s); CPU per run: "
        f"this process {per_run.get('workers_cpu_s', 0):.2f} ms, server "
        f"{per_run.get('server_cpu_s', 0):.2f} ms",
    ]
    if not statements:
        return lines[0]
    lines += [
        f"{total / runs:.1f} statements and {trips / runs:.1f} round trips per run",
        "",
        f"{'verb':<32} {'calls/run':>9} {'stmts/run':>9} {'trips/run':>9}  statements (per run)",
    ]
    order = sorted(by_verb, key=lambda v: -sum(by_verb[v].values()))
    for verb in order:
        kinds = by_verb[verb]
        detail = ", ".join(f"{k} {n / runs:.2f}" for k, n in kinds.most_common())
        lines.append(
            f"{verb:<32} {calls[verb] / runs:>9.2f} {sum(kinds.values()) / runs:>9.2f} "
            f"{round_trips[verb] / runs:>9.2f}  {detail}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_statements")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--url", help="a fresh (empty) PostgreSQL database to use")
    parser.add_argument(
        "--no-count", action="store_true", help="time and CPU only (counting costs CPU)"
    )
    args = parser.parse_args()
    if not args.no_count:
        install()
    if args.url:
        elapsed = asyncio.run(_workload(args.url, args.runs))
    else:
        sys.path.insert(0, str(REPO_ROOT / "tests"))
        from pgcluster import start_cluster, stop_cluster

        with tempfile.TemporaryDirectory(prefix="stepline-pgstat-") as folder:
            cluster = start_cluster(Path(folder), durable=False)
            os.environ["STEPLINE_BENCH_PG_DATA"] = cluster.data
            try:
                elapsed = asyncio.run(_workload(cluster.url("postgres"), args.runs))
            finally:
                stop_cluster(cluster)
    print(report(args.runs, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
