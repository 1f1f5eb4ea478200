"""Cancel-on matching cost: event ingestion with 10,000 cancellable runs pending.

One function, triggered by ``order/created``, with
``cancel_on=[CancelOn("order/cancelled", if_="event.data.orderId == async.data.orderId")]``,
whose body sleeps a day in a step. 10,000 ``order/created`` events (distinct orderIds, batches of
1,000) create 10,000 runs, each with its cancel matcher (stored with the run at creation and
indexed on ``data.orderId`` with the substituted value, like the waits). Then, with no worker
running, in µs per incoming event (batches of 1,000, one ``send_async`` each):

- ``nonmatch_us``: ``order/cancelled`` events whose orderId no run has (index lookup only).
- ``match_us``: ``order/cancelled`` events each matching one pending run: the run is cancelled
  (queue item, waits and matchers removed, RUN_CANCELLED history) and its
  ``inngest/function.finished`` / ``.cancelled`` stored in the same transaction (nothing
  listening to them: see ``engine/_announce.py``; on SQLite since schema 27 one row standing
  for both, their data made when they are read: ``store/sqlite/_derived.py``). The mean of
  ``MATCH_ROUNDS`` batches, the first matching batch included.
- ``announce_later_us``: then any announcements the matching batches left owed (a Stepline of
  the twelfth stop owed them on SQLite: written later by a worker's housekeeping,
  ``Engine.announce_owed``, 1,000 runs a transaction), per cancelled run; None when none is
  owed (this version owes none).
- ``match_total_us``: ``match_us`` plus ``announce_later_us`` (each cancelling event cancels
  one run): what a cancelling event costs the writer in all, now or later.
- ``nonmatch_store_us`` / ``match_store_us``: the same, the store's ``ingest`` (and the
  announcement of the cancellations) alone, timed inside the write transaction; the matching
  one a batch sent after each ``match_us`` batch (the rounds alternate), the mean of those.
- ``baseline_us``: events of a name nothing listens to (ingestion itself).
- ``create_us``: the 10,000 ``order/created`` events (each creates a run and its matcher).
- ``cold_match_us``: matching events again, after emptying the process's matcher cache
  (``load_match``), as in a process that did not create the runs or has restarted since: a
  matcher not cached is decided by its stored text (``index_decides``: nothing parsed when it
  is the one equality the index compared). The other matching figures run in the process that
  created the runs, whose cache (65,536 entries) still holds every matcher.

Twice: with the runs QUEUED (no worker ever ran: the matcher exists from the run's creation),
and, on a second database, with the runs SLEEPING inside their step (a worker ran them into the
sleep, then stopped; its garbage collected): ``sleeping_nonmatch_us``, ``sleeping_match_us``,
… . Each database starts the measurements with 10,000 runs pending; the matching batches
cancel 6,000 of them (7,000 on the first, with the cold-cache batch).

``python -m bench.cancel_on --profile [--runs N]`` prints cProfile tables of one matching batch.

DBOS has no equivalent: a DBOS workflow is cancelled by id (``DBOS.cancel_workflow``); nothing
matches incoming events against pending workflows.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.common import Sizes, count_runs, scratch_root, stepline_db, worker
from bench.flow import print_profiles, split_batch

FUNCTION_ID = "cancellable"
CREATED = "order/created"
CANCELLED = "order/cancelled"
BATCH = 1000
MATCH_ROUNDS = 3  # whole batches and store-only batches, alternated
DBOS_NA = "DBOS has no event-matched cancellation (cancel_workflow takes a workflow id)"


def make_app(workdir: Path, name: str) -> tuple[Any, Path]:
    from stepline import App, CancelOn, TriggerEvent

    url = stepline_db(workdir, name)
    app = App("bench", db=url)

    @app.function(
        id=FUNCTION_ID,
        trigger=TriggerEvent(CREATED),
        cancel_on=[CancelOn(CANCELLED, if_="event.data.orderId == async.data.orderId")],
    )
    async def cancellable(ctx: Any) -> str:
        await ctx.step.sleep("nap", "1d")
        return "woke"

    return app, Path(url.removeprefix("sqlite:///"))


def orders(name: str, prefix: str, start: int, count: int) -> list[Any]:
    from stepline import Event

    return [Event(name=name, data={"orderId": f"{prefix}{i}"}) for i in range(start, start + count)]


def store_counts(path: Path) -> dict[str, int]:
    """Cancelled runs, pending matchers and function.cancelled events in the store."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn, conn:

        def one(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        counts = {
            "cancelled_runs": one("SELECT count(*) FROM runs WHERE status = 'CANCELLED'"),
            "matchers": one("SELECT count(*) FROM matchers"),
            "cancelled_events": one(
                "SELECT count(*) FROM events WHERE name = 'inngest/function.cancelled'"
            ),
        }
        try:  # announcements owed, to be written later (schema 24)
            counts["owed"] = one("SELECT count(*) FROM owed_announcements")
        except sqlite3.OperationalError:  # a Stepline before it: none
            pass
        try:  # a row a run stands for its two announcements (schema 27; the bench's runs are
            # started by order/created: each row stands for one function.cancelled)
            counts["cancelled_events"] += one("SELECT count(*) FROM cancel_announcements")
        except sqlite3.OperationalError:  # a Stepline before it: none
            pass
        return counts


async def create_runs(app: Any, n: int) -> float:
    """Send ``n`` ``order/created`` events (orderIds o0…) in batches; seconds taken."""
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        await app.send_async(orders(CREATED, "o", start, min(BATCH, n - start)))
    return time.perf_counter() - t0


async def timed_send(app: Any, batch: list[Any]) -> float:
    t0 = time.perf_counter()
    await app.send_async(batch)
    return (time.perf_counter() - t0) / len(batch) * 1e6


async def measure(app: Any, n: int, m: int, prefix: str, result: dict[str, Any]) -> None:
    """The measurements on ``n`` pending runs (orderIds o0…o<n-1>), ``m`` events a batch; the
    matching batches cancel o0…o<2 MATCH_ROUNDS m - 1> (and m more with the cold-cache
    batch)."""
    noise = orders("bench/unrelated", "x", 0, m)
    result[f"{prefix}baseline_us"] = await timed_send(app, noise)
    result[f"{prefix}nonmatch_us"] = await timed_send(app, orders(CANCELLED, "x", 0, m))
    split = await split_batch(app, orders(CANCELLED, "y", 0, m))
    if split is not None:
        result[f"{prefix}nonmatch_store_us"] = split["store"] / m * 1e6
        result[f"{prefix}nonmatch_plan_us"] = split["plan"] / m * 1e6
    whole: list[float] = []
    store: list[float] = []
    plan: list[float] = []
    for r in range(MATCH_ROUNDS):
        whole.append(await timed_send(app, orders(CANCELLED, "o", 2 * r * m, m)))
        split = await split_batch(app, orders(CANCELLED, "o", (2 * r + 1) * m, m))
        if split is not None:
            store.append(split["store"] / m * 1e6)
            plan.append(split["plan"] / m * 1e6)
    result[f"{prefix}match_us"] = sum(whole) / len(whole)
    result[f"{prefix}match_rounds_us"] = [round(us, 1) for us in whole]
    if store:
        result[f"{prefix}match_store_us"] = sum(store) / len(store)
        result[f"{prefix}match_store_rounds_us"] = [round(us, 1) for us in store]
        result[f"{prefix}match_plan_us"] = sum(plan) / len(plan)
    if not prefix and clear_matcher_cache():
        start = 2 * MATCH_ROUNDS * m
        result["cold_match_us"] = await timed_send(app, orders(CANCELLED, "o", start, m))


async def write_owed(app: Any, path: Path) -> float | None:
    """Write the announcements the matching batches owed (SQLite: a worker's housekeeping
    writes them after the cancellations, ``Engine.announce_owed``) as a worker does, in
    transactions of up to 1,000 runs; µs per cancelled run (None: none owed)."""
    runs = store_counts(path).get("owed", 0)
    engine = app.engine
    if not runs:
        return None
    t0 = time.perf_counter()
    while (await engine.writer.write(lambda tx: engine.announce_owed(tx, engine.clock.now())))[1]:
        pass
    return (time.perf_counter() - t0) / runs * 1e6


def clear_matcher_cache() -> bool:
    """Empty the process's cache of loaded matchers (as in a process that did not create the
    runs, or after a restart); False if it moved."""
    try:
        from stepline.expressions import forget_matchers

        forget_matchers()
    except (ImportError, AttributeError):
        return False
    return True


async def _stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    n, m = sizes.waits, min(BATCH, sizes.waits // (2 * MATCH_ROUNDS + 1))
    result: dict[str, Any] = {"runs": n, "events": m}

    # Runs QUEUED: no worker ever runs; the matchers exist from the runs' creation.
    app, path = make_app(workdir, "cancel-queued")
    try:
        await app.send_async(orders(CREATED, "w", 0, 100))  # warm-up
        await app.send_async(orders(CANCELLED, "w", 0, 100))
        base = store_counts(path)
        result["create_us"] = await create_runs(app, n) / n * 1e6
        # the warm-up's runs were cancelled by its own events: n QUEUED runs remain
        result["queued_before"] = await count_runs(app, FUNCTION_ID, "QUEUED", n + 1000)
        await measure(app, n, m, "", result)
        result["announce_later_us"] = await write_owed(app, path)
        result["match_total_us"] = result["match_us"] + (result["announce_later_us"] or 0.0)
        after = store_counts(path)
        result["cancelled"] = after["cancelled_runs"] - base["cancelled_runs"]
        result["cancelled_events"] = after["cancelled_events"] - base["cancelled_events"]
        result["matchers_left"] = after["matchers"]
    finally:
        app.close()

    # Runs SLEEPING: a worker runs them into their sleep step, then stops.
    app, path = make_app(workdir, "cancel-sleeping")
    try:
        t0 = time.perf_counter()
        async with worker(app, concurrency=200):
            await create_runs(app, n)
            deadline = time.monotonic() + 300
            while await count_runs(app, FUNCTION_ID, "SLEEPING", n + 1) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{n} runs were not all SLEEPING after 300 s")
                await asyncio.sleep(0.25)
        result["sleeping_setup_s"] = time.perf_counter() - t0
        await asyncio.sleep(0.1)
        # the worker's garbage collected before the measurements: else a full collection of
        # the setup's objects lands in a measured batch (callgrind: +9.2k instructions an event
        # over three batches, on the event loop; bench/README.md, cancel-on, fourteenth stop)
        gc.collect()
        base = store_counts(path)
        await measure(app, n, m, "sleeping_", result)
        result["sleeping_announce_later_us"] = await write_owed(app, path)
        later = result["sleeping_announce_later_us"] or 0.0
        result["sleeping_match_total_us"] = result["sleeping_match_us"] + later
        after = store_counts(path)
        result["sleeping_cancelled"] = after["cancelled_runs"] - base["cancelled_runs"]
        result["sleeping_cancelled_events"] = after["cancelled_events"] - base["cancelled_events"]
    finally:
        app.close()
    return result


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_stepline(workdir, sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": DBOS_NA}


# -- profiling (python -m bench.cancel_on --profile) ----------------------------------------------
async def _profile(workdir: Path, n: int, matching: bool, top: int) -> None:
    app, _ = make_app(workdir, "cancel-profile")
    try:
        await app.send_async(orders(CREATED, "w", 0, 100))
        await app.send_async(orders(CANCELLED, "w", 0, 100))
        await create_runs(app, n)
        profiles = (cProfile.Profile(), cProfile.Profile())
        prefix = "o" if matching else "x"
        split = await split_batch(app, orders(CANCELLED, prefix, 0, BATCH), profiles)
    finally:
        app.close()
    if split is not None:
        kind = "matching" if matching else "non-matching"
        print(
            f"{kind} batch of {BATCH} with {n:,} QUEUED cancellable runs: "
            + ", ".join(f"{k} {v / BATCH * 1e6:.1f} µs/event" for k, v in split.items())
            + " (under cProfile)"
        )
    print_profiles(profiles, top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cancel_on")
    parser.add_argument("--profile", action="store_true", required=True)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--non-matching", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    root = scratch_root()
    try:
        asyncio.run(_profile(root, args.runs, not args.non_matching, args.top))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
