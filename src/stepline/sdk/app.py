"""``App``: where functions are registered, events sent, workers started and runs inspected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from stepline import _loops
from stepline._text import MAX_ID_CHARS, clipped, name_problem
from stepline._worker_collector import worker_collector
from stepline.clock import Clock, SystemClock
from stepline.durations import parse_duration
from stepline.engine._system_events import FUNCTION_FAILED
from stepline.engine.engine import Engine
from stepline.errors import ConfigError
from stepline.sdk._app_control import AppControl
from stepline.sdk._location import located, warn_user
from stepline.sdk.backoff import RetryBackoff
from stepline.sdk.event import Event, EventOutcome
from stepline.sdk.function import (
    FunctionDef,
    Handler,
    Trigger,
    build_function,
    ignored_options,
)
from stepline.sdk.limits import Limits
from stepline.sdk.options import (
    BatchEvents,
    CancelOn,
    Checkpointing,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
)
from stepline.sdk.triggers import TriggerEvent
from stepline.store import Store, open_store

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from stepline.engine.driver import Driver
    from stepline.engine.worker import Worker
    from stepline.server.settings import ServerSettings


class App(AppControl):
    """A set of functions sharing one database.

    ``db`` is a URL (``sqlite:///path.db``, a file path, or ``memory://``); without it
    ``STEPLINE_DB``, else ``./.stepline/stepline.db``. ``logger`` is any stdlib-style logger used
    for ``ctx.logger`` (default ``logging.getLogger("stepline.<id>")``). ``retention`` (e.g.
    ``"30d"``) makes workers delete runs that ended longer ago, with their steps, history and
    events (default: keep them; expired de-duplication state is always purged).
    ``retry_backoff`` is the wait before a failed step's (or function's) next attempt: by
    default Inngest's schedule (``RetryBackoff.INNGEST``: 15 s, 30 s, 1 m … 2 h, plus up to
    30 s of jitter), except under ``stepline dev`` and ``stepline.testing.TestEngine``, which
    use ``RetryBackoff.FAST`` (1 s, 2 s, 4 s …) unless it is set here.
    """

    @located
    def __init__(
        self,
        id: str,
        *,
        db: str | None = None,
        logger: logging.Logger | None = None,
        limits: Limits | None = None,
        retention: str | timedelta | float | None = None,
        retry_backoff: RetryBackoff | None = None,
    ) -> None:
        if not isinstance(id, str) or not id:
            raise ConfigError("App id must be a non-empty string")
        problem = name_problem(id, MAX_ID_CHARS)
        if problem is not None:  # stored as text, in index entries (the same on every store)
            raise ConfigError(f"App id {clipped(id)!r} {problem}")
        self.id = id
        self.db = db
        self.logger = logger or logging.getLogger(f"stepline.{id}")
        self.limits = limits or Limits()
        self.retention = None if retention is None else parse_duration(retention).total_seconds()
        if retry_backoff is not None and not isinstance(retry_backoff, RetryBackoff):
            raise ConfigError(
                f"App retry_backoff must be a RetryBackoff, got {type(retry_backoff).__name__}"
            )
        self._functions: list[FunctionDef] = []
        self._drivers: dict[str, tuple[Driver, Callable[[Engine], None] | None]] = {}
        self._engine: Engine | None = None
        self._retry_backoff = retry_backoff

    @property
    def retry_backoff(self) -> RetryBackoff | None:
        """The app's retry backoff (None: the default of where it runs; see the class doc)."""
        return self._retry_backoff

    @retry_backoff.setter
    def retry_backoff(self, backoff: RetryBackoff | None) -> None:
        self._retry_backoff = backoff
        if self._engine is not None:
            self._engine.backoff = backoff or RetryBackoff.INNGEST

    # -- definitions ------------------------------------------------------------------------------
    def function(
        self,
        *,
        id: str,
        trigger: Trigger | None = None,
        triggers: Sequence[Trigger] | None = None,
        retries: int = 4,
        on_failure: Handler | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: BatchEvents | None = None,
        priority: Priority | None = None,
        singleton: Singleton | None = None,
        idempotency: str | None = None,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        timeouts: Timeouts | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> Callable[[Handler], FunctionDef]:
        """Register a durable function (decorator).

        ``trigger``/``triggers``: up to 10 ``TriggerEvent``/``TriggerCron``. ``retries`` is per
        step (default 4: five attempts in all). ``on_failure`` is called, as a function of its own
        triggered by ``inngest/function.failed``, after the last attempt of a run fails; its
        ``ctx.event.data`` holds ``function_id``, ``run_id``, ``error`` and the original
        ``event``. Flow control: ``concurrency`` (an int or up to two ``Concurrency``),
        ``throttle``, ``rate_limit``, ``debounce``, ``batch_events``, ``priority``,
        ``singleton``, ``idempotency`` (a CEL key: one run per value per 24 h); cancellation:
        ``cancel_on``, ``timeouts``; ``checkpointing`` commits step results in groups. Invalid
        options raise ``ConfigError`` here, at definition; options the function's runs would
        never use (a ``batch_events`` function's ``cancel_on`` and ``timeouts.start``, as in
        Inngest) warn (``UserWarning``) here.
        """

        @located
        def decorate(handler: Handler) -> FunctionDef:
            fn = build_function(
                id=id,
                handler=handler,
                trigger=trigger,
                triggers=triggers,
                retries=retries,
                concurrency=concurrency,
                throttle=throttle,
                rate_limit=rate_limit,
                debounce=debounce,
                batch_events=batch_events,
                priority=priority,
                singleton=singleton,
                idempotency=idempotency,
                cancel_on=cancel_on,
                timeouts=timeouts,
                checkpointing=checkpointing,
            )
            for message in ignored_options(fn):
                warn_user(message)
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

    def _remove(self, function_id: str) -> None:
        """Forget a function (an SDK app re-synced without it, ``stepline.drivers.inngest``)."""
        self._functions = [f for f in self._functions if f.id != function_id]
        if self._engine is not None:
            self._engine.unregister(function_id)

    @property
    def functions(self) -> list[FunctionDef]:
        """The registered functions."""
        return list(self._functions)

    # -- the engine -------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The engine (opened on first use)."""
        if self._engine is None:
            store = open_store(self.db)
            try:
                self.attach(store, SystemClock())
            except BaseException:  # refused (not a Stepline database, unavailable), or a
                # driver's on_attach failed after the engine was kept: neither is kept
                engine, self._engine = self._engine, None
                if engine is not None:
                    engine.close()  # its store with it
                else:
                    store.close()
                raise
        assert self._engine is not None
        return self._engine

    def attach(self, store: Store, clock: Clock) -> Engine:
        """Run this app on a given store and clock (used by ``stepline.testing``); the drivers
        added to the app (``add_driver``) drive its functions there too."""
        if self._engine is not None:
            self._engine.close()
        engine = Engine(self.id, store, clock, self.limits, self.logger)
        engine.retention = self.retention
        engine.backoff = self.retry_backoff or RetryBackoff.INNGEST
        for name, (driver, _) in self._drivers.items():
            engine.add_driver(name, driver)
        for fn in self._functions:
            engine.register(fn)
        self._engine = engine
        for _, on_attach in self._drivers.values():
            if on_attach is not None:
                on_attach(engine)
        return engine

    @property
    def attached(self) -> bool:
        """True once the app runs on an engine (``engine`` used, or ``attach`` called)."""
        return self._engine is not None

    def add_driver(
        self,
        name: str,
        driver: Driver,
        on_attach: Callable[[Engine], None] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Drive the functions whose ``driver`` is ``name`` with ``driver``, on the engine the
        app runs on now and on every engine it is attached to later; ``on_attach(engine)`` is
        called after each such attach (and at once when the app is attached already), its
        functions registered. Raises ``ConfigError`` when a driver of that name is added,
        unless ``replace``."""
        if name in self._drivers and not replace:
            raise ConfigError(f"a driver named {name!r} is already added")
        if self._engine is not None:
            if name in self._engine.drivers:
                self._engine.drivers[name] = driver
            else:
                self._engine.add_driver(name, driver)
        self._drivers[name] = (driver, on_attach)
        if self._engine is not None and on_attach is not None:
            on_attach(self._engine)

    def close(self) -> None:
        """Close the database and the engine's threads."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # -- events -----------------------------------------------------------------------------------
    def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send events; returns their ids once they are committed. Raises ``EventError`` for an
        invalid or oversize event (nothing is stored then), and ``StoreUnavailable`` when the
        store cannot be written for now (disk full, I/O error, locked past the busy timeout):
        nothing was acknowledged; send again later (give events an ``id`` to make a retry
        safe). Safe from any thread."""
        return self.engine.send_sync([events] if isinstance(events, Event) else list(events))

    async def send_async(self, events: Event | Sequence[Event]) -> list[str]:
        """``send`` for async code (any event loop, any thread); raises the same errors."""
        return await self.engine.send([events] if isinstance(events, Event) else list(events))

    async def send_with_outcomes(self, events: Event | Sequence[Event]) -> list[EventOutcome]:
        """``send_async``, returning what each event did once committed: the runs it started,
        the waiting runs it resumed, the runs it cancelled, the runs flow control skipped."""
        batch = [events] if isinstance(events, Event) else list(events)
        return [
            EventOutcome(
                r.internal_id,
                r.run_ids,
                r.resumed_run_ids,
                tuple(run_id for run_id, _ in r.cancelled),
                r.skipped,
                r.duplicate,
                r.delivered,
            )
            for r in await self.engine.ingest_events(batch)
        ]

    # -- workers ----------------------------------------------------------------------------------
    def make_worker(
        self,
        *,
        concurrency: int = 100,
        worker_id: str | None = None,
        lease_ttl: float = 10.0,
        poll_interval: float | None = 0.25,
        handoffs: bool = True,
    ) -> Worker:
        """A worker for this app (call ``await worker.run()``).

        ``concurrency``: the passes it runs at once. With several functions (and
        ``concurrency`` of 2 or more) it keeps its last slot for a function with no pass
        running in it: one function's backlog uses ``concurrency - 1`` slots, and a run of
        another function starts at once (``engine/_spare_slot.py``).

        ``handoffs`` (PostgreSQL): whether another process's ``send`` may lease the new runs it
        starts to this worker, when it has a free slot, in the send's own transaction (its
        wake-up then carries the lease, and the pass starts without a lease round trip of its
        own); False: the worker leases every run itself (by name when a wake-up names it).
        Other stores hand nothing across processes."""
        from stepline.engine.worker import Worker  # not for the CLI's read commands

        return Worker(
            self.engine,
            concurrency=concurrency,
            worker_id=worker_id,
            lease_ttl=lease_ttl,
            poll_interval=poll_interval,
            handoffs=handoffs,
        )

    @contextlib.asynccontextmanager
    async def worker(self, *, concurrency: int = 100, **options: Any) -> AsyncIterator[Worker]:
        """Run a worker in this event loop for the duration of the block. The block starts
        once the worker registered (its functions' triggers are in the store's catalog, so
        events other apps send from then on start their runs), or failed to."""
        worker = self.make_worker(concurrency=concurrency, **options)
        task = asyncio.create_task(worker.run())
        try:
            tried = asyncio.create_task(worker.tried.wait())
            try:
                await asyncio.wait([task, tried], return_when=asyncio.FIRST_COMPLETED)
            finally:
                tried.cancel()
            yield worker
        finally:
            worker.stop()
            await task

    def run_worker(self, *, concurrency: int = 100, **options: Any) -> None:
        """Run a worker until SIGINT/SIGTERM (what ``stepline worker module:app`` calls), on
        uvloop's event loop when it is installed (``STEPLINE_LOOP=asyncio`` picks asyncio's:
        ``stepline._loops``). It owns the process: what exists once its store is open is
        frozen out of the garbage collector's walks, and young collections are rarer while the
        worker runs (``stepline._worker_collector``)."""

        async def main() -> None:
            worker = self.make_worker(concurrency=concurrency, **options)
            on_stop_signals(asyncio.get_running_loop(), lambda _sig: worker.stop())
            with worker_collector():
                await worker.run()

        _loops.run(main())

    # -- HTTP -------------------------------------------------------------------------------------
    def asgi(self, settings: ServerSettings | None = None) -> Starlette:
        """This app's HTTP server as an ASGI application (the event API, the REST API, health,
        metrics and the dashboard), to serve with any ASGI server or mount in your own
        application (``Mount("/stepline", app=app.asgi(settings))``). It runs no worker: run
        one beside it (``app.worker()`` in your lifespan, or ``stepline worker``). Without
        ``settings`` the APIs stay closed (503) until keys are configured:
        ``ServerSettings(event_keys=(...,), api_tokens=(...,))``."""
        from stepline.server.app import create_app

        return create_app(self, settings)


def on_stop_signals(
    loop: asyncio.AbstractEventLoop, handler: Callable[[signal.Signals], None]
) -> None:
    """Call ``handler(sig)`` on SIGINT and SIGTERM, where the platform lets an event loop take
    signals (POSIX, main thread); elsewhere the default handling stays."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)
