"""Admission cost of each flow-control option: µs per event with 10,000 distinct key values.

For each option (and a baseline function with none) a fresh app on a fresh SQLite file has one
function triggered by ``bench/flow`` with that option, keyed on ``event.data.key`` where the
option takes a key. No worker runs, so only admission is measured: validation, planning (key
expressions evaluated), the store's flow-control reads and writes (idempotency keys, GCRA
buckets, singleton lookups, deferral rows, cancel matchers) and one durable commit per batch.

- ``<option>_us``: 10,000 events, each with its own key value, sent with ``send_async`` in
  batches of 1,000 (after a warm-up batch of 100 on other keys): total time / 10,000. The median
  of ``ROUNDS`` rounds (1 with ``--quick``); every round makes fresh databases and uses key
  values of its own, and options interleave within a round, so a load spike hits one option of
  one round, not one option every time.
- ``<option>_plan_us`` / ``<option>_store_us`` / ``<option>_commit_us``: one more batch of 1,000
  (keys 10,000 onwards, i.e. at 10,000 keys) taken apart: planning in the event loop
  (``engine.plan``: triggers, key expressions), the store's ``ingest`` inside the write
  transaction, and the rest of ``writer.write`` (BEGIN, COMMIT + fsync, thread hand-off).
- ``<option>_runs`` / ``_deferrals`` / ``_skips`` / ``_matchers``: what the store holds after
  the 10,000 events (from the median round), to show each option admitted every event (debounce
  and batch_events defer instead: one deferral row per key, no run yet).

``python -m bench.flow --profile OPTION [--keys N]`` prints cProfile tables of that split batch
(the planning on the event loop thread, the store ingest on the writer thread).

DBOS is not measured (see ``DBOS_NA``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.common import Sizes, scratch_root, stepline_db

OPTIONS = (
    "none",
    "idempotency",
    "rate_limit",
    "throttle",
    "concurrency",
    "singleton",
    "debounce",
    "batch_events",
    "priority",
    "cancel_on",
)
EVENT = "bench/flow"
KEY = "event.data.key"
BATCH = 1000
WARMUP = 100
ROUNDS = 3
DBOS_NA = (
    "not compared: DBOS's flow control (queue concurrency and limiter, partitioned queues, "
    "deduplication_id, priority, Debouncer) is chosen by the caller of each enqueue, with no "
    "event ingestion and no key expressions evaluated at admission, and it has no event-matched "
    "cancellation (cancel_workflow takes a workflow id)"
)


def option_kwargs(name: str) -> dict[str, Any]:
    """``@app.function`` keyword arguments for one option (keyed where the option takes a key;
    limits high enough that every event is admitted)."""
    from stepline import (
        BatchEvents,
        CancelOn,
        Concurrency,
        Debounce,
        Priority,
        RateLimit,
        Singleton,
        Throttle,
    )

    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "none": dict,
        "idempotency": lambda: {"idempotency": KEY},
        "rate_limit": lambda: {"rate_limit": RateLimit(limit=100, period="1h", key=KEY)},
        "throttle": lambda: {"throttle": Throttle(limit=100, period="1m", burst=10, key=KEY)},
        "concurrency": lambda: {"concurrency": Concurrency(limit=1, key=KEY)},
        "singleton": lambda: {"singleton": Singleton(key=KEY)},
        "debounce": lambda: {"debounce": Debounce(period="1h", key=KEY)},
        "batch_events": lambda: {"batch_events": BatchEvents(max_size=100, timeout="1h", key=KEY)},
        "priority": lambda: {"priority": Priority(run="event.data.priority")},
        "cancel_on": lambda: {
            "cancel_on": [CancelOn("bench/flow.cancel", if_="event.data.key == async.data.key")]
        },
    }
    return makers[name]()


def make_app(workdir: Path, option: str, tag: str) -> tuple[Any, Path]:
    """A fresh app on a fresh database with one function using ``option``."""
    from stepline import App, TriggerEvent

    url = stepline_db(workdir, f"flow-{option}-{tag}")
    app = App("bench", db=url)

    @app.function(id="admitted", trigger=TriggerEvent(EVENT), **option_kwargs(option))
    async def admitted(ctx: Any) -> None:
        return None

    return app, Path(url.removeprefix("sqlite:///"))


def events(prefix: str, start: int, count: int) -> list[Any]:
    """``count`` events with distinct keys ``<prefix><start>``…; the same payload shape for
    every option (``priority`` reads ``data.priority``, -100…100 s). Every round and every
    warm-up uses its own prefix: key values are never seen twice in a process, so no cache
    keyed by a value (e.g. the matcher cache of ``cancel_on``) is warm for them."""
    from stepline import Event

    return [
        Event(name=EVENT, data={"key": f"{prefix}{i}", "priority": (i % 21 - 10) * 10})
        for i in range(start, start + count)
    ]


def store_counts(path: Path) -> dict[str, int]:
    """Rows the store holds after admission (a separate read-only connection)."""
    tables = {"runs": "runs", "deferrals": "deferrals", "skips": "skips", "matchers": "matchers"}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn, conn:
        return {
            name: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for name, table in tables.items()
        }


def remove_db(path: Path) -> None:
    """Delete a measured database (ten of them per round at full size)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


