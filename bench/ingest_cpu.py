"""The store's share of event matching in CPU time, which a busy machine disturbs far less than
wall time: ``python -m bench.ingest_cpu [--pending N] [--batches R]``.

A SQLite store (no engine, no worker) holds N runs WAITING on an indexed ``payment/received``
wait and N QUEUED runs with an indexed ``order/cancelled`` cancel matcher, the shapes the
``waits`` and ``cancel_on`` workloads create. Then R batches of 250 events each go through the
store's ``ingest`` verb inside one transaction, timed with ``time.thread_time()`` (the writer
thread's CPU): events that each resolve one wait; events that each cancel one run, with the
announcement the engine adds in the same transaction (the run's events read back,
``inngest/function.finished`` and ``inngest/function.cancelled`` ingested); events that match
nothing; the same non-matching events sent by an app's sender (``EventIngest.sender``: the
trigger catalog is looked at, nothing of another app listens); and events another app's
function listens to (each handed to it: an inbox row). Prints min and median µs per event. No
commit, no planning: the store alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from stepline.engine.engine import Engine
from stepline.expressions import value_at
from stepline.store import SQLiteStore
from stepline.store.records import (
    Admission,
    EventIngest,
    EventRecord,
    FunctionSet,
    MatcherSpec,
    NewRun,
    PassCommit,
    RunEnd,
    StepRecord,
    TriggerRow,
    WaitRecord,
)

T0 = 1_700_000_000.0
BATCH = 250
MATCHES = Engine.wait_matches
SENDER = FunctionSet("shop", ("fn", "fc"))  # the sending app's functions, planned by itself


def _event(internal_id: str, name: str, order_id: str) -> EventRecord:
    return EventRecord(internal_id, name, {"orderId": order_id}, {}, None, T0)


def _key(order_id: str) -> str:
    value = value_at({"data": {"orderId": order_id}}, "data.orderId")
    assert value is not None
    return value


def _setup(store: SQLiteStore, n: int) -> None:
    with store.transaction() as tx:
        created = [
            EventIngest(
                _event(f"e-w{i}", "order/created", f"o{i}"), (NewRun(f"w{i}", "fn", (f"e-w{i}",)),)
            )
            for i in range(n)
        ]
        tx.ingest(created, T0, MATCHES)
    with store.transaction() as tx:
        leases = tx.lease_due("w1", T0, n, 3600.0, FunctionSet("", ("fn",)))
    with store.transaction() as tx:
        for held in leases:
            order = f"o{held.run_id[1:]}"
            expression = f'async.data.orderId == dyn("{order}")'
            pending = WaitRecord(
                f"wait-{held.run_id}", held.run_id, "h", "payment/received", expression,
                "data.orderId", _key(order), T0 + 86400, T0,
            )  # fmt: skip
            step = StepRecord(held.run_id, "h", "pay", "wait", 0, "PENDING")
            end = RunEnd("WAITING", due_at=T0 + 86400)
            commit = PassCommit(held.run_id, held.token, steps=[step], waits=[pending], end=end)
            tx.commit_pass(commit, T0, MATCHES)
    with store.transaction() as tx:
        placed = []
        for i in range(n):
            expression = f'async.data.orderId == dyn("c{i}")'
            spec = MatcherSpec("order/cancelled", expression, "data.orderId", _key(f"c{i}"), None)
            run = NewRun(f"c{i}", "fc", (f"e-c{i}",), admission=Admission(cancel_on=(spec,)))
            placed.append(EventIngest(_event(f"e-c{i}", "order/placed", f"c{i}"), (run,)))
        tx.ingest(placed, T0, MATCHES)
    with store.transaction() as tx:  # another app's function listens to order/handed
        tx.sync_triggers("mailer", [TriggerRow("mailer", "receipt", "order/handed")], T0)


def _batch(
    store: SQLiteStore,
    name: str,
    orders: list[str],
    announce: bool,
    sender: FunctionSet | None = None,
) -> tuple[float, int]:
    items = [EventIngest(_event(f"in-{name}-{o}", name, o), sender=sender) for o in orders]
    with store.transaction() as tx:
        start = time.thread_time()
        results = tx.ingest(items, T0 + 1, MATCHES)
        if announce:
            system: list[EventIngest] = []
            for result in results:
                for run_id, function_id in result.cancelled:
                    events = [e.payload() for e in tx.run_events(run_id)]
                    data = {
                        "function_id": function_id,
                        "run_id": run_id,
                        "event": events[0],
                        "events": events,
                        "error": {"error": "function cancelled", "name": "Error"},
                        "_inngest": {"status": "Cancelled"},
                    }
                    for kind in ("finished", "cancelled"):
                        record = EventRecord(
                            f"s-{kind}-{run_id}", f"inngest/function.{kind}", data, {}, None, T0
                        )
                        system.append(EventIngest(record))
            tx.ingest(system, T0 + 1, MATCHES)
        elapsed = time.thread_time() - start
    acted = sum(len(r.resumed_run_ids) + len(r.cancelled) + len(r.delivered) for r in results)
    return elapsed / len(orders) * 1e6, acted


def _orders(prefix: str, i: int) -> list[str]:
    """The order ids of the ``i``-th batch."""
    return [f"{prefix}{j}" for j in range(i * BATCH, (i + 1) * BATCH)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_cpu")
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    n, r = args.pending, args.batches
    if n < r * BATCH:
        parser.error(f"--pending must be at least {r * BATCH} (batches x {BATCH})")
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as folder:
        store = SQLiteStore(Path(folder) / "ingest_cpu.db")
        store.migrate()
        try:
            _setup(store, n)
            rows = {
                "wait-resolving": [
                    _batch(store, "payment/received", _orders("o", i), False) for i in range(r)
                ],
                "cancelling (+ its announcement)": [
                    _batch(store, "order/cancelled", _orders("c", i), True) for i in range(r)
                ],
                "non-matching": [
                    _batch(store, "payment/received", _orders("x", i), False) for i in range(r)
                ],
                "non-matching, an app's sender": [
                    _batch(store, "payment/received", _orders("y", i), False, SENDER)
                    for i in range(r)
                ],
                "handed to another app's function": [
                    _batch(store, "order/handed", _orders("h", i), False, SENDER) for i in range(r)
                ],
            }
        finally:
            store.close()
    assert all(acted == BATCH for _, acted in rows["wait-resolving"]), "a wait was not resolved"
    assert all(acted == BATCH for _, acted in rows["cancelling (+ its announcement)"])
    assert all(acted == BATCH for _, acted in rows["handed to another app's function"])
    print(f"store CPU per event, {n:,} pending, {r} batches of {BATCH}:")
    for label, found in rows.items():
        times = [t for t, _ in found]
        print(f"  {label:34s} min {min(times):6.1f} µs  median {statistics.median(times):6.1f} µs")


if __name__ == "__main__":
    main()
