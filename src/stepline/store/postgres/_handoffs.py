"""Runs handed to an idle worker by the transaction that made them (PostgreSQL).

A transaction whose only work made is a few new runs due now names them in its ``NOTIFY``
(``wakeups.notify``). Before that, in the same round trip, ``HAND_OFF`` leases each of them
that a lease by name would take (``LEASE_NAMED``'s rules: due, no concurrency key, its function
not paused, nothing of its function ahead of it, its start deadline left) and that has no steps
(a replay's copied ones) to a live worker serving its function that offers hand-offs (``OFFER``:
its presence prefix, slots and lease TTL in the ``handoffs`` table) and has fewer live leases
than slots, and the notification carries that lease with the run as the lease left it (the
columns ``LOAD_RUN`` reads: such a new run has no steps and no waits). That worker starts the
pass as it reads the notification: no lease round trip between the event and its first step
(its server work, about 0.4 ms, is done in the sender's transaction, before its commit).

Exactness: the sender's runs are its own until it commits (nobody else sees their rows), so
the lease it takes is the only one; the lease is an ordinary one (its token fences the pass's
commits, it expires after the worker's TTL, and its token carries the worker's presence prefix:
a worker that died is found dead, ``DEAD_OWNERS``, and its runs taken over at the next poll of
another). A worker whose presence lock is free is not chosen (``pg_try_advisory_xact_lock_shared``
succeeds on it). A notification lost (the listener reconnecting) leaves its lease to expire.
The notification's payload is bounded (8,000 bytes): runs whose events are larger are named,
not handed.
"""

from __future__ import annotations

import functools
import threading
from binascii import a2b_base64
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from stepline.store import _rows as shapes
from stepline.store.postgres._arrays import Int4Array, TextArray
from stepline.store.postgres._hints import LeaseTokens
from stepline.store.postgres._lease_queries import LEASE_ALONE
from stepline.store.postgres._leases import _prefix, compact, prepare, prepare_named
from stepline.store.postgres._read_queries import RUN_COLUMNS
from stepline.store.postgres.presence import PRESENCE_KEY, Presence
from stepline.store.postgres.queries import EVENT_COLUMNS
from stepline.store.records import EventRecord, Lease, RunState

if TYPE_CHECKING:
    from stepline.store.postgres.tx import PostgresTx

# a worker offers hand-offs (its presence prefix, its slots, its lease TTL), and the offers of
# workers no longer registered (ended without withdrawing theirs) go
OFFER = """
WITH gone AS (DELETE FROM handoffs WHERE worker_id NOT IN (SELECT worker_id FROM workers))
INSERT INTO handoffs (worker_id, prefix, slots, ttl) VALUES (%s, %s, %s, %s)
ON CONFLICT (worker_id) DO UPDATE SET
    prefix = excluded.prefix, slots = excluded.slots, ttl = excluded.ttl"""
WITHDRAW = "DELETE FROM handoffs WHERE worker_id = %s"
# the most a notification's payload may take (PostgreSQL refuses one of 8,000 bytes or more)
_MOST_BYTES = 7900

# bytea as base64 (its line breaks, JSON-escaped, are skipped by the decoder)
_B64 = "encode({}, 'base64')"
_RUN_JSON = ", ".join(
    _B64.format(f"r.{c.strip()}") if c.strip() == "output" else f"r.{c.strip()}"
    for c in RUN_COLUMNS.split(",")
)
_EVENT_JSON = (
    f"internal_id, name, {_B64.format('data')}, {_B64.format('user_data')}, sender_id, ts, v"
)
# a new run's events (in any order: ``_state`` puts them in the run's), found by
# primary key: all at once (several runs), or each alone (one run: an index scan per event id,
# no bitmap of them, and the columns it reads only)
_EVENTS = f"""SELECT json_agg(json_build_array({_EVENT_JSON})) FROM events
            WHERE internal_id = ANY(ARRAY(SELECT jsonb_array_elements_text(r.event_ids::jsonb)))"""
_EVENTS_ONE = f"""SELECT json_agg(json_build_array({_EVENT_JSON}))
            FROM json_array_elements_text(r.event_ids::json) AS x(id)
            CROSS JOIN LATERAL (
                SELECT {EVENT_COLUMNS} FROM events WHERE internal_id = x.id OFFSET 0) e"""
