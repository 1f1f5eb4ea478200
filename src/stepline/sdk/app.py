"""``App``: where functions are registered, events sent, workers started and runs inspected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from stepline.clock import Clock, SystemClock
from stepline.engine.engine import FUNCTION_FAILED, Engine
from stepline.engine.worker import Worker
from stepline.errors import ConfigError
from stepline.sdk.event import Event
from stepline.sdk.function import FunctionDef, Handler, build_function
from stepline.sdk.limits import Limits
from stepline.sdk.run import HistoryEntry, Run
from stepline.sdk.triggers import TriggerEvent
from stepline.store import Store, open_store
from stepline.store.records import TERMINAL_STATUSES, RunFilter


class App:
    """A set of functions sharing one database.

    ``db`` is a URL (``sqlite:///path.db``, a file path, or ``memory://``); without it
    ``STEPLINE_DB``, else ``./.stepline/stepline.db``. ``logger`` is any stdlib-style logger used
    for ``ctx.logger`` (default ``logging.getLogger("stepline.<id>")``).
    """

    def __init__(
        self,
        id: str,
        *,
        db: str | None = None,
        logger: logging.Logger | None = None,
        limits: Limits | None = None,
    ) -> None:
        if not isinstance(id, str) or not id:
            raise ConfigError("App id must be a non-empty string")
        self.id = id
        self.db = db
        self.logger = logger or logging.getLogger(f"stepline.{id}")
        self.limits = limits or Limits()
        self._functions: list[FunctionDef] = []
        self._engine: Engine | None = None

    # -- definitions ------------------------------------------------------------------------------
    def function(
        self,
        *,
        id: str,
        trigger: TriggerEvent | None = None,
        triggers: Sequence[TriggerEvent] | None = None,
        retries: int = 4,
        on_failure: Handler | None = None,
    ) -> Callable[[Handler], FunctionDef]:
        """Register a durable function (decorator).

        ``retries`` is per step (default 4: five attempts in all). ``on_failure`` is called, as a
        function of its own triggered by ``inngest/function.failed``, after the last attempt of a
        run fails; its ``ctx.event.data`` holds ``function_id``, ``run_id``, ``error`` and the
        original ``event``. Invalid options raise ``ConfigError`` here, at definition.
        """

        def decorate(handler: Handler) -> FunctionDef:
            fn = build_function(
                id=id, handler=handler, trigger=trigger, triggers=triggers, retries=retries
            )
            self._add(fn)
            if on_failure is not None:
                failure = build_function(
                    id=f"{id}-failure",
                    handler=on_failure,
                    trigger=TriggerEvent(FUNCTION_FAILED, if_=f'event.data.function_id == "{id}"'),
                    triggers=None,
                    retries=retries,
                    on_failure_of=id,
                )
                self._add(failure)
            return fn

        return decorate

    def _add(self, fn: FunctionDef) -> None:
        if any(f.id == fn.id for f in self._functions):
            raise ConfigError(f"a function with id {fn.id!r} is already registered")
        self._functions.append(fn)
        if self._engine is not None:
            self._engine.register(fn)

    @property
    def functions(self) -> list[FunctionDef]:
        """The registered functions."""
        return list(self._functions)

    # -- the engine -------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The engine (opened on first use)."""
        if self._engine is None:
            self.attach(open_store(self.db), SystemClock())
        assert self._engine is not None
        return self._engine

    def attach(self, store: Store, clock: Clock) -> Engine:
        """Run this app on a given store and clock (used by ``stepline.testing``)."""
        if self._engine is not None:
            self._engine.close()
        engine = Engine(self.id, store, clock, self.limits, self.logger)
        for fn in self._functions:
            engine.register(fn)
        self._engine = engine
        return engine

    def close(self) -> None:
        """Close the database and the engine's threads."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # -- events -----------------------------------------------------------------------------------
    def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send events; returns their ids once they are committed. Raises ``EventError`` for an
        invalid or oversize event (nothing is stored then)."""
        return self.engine.send_sync([events] if isinstance(events, Event) else list(events))

    async def send_async(self, events: Event | Sequence[Event]) -> list[str]:
        """``send`` for async code."""
        return await self.engine.send([events] if isinstance(events, Event) else list(events))

    # -- workers ----------------------------------------------------------------------------------
    def make_worker(
        self,
        *,
        concurrency: int = 100,
        worker_id: str | None = None,
        lease_ttl: float = 10.0,
        poll_interval: float | None = 0.25,
    ) -> Worker:
        """A worker for this app (call ``await worker.run()``)."""
        return Worker(
            self.engine,
            concurrency=concurrency,
            worker_id=worker_id,
            lease_ttl=lease_ttl,
            poll_interval=poll_interval,
        )

    @contextlib.asynccontextmanager
    async def worker(self, *, concurrency: int = 100, **options: Any) -> AsyncIterator[Worker]:
        """Run a worker in this event loop for the duration of the block."""
        worker = self.make_worker(concurrency=concurrency, **options)
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            worker.stop()
            await task

    def run_worker(self, *, concurrency: int = 100, **options: Any) -> None:
        """Run a worker until SIGINT/SIGTERM (what ``stepline worker module:app`` calls)."""

        async def main() -> None:
            worker = self.make_worker(concurrency=concurrency, **options)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, worker.stop)
            await worker.run()

        asyncio.run(main())

    # -- runs -------------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> Run | None:
        """One run with its steps, or None."""
        engine = self.engine
        record = await engine.read(engine.store.get_run, run_id)
        if record is None:
            return None
        steps = await engine.read(engine.store.get_steps, run_id)
        return Run.from_records(record, steps)

    async def runs(
        self,
        *,
        event_id: str | None = None,
        function_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first, filtered by the event that started them, function or status."""
        engine = self.engine
        records = await engine.read(
            engine.store.list_runs, RunFilter(function_id, status, event_id, limit)
        )
        found = []
        for record in records:
            steps = await engine.read(engine.store.get_steps, record.run_id)
            found.append(Run.from_records(record, steps))
        return found

    async def history(self, run_id: str) -> list[HistoryEntry]:
        """A run's history: every transition, step attempt, sleep, wait and warning."""
        engine = self.engine
        records = await engine.read(engine.store.get_history, run_id)
        return [HistoryEntry.from_record(r) for r in records]

    async def wait_for_run(self, run_id: str, timeout: float = 30.0) -> Run:
        """Return the run once it has ended; ``TimeoutError`` after ``timeout`` real seconds."""
        engine = self.engine
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            record = await engine.read(engine.store.get_run, run_id)
            if record is not None and record.status in TERMINAL_STATUSES:
                steps = await engine.read(engine.store.get_steps, run_id)
                return Run.from_records(record, steps)
            if time.monotonic() >= deadline:
                status = record.status if record else "unknown"
                raise TimeoutError(f"run {run_id} has not ended after {timeout}s (it is {status})")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    async def cancel_run(self, run_id: str, reason: str = "cancelled by API") -> bool:
        """Cancel a run that has not ended (its timers and waits are removed). Returns False if
        the run does not exist or has already ended."""
        engine = self.engine
        now = engine.clock.now()
        return await engine.writer.write(lambda tx: tx.cancel_run(run_id, now, reason))
