"""An in-process feed of committed changes: what the dashboard pushes to browsers.

The engine publishes a ``Change`` after each write it made has committed (events ingested, a
pass committed, runs leased, cancelled, replayed, a function paused or resumed). Subscribers (one
per process: the dashboard's hub) receive them on their own event loop, coalesced; nothing is
read from the store here, and publishing with no subscriber costs one attribute check.

Only this process's writes are seen: another process writing to the same database (a separate
``stepline worker``) is not announced here (the dashboard's hub looks for those itself).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from stepline.store.records import IngestResult, PassCommit

MAX_PENDING = 10_000  # changes a slow subscriber may hold before it is told it missed some


@dataclass(frozen=True, slots=True)
class Change:
    """What one committed write changed: runs (created, resumed, leased, ended, cancelled ...),
    events ingested (with what each did) and functions paused or resumed."""

    run_ids: tuple[str, ...] = ()
    ingested: tuple[IngestResult, ...] = ()
    function_ids: tuple[str, ...] = ()


def ingest_change(results: Sequence[IngestResult]) -> Change:
    """The change of an ingestion: its events and every run they started, resumed or
    cancelled."""
    runs = [
        run_id
        for r in results
        for run_id in (*r.run_ids, *r.resumed_run_ids, *(c[0] for c in r.cancelled))
    ]
    return Change(tuple(runs), tuple(results))


def pass_change(commit: PassCommit, ingested: Sequence[IngestResult]) -> Change:
    """The change of a pass's commit: its run, the children it started, the parents it woke,
    and the events it sent (with the runs they started, resumed or cancelled)."""
    runs = [
        commit.run_id,
        *(child.run_id for child in commit.child_runs),
        *(wake.run_id for wake in commit.wakes),
        *ingest_change(ingested).run_ids,
    ]
    return Change(tuple(runs), tuple(ingested))


class Subscription:
    """One subscriber's queue, bound to the event loop it was made in."""

    def __init__(self, feed: ChangeFeed, loop: asyncio.AbstractEventLoop) -> None:
        self._feed = feed
        self._loop = loop
        self._pending: list[Change] = []
        self._ready = asyncio.Event()
        self.overflowed = False  # changes were dropped: the subscriber should reload

    def _push(self, change: Change) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.overflowed = True
        else:
            self._pending.append(change)
        self._ready.set()

    @property
    def pending(self) -> bool:
        """Whether changes wait to be taken."""
        return bool(self._pending) or self.overflowed

    async def get(self) -> list[Change]:
        """Wait for at least one change; return every change pending (in publish order)."""
        await self._ready.wait()
        self._ready.clear()
        changes, self._pending = self._pending, []
        return changes

    def close(self) -> None:
        """Stop receiving changes."""
        self._feed._remove(self)


class ChangeFeed:
    """Publish/subscribe of committed changes, safe from any thread."""

    def __init__(self) -> None:
        self._subscriptions: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self) -> Subscription:
        """A subscription delivering to the running event loop."""
        subscription = Subscription(self, asyncio.get_running_loop())
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    @property
    def watched(self) -> bool:
        """Whether anyone subscribes (a change need not be built otherwise)."""
        return bool(self._subscriptions)

    def publish(self, change: Change) -> None:
        """Hand a committed change to every subscriber (never blocks, never raises)."""
        subscriptions = self._subscriptions
        if not subscriptions:
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for subscription in subscriptions:
            loop = subscription._loop
            if loop is current:
                subscription._push(change)
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(subscription._push, change)
                except RuntimeError:  # the loop closed meanwhile
                    pass

    def publish_runs(self, run_ids: Sequence[str]) -> None:
        """``publish`` a change of these runs (nothing if there is none)."""
        if run_ids and self._subscriptions:
            self.publish(Change(tuple(run_ids)))
