"""``App``: where functions are registered, events sent, workers started and runs inspected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from stepline.clock import Clock, SystemClock
from stepline.durations import parse_duration
from stepline.engine._system_events import FUNCTION_FAILED
from stepline.engine.changes import Change
from stepline.engine.engine import Engine
from stepline.errors import ConfigError
from stepline.sdk import _app_runs
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
from stepline.sdk.run import EventRun, HistoryEntry, Run
from stepline.sdk.search import (
    RunSearch,
)
from stepline.sdk.triggers import TriggerEvent
from stepline.sdk.waiting import KIND_STATUSES, WaitingOn, decide_waiting, runs_waiting_on
from stepline.store import Store, open_store
from stepline.store.records import (
    UNFINISHED_STATUSES,
    AppRecord,
    AppRemoval,
    EventRecord,
    RunFilter,
    SkipRecord,
    StoredEvent,
    StoreStats,
    WorkerRecord,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from stepline.engine.driver import Driver
    from stepline.engine.worker import Worker
    from stepline.server.settings import ServerSettings


class App:
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
            self.attach(open_store(self.db), SystemClock())
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
    ) -> Worker:
        """A worker for this app (call ``await worker.run()``)."""
        from stepline.engine.worker import Worker  # not for the CLI's read commands

        return Worker(
            self.engine,
            concurrency=concurrency,
            worker_id=worker_id,
            lease_ttl=lease_ttl,
            poll_interval=poll_interval,
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
        """Run a worker until SIGINT/SIGTERM (what ``stepline worker module:app`` calls)."""

        async def main() -> None:
            worker = self.make_worker(concurrency=concurrency, **options)
            on_stop_signals(asyncio.get_running_loop(), lambda _sig: worker.stop())
            await worker.run()

        asyncio.run(main())

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

    # -- runs -------------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> Run | None:
        """One run with its steps, or None."""
        engine = self.engine
        record = await engine.read(engine.store.get_run, run_id)
        if record is None:
            return None
        steps = await engine.read(engine.store.get_steps, run_id)
        return Run.from_records(record, steps, await self.live_workers())

    async def live_workers(self) -> list[WorkerRecord]:
        """The workers alive now on this app's database (of any app), with their functions."""
        engine = self.engine
        return await engine.read(engine.store.live_workers, engine.clock.now())

    async def apps(self) -> list[AppRecord]:
        """The apps registered on this app's database (any app), by id: each app of the
        trigger catalog (a worker of it registered, or an SDK app synced) with its functions'
        event triggers, its registered workers (how many are alive, when one was last seen:
        None when none is registered, as a worker that stops gracefully unregisters), and how
        many events handed to it by other apps wait for its workers (``waiting``). An app that
        only such events are left for (handed to it while it was being removed) is listed
        too."""
        engine = self.engine
        return await engine.read(engine.store.apps, engine.clock.now())

    async def remove_app(self, app_id: str, *, force: bool = False) -> AppRemoval:
        """Take app ``app_id`` (decommissioned: none of its workers will start again) out of
        the trigger catalog and drop the events waiting for it, in one transaction: other
        apps' events are no longer handed to its functions, and no inbox rows pile up for it;
        the Inngest-SDK apps it stored (``stepline dev``/``server`` serving them under its id)
        are deleted too, so a server started again under its id restores none.
        Refused while a worker of the app is alive (nothing is done: the result says
        ``refused``), unless ``force``: the app comes back when a worker of it next starts (a
        live worker keeps its own runs going, but is handed no other app's events until then).
        A worker of the app registering at the same time either registered first (then it is
        alive: refused unless forced) or re-adds the app right after the removal."""
        now = self.engine.clock.now()
        return await self.engine.writer.write(lambda tx: tx.remove_app(app_id, now, force))

    async def runs(
        self,
        *,
        event_id: str | None = None,
        function_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        with_steps: bool = True,
        waiting_for_worker: bool = False,
        all_apps: bool = False,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[Run]:
        """This app's runs (and those recorded before runs carried their app), newest first,
        filtered by the event that started them, function, status, and creation time
        (``created_after``/``created_before``, inclusive); ``all_apps=True``: the runs of
        every app sharing the database. ``waiting_for_worker``: only runs no live worker can
        run (their function is registered by none). ``after``: the last run of the previous
        page: the next page holds the runs older than it (exact while runs are added).
        ``with_steps=False`` skips reading the runs' steps (``run.steps`` is then empty) and
        whether runs wait for a worker: one query in all, for polling; with steps, the page's
        steps are read in one more query. The reads are one call on a reader thread."""
        app_id = None if all_apps else self.id
        return await _app_runs.list_runs(
            self.engine,
            app_id,
            event_id=event_id,
            function_id=function_id,
            status=status,
            limit=limit,
            with_steps=with_steps,
            waiting_for_worker=waiting_for_worker,
            created_after=created_after,
            created_before=created_before,
            after=after,
        )

    async def events(
        self,
        *,
        name: str | None = None,
        received_after: datetime | None = None,
        received_before: datetime | None = None,
        after: StoredEvent | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """Events received by the database (from every app sharing it), newest first: of one
        ``name``, received in a time range (inclusive); ``after``: the last event of the
        previous page (the next page holds older ones). Each says when it was received and
        whether it was a duplicate (its sender id seen in the 24 h before: it started no
        run)."""
        return await _app_runs.list_events(
            self.engine,
            name=name,
            received_after=received_after,
            received_before=received_before,
            after=after,
            limit=limit,
        )

    async def get_event(self, event_id: str) -> EventRecord | None:
        """One stored event by the id ``send`` returned, or None."""
        engine = self.engine
        found = await engine.read(engine.store.get_events, [event_id])
        return found[0] if found else None

    async def event_runs(self, event_id: str, *, limit: int = 1000) -> list[EventRun]:
        """What an event did to runs (of every app sharing the database): up to ``limit`` runs,
        newest first, each with its ``effect`` — "started", "resumed" (a ``wait_for_event`` it
        resolved) or "cancelled" (a ``cancel_on`` it matched, or a singleton run replaced by a
        run it started); a run the event both resumed and cancelled is listed twice. A
        duplicate event started nothing but may have resumed or cancelled runs; the runs flow
        control did not start are in ``skipped``. Empty for an unknown event. Each effect is
        stored in the transaction that had it, and is purged with its run."""
        engine = self.engine
        found = await engine.read(engine.store.event_runs, [event_id], limit)
        return [EventRun.from_record(r) for r in found]

    async def stats(self) -> StoreStats:
        """Runs per status and the queue's depth and lag, now (for monitoring)."""
        engine = self.engine
        return await engine.read(engine.store.stats, engine.clock.now())

    async def history(self, run_id: str) -> list[HistoryEntry]:
        """A run's history: every transition, step attempt, sleep, wait and warning."""
        engine = self.engine
        records = await engine.read(engine.store.get_history, run_id)
        return [HistoryEntry.from_record(r) for r in records]

    async def wait_for_run(self, run_id: str, timeout: float = 30.0) -> Run:
        """Return the run once it has ended; ``TimeoutError`` after ``timeout`` real seconds."""
        return await _app_runs.wait_for_run(self.engine, run_id, timeout)

    async def cancel_run(self, run_id: str, reason: str = "cancelled by API") -> bool:
        """Cancel a run that has not ended: its timers and waits are removed, it ends CANCELLED
        and ``inngest/function.cancelled`` is emitted. A step already executing finishes but
        nothing after it runs. Returns False if the run does not exist or has already ended."""
        engine = self.engine
        cancelled = await engine.writer.write(engine.cancel_job(run_id, reason, engine.clock.now()))
        engine.wake_workers()  # inngest/function.cancelled may have started runs
        if cancelled:
            engine.changes.publish_runs([run_id])
        return cancelled

    async def cancel_runs(
        self,
        function_id: str,
        *,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        if_: str | None = None,
        reason: str = "bulk cancellation",
        limit: int = 10_000,
        all_apps: bool = False,
        dry_run: bool = False,
    ) -> list[str]:
        """Cancel the unfinished runs of this app's function created in a time range (both
        bounds optional; ``started_*`` compare the run's creation time), optionally only those
        whose triggering event satisfies ``if_`` (CEL over ``event``), at most ``limit`` runs,
        oldest first; ``all_apps=True``: the runs of the function of that id in every app
        sharing the database. Returns the ids of the runs cancelled; ``dry_run=True``: of the
        runs it would cancel now, cancelling none (a preview)."""
        return await _app_runs.cancel_runs(
            self.engine,
            None if all_apps else self.id,
            function_id,
            started_after=started_after,
            started_before=started_before,
            if_=if_,
            reason=reason,
            limit=limit,
            dry_run=dry_run,
        )

    async def replay_run(
        self, run_id: str, *, from_step: str | None = None, all_apps: bool = False
    ) -> str:
        """Start a new run of a run's function with the same events. From the start by default;
        with ``from_step`` (a step id as listed in ``run.steps``) the steps before it keep their
        results and do not run again. The run must be this app's (or recorded before runs
        carried their app); ``all_apps=True`` replays another app's run too (the new run is that
        app's). Returns the new run's id."""
        original = await self.get_run(run_id)
        return await _app_runs.replay_run(
            self.engine, self.id, original, run_id, from_step, all_apps=all_apps
        )

    async def pause_function(self, function_id: str, *, all_apps: bool = False) -> None:
        """Pause this app's function: runs it triggers are created and held (not executed)
        until ``resume_function``; then they run in the order they were queued. Another app's
        function of the same id on the same database is not paused, unless ``all_apps=True``
        (the pause then holds it in every app until an app registering the function takes the
        pause over, as with the pauses a database recorded before they were per app)."""
        app_id = "" if all_apps else self.id
        await self.engine.writer.write(lambda tx: tx.set_paused(function_id, True, app_id))
        self.engine.changes.publish(Change(function_ids=(function_id,)))

    async def resume_function(self, function_id: str, *, all_apps: bool = False) -> None:
        """Resume this app's paused function. A pause made with ``all_apps=True`` (not yet
        taken over by an app) is lifted too, so in every app; ``all_apps=True``: resume the
        function in every app."""
        app_id = "" if all_apps else self.id
        await self.engine.writer.write(lambda tx: tx.set_paused(function_id, False, app_id))
        self.engine.wake_workers()
        self.engine.changes.publish(Change(function_ids=(function_id,)))

    def paused_functions(self, *, all_apps: bool = False) -> set[str]:
        """The ids of this app's paused functions; ``all_apps=True``: of those paused in any
        app sharing the database."""
        return self.engine.store.paused_functions(None if all_apps else self.id)

    async def skipped(self, function_id: str | None = None, limit: int = 100) -> list[SkipRecord]:
        """Runs that flow control did not start (rate limit, idempotency, singleton), newest
        first."""
        engine = self.engine
        return await engine.read(engine.store.list_skips, function_id, limit)

    async def purge_runs(self, *, before: datetime, limit: int = 10_000) -> int:
        """Delete runs that ended before ``before`` (at most ``limit``), with their steps and
        history, and the events and skip records older than it that no remaining run uses, in
        small batches (one short transaction each). Returns the number of runs deleted."""
        return await _app_runs.purge_runs(self.engine, before, limit)

    async def waiting_on(self, runs: Sequence[Run]) -> dict[str, WaitingOn]:
        """Why each of these runs that has not ended is not running now (sleeping until T,
        waiting for an event, held by a concurrency key, throttled, in retry backoff, its
        function paused, no live worker knowing its function ...), by run id (one read on a
        reader thread)."""
        open_runs = [r for r in runs if not r.done]
        if not open_runs:
            return {}
        engine = self.engine
        now = engine.clock.now()
        store, functions = engine.store, engine.functions
        return await engine.read(lambda: decide_waiting(store, functions, self.id, open_runs, now))

    async def runs_waiting(
        self,
        kind: str,
        *,
        function_id: str | None = None,
        status: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
        scan: int = 4_000,
        after: tuple[float, str] | None = None,
    ) -> list[Run]:
        """The runs that wait on ``kind`` (one of ``WAITING_KINDS`` but "worker": see
        ``waiting_on``), newest first, at most ``limit``, without their steps: found among
        the newest ``scan`` runs of each status such a run can have (with the filters, below
        ``after``; a bounded scan, the runs list's "waiting on" filter). The store keeps, in
        one read per status, the runs whose queue row and workers allow the kind
        (``kind_clauses``: a "queued" run is due, a "scheduled" one is not yet);
        ``waiting_on`` decides each of those, newest first, until ``limit`` are found. None
        is read when no live worker has the function (but for "running" and "paused", a run
        waits on a worker then). All of it is one call on a reader thread (a hop between
        threads costs a wait for a core on a busy machine)."""
        statuses = KIND_STATUSES.get(kind, UNFINISHED_STATUSES)
        if status is not None:
            statuses = tuple(s for s in statuses if s == status)
        query = RunFilter(function_id, None, event_id, scan, None, self.id, after=after)
        engine = self.engine
        store, functions, now = engine.store, engine.functions, engine.clock.now()
        return await engine.read(
            lambda: runs_waiting_on(store, functions, kind, query, statuses, limit, now)
        )

    async def search_runs(
        self,
        query: str,
        *,
        function_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        scan: int = 10_000,
        after: tuple[float, str] | None = None,
        with_steps: bool = False,
        all_apps: bool = False,
    ) -> RunSearch:
        """Runs whose payloads satisfy ``query``, a CEL expression over ``event``, ``events``,
        ``output``, ``error`` and ``run`` (see ``stepline.sdk.search``), newest first: at most
        ``limit`` matches among the newest ``scan`` runs the filters select. Raises
        ``ExpressionError`` for an invalid query; a query that errors on a run does not match
        it (counted in ``failed``).

        ``after`` (a previous answer's ``next_cursor``) continues a search below where that
        page stopped: its last match when ``limit`` stopped it, the oldest run it scanned when
        ``scan`` did. The cursor is a run's (created_at, run_id), so pages stay exact while runs
        are added: pages joined equal one search with no bound; ``next_cursor`` is None once
        every run the filters select has been scanned. ``with_steps``: the matches' steps are
        read too (one more query; without it ``run.steps`` is empty).

        The comparisons of a field with a literal among the query's top-level ``&&``
        conjuncts (``sdk.search.search_clauses``: ``event.data.amount > 100``,
        ``run.status == "FAILED"``, ``event.name.startsWith("order")``, ``output.x == 1`` ...)
        are decided by the store first, in the same read as the window: only the runs among the
        newest ``scan`` that may hold them are read and evaluated, which makes such searches
        fast over many runs (a store keeps every run the conjunct may be true for, so the
        search decides: never fewer matches). ``scanned`` counts the newest runs the search
        covered: down to its last match when ``limit`` stopped it, otherwise all it looked
        at."""
        return await _app_runs.search_runs(
            self.engine,
            None if all_apps else self.id,
            query,
            function_id=function_id,
            status=status,
            limit=limit,
            scan=scan,
            after=after,
            with_steps=with_steps,
        )


def on_stop_signals(
    loop: asyncio.AbstractEventLoop, handler: Callable[[signal.Signals], None]
) -> None:
    """Call ``handler(sig)`` on SIGINT and SIGTERM, where the platform lets an event loop take
    signals (POSIX, main thread); elsewhere the default handling stays."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)
