"""Leasing due runs on PostgreSQL: ``lease_due`` (the fair order across functions and
concurrency keys, exact under concurrent workers) and ``lease_named`` (the runs a wake-up named,
in one statement). ``PostgresTx`` delegates its two lease verbs here."""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson
import psycopg
from psycopg import pq
from psycopg._preparing import Prepare
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

from stepline._driven import Watch
from stepline.errors import StoreUnavailable
from stepline.serde import dumps_exact
from stepline.store._fair_order import Candidate, fair_pick, group_of
from stepline.store._pass_rules import fail_spent
from stepline.store.capabilities import Flushed
from stepline.store.interface import Replay, WouldBlock
from stepline.store.memory_queue import GROUP_VISITS
from stepline.store.postgres import _lease_queries as lq
from stepline.store.postgres import _pipeline, _rows
from stepline.store.postgres import _read_queries as rq
from stepline.store.postgres import queries as q
from stepline.store.postgres._arrays import TextArray
from stepline.store.postgres._hints import LeaseTokens
from stepline.store.postgres._merging import Later
from stepline.store.postgres._statements import _quiet, at_once
from stepline.store.postgres.presence import PRESENCE_KEY, Presence
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    EventRecord,
    FunctionSet,
    Lease,
    NewRun,
    RunRecord,
    RunState,
    SpentRun,
    StepRecord,
)

if TYPE_CHECKING:
    from stepline.store.postgres._statements import Statements
    from stepline.store.postgres.tx import PostgresTx

log = logging.getLogger("stepline.store.postgres")


def lease_due(
    tx: PostgresTx,
    owner: str,
    now: float,
    limit: int,
    ttl: float,
    functions: FunctionSet,
    max_passes: int,
    due_by: float | None = None,
    failed: list[SpentRun] | None = None,
) -> list[Lease]:
    """Lease due runs of ``functions`` (due by ``due_by``: leased ahead) in the fair order
    (``_fair_order``), skipping paused functions and full concurrency keys. Each served
    function's oldest due runs (a window) and expired leases are locked ``FOR UPDATE SKIP
    LOCKED`` (two workers never take one row); behind a longer backlog, the oldest due run
    of each of its concurrency-key groups is read too, and locked (``SKIP LOCKED``) only if
    picked. The concurrency keys among the candidates are locked (advisory, in sorted
    order) and their live leases counted after the lock, so two workers never fill one key
    beyond its limit."""
    token = secrets.token_hex(8)
    if tx._presence is not None:  # taken over as soon as the lock is gone
        token = _prefix(tx, owner) + token
    horizon = now if due_by is None else max(now, due_by)
    with tx._savepoint(durable=False) as s:
        busy: Counter[str] = Counter()
        live: list[tuple[str, str]] = []
        # every served function's due and expired runs (of its app, and of none: rows
        # recorded before runs carried their app), with the live leases: one round trip
        apps = [functions.app_id, ""] if functions.app_id else [""]
        window = limit * 4 + 16
        common: dict[str, Any] = {
            "app": functions.app_id,
            "now": now,
            "by": horizon,
            "window": window,
            "owner": owner,
            "prefix": PRESENCE_KEY,
            **{f"app{i}": app for i, app in enumerate(apps)},
        }
        fns = list(functions.function_ids)
        statement = _candidates(len(apps))
        reads: list[tuple[str, Any]] = [(_LIVE_LEASES, (now,))]
        reads += [(statement, {**common, "fn": fn}) for fn in fns]
        # planned once per connection (``at_once``: each look is by key whatever the plan)
        s.write(lq.GENERIC_PLANS)
        leases, *found = s.run_all(reads)
        s.write(lq.DEFAULT_PLANS)
        for function_id, key1, limit1, key2, limit2 in leases:
            slots = _slots(key1, limit1, key2, limit2)
            live.append((function_id, group_of(slots)))
            busy.update(key for key, _ in slots)
        candidates: list[Candidate] = []
        unlocked: set[str] = set()
        backlogs: list[tuple[str, str]] = []
        for fn, rows in zip(fns, found, strict=True):
            due: Counter[int] = Counter()
            for r in rows:
                candidates.append(_candidate(r[2:], fn))
                if not r[1]:  # not an expired lease: a due run of app number r[0]
                    due[r[0]] += 1
            backlogs += [(apps[i], fn) for i, count in due.items() if count >= window]
        visits = max(limit, GROUP_VISITS)
        for app, fn in backlogs:  # a backlog: its groups' oldest runs too
            heads = _group_heads(tx, s, app, fn, horizon, visits)
            locked = {run.run_id for run in candidates}
            unlocked.update(h.run_id for h in heads if h.run_id not in locked)
            candidates += heads
        keys = sorted({k for run in candidates for k, _ in run.slots})
        if keys:
            for key in keys:
                tx._lock(f"concurrency\x1f{key}")
            found = s.run(lq.BUSY_SLOTS_OF, {"now": now, "keys": keys}).fetchall()
            fresh, _ = _count_slots(found)
            for key in keys:
                busy[key] = fresh[key]
        picked = fair_pick(candidates, live, busy, limit)
        to_lock = [run.run_id for run in picked if run.run_id in unlocked]
        lost: set[str] = set()
        if to_lock:
            got = {r[0] for r in s.run(lq.LOCK_DUE, (to_lock, horizon))}
            lost = {r for r in to_lock if r not in got}  # another worker has them
        taken = [run.run_id for run in picked if run.run_id not in lost]
        previous = {run.run_id: run.held_by for run in picked}
        generic = bool(taken)
        if generic:  # the statements by run ids, with their generic plans (lease_named)
            s.write(lq.GENERIC_PLANS)
            taken = fail_spent(tx, taken, now, max_passes, failed)
        if taken:
            tx._tokens.remember(token, owner)
            for run_id in taken:  # leased here: no other worker need look for them
                tx.new_runs.pop(run_id, None)
            app_id = functions.app_id
            s.write(
                lq.TAKE_LEASES,
                {
                    "owner": owner,
                    "token": token,
                    "expires": now + ttl,
                    "app": app_id,
                    "runs": taken,
                    "now": now,
                },
            )
            # the runs as leased, read with the writes (load_run after the commit, without
            # another round trip): the rows are there once the transaction committed
            loaded = _rows.LoadedRuns(s.read_later(rq.LOAD_RUNS, (taken,)))
        if generic:
            s.write(lq.DEFAULT_PLANS)
    ahead = {run.run_id: run.due_at for run in picked if run.due_at > now}
    functions_of = {run.run_id: run.function_id for run in picked}
    return [
        Lease(
            r, token, previous[r], ahead.get(r), functools.partial(loaded.state, r), functions_of[r]
        )
        for r in taken
    ]


