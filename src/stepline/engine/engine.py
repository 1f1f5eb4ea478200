"""The engine: registered functions, the store, the clock, and event ingestion.

One ``Engine`` per ``App`` per process. Workers (``engine.worker``) execute runs; everything that
writes goes through the ``BatchWriter`` so concurrent writers share transactions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from stepline._ids import new_id
from stepline.clock import Clock
from stepline.engine.admission import plan_run
from stepline.engine.writer import BatchWriter
from stepline.errors import ConfigError
from stepline.expressions import load_match
from stepline.sdk.event import Event, validate_event
from stepline.sdk.function import FunctionDef
from stepline.sdk.limits import Limits
from stepline.store.interface import Store, StoreTx
from stepline.store.records import (
    Deferral,
    EventIngest,
    EventRecord,
    IngestResult,
    NewRun,
    WaitRecord,
)

T = TypeVar("T")

FUNCTION_FINISHED = "inngest/function.finished"
FUNCTION_FAILED = "inngest/function.failed"
FUNCTION_INVOKED = "inngest/function.invoked"
FUNCTION_CANCELLED = "inngest/function.cancelled"


class Engine:
    """Holds what every pass and every sender needs; owns the store's threads."""

    def __init__(
        self,
        app_id: str,
        store: Store,
        clock: Clock,
        limits: Limits,
        logger: logging.Logger,
    ) -> None:
        self.app_id = app_id
        self.store = store
        self.clock = clock
        self.limits = limits
        self.logger = logger
        self.functions: dict[str, FunctionDef] = {}
        self._by_event: dict[str, list[FunctionDef]] = {}
        self.writer = BatchWriter(store)
        self._reader = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stepline-reader")
        self.step_threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="stepline-step")
        self.function_threads = ThreadPoolExecutor(
            max_workers=256, thread_name_prefix="stepline-fn"
        )
        self.step_mocks: dict[str, Callable[..., Any]] = {}
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._wakers_lock = threading.Lock()
        store.migrate()

    # -- registry ---------------------------------------------------------------------------------
    def register(self, fn: FunctionDef) -> None:
        """Add a function; its id must be unique in the app."""
        if fn.id in self.functions:
            raise ConfigError(f"a function with id {fn.id!r} is already registered")
        self.functions[fn.id] = fn
        for trigger in fn.triggers:
            self._by_event.setdefault(trigger.name, []).append(fn)

    # -- events -----------------------------------------------------------------------------------
    def event_record(self, event: Event, now: float) -> EventRecord:
        """Validate an event at the edge and give it a Stepline id. Raises ``EventError``."""
        validate_event(event, self.limits.max_event_bytes)
        ts = event.ts / 1000 if event.ts is not None else now
        return EventRecord(
            new_id(now), event.name, dict(event.data), dict(event.user), event.id, ts
        )

    def plan(self, record: EventRecord) -> EventIngest:
        """The runs an event starts: every function with a trigger it passes."""
        candidates = self._by_event.get(record.name)
        if not candidates:
            return EventIngest(record)
        payload = record.payload()
        runs: list[NewRun] = []
        deferrals: list[Deferral] = []
        for fn in candidates:
            if not any(t.name == record.name and t.matches(payload) for t in fn.triggers):
                continue
            planned = plan_run(fn, self.app_id, record.internal_id, payload, record.ts)
            if isinstance(planned, NewRun):
                runs.append(planned)
            elif planned is not None:
                deferrals.append(planned)
        return EventIngest(record, tuple(runs), tuple(deferrals))

    @staticmethod
    def wait_matches(wait: WaitRecord, event: EventRecord) -> bool:
        """Whether an incoming event satisfies a stored wait's (substituted) expression."""
        if wait.expression is None:
            return True
        return load_match(wait.expression).matches(event.payload())

    def _ingest_job(self, items: list[EventIngest], now: float) -> Callable[[StoreTx], Any]:
        def job(tx: StoreTx) -> list[IngestResult]:
            return tx.ingest(items, now, self.wait_matches)

        return job

    async def send(self, events: Sequence[Event]) -> list[str]:
        """Ingest events durably (one transaction); returns their ids once committed."""
        now = self.clock.now()
        items = [self.plan(self.event_record(e, now)) for e in events]
        results: list[IngestResult] = await self.writer.write(self._ingest_job(items, now))
        self.wake_workers()
        return [r.internal_id for r in results]

    def send_sync(self, events: Sequence[Event]) -> list[str]:
        """``send`` for code with no running event loop (or outside it)."""
        now = self.clock.now()
        items = [self.plan(self.event_record(e, now)) for e in events]
        results: list[IngestResult] = self.writer.submit_sync(self._ingest_job(items, now))
        self.wake_workers()
        return [r.internal_id for r in results]

    # -- reads and wake-ups -----------------------------------------------------------------------
    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store read on a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    def add_waker(self, event: asyncio.Event) -> None:
        """Register a worker's wake-up signal (set when work may have become due)."""
        with self._wakers_lock:
            self._wakers.append((asyncio.get_running_loop(), event))

    def remove_waker(self, event: asyncio.Event) -> None:
        """Unregister a worker's wake-up signal."""
        with self._wakers_lock:
            self._wakers = [(lp, ev) for lp, ev in self._wakers if ev is not event]

    def wake_workers(self) -> None:
        """Tell this process's workers that work may be due now."""
        with self._wakers_lock:
            wakers = list(self._wakers)
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, event in wakers:
            if loop is current:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """Stop threads and close the store."""
        self.writer.close()
        self._reader.shutdown(wait=True)
        self.step_threads.shutdown(wait=False)
        self.function_threads.shutdown(wait=False)
        self.store.close()
