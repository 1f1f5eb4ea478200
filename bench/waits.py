"""Wait-matching cost: event ingestion with 10,000 pending waits.

Setup: 10,000 runs, each waiting for ``payment/received`` with
``if_="async.data.orderId == event.data.orderId"`` (a distinct orderId each), until the store shows
all 10,000 WAITING; then the worker is stopped so ingestion is measured alone. Figures, in µs per
incoming event:

- ``nonmatch_us``: 1,000 ``payment/received`` events that match no wait, in one ``send_async``
  (validation, planning, index lookup, one durable commit shared by the batch).
- ``match_us``: batches of 1,000 events each matching one wait, each batch in one
  ``send_async`` (each event also resolves its wait: memo, history, wake-up), each with the
  checkpoint of the WAL pages it wrote (``checkpoint_us``, its own share, at once instead of
  whenever the WAL passes the size): the mean of ``MATCH_ROUNDS`` batches, the first matching
  batch after the setup (the slowest: the first to touch those runs) included, like any
  garbage collection that lands in one. ``match_send_us``: the same without the checkpoint
  (the ``send_async`` alone; ``match_rounds_us`` per batch).
- ``nonmatch_store_us`` / ``match_store_us``: the store's ``ingest`` verb alone, timed inside the
  write transaction (no validation, no commit); the matching one a batch sent after each
  ``match_us`` batch (the rounds alternate), the mean of those.
- ``match_full_collections``: the full (generation-2) garbage collections that ran during each
  whole matching batch: one walks every object of the process (tens of ms here), so a batch it
  lands in is slower by that much; counted to tell such a batch from the code's own cost.
- ``purge_us``: per resolved wait, deleting the rows of the waits the matching batches resolved
  (the SQLite store keeps a resolved wait's row, its step completed, and the worker's housekeeping
  deletes such rows in batches: ``purge_resolved_waits``), timed inside one write transaction
  (no commit); absent for a store that deletes a wait as it resolves it.
- ``checkpoint_us``: per event, copying the WAL pages a whole matching batch wrote into the
  database file and syncing it (SQLite; a TRUNCATE checkpoint timed after each whole batch),
  part of ``match_us``. Every timed batch starts with the WAL checkpointed: before, the store's
  checkpoint (a thread copying the WAL past 1,000 pages, then the writer's next commit
  finishing it, on the writer's path) landed in whichever timed batches the setup's and the
  earlier batches' pages took the WAL past the size (at times two of the three, at times
  none), each paying a copy of a thousand pages or more and a sync of the database file: one
  reason the same code read 35.9 and 54.0 µs minutes apart. Each batch now pays its own
  pages' checkpoint, no more, no less.
- ``match_cpu_us``: per whole matching batch, the CPU the writer thread and the event loop's
  thread spent on it, per event (Linux): a batch slower in wall time with the same CPU is the
  host's minute (waiting for a core or the disk), not the code.
- ``baseline_us``: 1,000 events of a name nothing listens to (the cost of ingestion itself).
- ``single_us``: non-matching events sent one ``send_async`` at a time (each pays its own
  durable commit).

DBOS has no equivalent: ``DBOS.send`` addresses one workflow id and ``recv`` takes the next
message on a topic; there is no matching of event contents against pending waits to measure.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Sizes, count_runs, stepline_db, worker

FUNCTION_ID = "waiter"
MATCH_ROUNDS = 3  # whole batches and store-only batches, alternated (6,000 of the 10,000 waits)
DBOS_NA = "DBOS has no content-matched waits (send addresses a workflow id)"


async def _store_ingest(app: Any, events: list[Any]) -> tuple[float, int] | None:
    """Seconds the store's ``ingest`` verb takes for ``events`` (inside one write transaction)
    and how many waits it resolved; None if the engine's internals moved."""
    engine = app.engine
    try:
        now = engine.clock.now()
        items = [engine.plan(engine.event_record(e, now)) for e in events]
        box: dict[str, Any] = {}

        def job(tx: Any) -> Any:
            t0 = time.perf_counter()
            results = tx.ingest(items, now, engine.wait_matches)
            box["elapsed"] = time.perf_counter() - t0
            return results

        results = await engine.writer.write(job)
    except (AttributeError, TypeError):
        return None
    resumed = sum(
        len(getattr(r, "resumed_run_ids", None) or getattr(r, "resumed", None) or ())
        for r in results
    )
    return box["elapsed"], resumed


async def _purge(app: Any) -> tuple[float, int] | None:
    """Seconds deleting every resolved wait's row the store kept takes, in the housekeeping's
    batches (inside one write transaction), and how many; None if the store kept none (or the
    engine's internals moved)."""
    try:
        from stepline.engine._housekeeping import WAIT_PURGE_BATCH
    except ImportError:
        return None
    box: dict[str, float] = {}

    def job(tx: Any) -> int:
        t0 = time.perf_counter()
        purged = 0
        while (count := tx.purge_resolved_waits(WAIT_PURGE_BATCH)) > 0:
            purged += count
        box["elapsed"] = time.perf_counter() - t0
        return purged

    try:
        purged = await app.engine.writer.write(job)
    except AttributeError:
        return None
    return (box["elapsed"], purged) if purged else None


async def _timed_send(app: Any, events: list[Any]) -> float:
    t0 = time.perf_counter()
    await app.send_async(events)
    return time.perf_counter() - t0


