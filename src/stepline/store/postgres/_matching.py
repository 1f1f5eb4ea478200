"""The PostgreSQL transaction's event primitives (``store/_primitives``; ``PostgresTx`` binds
them): events stored (a sender id is new iff ``INSERT … ON CONFLICT DO UPDATE … WHERE seen_at <=
horizon`` returns its row), the waits and cancel matchers an event may match (their index read
ahead, ``read_index_ahead``), and waits decided by whoever deletes their row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stepline.serde import dumps, dumps_exact
from stepline.store import _rows as shapes
from stepline.store._primitives import IndexedWait, ResumedWait, indexed_wait
from stepline.store.postgres import queries as q
from stepline.store.postgres._arrays import TextArray
from stepline.store.postgres._statements import at_once
from stepline.store.records import (
    EventRecord,
    WaitRecord,
)

if TYPE_CHECKING:
    from stepline.store.postgres.tx import PostgresTx

DEDUP_WINDOW = 24 * 3600.0
# a send's statements, prepared at their first execution on a connection (``at_once``) where
# psycopg prepares a statement at its fifth: each of a connection's first four was parsed and
# planned anew (the checks' parse and plan ~0.4 ms of the server's time, the event's ~0.05);
# an optimistic ingestion runs them with their generic plans (``PostgresTx.ingest``)
_NO_WAITS_NOR_MATCHERS = at_once(q.NO_WAITS_NOR_MATCHERS)
_NO_WAITS_NOR_MATCHERS_IN_CATALOG = at_once(q.NO_WAITS_NOR_MATCHERS_IN_CATALOG)
at_once(q.INSERT_EVENT)
at_once(q.CREATE_RUN)  # (_admission.create_run)
at_once(q.NOTE_UNLESS_SHARED)  # (_late_cancels)


def read_index_ahead(tx: PostgresTx, names: set[str], now: float) -> None:
    """The wait and cancel-matcher paths of each event name, and whether it has unindexed
    waits and matchers, in one round trip (the shared rules ask one at a time; reading
    them earlier in the transaction sees the same: its own writes, and what others
    committed, which is concurrent with its events either way)."""
    index, hints = tx._index, tx._hints
    names = {n for n in names if not index.known(q.WAIT_PATHS, n)}
    if tx._s.optimistic:
        # names that never had a wait or cancel matcher here: none now (the usual case),
        # or the server fails the transaction, which is made again reading them
        bare = sorted(names - hints.indexed_names)
        if bare:
            checked = {"names": TextArray(bare), "now": now}
            # the trigger catalog this process knows, checked by the same statement (else by
            # the one ``listeners`` sends after the events' rows): a registration that changed
            # it fails the transaction as well, which is made again reading it
            version = tx._triggers.assumed()
            if version is None:
                tx._s.write(_NO_WAITS_NOR_MATCHERS, checked)
            else:
                checked["version"] = version
                tx._s.write(_NO_WAITS_NOR_MATCHERS_IN_CATALOG, checked)
            for name in bare:
                index.read_ahead(q.WAIT_PATHS, q.WAITS_UNINDEXED, name, ((), ()))
                index.read_ahead(q.MATCHER_PATHS, q.MATCHERS_UNINDEXED, name, ((), ()))
            names -= set(bare)
    reads: list[tuple[str, tuple[Any, ...]]] = []
    for name in sorted(names):
        reads += [(q.WAIT_PATHS, (name,)), (q.WAITS_UNINDEXED, (name,))]
        reads += [(q.MATCHER_PATHS, (name,)), (q.MATCHERS_UNINDEXED, (name, now))]
    if not reads:
        return
    version = not tx._s.optimistic and tx._triggers.unread()
    if version:  # the catalog's version too, in the same round trip
        reads.append((q.CATALOG_VERSION, ()))
    found = [cursor.fetchall() for cursor in tx._s.run_all(reads)]
    if version:
        tx._triggers.checked(int(found.pop()[0][0]))
        reads.pop()
    for i in range(0, len(reads), 2):
        (paths, (name, *_)), (unindexed, _) = reads[i], reads[i + 1]
        index.read_ahead(paths, unindexed, name, (found[i], found[i + 1]))
        if found[i] or found[i + 1]:
            hints.has_index(name)


def insert_events(tx: PostgresTx, events: Sequence[EventRecord], now: float) -> list[bool]:
    return [_insert_event(tx, event, now) for event in events]


def _insert_event(tx: PostgresTx, event: EventRecord, now: float) -> bool:
    s = tx._s
    new = True
    if event.id is not None:
        fresh = s.run(
            q.REMEMBER_SENDER_ID,
            {"id": event.dedup_key(), "now": now, "horizon": now - DEDUP_WINDOW},
        ).fetchone()
        new = fresh is not None
    s.write(
        q.INSERT_EVENT,
        (
            event.internal_id,
            event.name,
            event.encoded_data(),
            dumps_exact(event.user) if event.user else b"{}",
            event.id,
            event.ts,
            now,
            not new,
            event.v,
        ),
        "events",
    )
    tx.stored[event.internal_id] = event  # (a lease of its runs makes their state of it)
    return new


def wait_paths(tx: PostgresTx, event_name: str) -> Sequence[str]:
    return tx._index.indexed_paths(q.WAIT_PATHS, event_name)


def unindexed_waits(tx: PostgresTx, event_name: str) -> list[WaitRecord]:
    return [shapes.wait_record(r) for r in tx._index.unindexed_rows(q.WAITS_UNINDEXED, event_name)]


def indexed_waits(
    tx: PostgresTx, event_name: str, path: str, values: Sequence[str]
) -> list[IndexedWait]:
    rows = tx._s.run(q.WAITS_INDEXED, (event_name, path, list(values)))
    return [indexed_wait(shapes.wait_record(r)) for r in rows]


def matcher_paths(tx: PostgresTx, event_name: str) -> Sequence[str]:
    return tx._index.indexed_paths(q.MATCHER_PATHS, event_name)


def unindexed_matchers(tx: PostgresTx, event_name: str, now: float) -> list[WaitRecord]:
    rows = tx._index.unindexed_rows(q.MATCHERS_UNINDEXED, event_name, now)
    return [shapes.wait_record(r) for r in rows]


def indexed_matchers(
    tx: PostgresTx, event_name: str, path: str, values: Sequence[str], now: float
) -> list[WaitRecord]:
    rows = tx._s.run(q.MATCHERS_INDEXED, (event_name, path, list(values), now))
    return [shapes.wait_record(r) for r in rows]


def delete_wait(tx: PostgresTx, run_id: str, wait_id: str) -> bool:
    # of an event resolving it, its timeout and a cancellation, the one deleting it decides; a
    # stale wait's row (its step no longer PENDING) is deleted unclaimed
    row = tx._s.run(q.DELETE_WAIT, (wait_id,)).fetchone()
    return row is not None and bool(row[0])


def resume_waits(tx: PostgresTx, resumed: Sequence[ResumedWait], now: float) -> None:
    s = tx._s
    for r in resumed:
        s.write(q.COMPLETE_STEP, (r.event_json, now, r.run_id, r.step_hash), "steps")
        s.write(q.WAKE, (now, r.run_id), "queue")
        data = dumps({"event_id": r.event_id}).decode()
        s.write(q.INSERT_STEP_HISTORY, (r.run_id, now, "WAIT_MATCHED", r.run_id, r.step_hash, data))
