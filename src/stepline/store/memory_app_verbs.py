"""The memory store's verbs of apps: the trigger catalog, the inbox of events handed to other
apps' functions, app removal, and the registry of workers, with the reads of them (``apps``,
``live_workers``, ``sdk_apps``). Mixins of ``MemoryStore`` and ``MemoryTx`` (every write goes
through the transaction's undo journal, ``_put``/``_pop``, so each verb stays all-or-nothing).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from stepline.store._catalog import (
    UNREGISTERED,
    app_records,
    catalog_of_app,
    dropped_functions,
    listening,
)
from stepline.store.records import (
    AppRecord,
    AppRemoval,
    EventRecord,
    FunctionSet,
    InboxItem,
    IngestResult,
    TriggerRow,
    WaitMatcher,
    WorkerRecord,
)

if TYPE_CHECKING:
    from stepline.store.memory import MemoryStore

K = TypeVar("K")
V = TypeVar("V")


class MemoryAppReads:
    """The reads of apps over a MemoryStore (under its lock)."""

    if TYPE_CHECKING:  # provided by MemoryStore
        _lock: threading.RLock
        _triggers: dict[str, tuple[TriggerRow, ...]]
        _workers: dict[str, WorkerRecord]
        _inbox: dict[int, tuple[str, str, str]]
        _sdk_apps: dict[tuple[str, str], bytes]

    def apps(self, now: float) -> list[AppRecord]:
        with self._lock:
            rows = [
                (r.app_id, r.function_id, r.event_name) for v in self._triggers.values() for r in v
            ]
            workers: dict[str, tuple[float, int]] = {}
            for w in self._workers.values():
                last, alive = workers.get(w.app_id, (w.seen_at, 0))
                workers[w.app_id] = (max(last, w.seen_at), alive + (w.expires_at > now))
            waiting = Counter(row[0] for row in self._inbox.values())
            return app_records(rows, [(a, *seen) for a, seen in workers.items()], waiting.items())

    def live_workers(self, now: float) -> list[WorkerRecord]:
        with self._lock:
            alive = [w for w in self._workers.values() if w.expires_at > now]
            return sorted(alive, key=lambda w: w.worker_id)

    def sdk_apps(self, app_id: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return sorted((n, body) for (a, n), body in self._sdk_apps.items() if a == app_id)


class MemoryAppVerbs:
    """The app verbs of a transaction over a locked MemoryStore."""

    _s: MemoryStore

    if TYPE_CHECKING:  # provided by MemoryTx

        def _verb(self) -> AbstractContextManager[None]: ...

        def _put(self, table: dict[K, V], key: K, value: V) -> None: ...

        def _pop(self, table: dict[K, V], key: K) -> None: ...

        def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None: ...

    # -- the trigger catalog and the inbox ------------------------------------------------------
    def sync_triggers(
        self,
        app_id: str,
        rows: Sequence[TriggerRow],
        now: float,
        served: FunctionSet | None = None,
    ) -> None:
        s = self._s
        with self._verb():
            held = s._triggers.get(app_id, ())
            current = {(r.function_id, r.event_name) for r in held}
            live = [
                f
                for w in s._workers.values()
                if w.app_id == app_id and w.expires_at > now
                for f in w.function_ids
            ]
            wanted = catalog_of_app(rows, current, served, live)
            if current == wanted:
                return
            self._put(
                s._triggers, app_id, tuple(TriggerRow(app_id, f, n) for f, n in sorted(wanted))
            )
            self._relisten()
            self._drop_unregistered(app_id, set(dropped_functions(current, wanted)), now)

    def _drop_unregistered(self, app_id: str, functions: set[str], now: float) -> int:
        """Drop the waiting inbox rows of app ``app_id``'s ``functions`` (gone from its
        catalog), recorded as skipped."""
        s = self._s
        dropped = 0
        for seq, (app, function_id, event_id) in list(s._inbox.items()):
            if app == app_id and function_id in functions:
                self._pop(s._inbox, seq)
                self.record_skip(event_id, function_id, UNREGISTERED, now)
                dropped += 1
        return dropped

    def _relisten(self) -> None:
        s = self._s
        by_name = listening(row for rows in s._triggers.values() for row in rows)
        self._put(s._listening, "by_name", by_name)

    def remove_app(self, app_id: str, now: float, force: bool) -> AppRemoval:
        s = self._s
        live = sum(1 for w in s._workers.values() if w.app_id == app_id and w.expires_at > now)
        if live and not force:
            return AppRemoval(app_id, live, True, 0, 0)
        with self._verb():
            held = s._triggers.get(app_id, ())
            if app_id in s._triggers:
                self._pop(s._triggers, app_id)
                self._relisten()
            # the rows of its catalog's functions are skipped (as a registration removing
            # them does); any other row of the app is dropped
            dropped = self._drop_unregistered(app_id, {r.function_id for r in held}, now)
            waiting = [seq for seq, row in s._inbox.items() if row[0] == app_id]
            for seq in waiting:
                self._pop(s._inbox, seq)
            synced = [key for key in s._sdk_apps if key[0] == app_id]
            for key in synced:
                self._pop(s._sdk_apps, key)
        return AppRemoval(app_id, live, False, len(held), dropped + len(waiting), len(synced))

    def listeners(self, event_name: str) -> Sequence[tuple[str, str]]:
        return self._s._listening["by_name"].get(event_name, ())

    def deliver(self, rows: Sequence[tuple[str, str, str]], now: float) -> None:
        for row in rows:
            self._put(self._s._inbox, next(self._s._inbox_seq), row)

    give_back = deliver  # a take is never refused here

    def take_inbox(self, functions: FunctionSet, limit: int) -> Callable[[], list[InboxItem]]:
        s = self._s
        wanted = set(functions.function_ids)
        taken: list[InboxItem] = []
        with self._verb():
            for seq, (app_id, function_id, event_id) in list(s._inbox.items()):
                if len(taken) >= limit:
                    break
                if app_id == functions.app_id and function_id in wanted:
                    self._pop(s._inbox, seq)
                    received = s._received.get(event_id, 0.0)
                    taken.append(InboxItem(seq, function_id, s._events.get(event_id), received))
        return lambda: taken

    def events_received(
        self, names: Sequence[str], after: tuple[float, str], until: float
    ) -> list[tuple[float, EventRecord]]:
        s, wanted = self._s, set(names)
        found = [
            (received_at, event)
            for event_id, received_at in s._received.items()
            if after < (received_at, event_id)
            and received_at <= until
            and (event := s._events.get(event_id)) is not None
            and event.name in wanted
        ]
        return sorted(found, key=lambda row: (row[0], row[1].internal_id))

    def late_cancels(self, now: float, wait_matches: WaitMatcher) -> list[IngestResult]:
        return []  # one writer at a time: a take and an ingestion never overlap

    # -- workers -----------------------------------------------------------------------------------
    def register_worker(self, worker: WorkerRecord) -> None:
        self._put(self._s._workers, worker.worker_id, worker)

    def touch_worker(self, worker_id: str, now: float, expires_at: float) -> None:
        worker = self._s._workers.get(worker_id)
        if worker is not None:
            renewed = replace(worker, seen_at=now, expires_at=expires_at)
            self._put(self._s._workers, worker_id, renewed)

    def unregister_worker(self, worker_id: str) -> None:
        self._pop(self._s._workers, worker_id)

    def adopt_unowned(self, functions: FunctionSet) -> int:
        s = self._s
        wanted = set(functions.function_ids)
        adopted = 0
        with self._verb():
            for run_id, run in list(s._runs.items()):
                if run.app_id == "" and run.function_id in wanted:
                    self._put(s._runs, run_id, replace(run, app_id=functions.app_id))
                    item = s._queue.get(run_id)
                    if item is not None:
                        self._put(s._queue, run_id, replace(item, app_id=functions.app_id))
                    adopted += 1
            for key, row in list(s._crons.items()):
                if row.app_id == "" and row.function_id in wanted:
                    self._pop(s._crons, key)
                    mine = (functions.app_id, row.function_id, row.cron)
                    if mine not in s._crons:
                        self._put(s._crons, mine, replace(row, app_id=functions.app_id))
            for app, function_id in list(s._paused):
                if app == "" and function_id in wanted:
                    self._pop(s._paused, (app, function_id))
                    self._put(s._paused, (functions.app_id, function_id), True)
        return adopted

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        lost: list[str] = []
        with self._verb():
            for run_id in run_ids:
                item = self._s._queue.get(run_id)
                if item is None or item.lease_owner != owner:
                    lost.append(run_id)
                else:
                    self._put(self._s._queue, run_id, replace(item, lease_expires_at=now + ttl))
        return lost

    def release_owner(self, owner: str, now: float) -> int:
        mine = [run_id for run_id, item in self._s._queue.items() if item.lease_owner == owner]
        with self._verb():
            for run_id in mine:
                item = self._s._queue[run_id]
                due_at = now if item.due_at is None else min(item.due_at, now)
                self._put(self._s._queue, run_id, item.released(due_at))
        return len(mine)