def _checkpoint(db: str) -> float:
    """Seconds a TRUNCATE checkpoint of the SQLite file ``db`` takes (copying its WAL into the
    database file, then emptying the WAL); 0 for another store. The app is idle meanwhile (no
    worker runs, no write is pending), so nothing holds it back."""
    if not db.startswith("sqlite:///"):
        return 0.0
    t0 = time.perf_counter()
    conn = sqlite3.connect(db.removeprefix("sqlite:///"), timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return time.perf_counter() - t0


def _thread_cpu(names: tuple[str, ...]) -> list[float]:
    """Seconds of CPU each named thread of this process has used so far (0 when unknown)."""
    ids = {t.name: t.native_id for t in threading.enumerate()}
    seconds: list[float] = []
    for name in names:
        try:
            with open(f"/proc/self/task/{ids[name]}/schedstat") as stat:
                seconds.append(int(stat.read().split()[0]) / 1e9)
        except (KeyError, OSError, ValueError):
            seconds.append(0.0)
    return seconds


def _full_collections() -> int:
    """The generation-2 collections the garbage collector has run in this process so far."""
    return int(gc.get_stats()[2]["collections"])


async def _stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from stepline import App, Event, TriggerEvent

    db = stepline_db(workdir, "waits")
    app = App("bench", db=db)

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent("order/created"))
    async def waiter(ctx: Any) -> bool:
        paid = await ctx.step.wait_for_event(
            "payment",
            event="payment/received",
            if_="async.data.orderId == event.data.orderId",
            timeout="1d",
        )
        return paid is not None

    n, m = sizes.waits, sizes.wait_events
    result: dict[str, Any] = {"waits": n, "events": m}
    try:
        t0 = time.perf_counter()
        async with worker(app, concurrency=200):
            for start in range(0, n, 1000):
                batch = [
                    Event(name="order/created", data={"orderId": f"o{i}"})
                    for i in range(start, min(n, start + 1000))
                ]
                await app.send_async(batch)
            deadline = time.monotonic() + 300
            while await count_runs(app, FUNCTION_ID, "WAITING", n + 1) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{n} runs were not all WAITING after 300 s")
                await asyncio.sleep(0.25)
        result["setup_s"] = time.perf_counter() - t0
        await asyncio.sleep(0.1)

        def payments(prefix: str, count: int, offset: int = 0) -> list[Any]:
            return [
                Event(name="payment/received", data={"orderId": f"{prefix}{offset + i}"})
                for i in range(count)
            ]

        noise = [Event(name="bench/unrelated", data={"orderId": f"x{i}"}) for i in range(m)]
        _checkpoint(db)
        result["baseline_us"] = await _timed_send(app, noise) / m * 1e6
        _checkpoint(db)
        result["nonmatch_us"] = await _timed_send(app, payments("x", m)) / m * 1e6
        _checkpoint(db)
        stored = await _store_ingest(app, payments("y", m))
        if stored is not None:
            result["nonmatch_store_us"] = stored[0] / m * 1e6
        single = payments("z", sizes.single_events)
        t0 = time.perf_counter()
        for event in single:
            await app.send_async(event)
        result["single_us"] = (time.perf_counter() - t0) / len(single) * 1e6
        k = min(m, n // (2 * MATCH_ROUNDS))
        whole: list[float] = []
        store: list[float] = []
        full: list[int] = []
        cpu: list[list[float]] = []
        checkpoints: list[float] = []
        threads = ("stepline-writer", threading.current_thread().name)
        resolved = 0
        for r in range(MATCH_ROUNDS):
            _checkpoint(db)
            before, cpu_before = _full_collections(), _thread_cpu(threads)
            whole.append(await _timed_send(app, payments("o", k, offset=2 * r * k)) / k * 1e6)
            full.append(_full_collections() - before)
            spent = zip(_thread_cpu(threads), cpu_before, strict=True)
            cpu.append([round((after - at) / k * 1e6, 1) for after, at in spent])
            checkpoints.append(_checkpoint(db) / k * 1e6)
            stored = await _store_ingest(app, payments("o", k, offset=(2 * r + 1) * k))
            if stored is not None:
                store.append(stored[0] / k * 1e6)
                resolved += stored[1]
        result["match_send_us"] = sum(whole) / len(whole)
        result["match_us"] = result["match_send_us"] + sum(checkpoints) / len(checkpoints)
        result["match_rounds_us"] = [round(us, 1) for us in whole]
        result["match_checkpoint_rounds_us"] = [round(us, 1) for us in checkpoints]
        result["match_full_collections"] = full
        if any(any(spent) for spent in cpu):  # Linux: [writer, event loop] per whole batch
            result["match_cpu_us"] = cpu
        if db.startswith("sqlite:///"):
            result["checkpoint_us"] = sum(checkpoints) / len(checkpoints)
        result["matched_events"] = k * len(store)
        purged = await _purge(app)
        if purged is not None:
            result["purge_us"] = purged[0] / purged[1] * 1e6
            result["purged_waits"] = purged[1]
        if store:
            result["match_store_us"] = sum(store) / len(store)
            result["match_store_rounds_us"] = [round(us, 1) for us in store]
            result["match_store_resolved"] = resolved
    finally:
        app.close()
    return result


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_stepline(workdir, sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": DBOS_NA}
