"""Every SQL statement the PostgreSQL store runs, by name (psycopg placeholders)."""

from __future__ import annotations

import functools

# a transaction-level advisory lock on a named key (flow-control state that may not have a row
# yet): held until the transaction ends, so the next transaction deciding on the same key reads
# what this one wrote (READ COMMITTED: each statement sees what committed before it began)
LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
TRY_LOCK_KEY = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))"

INSERT_EVENT = """
INSERT INTO events (internal_id, name, data, user_data, sender_id, ts, received_at, duplicate)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (internal_id) DO NOTHING"""
# the sender id is new (or its last sighting is older than the window) iff a row comes back
REMEMBER_SENDER_ID = """
INSERT INTO event_ids (sender_id, seen_at) VALUES (%(id)s, %(now)s)
ON CONFLICT (sender_id) DO UPDATE SET seen_at = excluded.seen_at
WHERE event_ids.seen_at <= %(horizon)s
RETURNING 1"""
INSERT_RUN = """
INSERT INTO runs (run_id, function_id, status, event_ids, created_at, parent_run_id,
                  parent_step_hash, start_timeout, finish_timeout, singleton_key, app_id)
VALUES (%s, %s, 'QUEUED', %s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_RUN_EVENT = """
INSERT INTO run_events (event_id, run_id, effect) VALUES (%s, %s, 'started')
ON CONFLICT DO NOTHING"""
INSERT_EVENT_EFFECT = """
INSERT INTO run_events (event_id, run_id, effect) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"""
INSERT_QUEUE = """
INSERT INTO queue (run_id, due_at, function_id, ckey1, climit1, ckey2, climit2, app_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_HISTORY = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
_STEP_COLUMNS = """run_id, hash, step_id, kind, position, status, output, error, attempts, due_at,
                   started_at, ended_at"""
_UPSERT_STEP_CONFLICT = """
ON CONFLICT (run_id, hash) DO UPDATE SET
    step_id = excluded.step_id, kind = excluded.kind, position = excluded.position,
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, due_at = excluded.due_at, started_at = excluded.started_at,
    ended_at = excluded.ended_at"""
UPSERT_STEP = f"""
INSERT INTO steps ({_STEP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)\
{_UPSERT_STEP_CONFLICT}"""
INSERT_STEP_IF_UNSETTLED = f"""
INSERT INTO steps ({_STEP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id, hash) DO UPDATE SET
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at, ended_at = excluded.ended_at
WHERE steps.status NOT IN ('COMPLETED', 'FAILED')"""
COMPLETE_STEP = """
UPDATE steps SET status = 'COMPLETED', output = %s, ended_at = %s WHERE run_id = %s AND hash = %s"""
SETTLE_PENDING_STEP = """
UPDATE steps SET status = %s, output = %s, error = %s, ended_at = %s, attempts = 1
WHERE run_id = %s AND hash = %s AND status = 'PENDING'
  AND EXISTS (SELECT 1 FROM runs WHERE runs.run_id = steps.run_id
              AND runs.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED'))"""
INSERT_TIMED_OUT_HISTORY = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
SELECT %s, %s, 'WAIT_TIMED_OUT', (SELECT step_id FROM steps WHERE run_id = %s AND hash = %s),
       NULL, NULL, NULL, %s"""
INSERT_STEP_HISTORY = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
SELECT %s, %s, %s, (SELECT step_id FROM steps WHERE run_id = %s AND hash = %s), NULL, NULL, %s,
       NULL"""
INSERT_WAIT = """
INSERT INTO waits (wait_id, run_id, step_hash, event_name, expression, index_path, index_value,
                   expires_at, created_at, step_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_WAIT_PATH = """
INSERT INTO wait_paths (event_name, path) VALUES (%s, %s) ON CONFLICT DO NOTHING"""
WAIT_PATHS = "SELECT path FROM wait_paths WHERE event_name = %s"
WAIT_COLUMNS = """wait_id, run_id, step_hash, event_name, expression, index_path, index_value,
    expires_at, created_at"""
WAITS_UNINDEXED = f"""
SELECT {WAIT_COLUMNS} FROM waits WHERE event_name = %s AND index_path IS NULL"""
WAITS_INDEXED = f"""
SELECT {WAIT_COLUMNS} FROM waits
WHERE event_name = %s AND index_path = %s AND index_value = ANY(%s)"""
WAITS_OF_RUN = f"SELECT {WAIT_COLUMNS} FROM waits WHERE run_id = %s"
# the one who deletes a wait decides it (resolved, timed out or cancelled): the others see no row
DELETE_WAIT = "DELETE FROM waits WHERE wait_id = %s"
DELETE_EXPIRED_WAITS_OF_RUN = f"""
DELETE FROM waits WHERE run_id = %s AND expires_at IS NOT NULL AND expires_at <= %s
RETURNING {WAIT_COLUMNS}"""
DELETE_WAITS_OF_RUN = "DELETE FROM waits WHERE run_id = %s"
WAKE = """
UPDATE queue SET wake = true,
       due_at = CASE WHEN lease_owner IS NULL THEN %s ELSE due_at END
WHERE run_id = %s"""
# the run's queue row, locked until the transaction ends: a lease, a cancellation and a commit
# of the same run are applied one after the other, each seeing the one before
LEASE_TOKEN = "SELECT lease_token, lease_owner FROM queue WHERE run_id = %s FOR UPDATE"
# the run's queue row locked if its lease token is this one, else a failure (division by zero)
# that rolls back the whole transaction (an optimistic one: _statements.Spoiled)
HOLD_LEASE = """
SELECT 1 / count(*)::int FROM (
    SELECT 1 FROM queue WHERE run_id = %s AND lease_token = %s FOR UPDATE
) AS held"""
# the leases of several pass commits held (HOLD_LEASE for each), in one statement: rows locked
# in run id order (two such statements of different transactions never wait for each other
# in a cycle), else a failure when one of the tokens is not the row's
HOLD_LEASES = """
SELECT 1 / (count(*) = %s)::int FROM (
    SELECT 1 FROM queue
    WHERE (run_id, lease_token) IN (SELECT * FROM unnest(%b::text[], %b::text[]))
    ORDER BY run_id FOR UPDATE
) AS held"""
# a run's row rewritten only when it changes: a pass's later commits find it RUNNING, started
# and with no pass spent, and a new row version would cost the server every index of runs
MARK_RUNNING = """
UPDATE runs SET status = 'RUNNING', started_at = COALESCE(started_at, %s), passes = 0
WHERE run_id = %s
  AND (status IS DISTINCT FROM 'RUNNING' OR started_at IS NULL OR passes <> 0)"""
END_RUN_TERMINAL = """
UPDATE runs SET status = %s, output = %s, error = %s, ended_at = %s,
       attempt = COALESCE(%s, attempt), started_at = COALESCE(started_at, %s)
WHERE run_id = %s"""
END_RUN_SUSPENDED = """
UPDATE runs SET status = %s, attempt = COALESCE(%s, attempt),
       started_at = COALESCE(started_at, %s), passes = 0
WHERE run_id = %s"""
DELETE_QUEUE = "DELETE FROM queue WHERE run_id = %s"
PASSES_SPENT = """
SELECT run_id, parent_run_id, parent_step_hash, function_id FROM runs
WHERE run_id = ANY(%s) AND passes >= %s"""
# none of the runs has spent its passes, else a failure (division by zero) that rolls back the
# whole transaction (an optimistic one, made again carefully: PASSES_SPENT then decides)
NONE_SPENT = """
SELECT 1 / (count(*) = 0)::int FROM runs WHERE run_id = ANY(%s) AND passes >= %s"""
FAIL_RUN = "UPDATE runs SET status = 'FAILED', error = %s, ended_at = %s WHERE run_id = %s"
RESCHEDULE = """
UPDATE queue SET due_at = CASE WHEN wake THEN %s ELSE %s END,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, wake = false
WHERE run_id = %s"""
BUSY_SLOTS = """
SELECT ckey1, climit1, ckey2, climit2 FROM queue
WHERE lease_owner IS NOT NULL AND lease_expires_at > %s
  AND (ckey1 IS NOT NULL OR ckey2 IS NOT NULL)"""
BUSY_SLOTS_OF = """
SELECT ckey1, climit1, ckey2, climit2 FROM queue
WHERE lease_owner IS NOT NULL AND lease_expires_at > %(now)s
  AND (ckey1 = ANY(%(keys)s) OR ckey2 = ANY(%(keys)s))"""
PAUSED_AMONG = """
SELECT function_id FROM paused WHERE app_id IN (%s, '') AND function_id = ANY(%s)"""
ANY_UNOWNED = "SELECT 1 FROM queue WHERE app_id = '' LIMIT 1"
LIVE_LEASES = """
SELECT function_id, ckey1, climit1, ckey2, climit2 FROM queue
WHERE lease_owner IS NOT NULL AND lease_expires_at > %s"""
# the presence lock of the worker {key} (presence.py), granted to some session
_PRESENCE_LOCK = """l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = ((hashtextextended(%(prefix)s || {key}, 0) >> 32) & 4294967295)::oid
  AND l.objid = (hashtextextended(%(prefix)s || {key}, 0) & 4294967295)::oid"""
# The tokens of leases taken under a presence lock (presence.py) since the server's sessions
# last all ended: "p:<epoch>:", the epoch the later of the server's start and the last reset of
# its shared statistics (a crash of any backend ends every session and resets them; a restart
# keeps them); microseconds
PRESENCE_EPOCH = """'p:' || (
  extract(epoch FROM greatest(
    pg_postmaster_start_time(), (SELECT stats_reset FROM pg_stat_bgwriter))) * 1000000
)::bigint || ':'"""
LIVE_PRESENCE = f"lease_token LIKE {PRESENCE_EPOCH} || '%%'"
# the owners of live leases taken under a presence lock since the last reset (LIVE_PRESENCE) that
# nobody holds now, other than the worker asking, which must hold its own (a worker that lost
# its lock to a reset judges nobody until it took it again): the process that held it ended
# (its leases are treated as expired)
DEAD_OWNERS = f"""
SELECT DISTINCT lease_owner FROM queue
WHERE lease_owner IS NOT NULL AND lease_owner <> %(owner)s AND lease_expires_at > %(now)s
  AND {LIVE_PRESENCE}
  AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE {_PRESENCE_LOCK.format(key="lease_owner")})
  AND EXISTS (SELECT 1 FROM pg_locks l WHERE {_PRESENCE_LOCK.format(key="%(owner)s")})"""
# the concurrency keys whose live leases reached the key's limit
FULL_KEYS = """
SELECT key FROM (
    SELECT ckey1 AS key, climit1 AS cap FROM queue
    WHERE lease_owner IS NOT NULL AND lease_expires_at > %(now)s
      AND ckey1 IS NOT NULL AND climit1 IS NOT NULL
    UNION ALL
    SELECT ckey2, climit2 FROM queue
    WHERE lease_owner IS NOT NULL AND lease_expires_at > %(now)s
      AND ckey2 IS NOT NULL AND climit2 IS NOT NULL
) AS live GROUP BY key HAVING count(*) >= min(cap)"""
_NOT_PAUSED_FN = """NOT EXISTS (
    SELECT 1 FROM paused WHERE app_id IN (%(app)s, '') AND function_id = %(fn)s)"""
# the served function's oldest due runs of app %(app{i})s, full concurrency keys left out, then
# its runs whose lease expired or whose owner's presence lock is gone, in queue order, locked:
# rows another worker is leasing right now are skipped, never waited for
_DUE_OF = f"""
SELECT * FROM (
    SELECT {{i}} AS served, false AS expired,
           run_id, due_at, ckey1, climit1, ckey2, climit2, lease_owner FROM queue
    WHERE app_id = %(app{{i}})s AND function_id = %(fn)s AND lease_owner IS NULL
      AND due_at <= %(by)s
      AND (ckey1 IS NULL OR NOT ckey1 = ANY(ARRAY(SELECT key FROM full_keys)))
      AND (ckey2 IS NULL OR NOT ckey2 = ANY(ARRAY(SELECT key FROM full_keys)))
      AND {_NOT_PAUSED_FN}
    ORDER BY due_at, run_id LIMIT %(window)s FOR UPDATE SKIP LOCKED) AS due{{i}}"""
_EXPIRED_OF = f"""
SELECT * FROM (
    SELECT {{i}} AS served, true AS expired,
           run_id, due_at, ckey1, climit1, ckey2, climit2, lease_owner FROM queue
    WHERE app_id = %(app{{i}})s AND function_id = %(fn)s AND lease_owner IS NOT NULL
      AND (lease_expires_at <= %(now)s
           OR lease_owner <> %(owner)s AND {LIVE_PRESENCE}
              AND lease_owner = ANY(ARRAY(SELECT lease_owner FROM dead_owners)))
      AND {_NOT_PAUSED_FN}
    ORDER BY due_at, run_id LIMIT %(window)s FOR UPDATE SKIP LOCKED) AS expired{{i}}"""


@functools.cache
def lease_candidates(apps: int) -> str:
    """The candidates of a lease (``tx.lease_due``) of one served function, in one statement:
    its due runs and runs whose lease expired (``_DUE_OF``, ``_EXPIRED_OF``) of each of
    ``apps`` apps (the served app, and "" for rows recorded before runs carried their app),
    each row tagged with the app's number and whether the lease expired. Parameters: ``app``
    (the served app), ``app<i>``, ``fn``, ``now``, ``by``, ``window``, ``owner`` and ``prefix``.
    One statement a function, the same text for each (prepared once, planned once): one
    statement for all functions took the planner milliseconds per function. The full keys and
    the dead owners are computed only if a row asks for them (a scan that finds no run with a
    concurrency key, or no lease of another owner, never reads them)."""
    parts = [part.format(i=i) for i in range(apps) for part in (_DUE_OF, _EXPIRED_OF)]
    union = "\nUNION ALL".join(parts)
    return f"""