def lease_named(
    tx: PostgresTx,
    owner: str,
    now: float,
    run_ids: Sequence[str],
    ttl: float,
    functions: FunctionSet,
    max_passes: int,
    functions_of: Mapping[str, str] | None = None,
) -> Callable[[], list[Lease]]:
    """``NamedLeases.lease_named``: one statement deciding, taking and reading the runs as
    leased (``LEASE_NAMED``), queued: sent with the ``COMMIT``. ``functions_of``: each run's
    function, which its lease then says (``Lease.function_id``)."""
    token = secrets.token_hex(8)
    if tx._presence is not None:
        token = _prefix(tx, owner) + token
    tx._tokens.remember(token, owner)
    params = _named(owner, token, now + ttl, functions.app_id, run_ids, functions, now, max_passes)
    with tx._savepoint(durable=False) as s:
        # planned once per connection (a prepared statement's generic plan: each look is
        # by key whatever the plan): planning them for each lease cost more than running
        # them (0.4 and 0.2 ms against 0.1 each; lease_due's by run ids alike); prepared
        # and planned when the connection was made (prepare_named)
        s.write(lq.GENERIC_PLANS)
        taken = s.read_later(LEASE_NAMED, params)  # the runs as leased (LOAD_RUNS)
        loaded = _rows.LoadedRuns(taken)
        s.write(lq.DEFAULT_PLANS)

    def leases() -> list[Lease]:
        of = functions_of or {}
        return [
            Lease(r[0], token, None, None, functools.partial(loaded.state, r[0]), of.get(r[0]))
            for r in taken.rows or ()
        ]

    return leases