# nothing of the run's function ahead of it, in its app or unowned (''): no due run before it
# that is not one of the new runs (both apps in one probe of ``queue_fn_due``), no expired lease
# (one probe of ``queue_fn_lease`` each): ``AHEAD_OF_NAMED``, a lease by name's rules, the same
# rows, in a text that keeps the statement under the 4,096 bytes up to which psycopg keeps its
# conversion (``compact``; past them it is parsed again at each send)
_EXPIRED = """AND (SELECT 1 FROM queue o
           WHERE o.app_id = {app} AND o.function_id = n.function_id
             AND o.lease_owner IS NOT NULL AND o.lease_expires_at <= n.now LIMIT 1) IS NULL"""
_AHEAD = f"""AND (SELECT 1 FROM queue o
           WHERE o.app_id IN (n.app_id, '') AND o.function_id = n.function_id
             AND o.lease_owner IS NULL AND o.due_at <= n.due_at
             AND (o.due_at, o.run_id) < (n.due_at, n.run_id)
             AND NOT o.run_id = ANY(%(runs)s) LIMIT 1) IS NULL
      {_EXPIRED.format(app="n.app_id")}
      {_EXPIRED.format(app="''")}"""
# %(runs)s, %(fns)s, %(tokens)s: the new runs, their functions and a token each (the lease's, after
# the worker's presence prefix); %(named)s: the bytes of the payload naming them all. "now" is the
# run's creation time (the sender's clock). The new runs' queue and runs rows are looked up by
# primary key, each alone (a subquery the planner keeps, as LEASE_NAMED's): joined, the generic plan
# a connection made while the database was empty (``prepare_statements``) hashed every due row of
# queue_fn_due for them (17-22 ms behind 20,000). A handed entry carries the run's columns as they
# were before the lease marked them (``Handed.lease`` marks them as the lease did). The payload's
# size is known before any lease is taken: each eligible run's entry made with nulls for its worker
# and token (``bytes``), plus theirs (the longest of the workers it may go to), plus twice the bytes
# naming them all, under ``_MOST_BYTES``; else nothing is handed. Each worker is handed at most its
# free slots (its offer's less its live leases), counted over the runs of this statement (numbered
# per worker, in run id order). A worker that keeps a spare slot
# (``engine/_spare_slot.keeps_spare``: 2 slots or more, 2 functions or more: its registration's)
# offers its last free slot only to a run of a function with no live lease there (``here``) nor
# earlier in this statement (``%(ranks)s``: each run's rank among the runs of its function, in run
# id order; as ``_spare_slot.fitting``): a run of a function it runs goes to a worker that can take
# it, not to one that would give it back
_NAMED_ELIGIBLE = f"""
WITH named AS MATERIALIZED (
    SELECT q.run_id, q.function_id, q.app_id, q.due_at, r.created_at AS now, t.token, t.rank,
           r.start_timeout, json_build_array({_RUN_JSON}) AS run,
           ({{events}}) AS events
    FROM {{new}} AS t(run_id, token, rank)
    CROSS JOIN LATERAL (SELECT {{queue}} FROM queue WHERE run_id = t.run_id OFFSET 0) q
    CROSS JOIN LATERAL (SELECT * FROM runs WHERE run_id = t.run_id OFFSET 0) r
    WHERE q.lease_owner IS NULL AND q.app_id <> '' AND q.ckey1 IS NULL AND q.ckey2 IS NULL
      AND q.due_at <= r.created_at),
eligible AS MATERIALIZED (
    SELECT n.*, octet_length(
        json_build_array(n.function_id, n.run_id, NULL, NULL, n.run, n.events)::text) AS bytes
    FROM named n
    WHERE (SELECT 1 FROM paused p
           WHERE p.app_id IN (n.app_id, '') AND p.function_id = n.function_id LIMIT 1) IS NULL
      {_AHEAD}
      AND (n.start_timeout IS NULL OR n.start_timeout >= 0)
      AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = n.run_id))"""