WITH full_keys AS MATERIALIZED ({FULL_KEYS}),
dead_owners AS MATERIALIZED ({DEAD_OWNERS})
{union}"""


# the oldest due run of each concurrency-key group of one function (behind a backlog longer
# than the window), unlocked: a run picked from these is locked before it is leased
GROUP_HEADS = """
SELECT DISTINCT ON (ckey1, ckey2) run_id, due_at, ckey1, climit1, ckey2, climit2, lease_owner
FROM queue
WHERE app_id = %(app)s AND function_id = %(fn)s AND lease_owner IS NULL AND due_at <= %(by)s
ORDER BY ckey1, ckey2, due_at, run_id"""
LOCK_DUE = """
SELECT run_id FROM queue
WHERE run_id = ANY(%s) AND lease_owner IS NULL AND due_at <= %s FOR UPDATE SKIP LOCKED"""
# the leases taken (queue), a RUN_STARTED row for each run's first pass (history: it reads the
# runs as they were before the statement, as when it was sent before the update of runs) and the
# runs marked leased, in one statement: its parts write different tables. {runs}: the runs
_TAKE = """
leased AS (
    UPDATE queue SET lease_owner = %(owner)s, lease_token = %(token)s,
           lease_expires_at = %(expires)s, wake = false,
           app_id = CASE WHEN app_id = '' THEN %(app)s ELSE app_id END
    WHERE run_id {runs}),