def mark_steps_running(
    tx: PostgresTx, run_id: str, lease_token: str, steps: Sequence[StepRecord]
) -> bool:
    """``StoreTx.mark_steps_running``: under the run's lease (its token read, the steps
    written only while it is ``lease_token``)."""
    tx._tokens.show(lease_token, [p.hash for p in steps])
    with tx._savepoint() as s:
        row = s.run(q.LEASE_TOKEN, (run_id,)).fetchone()
        if row is None or row[0] != lease_token:
            return False
        s.write_many(
            lq.MARK_STEP_RUNNING,
            [
                (run_id, p.hash, p.step_id, p.kind, p.position, p.attempts, p.started_at)
                for p in steps
            ],
        )
        return True


def leasable_new_runs(tx: PostgresTx) -> Mapping[str, str]:
    """``LeasesNewRuns.leasable_new_runs``: the new runs its notification would name."""
    return tx.new_runs


def lease_new_runs(
    tx: PostgresTx,
    owner: str,
    now: float,
    run_ids: Sequence[str],
    ttl: float,
    functions: FunctionSet,
    max_passes: int = MAX_PASSES_WITHOUT_PROGRESS,
) -> Callable[[], list[Lease]]:
    """``LeasesNewRuns.lease_new_runs``: ``lease_named`` of runs this transaction created due
    now without concurrency keys (``tx.new_runs``), which its notification then does not name
    (as ``lease_due`` leaves out the runs it took)."""
    new_runs = tx.new_runs
    functions_of = {run_id: new_runs.pop(run_id, "") for run_id in run_ids}
    if tx.statements.on_loop and run_ids:  # its flush may wait after its commit (flush_later)
        tx.flushed = Flushed()
    made = _made(tx, run_ids, functions, now, max_passes)
    if made is None:
        return lease_named(tx, owner, now, run_ids, ttl, functions, max_passes, functions_of)
    return _lease_made(tx, owner, now, made, ttl, functions.app_id)


def _made(
    tx: PostgresTx, run_ids: Sequence[str], functions: FunctionSet, now: float, max_passes: int
) -> list[tuple[NewRun, float, float, list[EventRecord]]] | None:
    """Each of ``run_ids`` as this transaction made it (``tx.created``: the run, its creation
    time and due time, its events), when each is one ``LEASE_NAMED`` would look at beyond its
    queue order and function's pause (``LEASE_NEW``): of the served app (or none) and function,
    due by ``now``, with passes to spend (it spent none) and its start deadline not passed, its
    events stored by this transaction; else None (``LEASE_NAMED`` decides)."""
    made = []
    created, stored, served = tx.created, tx.stored, functions.function_ids
    for run_id in run_ids:
        found = created.get(run_id)
        if found is None or max_passes < 1:
            return None
        run, at, due = found
        timeout = run.admission.start_timeout
        if (
            run.app_id not in (functions.app_id, "")
            or run.function_id not in served
            or due > now
            or (timeout is not None and now > at + timeout)
            or any(e not in stored for e in run.event_ids)
        ):
            return None
        made.append((run, at, due, [stored[e] for e in run.event_ids]))
    return made


def _lease_made(
    tx: PostgresTx,
    owner: str,
    now: float,
    made: list[tuple[NewRun, float, float, list[EventRecord]]],
    ttl: float,
    app: str,
) -> Callable[[], list[Lease]]:
    """``lease_named`` of runs this transaction made (``_made``), in one statement that
    neither looks them up nor reads them (``LEASE_NEW``): their state is made of what the
    transaction wrote, marked as the lease marks them (``_leased_state``)."""
    token = secrets.token_hex(8)
    if tx._presence is not None:
        token = _prefix(tx, owner) + token
    tx._tokens.remember(token, owner)
    runs = [(run.run_id, run.function_id, due) for run, _, due, _ in made]
    params = _new_params(runs, app, now, owner, token, now + ttl)
    with tx._savepoint(durable=False) as s:
        s.write(lq.GENERIC_PLANS)
        taken = s.read_later(LEASE_NEW, params)
        s.write(lq.DEFAULT_PLANS)
    of = {run.run_id: (run, at, events) for run, at, _, events in made}

    def leases() -> list[Lease]:
        found = [of[r[0]] for r in taken.rows or ()]
        return [
            Lease(
                run.run_id,
                token,
                None,
                None,
                functools.partial(_leased_state, run, at, events, owner, now, app),
                run.function_id,
            )
            for run, at, events in found
        ]

    return leases