# the workers (``f``: a row of worker_functions) that offer hand-offs, each with its live leases
# (``leases``) and those of the run's function (``here``), and those of them alive
_SERVED_BY = """
    JOIN workers w ON w.worker_id = f.worker_id
    JOIN handoffs h ON h.worker_id = f.worker_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS leases,
               count(*) FILTER (WHERE l.app_id = e.app_id AND l.function_id = e.function_id)
                 AS here
        FROM queue l WHERE l.lease_owner = w.worker_id AND l.lease_expires_at > e.now) AS l"""
_ALIVE = """w.expires_at > e.now
      AND NOT pg_try_advisory_xact_lock_shared(
          hashtextextended(%(prefix)s||w.worker_id, 0))"""
# the live workers that offer hand-offs and serve a run's function
_OFFER = f"""
    FROM eligible e
    JOIN worker_functions f ON f.function_id = e.function_id AND f.app_id = e.app_id
    {_SERVED_BY.strip()}
    WHERE {_ALIVE}"""
# a worker's free slots for a run: its offer's less its live leases, less the spare slot when it
# keeps one and the run's function has a lease there or an earlier run in this statement (a
# condition never null: a cast, shorter than a CASE. The texts below skip the spaces ``compact``
# keeps (around ``||``, ``+``, ``-``, ``*``) to stay under its bound)
_FREE = """h.slots-l.leases
           -(h.slots >= 2 AND (e.rank > 1 OR l.here > 0)
             AND json_array_length(w.function_ids::json) >= 2)::int"""
# the bytes a run's entry in the payload takes for its worker and token
_MARKS = "octet_length(to_json(w.worker_id)::text)+octet_length(h.prefix||e.token)+2"
# the chosen runs leased, started and marked: their queue and runs rows found by their run ids
# (an index lookup, the only plan), each given its chosen row's values by a sub-select (its
# unqualified columns are ``chosen``'s). Joined to ``chosen`` (``UPDATE … FROM chosen``), the
# generic plan a connection made after an ANALYZE of the empty tables scanned the whole primary
# key of queue and of runs at every hand-off once they were filled (the join's order chosen on
# statistics saying them empty), until the next ANALYZE replanned it
_LEASED = """
leased AS (
    UPDATE queue q SET (lease_owner, lease_token, lease_expires_at, wake) = (
        SELECT worker_id, token, expires, false FROM chosen WHERE run_id = q.run_id)
    WHERE q.run_id {chosen}),
started AS (
    INSERT INTO history (run_id, ts, kind, worker_id)
    SELECT run_id, now, 'RUN_STARTED', worker_id FROM chosen),
marked AS (
    UPDATE runs r SET (status, worker_id, passes, started_at) = (
        SELECT 'RUNNING', c.worker_id, r.passes+1, coalesce(r.started_at, c.now)
        FROM chosen c WHERE c.run_id = r.run_id)
    WHERE r.run_id {chosen}),"""