async def split_batch(
    app: Any, batch: list[Any], profiles: tuple[cProfile.Profile, cProfile.Profile] | None = None
) -> dict[str, float] | None:
    """Send ``batch`` the way ``send_async`` does, timing its parts (seconds): ``plan``
    (validation and planning on the event loop), ``store`` (the store's ``ingest`` and the
    announcement of cancellations as ``send`` makes it, see _announce.py, inside the write
    transaction) and ``total`` (plan + the whole ``writer.write``). None if
    the engine's internals moved."""
    engine = app.engine
    try:
        t0 = time.perf_counter()
        if profiles:
            profiles[0].enable()
        now = engine.clock.now()
        items = [engine.plan(engine.event_record(e, now)) for e in batch]
        if profiles:
            profiles[0].disable()
        t1 = time.perf_counter()
        box: dict[str, float] = {}

        def job(tx: Any) -> Any:
            if profiles:
                profiles[1].enable()
            s0 = time.perf_counter()
            results = tx.ingest(items, now, engine.wait_matches)
            engine.announce_cancellations(tx, results, now, report=False)  # as send_async
            box["store"] = time.perf_counter() - s0
            if profiles:
                profiles[1].disable()
            return results

        await engine.writer.write(job)
        engine.wake_workers()
        t2 = time.perf_counter()
    except (AttributeError, TypeError):
        return None
    return {"plan": t1 - t0, "store": box["store"], "total": t2 - t0}


async def measure(
    workdir: Path, option: str, keys: int, tag: str
) -> tuple[float, list[float], dict[str, int], dict[str, float] | None]:
    """Seconds to admit ``keys`` events (batches of 1,000 via ``send_async``), the per-batch
    seconds, the store's counts afterwards, and the split of one more batch."""
    app, path = make_app(workdir, option, tag)
    try:
        await app.send_async(events(f"{tag}w", 0, WARMUP))  # warm-up: other keys
        base = store_counts(path)
        per_batch: list[float] = []
        for start in range(0, keys, BATCH):
            batch = events(f"{tag}k", start, min(BATCH, keys - start))
            t0 = time.perf_counter()
            await app.send_async(batch)
            per_batch.append(time.perf_counter() - t0)
        after = store_counts(path)
        counts = {k: after[k] - base[k] for k in after}
        split = await split_batch(app, events(f"{tag}k", keys, BATCH))
    finally:
        app.close()
    remove_db(path)
    return sum(per_batch), per_batch, counts, split


async def _stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    keys = sizes.waits  # 10,000 (1,000 with --quick)
    rounds = 1 if keys < 10_000 else ROUNDS
    result: dict[str, Any] = {"keys": keys, "batch": BATCH, "rounds": rounds}
    await measure(workdir, "none", BATCH, "warmup")  # the process's first database, discarded
    measured: dict[str, list[tuple[float, list[float], dict[str, int], Any]]] = {}
    for r in range(rounds):
        for option in OPTIONS:
            total, per_batch, counts, split = await measure(workdir, option, keys, f"r{r}")
            measured.setdefault(option, []).append((total / keys * 1e6, per_batch, counts, split))
    chosen: dict[str, float] = {}
    for option, runs in measured.items():
        result[f"{option}_rounds_us"] = [round(run[0], 2) for run in runs]
        us, per_batch, counts, split = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
        chosen[option] = us
        result[f"{option}_us"] = us
        result[f"{option}_batch_max_us"] = max(per_batch) / BATCH * 1e6
        for name, value in counts.items():
            result[f"{option}_{name}"] = value
        if split is not None:
            result[f"{option}_plan_us"] = split["plan"] / BATCH * 1e6
            result[f"{option}_store_us"] = split["store"] / BATCH * 1e6
            rest = split["total"] - split["plan"] - split["store"]
            result[f"{option}_commit_us"] = rest / BATCH * 1e6
            result[f"{option}_split_us"] = split["total"] / BATCH * 1e6
    baseline = chosen["none"]
    for option in OPTIONS[1:]:
        result[f"{option}_overhead_us"] = chosen[option] - baseline
        result[f"{option}_overhead_pct"] = (chosen[option] / baseline - 1) * 100
    return result


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_stepline(workdir, sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": DBOS_NA}


# -- profiling (python -m bench.flow --profile OPTION) --------------------------------------------
def print_profiles(profiles: tuple[cProfile.Profile, cProfile.Profile], top: int) -> None:
    titles = ("planning (event loop)", "store ingest (writer)")
    for title, profile in zip(titles, profiles, strict=True):
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        print(f"===== {title} =====")
        print(out.getvalue())


async def _profile(workdir: Path, option: str, keys: int, top: int) -> None:
    app, _ = make_app(workdir, option, "profile")
    try:
        await app.send_async(events("w", 0, WARMUP))
        for start in range(0, keys, BATCH):
            await app.send_async(events("k", start, min(BATCH, keys - start)))
        profiles = (cProfile.Profile(), cProfile.Profile())
        split = await split_batch(app, events("k", keys, BATCH), profiles)
    finally:
        app.close()
    if split is not None:
        print(
            f"{option}: one batch of {BATCH} at {keys:,} keys: "
            + ", ".join(f"{k} {v / BATCH * 1e6:.1f} µs/event" for k, v in split.items())
            + " (under cProfile)"
        )
    print_profiles(profiles, top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flow")
    parser.add_argument("--profile", choices=OPTIONS, required=True)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    root = scratch_root()
    try:
        asyncio.run(_profile(root, args.profile, args.keys, args.top))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