def _leased_state(
    run: NewRun, at: float, events: list[EventRecord], owner: str, now: float, app: str
) -> RunState:
    """The state ``LOAD_RUN`` reads of a run made at ``at`` (``run_params``) once leased by
    ``owner`` at ``now`` (``_TAKE``: running, started now, of the lease's app if it had none);
    no steps nor waits yet."""
    a = run.admission
    return RunState(
        run=RunRecord(
            run.run_id,
            run.function_id,
            "RUNNING",
            list(run.event_ids),
            at,
            now,
            parent_run_id=run.parent_run_id,
            parent_step_hash=run.parent_step_hash,
            start_timeout=a.start_timeout,
            finish_timeout=a.finish_timeout,
            app_id=run.app_id or app,
            worker_id=owner,
        ),
        events=[_as_stored(event) for event in events],
        steps={},
        waits=[],
    )


def _as_stored(event: EventRecord) -> EventRecord:
    """``event`` as ``LOAD_RUN`` reads it back: its data and user decoded from the bytes the
    transaction stored (``_matching._insert_event``), never the sender's own objects."""
    user = orjson.loads(dumps_exact(event.user)) if event.user else {}
    data = orjson.loads(event.encoded_data())
    return EventRecord(event.internal_id, event.name, data, user, event.id, event.ts, v=event.v)


def flush_later(tx: PostgresTx) -> Flushed:
    """``FlushesLater.flush_later``: a transaction committed on its loop that leased its new
    runs by name (``lease_new_runs``) commits without waiting for its WAL's flush, then waits
    for it (``_commit_end.last_on_loop``); any other as before (its commit waits for
    the flush)."""
    flushed = tx.flushed
    if flushed is None:
        return Flushed()
    flushed.asked = True
    return flushed


async def lease_named_alone(
    conn: psycopg.Connection[Any],
    watch: Watch | None,
    presence: Presence,
    tokens: LeaseTokens,
    label: Callable[[], str],
    lease: tuple[str, float, Sequence[str], float, FunctionSet, int],
) -> list[Lease]:
    """``NamedLeasesAlone.lease_named_alone`` of ``lease`` (its arguments) on ``conn``, an idle
    connection of the running loop's (``watch``: its reader, registered for good): ``LEASE_NAMED``
    as the transaction of its own it is (``LEASE_ALONE``'s settings, then it, committed by the
    pipeline's sync: one round trip), without a ``PostgresTx`` and its ``Statements`` around
    it (their set-up, jobs, endings and four statements to convert cost 0.27 ms of this
    process's time before the lease was written). ``WouldBlock``: nothing sent (the connection
    has something to read, the presence lock is not held yet); ``Replay``: nothing committed
    (a statement failed); ``StoreUnavailable``: the connection broke after the lease was
    written (its outcome is unknown)."""
    owner, now, run_ids, ttl, functions, max_passes = lease
    if not _quiet(conn):  # most likely ended by the server: the pool replaces it
        conn.close()
        raise WouldBlock("a connection to check")
    prefix = presence.held_prefix(owner)
    if prefix is None:  # taking it may connect
        raise WouldBlock("the presence lock")
    token = prefix + secrets.token_hex(8)
    tokens.remember(token, owner)
    params = _named(owner, token, now + ttl, functions.app_id, run_ids, functions, now, max_passes)
    try:
        _, rows = await _pipeline.send_all_async(
            conn, [(lq.LEASE_ALONE, None), (LEASE_NAMED, params)], watch
        )
    except psycopg.Error as exc:
        if conn.broken or conn.closed or not exc.sqlstate or exc.sqlstate[:2] == "08":
            where = label()  # the database for messages (parsed from the URL: only here)
            raise StoreUnavailable(f"the lease's outcome is unknown: {exc}", where) from exc
        raise Replay(str(exc)) from exc  # a statement failed: the sync rolled it back
    except BaseException:  # cancelled during the round trip: mid-protocol, never reused
        conn.close()
        raise
    taken = Later()
    taken.rows = rows or []
    loaded = _rows.LoadedRuns(taken)
    return [
        Lease(r[0], token, None, None, functools.partial(loaded.state, r[0])) for r in taken.rows
    ]


