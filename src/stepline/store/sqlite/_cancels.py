"""The SQLite store's cancellation primitives: the cancel matchers' lookups (with their runs,
inside ``ingest``), a run's cancellation (``mark_cancelled``, ``drop_run_work``) and the
trigger events of the runs a transaction cancelled, for their announcements (``run_events``,
``encoded_run_events``; ``KeptAnnouncements``: those nothing hears, a row a run of one event,
schema 27; ``OwedAnnouncements`` for the rows the version of schema 24 left).

A mixin of ``_SQLiteTx``: every method runs inside the caller's transaction on ``self._c``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from stepline._ids import new_ids
from stepline.serde import loads
from stepline.store import _rows as shapes
from stepline.store._cancel_rules import MatcherRow
from stepline.store._cancelled_data import CANCELLED_NAMES, cancelled_announcements
from stepline.store._index_paths import IndexPaths
from stepline.store._ingest_rules import cancel, unheard
from stepline.store._primitives import EndedRun, EventPrimitives, RunPrimitives
from stepline.store.capabilities import OwedAnnouncement
from stepline.store.records import EventRecord, FunctionSet, WaitRecord
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._announcements import CancelledRunEvents, insert_unheard
from stepline.store.sqlite._deferred import Deferred
from stepline.store.sqlite._derived import id_before, insert_announcements, silent
from stepline.store.sqlite._event_rows import select_events
from stepline.store.sqlite._savepoints import Optimistic, Savepoint
from stepline.store.sqlite._waits import json_list

_UNREAD: Any = object()  # a run ``ingest`` did not read with a matcher (see cancel_matched)


class SQLiteCancels:
    """Cancellation verbs over one SQLite connection inside a transaction."""

    _c: sqlite3.Connection
    # the trigger events of the runs this transaction cancelled (see run_events)
    _cancelled: CancelledRunEvents
    # runs this transaction cancelled while QUEUED (see ``_SQLiteTx.__init__``)
    _never_leased: set[str]
    _deferred: Deferred | None  # inside ``ingest``: its writes made together

    if TYPE_CHECKING:  # provided by _SQLiteTx

        @property
        def _index(self) -> IndexPaths: ...

        def _savepoint(self) -> Savepoint | Optimistic: ...

    def run_events(self, run_id: str) -> list[EventRecord]:
        cancelled = self._cancelled.records(self._c, run_id)  # read together, if cancelled here
        if cancelled is not None:
            return cancelled
        row = self._c.execute(q.RUN_EVENT_IDS, (run_id,)).fetchone()
        return [] if row is None else select_events(self._c, loads(row[0]))

    # -- UnheardEvents: the announcements of cancelled runs (engine/_announce.py) ---------------
    def encoded_run_events(self, run_ids: Sequence[str]) -> list[list[tuple[str, bytes]]]:
        return self._cancelled.encoded(self._c, run_ids)

    # -- KeptAnnouncements: those nothing hears, a row a run (schema 27, engine/_announce.py) -----
    def store_cancelled_unheard(
        self,
        cancelled: Sequence[tuple[str, str]],
        reason: str,
        now: float,
        sender: FunctionSet | None,
        report: bool = True,
    ) -> list[str] | None:
        # a run of one trigger event: a row (none read if it announces nothing: ``_derived``)
        one = self._cancelled.has_one_event
        kept = [one(run_id) for run_id, _ in cancelled]
        others = [pair for pair, keep in zip(cancelled, kept, strict=True) if not keep]
        encoded = self._cancelled.encoded(self._c, [run_id for run_id, _ in others])
        made = iter(cancelled_announcements(others, encoded, reason))
        # in the runs' order: None for a run kept as a row (its two names), else what it makes
        plan = [None if keep else next(made) for keep in kept]
        names = {n for entry in plan for n in (CANCELLED_NAMES if entry is None else entry[0])}
        if not names:
            return []
        with self._savepoint() as c:
            if not unheard(cast("EventPrimitives", self), names, sender, now):
                return None
            ids = new_ids(sum(2 if e is None else len(e[0]) for e in plan), now)
            rows: list[tuple[str, str]] = []
            events: list[tuple[str, str, bytes]] = []
            at = 0
            for (run_id, _), entry in zip(cancelled, plan, strict=True):
                if entry is None:
                    rows.append((ids[at], run_id))
                    at += 2
                    continue
                for name in entry[0]:
                    events.append((ids[at], name, entry[1]))
                    at += 1
            if events:
                insert_unheard(c, events, now)
            if rows:
                insert_announcements(c, rows, now, reason)
            if not report:
                return []
            quiet = silent(c, [first for first, _ in rows], now) if rows else set()
            if quiet:  # runs started by an announcement: their rows stand for no event
                ids = [i for i in ids if i not in quiet and id_before(i) not in quiet]
            return ids

    # -- OwedAnnouncements: those the version before owed (schema 24, engine/_announce.py) ----
    def owed_announcements(self, limit: int) -> list[OwedAnnouncement]:
        owed: list[OwedAnnouncement] = []
        for r in self._c.execute(q.OWED_ANNOUNCEMENTS, (limit,)):
            owed.append(OwedAnnouncement(*r[:5]))
            if r[2] is not None:  # its events, for encoded_run_events (they never change)
                self._cancelled.known(r[1], r[5], r[6:])
        return owed

    def forget_owed_announcements(self, through: int) -> None:
        self._c.execute(q.FORGET_OWED_ANNOUNCEMENTS, (through,))

    def matcher_paths(self, event_name: str) -> Sequence[str]:
        return self._index.indexed_paths(q.MATCHER_PATHS, event_name)

    def unindexed_matchers(self, event_name: str, now: float) -> list[WaitRecord]:
        rows = self._index.unindexed_rows(q.MATCHERS_UNINDEXED, event_name, now)
        return self._read_runs_of([WaitRecord(*r) for r in rows])

    def indexed_matchers(
        self, event_name: str, path: str, values: Sequence[str], now: float
    ) -> list[WaitRecord]:
        if len(values) == 1:
            params: tuple[Any, ...] = (event_name, path, values[0], now)
            rows = self._c.execute(q.MATCHERS_INDEXED, params)
        elif self._deferred is not None:  # inside ``ingest``: their runs read with them
            params = (event_name, path, json_list(values), now)
            rows = self._c.execute(q.MATCHERS_INDEXED_AMONG_WITH_RUNS, params)
            return self._with_runs(rows, self._deferred.unfinished, event_name, path)
        else:
            params = (event_name, path, json_list(values), now)
            rows = self._c.execute(q.MATCHERS_INDEXED_AMONG, params)
        return self._read_runs_of([WaitRecord(*r) for r in rows])

    @staticmethod
    def _with_runs(
        rows: Iterable[tuple[Any, ...]],
        unfinished: dict[str, tuple[Any, ...] | None],
        name: str,
        path: str,
    ) -> list[WaitRecord]:
        """The matchers of MATCHERS_INDEXED_AMONG_WITH_RUNS's rows (of the event ``name`` and
        index ``path`` asked for), their runs noted as ``_read_runs_of`` notes them (a run read
        before in this verb is kept: it may have been cancelled since)."""
        matchers: list[WaitRecord] = []
        for r in rows:
            run_id = r[1]
            matchers.append(WaitRecord(r[0], run_id, "", name, r[2], path, r[3], r[4], r[5]))
            if run_id not in unfinished:
                unfinished[run_id] = None if r[10] is None else r[6:]
        return matchers

    def matcher_rows(
        self, event_name: str, path: str, values: Sequence[str], now: float
    ) -> list[MatcherRow]:
        """``CancelsMatched.matcher_rows``: inside ``ingest``, the lookup of ``indexed_matchers``
        with the runs noted as it notes them, and no record made of each row."""
        deferred = self._deferred
        if deferred is None or len(values) == 1:
            found = self.indexed_matchers(event_name, path, values, now)
            return [(m.run_id, m.expression, m.index_value, m.created_at) for m in found]
        params = (event_name, path, json_list(values), now)
        unfinished, rows = deferred.unfinished, []
        for r in self._c.execute(q.MATCHER_ROWS_AMONG_WITH_RUNS, params):
            run_id = r[0]
            rows.append(r[:4])
            if run_id not in unfinished:
                unfinished[run_id] = None if r[8] is None else r[4:]
        return rows

    def _read_runs_of(self, matchers: list[WaitRecord]) -> list[WaitRecord]:
        """Inside ``ingest``: read the runs of these cancel-matcher candidates that were not
        read yet, with one statement, for ``mark_cancelled`` (what it reads of a run, or that
        the run has ended). Exact: only this transaction writes, and it records its own
        cancellations there."""
        deferred = self._deferred
        if deferred is None or not matchers:
            return matchers
        unread = [m.run_id for m in matchers if m.run_id not in deferred.unfinished]
        if unread:
            rows = self._c.execute(q.UNFINISHED_RUNS_AMONG, (json_list(unread),))
            found = {r[0]: tuple(r[1:]) for r in rows}
            for run_id in unread:
                deferred.unfinished[run_id] = found.get(run_id)
        return matchers

    def mark_cancelled(self, run_id: str, now: float, error: dict[str, Any]) -> EndedRun | None:
        c, deferred = self._c, self._deferred
        # a SELECT then a plain UPDATE (the transaction holds the write lock): cheaper than
        # UPDATE ... RETURNING, which SQLite runs through a temporary table; inside ``ingest``
        # the run was usually read with the other candidates' (``_read_runs_of``) and the
        # UPDATE is made with the others' when the verb ends (until then ``active_singleton_runs``
        # and ``settle_pending_step`` see the run as ended through ``deferred.unfinished``)
        if deferred is not None and run_id in deferred.unfinished:
            row = deferred.unfinished[run_id]
        else:
            row = c.execute(q.UNFINISHED_RUN_FUNCTION, (run_id,)).fetchone()
        if row is None:
            return None
        if deferred is not None:
            self._end_deferred(deferred, run_id, row, now, deferred.json_of(error))
            return EndedRun(str(row[0]), row[1], row[2])
        queued = row[4] == "QUEUED"
        params = (now, shapes.json_or_none(error), run_id)
        c.execute(q.CANCEL_QUEUED_RUN if queued else q.CANCEL_RUN, params)
        self._cancelled.note(run_id, row)  # a run's events never change: read them later
        if queued:
            self._never_leased.add(run_id)
        return EndedRun(str(row[0]), row[1], row[2])

    def _end_deferred(
        self, deferred: Deferred, run_id: str, row: Sequence[Any], now: float, error: str | None
    ) -> bool:
        """``mark_cancelled`` inside ``ingest`` of a run not ended (``row``: what it read of the
        run), its UPDATE made with the others' when the verb ends; whether it was QUEUED."""
        queued: bool = row[4] == "QUEUED"
        cancels = deferred.cancels_queued if queued else deferred.cancels
        cancels.setdefault((now, error), []).append(run_id)
        deferred.unfinished[run_id] = None  # ended
        self._cancelled.note(run_id, row)  # a run's events never change: read them later
        if queued:
            self._never_leased.add(run_id)
        return queued

    # -- CancelsMatched (_cancel_rules) -----------------------------------------------------------
    def cancel_matched(self, run_id: str, now: float, reason: str) -> str | None:
        """``_ingest_rules.cancel`` of a run read with its matcher inside ``ingest``: the same
        writes as its primitives make there (``mark_cancelled``, ``drop_run_work`` and
        ``append_history`` of RUN_CANCELLED), without their records. A run not read so, or
        started by an invoke (its parent's step fails), goes through ``cancel``."""
        deferred = self._deferred
        row = _UNREAD if deferred is None else deferred.unfinished.get(run_id, _UNREAD)
        if row is _UNREAD or (row is not None and row[1] is not None and row[2] is not None):
            return cancel(cast("RunPrimitives", self), run_id, now, reason)  # a _SQLiteTx
        if row is None or deferred is None:
            return None  # ended, or cancelled earlier in this verb
        error, data = deferred.cancelled_json(reason)
        if not self._end_deferred(deferred, run_id, row, now, error):
            deferred.leased.append(run_id)
        deferred.runs.append(run_id)
        deferred.history.append((run_id, now, "RUN_CANCELLED", data))
        return str(row[0])

    def drop_run_work(self, run_id: str) -> None:
        deferred = self._deferred
        if deferred is not None:  # inside ``ingest``: nothing it reads later reads them (the
            # ingest order skips the runs it cancelled), written at its end with one statement
            deferred.runs.append(run_id)
            if run_id not in self._never_leased:
                deferred.leased.append(run_id)
            return
        c = self._c
        c.execute(q.DELETE_QUEUE, (run_id,))
        c.execute(q.DELETE_MATCHERS_OF_RUN, (run_id,))
        if run_id not in self._never_leased:  # else it has neither
            c.execute(q.DELETE_WAITS_OF_RUN, (run_id,))
            c.execute(q.DELETE_EXECUTING_STEPS, (run_id,))
