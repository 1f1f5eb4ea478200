"""Live updates: one hub per dashboard fans the engine's change feed out to browsers (SSE).

While at least one browser listens, the hub subscribes to ``engine.changes``, gathers what
changed for a moment (``COALESCE`` seconds, so a burst of commits is one update), reads the
changed runs and events once, renders their rows once, and hands the same message to every
browser. No browser polls the database; a thousand browsers cost one read per update.
A browser too slow to keep up (its queue full) is dropped; its page reconnects and reloads.
Changes made by other processes on the same database (a worker elsewhere) are found by one look
at the newest runs and events every ``LOOK_EVERY`` seconds, for the whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from stepline.engine.changes import Change, Subscription
from stepline.sdk.run import Run
from stepline.store.interface import Store
from stepline.store.records import (
    TERMINAL_STATUSES,
    EventFilter,
    EventRecord,
    IngestResult,
    RunFilter,
    RunRecord,
)

if TYPE_CHECKING:
    from stepline.sdk.app import App

COALESCE = 0.1  # seconds changes are gathered before one update is sent
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream
MAX_RUNS = 200  # runs read per update (a larger burst tells pages to reload)
CLIENT_QUEUE = 64  # messages a browser may fall behind before it is dropped
LOOK_EVERY = 2.0  # seconds between looks for changes other processes made
LOOK_RUNS = 100  # newest runs (and unfinished runs seen before) read by a look
LOOK_EVENTS = 20  # newest events read by a look

Renderer = Callable[[list[Run], list[Change]], Awaitable[list[tuple[str, Any]]]]


class LiveHub:
    """Fans committed changes out to the browsers listening (``listen``)."""

    def __init__(self, app: App, render: Renderer) -> None:
        self.app = app
        self._render = render
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self.updates = 0  # updates sent (tests read it)
        self.looks = 0  # looks for other processes' changes (tests read it)
        self._known_runs: dict[str, str] = {}  # run id -> status, as pages were last told
        self._known_events: set[str] = set()

    @property
    def listeners(self) -> int:
        """Browsers listening now."""
        return len(self._clients)

    async def listen(self) -> AsyncIterator[bytes]:
        """One browser's stream of SSE messages (ends when the hub drops it)."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        if self._task is None or self._task.done():
            self._subscription = self.app.engine.changes.subscribe()
            self._task = asyncio.create_task(self._pump(self._subscription))
        try:
            yield b"retry: 2000\n: connected\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if message is None:
                    return
                yield message
        finally:
            self._clients.discard(queue)
            if not self._clients:
                await self.stop()

    async def stop(self) -> None:
        """Stop listening to the feed (no browser left)."""
        task, self._task = self._task, None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self, subscription: Subscription) -> None:
        self._known_runs.clear()
        self._known_events.clear()
        self.looks = 0
        with contextlib.suppress(Exception):
            await self._look_around()  # what is there now: later looks announce what changed
        looked = time.monotonic()
        while True:
            wait = max(0.0, looked + LOOK_EVERY - time.monotonic())
            changes: list[Change] = []
            with contextlib.suppress(TimeoutError):
                changes = await asyncio.wait_for(subscription.get(), wait)
            if time.monotonic() >= looked + LOOK_EVERY:
                looked = time.monotonic()
                with contextlib.suppress(Exception):  # a failed look: the next one retries
                    changes += await self._look_around()
            if not changes:
                continue
            await asyncio.sleep(COALESCE)  # real time: gather a burst into one update
            changes += await _drain(subscription)
            if subscription.overflowed:
                subscription.overflowed = False
                self._send("reload", {})
                continue
            try:
                messages = await self._messages(changes)
            except Exception:  # a failed read must not end live updates: pages reload
                messages = [("reload", {})]
            for kind, data in messages:
                self._send(kind, data)
            self.updates += 1

    async def _look_around(self) -> list[Change]:
        """What other processes changed (a worker elsewhere on the same database): one read
        of the newest runs and events, and of the unfinished runs seen before, per
        ``LOOK_EVERY`` for the whole process. Returns the changes found (none the first time:
        it only learns what is there)."""
        app = self.app
        engine = app.engine
        store = engine.store
        first = self.looks == 0
        watched = [r for r, status in self._known_runs.items() if status not in TERMINAL_STATUSES]
        query = RunFilter(limit=LOOK_RUNS, app_id=app.id)

        def read() -> tuple[list[RunRecord], list[RunRecord], list[str]]:
            newest = store.list_runs(query)
            others = [store.get_run(r) for r in watched[:LOOK_RUNS]]
            events = [e.internal_id for e in recent_events(store, LOOK_EVENTS)]
            return newest, [r for r in others if r is not None], events

        newest, others, event_ids = await engine.read(read)
        self.looks += 1
        changed = [
            r.run_id for r in (*newest, *others) if self._known_runs.get(r.run_id) != r.status
        ]
        for record in (*newest, *others):
            self._known_runs[record.run_id] = record.status
        fresh = [e for e in event_ids if e not in self._known_events]
        self._known_events.update(fresh)
        self._trim()
        if first:
            return []
        ingested = tuple(IngestResult(e, False, (), ()) for e in fresh)
        return [Change(tuple(changed), ingested)] if changed or ingested else []

    def _remember(self, runs: list[Run]) -> None:
        for run in runs:
            self._known_runs[run.run_id] = run.status
        self._trim()

    def _trim(self) -> None:
        if len(self._known_runs) > 4 * LOOK_RUNS:
            ended = [r for r, s in self._known_runs.items() if s in TERMINAL_STATUSES]
            for run_id in ended[: len(self._known_runs) - 2 * LOOK_RUNS]:
                del self._known_runs[run_id]
        if len(self._known_events) > 4 * LOOK_EVENTS:
            self._known_events = set(list(self._known_events)[-LOOK_EVENTS:])

    async def _messages(self, changes: list[Change]) -> list[tuple[str, Any]]:
        run_ids = list(dict.fromkeys(r for c in changes for r in c.run_ids))
        if len(run_ids) > MAX_RUNS:
            return [("reload", {})]
        engine = self.app.engine
        store = engine.store
        records = await engine.read(lambda: [store.get_run(r) for r in run_ids])
        runs = [Run.from_records(r, []) for r in records if r is not None]
        self._remember(runs)
        self._known_events.update(r.internal_id for c in changes for r in c.ingested)
        return await self._render(runs, changes)

    def _send(self, kind: str, data: Any) -> None:
        message = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for queue in list(self._clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow: drop it (its page reconnects and reloads)
                self._clients.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)


def recent_events(store: Store, limit: int) -> list[EventRecord]:
    """The newest events (the store's ``list_events``)."""
    return [stored.event for stored in store.list_events(EventFilter(limit=limit))]


async def _drain(subscription: Subscription) -> list[Change]:
    """The changes pending now, without waiting."""
    if not subscription.pending:
        return []
    return await subscription.get()