def _named(
    owner: str,
    token: str,
    expires: float,
    app: str,
    run_ids: Sequence[str],
    functions: FunctionSet | None,
    now: float,
    max_passes: int,
) -> dict[str, Any]:
    """``LEASE_NAMED``'s parameters (its lists dumped as ``text[]`` without psycopg's look at
    their elements: ``TextArray``)."""
    runs = TextArray(dict.fromkeys(run_ids))
    return {
        "owner": owner,
        "token": token,
        "expires": expires,
        "app": app,
        "runs": runs,
        "fns": TextArray(functions.function_ids if functions is not None else ("",)),
        "now": now,
        "limit": len(runs),
        "max_passes": max_passes,
    }


def _new_params(
    runs: Sequence[tuple[str, str, float]],
    app: str,
    now: float,
    owner: str,
    token: str,
    expires: float,
) -> dict[str, Any]:
    """``LEASE_NEW``'s parameters: its runs (id, function, due time) and the lease's."""
    return {
        "runs": TextArray([run_id for run_id, _, _ in runs]),
        "fns": TextArray([function_id for _, function_id, _ in runs]),
        "dues": [due for _, _, due in runs],
        "app": app,
        "now": now,
        "limit": len(runs),
        "owner": owner,
        "token": token,
        "expires": expires,
    }


def prepare_named(conn: psycopg.Connection[Any]) -> None:
    """Prepare ``LEASE_NAMED`` (and ``LEASE_NEW``, alike) on the new connection ``conn`` (in
    psycopg's cache, as its fifth execution would) and make its generic plan (executed once,
    leasing nothing), so that a worker's first leases by name on it do not plan it: before
    psycopg prepares it, each of those leases planned it for its parameters (about 2.5 ms of
    the server's CPU each, on the way of a wake-up to its run's first step). The parameters'
    types are a lease's (the cache's key): a lease with others (a pass limit beyond a
    smallint) prepares its own at its fifth execution, as would a database without the schema
    yet (migrated later)."""
    params = _named("", "", 0.0, "", [""], None, 0.0, MAX_PASSES_WITHOUT_PROGRESS)
    prepare(conn, LEASE_NAMED, params)
    prepare(conn, LEASE_NEW, _new_params([("", "", 0.0)], "", 0.0, "", "", 0.0))


