"""``AppControl``: ``App``'s runs, events, apps and functions API (inspection and control, what
the CLI, the REST API and the dashboard call), over the app's engine (``App.engine``) and id.
Each method states its contract; ``_app_runs`` holds the longer ones' implementations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from stepline.engine.changes import Change
from stepline.engine.engine import Engine
from stepline.sdk import _app_runs
from stepline.sdk.run import EventRun, HistoryEntry, Run
from stepline.sdk.search import RunSearch
from stepline.sdk.waiting import KIND_STATUSES, WaitingOn, decide_waiting, runs_waiting_on
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


class AppControl(ABC):
    """The runs, events, apps and functions methods of ``App`` (its base class)."""

    id: str

    @property
    @abstractmethod
    def engine(self) -> Engine:
        """The engine the app runs on (``App.engine``)."""

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
        alive: refused unless forced) or re-adds the app right after the removal.
        ``ClockSkewError`` (nothing done) while this machine's clock is beyond the database's
        bound: its workers are judged alive by expiries other machines wrote."""
        engine = self.engine
        await engine.clock_watch.refuse_writes()  # ClockSkewError beyond the bound
        now = engine.clock.now()
        return await engine.writer.write(lambda tx: tx.remove_app(app_id, now, force))

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
        id_below: str | None = None,
    ) -> list[StoredEvent]:
        """Events received by the database (from every app sharing it), newest first: of one
        ``name``, received in a time range (inclusive); ``after``: the last event of the
        previous page (the next page holds older ones). Each says when it was received and
        whether it was a duplicate (its sender id seen in the 24 h before: it started no
        run). ``id_below``: listed by id instead (newest first, as Inngest's ``GET
        /v1/events``), only the events whose id sorts below it (the last id of the previous
        page; the next page holds the ids before it); ``ValueError`` with ``after``."""
        if after is not None and id_below is not None:
            raise ValueError("events: give after (received order) or id_below (id order)")
        return await _app_runs.list_events(
            self.engine,
            name=name,
            received_after=received_after,
            received_before=received_before,
            after=after,
            limit=limit,
            id_below=id_below,
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
        await engine.clock_watch.refuse_writes()  # ClockSkewError beyond the bound
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
        pause over, as with the pauses a database recorded before they were per app).
        Writes no time (never refused by the clock watch)."""
        app_id = "" if all_apps else self.id
        await self.engine.writer.write(lambda tx: tx.set_paused(function_id, True, app_id))
        self.engine.changes.publish(Change(function_ids=(function_id,)))

    async def resume_function(self, function_id: str, *, all_apps: bool = False) -> None:
        """Resume this app's paused function. A pause made with ``all_apps=True`` (not yet
        taken over by an app) is lifted too, so in every app; ``all_apps=True``: resume the
        function in every app. Writes no time (never refused by the clock watch)."""
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
        small batches (one short transaction each). Returns the number of runs deleted.
        Compares the stored times with ``before`` only, the caller's (this machine's clock is
        not read: never refused by the clock watch)."""
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
