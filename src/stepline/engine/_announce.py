"""The events announcing the runs cancelled in a transaction (``_system_events``), made for many
runs at once: a batch of events that cancels a thousand runs announces them with one call.

When nothing hears them (no function of the app plans a run for them, and the store finds no
wait, cancel matcher or other app's function for their names: ``UnheardEvents``), they are
only stored: their data is made of the runs' trigger events as the store keeps them, encoded
(``cancelled_announcements``), with no decoding, planning or matching; a store that keeps them
as one row a run (``KeptAnnouncements``, SQLite schema 27) is only told which runs, and makes
their data when they are read. Else, or with a store without those verbs, they are ingested as
any event (``cancelled_events``).

A sender's transaction stores them itself. The version before owed them instead (SQLite schema
24, ``OwedAnnouncements``: a small row a run, the events written later by a worker); writing
them later cost the writer more than writing them at once (~106k instructions a run against
~88k), so this version owes none, and ``Engine.announce_owed`` (a worker's housekeeping) makes
those a process of that version left, with the time of their cancellation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stepline._ids import new_ids
from stepline.engine._system_events import ending_data, ending_names
from stepline.errors import StoreUnavailable
from stepline.serde import dumps_exact
from stepline.store._cancelled_data import cancelled_announcements
from stepline.store.capabilities import KeptAnnouncements, OwedAnnouncements, UnheardEvents
from stepline.store.interface import StoreTx
from stepline.store.records import (
    EventIngest,
    EventRecord,
    FunctionSet,
    IngestResult,
    SpentRun,
    reentered_error,
)

if TYPE_CHECKING:
    from stepline.engine.engine import Engine

OWED_BATCH = 1_000  # runs whose owed announcements one housekeeping round makes


def cancelled_events(
    plan: Callable[[EventRecord], EventIngest],
    tx: StoreTx,
    cancelled: Sequence[tuple[str, str]],
    reason: str,
    now: float,
) -> list[EventIngest]:
    """``inngest/function.finished`` and ``inngest/function.cancelled`` for each run just
    cancelled in ``tx`` (``cancelled``: its run id and function id), in that order, planned by
    ``plan``: what ``Engine.ending_events`` makes for each run (the same data, encoded once a
    run), with the ids of them all made together (``new_ids``: the same increasing order)."""
    made: list[tuple[tuple[str, ...], dict[str, Any], bytes]] = []
    count = 0
    for run_id, function_id in cancelled:
        events = [e.payload() for e in tx.run_events(run_id)]
        names = ending_names("CANCELLED", events)
        if names:
            data = ending_data(function_id, run_id, events, "CANCELLED", reason=reason)
            made.append((names, data, dumps_exact(data)))
            count += len(names)
    ids = iter(new_ids(count, now))
    return [
        plan(EventRecord(next(ids), name, data, {}, None, now, encoded))
        for names, data, encoded in made
        for name in names
    ]


def store_unheard_announcements(
    tx: UnheardEvents,
    cancelled: Sequence[tuple[str, str]],
    reason: str,
    now: float,
    sender: FunctionSet | None,
    report: bool = True,
) -> list[IngestResult] | None:
    """The events ``cancelled_events`` makes (the same names, ids and data), stored by
    ``tx.store_unheard`` (or kept as a row a run, ``tx.store_cancelled_unheard``) for
    ``sender``, whose functions plan no run for them; what ingesting
    them did (nothing but store them; none made unless ``report``). None, with nothing
    stored, when something may hear them: ``cancelled_events`` and ingest them then."""
    if isinstance(tx, KeptAnnouncements):  # a row a run, read as these events (SQLite 27)
        stored = tx.store_cancelled_unheard(cancelled, reason, now, sender, report)
        if stored is None:
            return None
        return [IngestResult(internal_id, False, (), ()) for internal_id in stored]
    runs = tx.encoded_run_events([run_id for run_id, _ in cancelled])
    made = cancelled_announcements(cancelled, runs, reason)
    ids = iter(new_ids(sum(len(names) for names, _ in made), now))
    rows = [(next(ids), name, data) for names, data in made for name in names]
    if rows and not tx.store_unheard(rows, now, sender):
        return None
    if not report:
        return []
    return [IngestResult(internal_id, False, (), ()) for internal_id, _, _ in rows]


def make_owed(
    tx: StoreTx,
    announce: Callable[[list[tuple[str, str]], str, float], list[IngestResult]],
    failed: Callable[[Exception, int], None],
) -> tuple[list[IngestResult], bool]:
    """Make up to ``OWED_BATCH`` of the announcements owed in the store (by senders of the
    version before, any app's),
    oldest first, and forget them: ``announce(runs, reason, at)`` for the runs (run and
    function ids) cancelled at ``at`` for ``reason`` (the engine's announcement with that
    time), all in a savepoint; a run gone since (purged) is left out. If they raise, the
    savepoint is rolled back and ``failed(error, runs)`` decides: it raises (nothing is
    forgotten) or returns (they are forgotten all the same, so that a worker's housekeeping
    never fails on them again and again). Returns what they did, and whether a full batch was
    made (more may be owed). Nothing without ``OwedAnnouncements``."""
    if not isinstance(tx, OwedAnnouncements):
        return [], False
    owed = tx.owed_announcements(OWED_BATCH)
    if not owed:
        return [], False
    groups: dict[tuple[str, float], list[tuple[str, str]]] = {}
    for one in owed:
        if one.function_id is not None:
            groups.setdefault((one.reason, one.at), []).append((one.run_id, one.function_id))
    made: list[IngestResult] = []
    try:
        with tx.savepoint():
            for (reason, at), runs in groups.items():
                made += announce(runs, reason, at)
    except Exception as exc:
        failed(exc, len(owed))
        made = []
    tx.forget_owed_announcements(owed[-1].seq)
    return made, len(owed) >= OWED_BATCH


def announce_failed(
    engine: Engine, tx: StoreTx, runs: Sequence[SpentRun], now: float, max_passes: int
) -> list[IngestResult]:
    """Emit ``inngest/function.finished`` and ``inngest/function.failed`` for the runs that
    ``lease_due`` failed by the re-entry cap (``runs``), in the same transaction, as for any
    failed run (see ``_system_events``). Returns what ingesting them did. An error other than
    the store being unavailable is logged and the announcement dropped (in its savepoint): the
    cap must end the runs even when something about them keeps failing."""
    try:
        with tx.savepoint():
            return _announce_failed(engine, tx, runs, now, max_passes)
    except Exception as exc:
        if isinstance(engine.store.store_error(exc), StoreUnavailable):
            raise
        engine.logger.error("could not announce the end of %d failed runs: %r", len(runs), exc)
        return []


def _announce_failed(
    engine: Engine, tx: StoreTx, runs: Sequence[SpentRun], now: float, max_passes: int
) -> list[IngestResult]:
    items: list[EventIngest] = []
    for run in runs:
        error = reentered_error(run.run_id, max_passes)
        failure = {"name": error["name"], "message": error["message"]}
        events = [e.payload() for e in tx.run_events(run.run_id)]
        items += engine.ending_events(
            run.function_id, run.run_id, events, "FAILED", now, error=failure
        )
    if not items:
        return []
    results = tx.ingest(items, now, engine.wait_matches)
    return results + engine.announce_cancellations(tx, results, now)