started AS (
    INSERT INTO history (run_id, ts, kind, worker_id)
    SELECT run_id, %(now)s, 'RUN_STARTED', %(owner)s FROM runs
    WHERE run_id {runs} AND started_at IS NULL
      AND (start_timeout IS NULL OR %(now)s <= created_at + start_timeout)),
marked AS (
    UPDATE runs SET status = 'RUNNING', worker_id = %(owner)s, passes = passes + 1,
           started_at = CASE WHEN started_at IS NULL
                              AND (start_timeout IS NULL OR %(now)s <= created_at + start_timeout)
                             THEN %(now)s ELSE started_at END,
           app_id = CASE WHEN app_id = '' THEN %(app)s ELSE app_id END
    WHERE run_id {runs}{returning})"""
TAKE_LEASES = f"WITH {_TAKE.format(runs='= ANY(%(runs)s)', returning='')}\nSELECT 1"
GENERIC_PLANS = "SET LOCAL plan_cache_mode TO force_generic_plan"
DEFAULT_PLANS = "SET LOCAL plan_cache_mode TO DEFAULT"
MARK_STEP_RUNNING = f"""
INSERT INTO steps ({_STEP_COLUMNS})
VALUES (%s, %s, %s, %s, %s, 'RUNNING', NULL, NULL, %s, NULL, %s, NULL)
ON CONFLICT (run_id, hash) DO UPDATE SET status = 'RUNNING', started_at = excluded.started_at
WHERE steps.status NOT IN ('COMPLETED', 'FAILED') AND steps.attempts <= excluded.attempts"""
# the runs whose lease this worker still holds come back (the others it lost)
HEARTBEAT = """
UPDATE queue SET lease_expires_at = %s WHERE run_id = ANY(%s) AND lease_owner = %s
RETURNING run_id"""
RELEASE_OWNER = """
UPDATE queue SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, wake = false,
       due_at = LEAST(COALESCE(due_at, %s), %s)
WHERE lease_owner = %s"""
CANCEL_RUN = """
UPDATE runs SET status = 'CANCELLED', ended_at = %s, error = %s,
       cancelled_lease = (SELECT lease_token FROM queue WHERE queue.run_id = runs.run_id)
WHERE run_id = %s AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')
RETURNING function_id, parent_run_id, parent_step_hash"""
RUN_EVENT_IDS = "SELECT event_ids FROM runs WHERE run_id = %s"
CANCELLED_LEASE = """
SELECT cancelled_lease, worker_id FROM runs WHERE run_id = %s AND status = 'CANCELLED'"""
RUN_COLUMNS = """run_id, function_id, status, event_ids, created_at, started_at, ended_at, output,
    error, attempt, parent_run_id, parent_step_hash, start_timeout, finish_timeout, app_id,
    worker_id"""
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s"
# the runs some events acted on (their ids, then the limit per event), newest first
EVENT_RUNS = f"""
SELECT event_id, effect, {RUN_COLUMNS} FROM (
    SELECT e.event_id, e.effect, r.*, row_number() OVER (
        PARTITION BY e.event_id ORDER BY r.created_at DESC, r.run_id DESC, e.effect) AS n
    FROM run_events e JOIN runs r ON r.run_id = e.run_id
    WHERE e.event_id = ANY(%s)) AS found
WHERE n <= %s ORDER BY event_id, n"""
LIST_RUNS = f"""
SELECT {RUN_COLUMNS} FROM runs {{where}} ORDER BY created_at DESC, run_id DESC LIMIT %s"""
# a payload search's window: the newest runs the filter ({where}) selects, numbered from 1, down
# to one past the window (the LIMIT), with how many there are; those the clauses ({match})
# keep, and the window's oldest run and the one past it whether kept or not (with whether they
# are). The window's columns ({added}, from the run's first event and its queue row when
# {join}ed) are computed once a row (OFFSET 0).
SEARCH_WINDOW = f"""
SELECT n, selected, CASE WHEN n < LEAST(selected, %s) THEN true ELSE ({{match}}) END,
       {RUN_COLUMNS}
FROM (
    SELECT row_number() OVER (ORDER BY newest.created_at DESC, newest.run_id DESC) AS n,
           count(*) OVER () AS selected, newest.*{{added}}
    FROM (SELECT {RUN_COLUMNS} FROM runs {{where}} ORDER BY created_at DESC, run_id DESC
          LIMIT %s) AS newest{{join}}
    OFFSET 0) AS seen