def prepare(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> None:
    """Prepare ``statement`` on the new connection ``conn`` (``prepare_named``), executed once
    with ``params`` (which must write nothing: it is rolled back) under ``GENERIC_PLANS``.
    Sent with libpq's calls, as a connection's setup (the pool's thread may make a connection
    at any time): nothing goes through psycopg's cursors. A lock held by another session (a
    migration's ``ALTER TABLE``) is waited for ``PREPARE_LOCK_WAIT`` at most, then the statement
    is left unprepared: its locks, taken in that transaction, made a deadlock with a migration
    running beside the new connection (each waiting for a table the other had locked)."""
    query = PostgresQuery(Transformer.from_context(conn))
    query.convert(statement, params)
    cache = conn._prepared
    prep, name = cache.get(query, prepare=True)
    if prep is not Prepare.SHOULD:  # prepared already, or preparing is off
        return
    pgconn = conn.pgconn
    with conn.lock:
        pgconn.exec_(b"BEGIN")
        pgconn.exec_(PREPARE_LOCK_WAIT)
        pgconn.exec_(lq.GENERIC_PLANS.encode())
        results = [
            pgconn.prepare(name, query.query, param_types=query.types),
            pgconn.exec_prepared(name, cast(Any, query.params), param_formats=query.formats),
        ]
        pgconn.exec_(b"ROLLBACK")  # nothing was written: the settings go with it
    if pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection broke while it was set up")
    failed = [r.error_message.decode(errors="replace") for r in results if r.status > _TUPLES]
    if failed:
        log.debug("a statement not prepared on a new connection: %s", failed[0])
        return
    key = cache.maybe_add_to_cache(query, prep, name)
    if key is not None:
        cache.validate(key, prep, name, results[1:])


_TUPLES = pq.ExecStatus.TUPLES_OK  # and COMMAND_OK below it: a result that did not fail
# (a connection's set-up, in its own transaction) under a PostgreSQL deadlock_timeout (1 s by
# default): a wait that is part of a cycle ends here before the server looks for one
PREPARE_LOCK_WAIT = b"SET LOCAL lock_timeout = '200ms'"


def compact(query: str) -> str:
    """``query`` without the spaces SQL does not need (outside its string literals: every run
    of whitespace made one space, none around punctuation). psycopg converts a statement's
    placeholders once and caches the result only for texts up to 4,096 bytes
    (``psycopg._queries.MAX_CACHED_STATEMENT_LENGTH``); a longer one is parsed again at each
    execution (45-65 µs of CPU for these, on a lease's way to its pass)."""
    parts = query.split("'")  # the even ones are outside string literals
    assert "--" not in query and "/*" not in query, "no comments in a compacted statement"
    for i in range(0, len(parts), 2):
        part = parts[i]
        spaced = " ".join(part.split())
        if spaced and part[0].isspace() and i:  # a space after a literal stays one
            spaced = " " + spaced
        if spaced and part[-1].isspace() and i < len(parts) - 1:
            spaced += " "
        parts[i] = _AROUND_PUNCTUATION.sub(r"\1", spaced)
    return "'".join(parts).strip()


_AROUND_PUNCTUATION = re.compile(r" ?([(),=<>]) ?")
LEASE_NAMED = compact(lq.LEASE_NAMED)
LEASE_NEW = compact(lq.LEASE_NEW)
_LIVE_LEASES = at_once(lq.LIVE_LEASES)


@functools.cache
def _candidates(apps: int) -> str:
    return at_once(compact(lq.lease_candidates(apps)))


def _slots(
    key1: str | None, limit1: int | None, key2: str | None, limit2: int | None
) -> tuple[tuple[str, int], ...]:
    return tuple(
        (k, int(n)) for k, n in ((key1, limit1), (key2, limit2)) if k is not None and n is not None
    )


def _candidate(r: Sequence[Any], function_id: str) -> Candidate:
    return Candidate(r[0], r[1], function_id, _slots(r[2], r[3], r[4], r[5]), r[6])


def _group_heads(
    tx: PostgresTx, s: Statements, app: str, fn: str, by: float, visits: int
) -> list[Candidate]:
    """The oldest due run of up to ``visits`` concurrency-key groups of one function, starting
    after the group where this process's previous read stopped and wrapping around once (as
    SQLite's ``_group_heads``): a function with more groups than a lease visits is served in
    turn, and a backlog of one group costs two index probes, never a read of its runs."""
    cursors = tx.hints.group_cursors
    start = cursors.get((app, fn), "")
    params = {"app": app, "fn": fn, "by": by, "start": start, "visits": visits}
    rows = s.run(lq.GROUP_HEADS, params).fetchall()
    if len(rows) < visits and start:  # the end of the groups: on from the first
        more = {**params, "start": "", "visits": visits - len(rows)}
        rows += [r for r in s.run(lq.GROUP_HEADS, more).fetchall() if r[0] <= start]
    if rows:
        cursors[app, fn] = rows[-1][0]
    return [_candidate(r[1:], fn) for r in rows if r[1] is not None]


def _count_slots(rows: Sequence[Any]) -> tuple[Counter[str], dict[str, int]]:
    """Live leases per concurrency key, and each key's limit."""
    busy: Counter[str] = Counter()
    limits: dict[str, int] = {}
    for key1, limit1, key2, limit2 in rows:
        for key, cap in ((key1, limit1), (key2, limit2)):
            if key is not None:
                busy[key] += 1
                limits[key] = cap
    return busy, limits


def _prefix(tx: PostgresTx, owner: str) -> str:
    """The presence prefix of a token of ``owner``'s (``Presence.token_prefix``), on an event
    loop only when held already (taking it may connect: ``WouldBlock`` then)."""
    presence = tx._presence
    assert presence is not None
    if tx.statements.on_loop:
        held = presence.held_prefix(owner)
        if held is not None:
            return held
        tx.statements.would_block("the presence lock")
    return presence.token_prefix(owner)