_ANY_CHOSEN = "= ANY(ARRAY(SELECT run_id FROM chosen))"
_NAMED_SEVERAL = _NAMED_ELIGIBLE.format(
    new="unnest(%(runs)s::text[], %(tokens)s::text[], %(ranks)s::int[])", events=_EVENTS, queue="*"
)
_HAND_OFF = f"""{_NAMED_SEVERAL},
offered AS MATERIALIZED (
    SELECT e.run_id, e.now, w.worker_id, h.prefix||e.token AS token, e.now+h.ttl AS expires,
           {_MARKS} AS marks,
           row_number() OVER (PARTITION BY w.worker_id ORDER BY e.run_id) AS n,
           {_FREE} AS free
    {_OFFER.strip()}),
chosen AS MATERIALIZED (
    SELECT DISTINCT ON (o.run_id) o.run_id, o.now, o.worker_id, o.token, o.expires
    FROM offered o
    WHERE o.n <= o.free
      AND 2*%(named)s + (SELECT sum(bytes) FROM eligible)
          + (SELECT count(*) FROM eligible) * (SELECT max(marks) FROM offered) <= {_MOST_BYTES}
    ORDER BY o.run_id, o.worker_id),{_LEASED.format(chosen=_ANY_CHOSEN)}
handed AS (
    SELECT c.run_id, json_build_array(e.function_id, e.run_id, c.worker_id, c.token, e.run,
                                      e.events) AS entry
    FROM chosen c JOIN eligible e ON e.run_id = c.run_id),
payload AS (
    SELECT json_agg(coalesce(h.entry, json_build_array(t.fn, t.run_id)) ORDER BY t.i)::text
             AS handing,
           json_agg(json_build_array(t.fn, t.run_id) ORDER BY t.i)::text AS naming
    FROM unnest(%(runs)s::text[], %(fns)s::text[]) WITH ORDINALITY AS t(run_id, fn, i)
    LEFT JOIN handed h ON h.run_id = t.run_id)
SELECT pg_notify('stepline', CASE WHEN octet_length(handing) < 8000 THEN handing ELSE naming END)
FROM payload"""
# ``_HAND_OFF`` for a transaction that made one new run (an event sent, usually): the same
# rules, without what numbers and orders several (a window, a DISTINCT ON, the payload's
# aggregates over the runs): the lowest worker id with a free slot for it (its spare by the
# same rule) whose marks keep the payload under the bound, found in ``worker_functions``' primary
# key order (the run's function and app, then the worker: no sort), its entry made with it.
# Its parameters' first elements are the run's (its rank 1), its writes find their rows by
# ``= (SELECT run_id FROM chosen)``. Its execution, start and end included, 0.50-0.67 ->
# 0.39-0.51 ms (EXPLAIN ANALYZE of the generic plan); the backend's instructions of a send's
# transaction 2.72 -> 2.63 M (callgrind, the statements of a send in a single-user backend),
# its own 1.22 -> 1.12 M: fewer plan nodes and columns for the executor to set up (three
# quarters of its cost is the executor's start, run and end of its ~45-node plan)
_NAMED_ONE = _NAMED_ELIGIBLE.format(
    new="(SELECT (%(runs)s::text[])[1], (%(tokens)s::text[])[1], 1)",
    events=_EVENTS_ONE,
    queue="run_id, function_id, app_id, due_at, lease_owner, ckey1, ckey2",
)
_HAND_OFF_ONE = f"""{_NAMED_ONE},
chosen AS MATERIALIZED (
    SELECT e.run_id, e.now, c.worker_id, c.token, c.expires,
           json_build_array(json_build_array(e.function_id, e.run_id, c.worker_id, c.token,
                                             e.run, e.events))::text AS entry
    FROM eligible e CROSS JOIN LATERAL (
        SELECT w.worker_id, h.prefix || e.token AS token, e.now + h.ttl AS expires
        FROM worker_functions f {_SERVED_BY.strip()}
        WHERE f.function_id = e.function_id AND f.app_id = e.app_id AND {_ALIVE}
          AND {_FREE} >= 1
          AND 2 * %(named)s + e.bytes + {_MARKS} <= {_MOST_BYTES}
        ORDER BY f.worker_id LIMIT 1) c),
{_LEASED.format(chosen="= (SELECT run_id FROM chosen)").strip().rstrip(",")}
SELECT pg_notify('stepline', coalesce(
    (SELECT entry FROM chosen),
    json_build_array(json_build_array((%(fns)s::text[])[1], (%(runs)s::text[])[1]))::text))"""


HAND_OFF = compact(_HAND_OFF)
HAND_OFF_ONE = compact(_HAND_OFF_ONE)
# sent before HAND_OFF, the transaction's last statements: its prepared generic plan (planned
# for each send, 0.8 ms of the server's CPU; generic, 0.02), whatever the tables' statistics
# (the lookups are by key); the transaction's own settings, gone at its commit
GENERIC = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), "
    "set_config('enable_seqscan', 'off', true)"
)
# sent before HAND_OFF in a transaction that hands its runs over: GENERIC's settings and a
# commit that does not wait for its WAL's flush (``wakeups``: a hand-off's transaction is
# notified at its commit and flushed after it), in one statement (a statement fewer in the
# send's round trip); the same text as a lease by name's own transaction (``LEASE_ALONE``):
# one prepared statement for both. An optimistic transaction whose generic plans are on up to
# its commit (a send's) asks for it with its last ``GENERIC_PLANS`` instead, and sends no
# other (``Statements._generic_ends_it``)
HANDING = LEASE_ALONE