WHERE n >= LEAST(selected, %s) OR ({{match}}) ORDER BY n"""
# a window without clauses: its runs up to one past it, each kept (the store numbers them;
# row_number() and count(*) OVER cost the server 40 ms for 10,000 runs)
WHOLE_WINDOW = f"""
SELECT true, {RUN_COLUMNS} FROM runs {{where}} ORDER BY created_at DESC, run_id DESC LIMIT %s"""
# (a lateral lookup by the events' key per run: a join let the planner hash all the events)
SEARCH_EVENT_JOIN = """
    LEFT JOIN LATERAL (SELECT name, data FROM events
                       WHERE internal_id = (newest.event_ids::jsonb ->> 0) LIMIT 1) AS e ON true"""
SEARCH_QUEUE_JOIN = """
    LEFT JOIN LATERAL (SELECT due_at FROM queue WHERE queue.run_id = newest.run_id LIMIT 1)
        AS qr ON true"""
COUNT_RUNS = "SELECT count(*) FROM (SELECT 1 FROM runs {where} LIMIT %s) AS counted"
SELECT_STEPS = f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = %s ORDER BY position"

EVENT_COLUMNS = "internal_id, name, data, user_data, sender_id, ts"


# a run with its events, steps and waits in one statement (one snapshot: a statement sees what
# committed before it began), each of them as one array per column, in one order per table
def _arrays(columns: str, order: str) -> str:
    return ", ".join(f"array_agg({c.strip()} ORDER BY {order})" for c in columns.split(","))


# the run's events by primary key from an array (an init plan): with `IN (SELECT …)` the planner
# chose a hash semi-join over a scan of the whole events table, at every load
LOAD_RUN = f"""
SELECT {RUN_COLUMNS}, e.*, s.*, w.*
FROM runs r
CROSS JOIN LATERAL (
    SELECT {_arrays(EVENT_COLUMNS, "internal_id")} FROM events
    WHERE internal_id = ANY(ARRAY(SELECT jsonb_array_elements_text(r.event_ids::jsonb)))
) e
CROSS JOIN LATERAL (
    SELECT {_arrays(_STEP_COLUMNS, "position, hash")} FROM steps WHERE steps.run_id = r.run_id
) s
CROSS JOIN LATERAL (
    SELECT {_arrays(WAIT_COLUMNS, "created_at, wait_id")} FROM waits WHERE waits.run_id = r.run_id
) w
WHERE r.run_id = %s"""
LOAD_RUNS = LOAD_RUN.replace("WHERE r.run_id = %s", "WHERE r.run_id = ANY(%s)")
_LOAD_MARKED = LOAD_RUN.replace("FROM runs r", "FROM marked r").replace("\nWHERE r.run_id = %s", "")
# A lease of named runs (the new runs a NOTIFY named, tx.lease_named), in one statement that
# decides and takes: of %(runs)s, those of the served functions %(fns)s (of app %(app)s, or
# of none), due, not leased, without concurrency keys, of an unpaused function, that have not
# spent their passes nor passed their start deadline, and that nothing of their function is
# ahead of (no due run earlier in the queue order, other than the named ones, and no expired
# lease), locked SKIP LOCKED; the runs taken come back as LOAD_RUNS reads them (their runs rows
# as the statement left them, RETURNING; their events, steps and waits, which it does not
# write). Any other run is left to lease_due.
# Each look is a probe by key whatever the plan: the named rows by their primary key, then per
# row and app (the served one, and none) a subquery in the order of queue_fn_due /
# queue_fn_lease, LIMIT 1 (it stops at the first row ahead; without the ORDER BY a plan may scan
# the table for that row, and with both apps in one subquery it sorts all the rows ahead), and
# one on the run's primary key; the writes by primary key (= ANY(ARRAY)). Planned once per
# connection (tx.lease_named sends it with plan_cache_mode force_generic_plan).
_AHEAD_OF_NAMED = """AND (SELECT 1 FROM queue o
           WHERE o.app_id = {app} AND o.function_id = n.function_id
             AND o.lease_owner IS NULL AND o.due_at <= n.due_at
             AND (o.due_at, o.run_id) < (n.due_at, n.run_id)
             AND NOT o.run_id = ANY(%(runs)s)
           ORDER BY o.due_at, o.run_id LIMIT 1) IS NULL
      AND (SELECT 1 FROM queue o
           WHERE o.app_id = {app} AND o.function_id = n.function_id
             AND o.lease_owner IS NOT NULL AND o.lease_expires_at <= %(now)s
           ORDER BY o.lease_expires_at LIMIT 1) IS NULL"""
LEASE_NAMED = f"""
WITH named AS MATERIALIZED (
    SELECT run_id, function_id, due_at FROM queue
    WHERE run_id = ANY(%(runs)s)
      AND function_id = ANY(%(fns)s) AND app_id IN (%(app)s, '')
      AND lease_owner IS NULL AND due_at <= %(now)s AND ckey1 IS NULL AND ckey2 IS NULL),
eligible AS MATERIALIZED (
    SELECT n.run_id FROM named n
    WHERE (SELECT 1 FROM paused p
           WHERE p.app_id IN (%(app)s, '') AND p.function_id = n.function_id LIMIT 1) IS NULL
      {_AHEAD_OF_NAMED.format(app="%(app)s")}
      {_AHEAD_OF_NAMED.format(app="''")}
      AND (SELECT 1 FROM runs r
           WHERE r.run_id = n.run_id AND r.passes < %(max_passes)s
             AND (r.start_timeout IS NULL OR %(now)s <= r.created_at + r.start_timeout)) = 1),
picked AS (
    SELECT run_id FROM queue
    WHERE run_id = ANY(ARRAY(SELECT run_id FROM eligible)) AND lease_owner IS NULL
    ORDER BY due_at, run_id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED),
{_TAKE.format(runs="= ANY(ARRAY(SELECT run_id FROM picked))", returning=" RETURNING *")}
{_LOAD_MARKED}
ORDER BY array_position(ARRAY(SELECT run_id FROM picked), r.run_id)"""
SELECT_HISTORY = """
SELECT run_id, ts, kind, step_id, attempt, duration, data, worker_id FROM history
WHERE run_id = %s ORDER BY seq"""
SELECT_EVENTS = f"SELECT {EVENT_COLUMNS} FROM events WHERE internal_id = ANY(%s)"
_NOT_PAUSED = """function_id NOT IN (SELECT function_id FROM paused WHERE app_id = '')
      AND (app_id, function_id) NOT IN (SELECT app_id, function_id FROM paused)"""
NEXT_DUE = f"""
SELECT MIN(t) FROM (
    SELECT MIN(due_at) AS t FROM queue WHERE lease_owner IS NULL AND {_NOT_PAUSED}
    UNION ALL
    SELECT MIN(lease_expires_at) AS t FROM queue WHERE lease_owner IS NOT NULL AND {_NOT_PAUSED}
    UNION ALL
    SELECT MIN(due_at) AS t FROM deferrals
    UNION ALL
    SELECT MIN(next_at) AS t FROM crons
) AS times"""
# its inbox arm: when the first row of each function was received (sqlite/queries.py,
# NEXT_INBOX_OF), one probe of inbox_function a function: the first index entry at or after
# the function's (a range of a row comparison, so no plan filters the primary key's order)
NEXT_DUE_OF = """
SELECT MIN(t) FROM (
    SELECT MIN(due_at) AS t FROM queue
    WHERE app_id = ANY(%(apps)s) AND function_id = ANY(%(fns)s) AND lease_owner IS NULL
    UNION ALL
    SELECT MIN(lease_expires_at) AS t FROM queue
    WHERE app_id = ANY(%(apps)s) AND function_id = ANY(%(fns)s) AND lease_owner IS NOT NULL
    UNION ALL
    SELECT MIN(due_at) AS t FROM deferrals
    UNION ALL
    SELECT MIN(next_at) AS t FROM crons WHERE app_id = %(app)s AND function_id = ANY(%(all)s)
    UNION ALL
    SELECT MIN(created_at + start_timeout) AS t FROM runs
    WHERE status = 'QUEUED' AND started_at IS NULL AND start_timeout IS NOT NULL
      AND app_id = ANY(%(apps)s) AND function_id = ANY(%(all)s)
    UNION ALL
    SELECT MIN((SELECT CASE WHEN app_id = %(app)s AND function_id = f THEN received_at END
                FROM inbox WHERE (app_id, function_id, seq) > (%(app)s, f, 0)
                ORDER BY app_id, function_id, seq LIMIT 1)) AS t
    FROM unnest(%(all)s::text[]) AS f
) AS times"""
# a queued run not started yet with a start timeout (the index runs_start_deadline)
_UNSTARTED_OF = """runs.status = 'QUEUED' AND runs.started_at IS NULL
  AND runs.start_timeout IS NOT NULL AND runs.app_id = ANY(%(apps)s)
  AND runs.function_id = ANY(%(fns)s)"""
NEXT_START_DEADLINE_OF = f"SELECT MIN(created_at + start_timeout) FROM runs WHERE {_UNSTARTED_OF}"
# locked as a lease takes them, the queue row first: a run that a lease holds is skipped, one a
# lease took meanwhile is not returned (its queue row is read again once locked), and no lease
# takes a returned run before this transaction has cancelled it
OVERDUE_STARTS = f"""
SELECT runs.run_id, runs.function_id, runs.start_timeout
FROM runs JOIN queue ON queue.run_id = runs.run_id
WHERE {_UNSTARTED_OF} AND runs.created_at + runs.start_timeout < %(now)s
  AND queue.lease_owner IS NULL