def hand_off_params(new_runs: dict[str, str], tokens: Sequence[str], named: int) -> dict[str, Any]:
    """``HAND_OFF``'s parameters for ``new_runs`` (run id: function id), a token each, and the
    bytes of the payload naming them (``named``)."""
    return {
        "runs": TextArray(new_runs),
        "fns": TextArray(new_runs.values()),
        "tokens": TextArray(tokens),
        "ranks": _ONE if len(new_runs) == 1 else _ranks(new_runs),
        "prefix": PRESENCE_KEY,
        "named": named,
    }


_ONE = Int4Array([1])


def _ranks(new_runs: dict[str, str]) -> Int4Array:
    """Each run's rank among the runs of its function (1: the first), in run id order."""
    seen: dict[str, int] = {}
    ranks: dict[str, int] = {}
    for run_id in sorted(new_runs):
        ranks[run_id] = seen[new_runs[run_id]] = seen.get(new_runs[run_id], 0) + 1
    return Int4Array([ranks[run_id] for run_id in new_runs])


def prepare_statements(conn: psycopg.Connection[Any]) -> None:
    """(Each new pool connection) prepare ``LEASE_NAMED``, ``HAND_OFF`` and ``HAND_OFF_ONE``
    and make their
    generic plans (``_leases.prepare``): no lease by name and no send plans them."""
    prepare_named(conn)
    prepare(conn, HAND_OFF, hand_off_params({"": ""}, [""], 0))
    prepare(conn, HAND_OFF_ONE, hand_off_params({"": ""}, [""], 0))


class Handed:
    """A lease a notification carried: its owner, token, and the run as it left it."""

    __slots__ = ("function_id", "owner", "run", "run_id", "token")

    def __init__(self, entry: Sequence[Any]) -> None:
        self.function_id, self.run_id, self.owner, self.token = map(str, entry[:4])
        self.run: Sequence[Any] = entry[4:]

    def leased_at(self) -> float:
        """When the sender took the lease (``HAND_OFF``: the run's creation)."""
        return float(self.run[0][_CREATED])

    def lease(self) -> Lease:
        """The lease, saying its run's function (the worker's spare slot goes by it)."""
        run = functools.partial(_state, self.run, self.owner)
        return Lease(self.run_id, self.token, None, None, run, self.function_id)


_COLUMNS = [c.strip() for c in RUN_COLUMNS.split(",")]
_OUTPUT, _STATUS, _WORKER = (_COLUMNS.index(c) for c in ("output", "status", "worker_id"))
_STARTED, _CREATED = _COLUMNS.index("started_at"), _COLUMNS.index("created_at")


def _state(run: Sequence[Any], owner: str) -> RunState:
    """The ``RunState`` of a handed run's payload, as ``LOAD_RUN`` reads it after the lease
    (``_rows.run_state``: such a new run has no steps and no waits), its columns marked as
    ``HAND_OFF``'s lease marked them (``marked``: leased by ``owner``, started at its creation
    if it had not started). Made directly, not as a ``LOAD_RUN`` row decoded again: on the way
    from the notification to the pass."""
    columns, events = run
    columns = list(columns)
    columns[_STATUS], columns[_WORKER] = "RUNNING", owner
    if columns[_STARTED] is None:
        columns[_STARTED] = columns[_CREATED]
    if columns[_OUTPUT] is not None:
        columns[_OUTPUT] = a2b_base64(columns[_OUTPUT])
    record = shapes.run_record(columns)
    # an event's v is its seventh field; a sender of schema 17 (still running beside one that
    # migrated to 18) hands events of six, without it. bytea as base64: a2b_base64 skips the
    # line breaks, as b64decode (which calls it) does
    loads = orjson.loads
    found = [
        EventRecord(
            e[0], e[1], loads(a2b_base64(e[2])), loads(a2b_base64(e[3])), e[4], e[5], v=_v(e)
        )
        for e in events or ()
    ]
    ids = record.event_ids
    if len(found) != 1 or len(ids) != 1 or found[0].internal_id != ids[0]:
        by_id = {e.internal_id: e for e in found}  # in the run's order
        found = [by_id[i] for i in ids if i in by_id]
    return RunState(record, found, {}, [])


def _v(event: Sequence[Any]) -> Any:
    """A handed event's ``v`` (None from a sender of schema 17, which had none)."""
    return event[6] if len(event) > 6 else None