ORDER BY runs.created_at + runs.start_timeout LIMIT %(limit)s
FOR UPDATE OF queue SKIP LOCKED"""
WAITING_FOR_WORKER = """status IN ('QUEUED', 'RUNNING', 'SLEEPING', 'WAITING', 'RETRYING')
  AND NOT EXISTS (
    SELECT 1 FROM worker_functions wf JOIN workers w ON w.worker_id = wf.worker_id
    WHERE wf.function_id = runs.function_id AND (runs.app_id = '' OR wf.app_id = runs.app_id)
      AND w.expires_at > %s)"""
REGISTER_WORKER = """
INSERT INTO workers (worker_id, app_id, function_ids, started_at, seen_at, expires_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (worker_id) DO UPDATE SET app_id = excluded.app_id,
    function_ids = excluded.function_ids, started_at = excluded.started_at,
    seen_at = excluded.seen_at, expires_at = excluded.expires_at"""
INSERT_WORKER_FUNCTION = """
INSERT INTO worker_functions (function_id, app_id, worker_id) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING"""
DELETE_WORKER = "DELETE FROM workers WHERE worker_id = %s"
DELETE_WORKER_FUNCTIONS = "DELETE FROM worker_functions WHERE worker_id = %s"
TOUCH_WORKER = "UPDATE workers SET seen_at = %s, expires_at = %s WHERE worker_id = %s"
LIVE_WORKERS = """
SELECT worker_id, app_id, function_ids, started_at, seen_at, expires_at FROM workers
WHERE expires_at > %s ORDER BY worker_id"""
PURGE_WORKERS = """
DELETE FROM worker_functions
WHERE worker_id IN (SELECT worker_id FROM workers WHERE expires_at < %s)"""
PURGE_WORKER_ROWS = "DELETE FROM workers WHERE expires_at < %s"
ADOPT_RUNS = "UPDATE runs SET app_id = %s WHERE app_id = '' AND function_id = ANY(%s)"
ADOPT_QUEUE = "UPDATE queue SET app_id = %s WHERE app_id = '' AND function_id = ANY(%s)"
# schedules and pauses recorded without an app become the app's, unless it has them already
ADOPT_CRONS = """
UPDATE crons u SET app_id = %(app)s
WHERE u.app_id = '' AND u.function_id = ANY(%(fns)s)
  AND NOT EXISTS (SELECT 1 FROM crons o WHERE o.app_id = %(app)s
                  AND o.function_id = u.function_id AND o.cron = u.cron)"""
DROP_UNOWNED_CRONS = "DELETE FROM crons WHERE app_id = '' AND function_id = ANY(%s)"
ADOPT_PAUSES = """
UPDATE paused u SET app_id = %(app)s
WHERE u.app_id = '' AND u.function_id = ANY(%(fns)s)
  AND NOT EXISTS (SELECT 1 FROM paused o WHERE o.app_id = %(app)s
                  AND o.function_id = u.function_id)"""
DROP_UNOWNED_PAUSES = "DELETE FROM paused WHERE app_id = '' AND function_id = ANY(%s)"

# -- flow control ---------------------------------------------------------------------------------
DELETE_MATCHERS_OF_RUN = "DELETE FROM matchers WHERE run_id = %s"
# the marks of steps a pass was executing when its run ended (their results never came)
DELETE_EXECUTING_STEPS = "DELETE FROM steps WHERE run_id = %s AND status = 'RUNNING'"
# an ended run's queue row, waits, matchers and RUNNING marks, in one statement (four tables,
# none read by another part: the same as the four statements one after the other)
DROP_RUN_WORK = f"""
WITH queue_row AS ({DELETE_QUEUE}), its_waits AS ({DELETE_WAITS_OF_RUN}),
     its_matchers AS ({DELETE_MATCHERS_OF_RUN})
{DELETE_EXECUTING_STEPS}"""
# a new run's row, queue row and RUN_QUEUED history row, in one statement (as DROP_RUN_WORK)
CREATE_RUN = f"""
WITH run AS ({INSERT_RUN}), queue_row AS ({INSERT_QUEUE})
{INSERT_HISTORY}"""
INSERT_MATCHER = """
INSERT INTO matchers (matcher_id, run_id, event_name, expression, index_path, index_value,
                      expires_at, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_MATCHER_PATH = """
INSERT INTO matcher_paths (event_name, path) VALUES (%s, %s) ON CONFLICT DO NOTHING"""
MATCHER_PATHS = "SELECT path FROM matcher_paths WHERE event_name = %s"
MATCHER_COLUMNS = """matcher_id, run_id, '' AS step_hash, event_name, expression, index_path,
    index_value, expires_at, created_at"""
MATCHERS_UNINDEXED = f"""
SELECT {MATCHER_COLUMNS} FROM matchers
WHERE event_name = %s AND index_path IS NULL AND (expires_at IS NULL OR expires_at >= %s)"""
# none of the event names has a wait or cancel matcher (indexed or not), else a failure
# (division by zero) that rolls back the whole transaction (an optimistic one, made again
# carefully, reading them)
NO_WAITS_NOR_MATCHERS = """
SELECT 1 / (
    NOT EXISTS (SELECT 1 FROM wait_paths WHERE event_name = ANY(%(names)s))
    AND NOT EXISTS (SELECT 1 FROM matcher_paths WHERE event_name = ANY(%(names)s))
    AND NOT EXISTS (
        SELECT 1 FROM waits WHERE event_name = ANY(%(names)s) AND index_path IS NULL)
    AND NOT EXISTS (
        SELECT 1 FROM matchers WHERE event_name = ANY(%(names)s) AND index_path IS NULL
        AND (expires_at IS NULL OR expires_at >= %(now)s))
)::int"""
MATCHERS_INDEXED = f"""
SELECT {MATCHER_COLUMNS} FROM matchers
WHERE event_name = %s AND index_path = %s AND index_value = ANY(%s)
  AND (expires_at IS NULL OR expires_at >= %s)"""
IDEMPOTENCY_SEEN = "SELECT seen_at FROM idempotency WHERE key = %s"
REMEMBER_IDEMPOTENCY = """
INSERT INTO idempotency (key, seen_at) VALUES (%s, %s)
ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at"""
GCRA_TAT = "SELECT tat FROM gcra WHERE bucket = %s"
SET_GCRA_TAT = """
INSERT INTO gcra (bucket, tat) VALUES (%s, %s)
ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat"""
ACTIVE_SINGLETON_RUNS = """
SELECT run_id FROM runs
WHERE singleton_key = %s AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"""
INSERT_SKIP = "INSERT INTO skips (event_id, function_id, reason, at) VALUES (%s, %s, %s, %s)"
LIST_SKIPS = """
SELECT event_id, function_id, reason, at FROM skips {where} ORDER BY seq DESC LIMIT %s"""
DEFERRAL_COLUMNS = "kind, function_id, key, event_ids, first_at, due_at, run"
GET_DEFERRAL = f"""
SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE kind = %s AND function_id = %s AND key = %s"""
PUT_DEFERRAL = f"""
INSERT INTO deferrals ({DEFERRAL_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (kind, function_id, key) DO UPDATE SET event_ids = excluded.event_ids,
    first_at = excluded.first_at, due_at = excluded.due_at, run = excluded.run"""
DELETE_DEFERRAL = "DELETE FROM deferrals WHERE kind = %s AND function_id = %s AND key = %s"
DUE_DEFERRALS = f"SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE due_at <= %s ORDER BY due_at"
# no debounce or batch is due, else a failure (division by zero) that rolls back the whole
# transaction (an optimistic one, made again carefully: DUE_DEFERRALS then decides)
NONE_DUE_DEFERRALS = """
SELECT 1 / (NOT EXISTS (SELECT 1 FROM deferrals WHERE due_at <= %s))::int"""
CRONS_OF = "SELECT function_id, cron FROM crons WHERE app_id = %s AND function_id = ANY(%s)"
INSERT_CRON = """
INSERT INTO crons (function_id, cron, next_at, app_id) VALUES (%s, %s, %s, %s)
ON CONFLICT DO NOTHING"""
DELETE_CRON = "DELETE FROM crons WHERE app_id = %s AND function_id = %s AND cron = %s"
DUE_CRONS = """
SELECT function_id, cron, next_at, app_id FROM crons
WHERE next_at <= %s AND app_id = %s AND function_id = ANY(%s)"""
# compare-and-set: under READ COMMITTED a second worker's UPDATE waits for the first, re-checks
# ``next_at`` against the committed row and updates nothing
ADVANCE_CRON = """
UPDATE crons SET next_at = %s
WHERE app_id = %s AND function_id = %s AND cron = %s AND next_at = %s"""
PAUSE = "INSERT INTO paused (app_id, function_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
RESUME = "DELETE FROM paused WHERE app_id IN (%s, '') AND function_id = %s"
RESUME_EVERY_APP = "DELETE FROM paused WHERE function_id = %s"
PAUSED = "SELECT DISTINCT function_id FROM paused"
PAUSED_IN = "SELECT function_id FROM paused WHERE app_id IN (%s, '')"
COPY_STEPS = f"""
INSERT INTO steps ({_STEP_COLUMNS})
SELECT %s, hash, step_id, kind, position, status, output, error, attempts, due_at, started_at,
       ended_at
FROM steps WHERE run_id = %s AND position < %s AND status = 'COMPLETED'"""

# -- retention ------------------------------------------------------------------------------------
# purges delete a bounded batch (the last parameter) per statement, skipping rows another
# transaction holds (a flow-control decision in flight) instead of waiting for them. The batch
# is picked once, in an ARRAY(...) subquery (an init plan): `IN (SELECT … LIMIT … SKIP LOCKED)`
# may be rescanned by a nested-loop plan and pick other rows each time, deleting past the limit
PURGE_SENDER_IDS = """
DELETE FROM event_ids WHERE sender_id = ANY(ARRAY(
  SELECT sender_id FROM event_ids WHERE seen_at < %s LIMIT %s FOR UPDATE SKIP LOCKED))"""
PURGE_IDEMPOTENCY = """
DELETE FROM idempotency WHERE key = ANY(ARRAY(
  SELECT key FROM idempotency WHERE seen_at < %s LIMIT %s FOR UPDATE SKIP LOCKED))"""
PURGE_GCRA = """
DELETE FROM gcra WHERE bucket = ANY(ARRAY(
  SELECT bucket FROM gcra WHERE tat < %s LIMIT %s FOR UPDATE SKIP LOCKED))"""
ENDED_BEFORE = """
SELECT run_id FROM runs
WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND ended_at < %s
ORDER BY ended_at LIMIT %s FOR UPDATE SKIP LOCKED"""
DELETE_RUNS = "DELETE FROM runs WHERE run_id = ANY(%s)"
DELETE_STEPS_OF_RUNS = "DELETE FROM steps WHERE run_id = ANY(%s)"
DELETE_HISTORY_OF_RUNS = "DELETE FROM history WHERE run_id = ANY(%s)"
DELETE_RUN_EVENTS_OF_RUNS = "DELETE FROM run_events WHERE run_id = ANY(%s)"
# inbox rows nobody took within the retention (a retired app's, ...): their events go too
PURGE_INBOX = """
DELETE FROM inbox WHERE seq = ANY(ARRAY(
  SELECT seq FROM inbox WHERE received_at < %s LIMIT %s FOR UPDATE SKIP LOCKED))"""
PURGE_EVENTS = """
DELETE FROM events WHERE internal_id = ANY(ARRAY(
  SELECT internal_id FROM events WHERE received_at < %s
    AND NOT EXISTS (SELECT 1 FROM run_events WHERE run_events.event_id = events.internal_id)
    AND NOT EXISTS (SELECT 1 FROM deferrals
                    WHERE deferrals.event_ids::jsonb ? events.internal_id)
    AND NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.event_id = events.internal_id)
  ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED))"""
PURGE_SKIPS = """
DELETE FROM skips WHERE seq = ANY(ARRAY(
  SELECT seq FROM skips WHERE at < %s ORDER BY at LIMIT %s FOR UPDATE SKIP LOCKED))"""

# -- schema ---------------------------------------------------------------------------------------
TABLE_NAMES = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"""
SCHEMA_VERSION = "SELECT MAX(version) FROM schema_version"
SERVER_TIME = "SELECT extract(epoch FROM clock_timestamp())::double precision"

# -- what the dashboard reads ---------------------------------------------------------------------
QUEUE_STATES = """
SELECT run_id, due_at, lease_owner IS NOT NULL AND lease_expires_at > %s, ckey1, climit1, ckey2,
       climit2
FROM queue WHERE run_id = ANY(%s)"""
WAITS_OF_RUNS = f"SELECT {WAIT_COLUMNS} FROM waits WHERE run_id = ANY(%s)"
LIST_EVENTS = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}}
ORDER BY received_at DESC, internal_id DESC LIMIT %s"""
STEPS_OF = f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ANY(%s) ORDER BY run_id, position"
RUNS_BY_STATUS = "SELECT status, COUNT(*) FROM runs GROUP BY status"
QUEUE_DEPTH = "SELECT COUNT(*) FROM queue"
QUEUE_DUE = "SELECT COUNT(*), MIN(due_at) FROM queue WHERE lease_owner IS NULL AND due_at <= %s"
STORED_EVENT_IDS = "SELECT internal_id FROM events WHERE internal_id = ANY(%s)"

# -- Inngest SDK apps -----------------------------------------------------------------------------
PUT_SDK_APP = """
INSERT INTO sdk_apps (app_id, name, registration, synced_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (app_id, name) DO UPDATE SET registration = excluded.registration,
    synced_at = excluded.synced_at"""
SDK_APPS = "SELECT name, registration FROM sdk_apps WHERE app_id = %s ORDER BY name"

# -- the trigger catalog and the inbox (events handed to other apps' functions) -------------------
CATALOG_VERSION = "SELECT coalesce((SELECT version FROM trigger_catalog WHERE id = 1), 0)"
# fails the (optimistic) transaction unless the catalog's version is still the one given
CATALOG_IS = """
SELECT 1 / (coalesce((SELECT version FROM trigger_catalog WHERE id = 1), 0) = %s)::int"""
CATALOG_ROWS = "SELECT app_id, function_id, event_name FROM triggers"
TRIGGERS_OF_APP = "SELECT function_id, event_name FROM triggers WHERE app_id = %s"
# the functions the app's live workers serve (a registration keeps their rows)
LIVE_FUNCTIONS_OF_APP = """
SELECT DISTINCT f.function_id FROM workers w JOIN worker_functions f ON f.worker_id = w.worker_id
WHERE w.app_id = %s AND w.expires_at > %s"""
DROP_INBOX_OF_FUNCTION = (
    "DELETE FROM inbox WHERE app_id = %s AND function_id = %s RETURNING seq, event_id"
)
DELETE_TRIGGERS_OF_APP = "DELETE FROM triggers WHERE app_id = %s"
INSERT_TRIGGER = """
INSERT INTO triggers (app_id, event_name, function_id) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING"""
SET_CATALOG_VERSION = """
INSERT INTO trigger_catalog (id, version) VALUES (1, %s)
ON CONFLICT (id) DO UPDATE SET version = excluded.version"""
# the apps (``Store.apps``, ``remove_app``): their workers and the events waiting for them
APP_WORKERS = """
SELECT app_id, max(seen_at), count(*) FILTER (WHERE expires_at > %s) FROM workers GROUP BY app_id"""
APP_INBOX = "SELECT app_id, count(*) FROM inbox GROUP BY app_id"
LIVE_WORKERS_OF_APP = "SELECT count(*) FROM workers WHERE app_id = %s AND expires_at > %s"
DROP_INBOX_OF_APP = "DELETE FROM inbox WHERE app_id = %s"
DROP_SDK_APPS_OF_APP = "DELETE FROM sdk_apps WHERE app_id = %s"
DELIVER = "INSERT INTO inbox (app_id, function_id, event_id, received_at) VALUES (%s, %s, %s, %s)"
TAKE_INBOX = f"""
WITH taken AS (
  DELETE FROM inbox WHERE seq = ANY(ARRAY(
    SELECT seq FROM inbox WHERE app_id = %s AND function_id = ANY(%s)
    ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED))
  RETURNING seq, function_id, event_id, received_at)
SELECT taken.seq, taken.function_id, taken.event_id, taken.received_at,
       {", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))}
FROM taken LEFT JOIN events e ON e.internal_id = taken.event_id
ORDER BY taken.seq"""
# the events of these names received after (received_at, internal_id) and at or before a time
EVENTS_RECEIVED = f"""
SELECT received_at, {EVENT_COLUMNS} FROM events
WHERE name = ANY(%s) AND received_at >= %s AND (received_at > %s OR internal_id > %s)
ORDER BY received_at, internal_id"""

# -- a take's later-cancel check and the ingestion of cancel events (docs/design.md) ---------------
# The advisory locks that order them: one class, 64 buckets of event names (a transaction holds
# at most 64 of them, whatever the number of names it ingests). An ingestion tries each of its
# events' buckets shared, a take tries its runs' cancel_on buckets exclusive; neither waits.
CANCEL_LOCKS = 1_953_066_350  # the lock class (the first key of the two-key advisory locks)
# an ingested event whose bucket a take holds (or refused earlier in this transaction, whose
# cancel matchers were then read without the take's runs) is noted, for its cancel matching to
# be made again once the take ended, and so is one whose bucket's gate a refused take closed;
# the try takes the bucket shared till the commit otherwise (the function of PostgreSQL
# migrations 8 and 10; the buckets: _late_cancels.bucket)
NOTE_UNLESS_SHARED = "SELECT stepline_note_unless_shared(%s::text[], %s::int[])"
# a take's buckets, tried exclusive till its commit, never waited for: true if it has them all
# (refused: the savepoint that took some is rolled back, and the take closes their gates)
TRY_TAKE_BUCKETS = f"""
SELECT coalesce(bool_and(pg_try_advisory_xact_lock({CANCEL_LOCKS}, b)), true)
FROM unnest(%s::int[]) b"""
# a bucket's gate (session-level, store/postgres/_take_gates.py): closed, an ingestion notes
# its events of the bucket without holding it (the function of PostgreSQL migration 10)
CANCEL_GATES = CANCEL_LOCKS + 1
CLOSE_GATE = f"SELECT pg_try_advisory_lock({CANCEL_GATES}, %s)"
OPEN_GATE = f"SELECT pg_advisory_unlock({CANCEL_GATES}, %s)"
# the notes of ended takes (their bucket taken shared: no take holds it), with their events
CANCEL_NOTES = f"""
SELECT c.event_id, e.received_at,
       {", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))}
FROM cancel_notes c LEFT JOIN events e ON e.internal_id = c.event_id
WHERE pg_try_advisory_xact_lock_shared({CANCEL_LOCKS}, c.bucket)
ORDER BY e.received_at NULLS FIRST LIMIT %s FOR UPDATE OF c SKIP LOCKED"""
DELETE_CANCEL_NOTES = "DELETE FROM cancel_notes WHERE event_id = ANY(%s)"


# -- several statements of one text as one (store/postgres/_coalesce.py) ------------------------
# Each takes, for each parameter of the single statement and in its order, the array of that
# parameter's values (binary, ``%b``): a constant text, prepared once, whose rows come in order
# (``WITH ORDINALITY … ORDER BY``, where the order is kept: history rows get their sequence).
_T, _F, _I, _B = "%b::text[]", "%b::double precision[]", "%b::integer[]", "%b::bytea[]"
UPSERT_STEP_MANY = f"""
INSERT INTO steps ({_STEP_COLUMNS})
SELECT * FROM unnest({_T}, {_T}, {_T}, {_T}, {_I}, {_T}, {_B}, {_T}, {_I}, {_F}, {_F}, {_F})\
{_UPSERT_STEP_CONFLICT}"""
_HISTORY_ROWS = f"""
SELECT h.run_id, h.ts, h.kind, h.step_id, h.attempt, h.duration, h.data, h.worker_id
FROM unnest({_T}, {_F}, {_T}, {_T}, {_I}, {_F}, {_T}, {_T}) WITH ORDINALITY
     AS h (run_id, ts, kind, step_id, attempt, duration, data, worker_id, n)
ORDER BY h.n"""
INSERT_HISTORY_MANY = f"""
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
{_HISTORY_ROWS}"""
MARK_RUNNING_MANY = f"""
UPDATE runs SET status = 'RUNNING', started_at = COALESCE(runs.started_at, v.started_at),
       passes = 0
FROM unnest({_F}, {_T}) AS v (started_at, run_id)
WHERE runs.run_id = v.run_id
  AND (runs.status IS DISTINCT FROM 'RUNNING' OR runs.started_at IS NULL OR runs.passes <> 0)"""
END_RUN_TERMINAL_MANY = f"""
UPDATE runs SET status = v.status, output = v.output, error = v.error, ended_at = v.ended_at,
       attempt = COALESCE(v.attempt, runs.attempt),
       started_at = COALESCE(runs.started_at, v.started_at)
FROM unnest({_T}, {_B}, {_T}, {_F}, {_I}, {_F}, {_T})
     AS v (status, output, error, ended_at, attempt, started_at, run_id)
WHERE runs.run_id = v.run_id"""
DROP_RUN_WORK_MANY = f"""
WITH queue_row AS (DELETE FROM queue WHERE run_id = ANY({_T})),
     its_waits AS (DELETE FROM waits WHERE run_id = ANY({_T})),
     its_matchers AS (DELETE FROM matchers WHERE run_id = ANY({_T}))
DELETE FROM steps WHERE run_id = ANY({_T}) AND status = 'RUNNING'"""
CREATE_RUN_MANY = f"""
WITH run AS (
    INSERT INTO runs (run_id, function_id, status, event_ids, created_at, parent_run_id,
                      parent_step_hash, start_timeout, finish_timeout, singleton_key, app_id)
    SELECT r.run_id, r.function_id, 'QUEUED', r.event_ids, r.created_at, r.parent_run_id,
           r.parent_step_hash, r.start_timeout, r.finish_timeout, r.singleton_key, r.app_id
    FROM unnest({_T}, {_T}, {_T}, {_F}, {_T}, {_T}, {_F}, {_F}, {_T}, {_T})
         AS r (run_id, function_id, event_ids, created_at, parent_run_id, parent_step_hash,
               start_timeout, finish_timeout, singleton_key, app_id)),
queue_row AS (
    INSERT INTO queue (run_id, due_at, function_id, ckey1, climit1, ckey2, climit2, app_id)
    SELECT * FROM unnest({_T}, {_F}, {_T}, {_T}, {_I}, {_T}, {_I}, {_T}))
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
{_HISTORY_ROWS}"""
INSERT_RUN_EVENT_MANY = f"""
INSERT INTO run_events (event_id, run_id, effect)
SELECT e.event_id, e.run_id, 'started' FROM unnest({_T}, {_T}) AS e (event_id, run_id)
ON CONFLICT DO NOTHING"""
INSERT_EVENT_MANY = f"""
INSERT INTO events (internal_id, name, data, user_data, sender_id, ts, received_at, duplicate)
SELECT * FROM unnest({_T}, {_T}, {_B}, {_B}, {_T}, {_F}, {_F}, %b::boolean[])
ON CONFLICT (internal_id) DO NOTHING"""