def read_payload(payload: str) -> tuple[list[tuple[str, str]], list[Handed]]:
    """The (function id, run id) a notification's payload names (none: look for any work), and
    the leases it hands over (each also named)."""
    if not payload:
        return [], []
    try:
        found = orjson.loads(payload)  # (json.loads: 2.3x its time, on the way to the pass)
        named = [(str(entry[0]), str(entry[1])) for entry in found]
        handed = [Handed(entry) for entry in found if len(entry) > 2]
        return named, handed
    except (ValueError, TypeError, IndexError):  # not ours: a plain wake-up
        return [], []


class HandOffs:
    """The leases notifications handed to this process's workers, until each takes its own
    (``take``): kept only for owners that ``accept`` them, at most ``size``."""

    def __init__(self, tokens: LeaseTokens, size: int = 1024) -> None:
        self._tokens = tokens
        self._owners: dict[str, float] = {}  # owner -> the age past which its leases are stale
        self._leases: OrderedDict[str, Handed] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def accept(self, owner: str, ttl: float) -> None:
        """Keep ``owner``'s hand-offs; ``take`` starts only those whose lease has half its
        ``ttl`` left (review R8: an owner whose loop was held past the TTL, the notification
        unread meanwhile, must not start a pass from a handed state that another worker's
        takeover has made stale) and gives the others back. A lease starts at its run's
        creation (``HAND_OFF``: the sender's clock, within the skew ``migrate`` allows of
        this machine's; hand-offs are offered under the system's clock only)."""
        with self._lock:
            self._owners[owner] = ttl / 2

    def refuse(self, owner: str) -> None:
        with self._lock:
            self._owners.pop(owner, None)
            for run_id in [r for r, h in self._leases.items() if h.owner == owner]:
                del self._leases[run_id]

    def put(self, handed: Iterable[Handed]) -> set[str]:
        """Keep the leases of ``handed`` whose owner accepts them here; the runs of the others
        (leased to workers of other processes: no worker here can lease them while those
        leases live)."""
        elsewhere = set()
        with self._lock:
            for lease in handed:
                if lease.owner in self._owners:
                    self._leases[lease.run_id] = lease
                    if len(self._leases) > self._size:
                        self._leases.popitem(last=False)
                else:
                    elsewhere.add(lease.run_id)
        return elsewhere

    def take(
        self, owner: str, run_ids: Iterable[str], presence: Presence, now: float
    ) -> tuple[list[Lease], list[str]]:
        """The leases handed to ``owner`` of ``run_ids`` (each once), those taken under its
        presence lock held by this process (``presence``) only: a worker id run by two
        processes (a mistake) has its hand-offs run by the one whose lock they were taken
        under, never by both. Those taken more than half the owner's TTL before ``now`` come
        back as runs to give back (``Worker.give_back``), not to start: the handed state may be
        stale (R8), or the clocks disagree (a lease starts at the sender's clock): the owner's
        next lease attempt expires the lease if it still holds it (by owner: a run another
        worker took over is not touched) and the run is leased again with a fresh read, at
        once, instead of once the lease expired."""
        with self._lock:
            if not self._leases:
                return [], []
            found = []
            oldest = now - self._owners.get(owner, 0.0)
            for run_id in run_ids:
                handed = self._leases.get(run_id)
                if handed is not None and handed.owner == owner:
                    del self._leases[run_id]
                    found.append(handed)
        leases: list[Lease] = []
        old: list[str] = []
        for handed in found:
            if not presence.issued(owner, handed.token):
                continue
            if handed.leased_at() < oldest:
                old.append(handed.run_id)
            else:
                self._tokens.remember(handed.token, owner)
                leases.append(handed.lease())
        return leases, old


def offer(tx: PostgresTx, owner: str, slots: int | None, ttl: float) -> None:
    """``OffersHandOffs.offer_handoffs``: the worker's offer, with its presence prefix (a
    worker whose presence lock this process cannot hold takes none), or withdrawn."""
    prefix = _prefix(tx, owner) if tx._presence is not None and slots is not None else ""
    with tx._savepoint() as s:
        if prefix and slots is not None:
            s.write(OFFER, (owner, prefix, slots, ttl))
        else:
            s.write(WITHDRAW, (owner,))
