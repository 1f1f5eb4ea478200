"""The PostgreSQL store's statements that lease runs and find when work is next due: busy
concurrency slots, presence, the lease candidates and takes, named leases, due times, heartbeats
(``_leases.py``, ``store.py``; psycopg placeholders)."""

from __future__ import annotations

import functools

from stepline.store.postgres._read_queries import LOAD_RUN
from stepline.store.postgres.queries import STEP_COLUMNS

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


# the concurrency-key group of a queue row with a key (queue_fn_group's third column)
_GROUP = """((ckey1 || E'\\x1e' || coalesce(ckey2, '')) COLLATE "C")"""
_KEYED = "app_id = %(app)s AND function_id = %(fn)s AND lease_owner IS NULL AND ckey1 IS NOT NULL"
# The oldest due run of each concurrency-key group of one function (behind a backlog longer
# than the window) whose group sorts after %(start)s, visiting at most %(visits)s groups: a
# skip-scan of queue_fn_group, two index probes a group (the recursion stops at the limit).
# A visited group without a due run gives a row of NULLs but its name (where the next read
# starts). Runs without a concurrency key are not visited: their oldest are the window's.
# Unlocked: a run picked from these is locked before it is leased.
GROUP_HEADS = f"""
WITH RECURSIVE g(k) AS (
    SELECT (SELECT {_GROUP} FROM queue WHERE {_KEYED} AND {_GROUP} > %(start)s
            ORDER BY {_GROUP} LIMIT 1)
    UNION ALL
    SELECT (SELECT {_GROUP} FROM queue WHERE {_KEYED} AND {_GROUP} > g.k
            ORDER BY {_GROUP} LIMIT 1)
    FROM g WHERE g.k IS NOT NULL)
SELECT g.k, q.run_id, q.due_at, q.ckey1, q.climit1, q.ckey2, q.climit2, q.lease_owner
FROM (SELECT k FROM g WHERE k IS NOT NULL LIMIT %(visits)s) AS g
LEFT JOIN LATERAL (
    SELECT run_id, due_at, ckey1, climit1, ckey2, climit2, lease_owner FROM queue
    WHERE {_KEYED} AND {_GROUP} = g.k AND due_at <= %(by)s
    ORDER BY due_at, run_id LIMIT 1) AS q ON true"""
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
# generic plans for the rest of the transaction, then the mode before back (set_config, not SET
# LOCAL: a transaction sent without BEGIN, committed by its pipeline's sync, may carry them).
# Their statements look up rows by key: a plan made with seq scans off reads them through an
# index whatever the tables' statistics (a fresh database has none, and the generic plan of a
# lease by name made then scanned queue, runs and events 10 times: 63 buffers a lease against
# 46 without, in a database after 210 remote events)
GENERIC_PLANS = (
    "SELECT set_config('stepline.plans', current_setting('plan_cache_mode'), true), "
    "set_config('stepline.scans', current_setting('enable_seqscan'), true), "
    "set_config('plan_cache_mode', 'force_generic_plan', true), "
    "set_config('enable_seqscan', 'off', true)"
)
# a lease by name sent as a transaction of its own (_leases.lease_named_alone), committed by its
# pipeline's sync: the generic plans of GENERIC_PLANS, and a commit that does not wait for its
# WAL to be flushed (as any lease: lost in a crash of the server, its runs are due again, and a
# durable commit after it flushes it); the transaction's own settings, gone at its end
LEASE_ALONE = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), "
    "set_config('enable_seqscan', 'off', true), "
    "set_config('synchronous_commit', 'off', true)"
)
DEFAULT_PLANS = (
    "SELECT set_config('plan_cache_mode', current_setting('stepline.plans'), true), "
    "set_config('enable_seqscan', current_setting('stepline.scans'), true)"
)
MARK_STEP_RUNNING = f"""
INSERT INTO steps ({STEP_COLUMNS})
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
_LOAD_MARKED = LOAD_RUN.replace("FROM runs r", "FROM marked r").replace("\nWHERE r.run_id = %s", "")
# A lease of named runs (the new runs a NOTIFY named, tx.lease_named), in one statement that
# decides and takes: of %(runs)s, those of the served functions %(fns)s (of app %(app)s, or
# of none), due, not leased, without concurrency keys, of an unpaused function, that have not
# spent their passes nor passed their start deadline, and that nothing of their function is
# ahead of (no due run earlier in the queue order, other than the named ones, and no expired
# lease), locked SKIP LOCKED; the runs taken come back as LOAD_RUNS reads them (their runs rows
# as the statement left them, RETURNING; their events, steps and waits, which it does not
# write). Any other run is left to lease_due.
# Each look is a probe by key whatever the plan: the named rows by their primary key (each
# looked up alone, a subquery the planner keeps: with `run_id = ANY(...)` beside the other
# conditions, a generic plan made while the queue had no statistics scanned queue_fn_due for
# every due row of the app, 20,000 rows behind such a backlog, 6-20 ms a lease), then per
# row and app (the served one, and none) a subquery in the order of queue_fn_due /
# queue_fn_lease, LIMIT 1 (it stops at the first row ahead; without the ORDER BY a plan may scan
# the table for that row, and with both apps in one subquery it sorts all the rows ahead), and
# one on the run's primary key; the writes by primary key (= ANY(ARRAY)). Planned once per
# connection (tx.lease_named sends it with plan_cache_mode force_generic_plan).
AHEAD_OF_NAMED = """AND (SELECT 1 FROM queue o
           WHERE o.app_id = {app} AND o.function_id = n.function_id
             AND o.lease_owner IS NULL AND o.due_at <= n.due_at
             AND (o.due_at, o.run_id) < (n.due_at, n.run_id)
             AND NOT o.run_id = ANY(%(runs)s)
           ORDER BY o.due_at, o.run_id LIMIT 1) IS NULL
      AND (SELECT 1 FROM queue o
           WHERE o.app_id = {app} AND o.function_id = n.function_id
             AND o.lease_owner IS NOT NULL AND o.lease_expires_at <= {now}
           ORDER BY o.lease_expires_at LIMIT 1) IS NULL"""
LEASE_NAMED = f"""
WITH named AS MATERIALIZED (
    SELECT q.run_id, q.function_id, q.due_at
    FROM unnest(%(runs)s::text[]) AS u(run_id)
    CROSS JOIN LATERAL (SELECT * FROM queue WHERE queue.run_id = u.run_id OFFSET 0) q
    WHERE q.function_id = ANY(%(fns)s::text[]) AND q.app_id IN (%(app)s, '')
      AND q.lease_owner IS NULL AND q.due_at <= %(now)s AND q.ckey1 IS NULL AND q.ckey2 IS NULL),
eligible AS MATERIALIZED (
    SELECT n.run_id FROM named n
    WHERE (SELECT 1 FROM paused p
           WHERE p.app_id IN (%(app)s, '') AND p.function_id = n.function_id LIMIT 1) IS NULL
      {AHEAD_OF_NAMED.format(app="%(app)s", now="%(now)s")}
      {AHEAD_OF_NAMED.format(app="''", now="%(now)s")}
      AND (SELECT 1 FROM runs r
           WHERE r.run_id = n.run_id AND r.passes < %(max_passes)s
             AND (r.start_timeout IS NULL OR %(now)s <= r.created_at + r.start_timeout)) = 1),
picked AS (
    SELECT q.run_id FROM eligible e
    CROSS JOIN LATERAL (
        SELECT run_id, due_at, lease_owner FROM queue WHERE queue.run_id = e.run_id
        FOR UPDATE SKIP LOCKED) q
    WHERE q.lease_owner IS NULL
    ORDER BY q.due_at, q.run_id LIMIT %(limit)s),
{_TAKE.format(runs="= ANY(ARRAY(SELECT run_id FROM picked))", returning=" RETURNING *")}
{_LOAD_MARKED}
ORDER BY array_position(ARRAY(SELECT run_id FROM picked), r.run_id)"""
# A lease by name of runs this transaction created (tx.lease_new_runs), which nobody else can
# see, lock or lease before it commits: LEASE_NAMED's decision without what a run of its own
# needs not (the named rows' look-up and its conditions, known when the run was made: due, not
# leased, without concurrency keys, of the served app's function; its passes, none, and its
# start deadline, decided by the caller; their lock) nor their reading (the caller knows what it
# wrote): of %(runs)s (each due at %(dues)s, a function of %(fns)s), those of an unpaused
# function that nothing of their function is ahead of, marked as LEASE_NAMED marks them; the
# run ids taken come back
LEASE_NEW = f"""
WITH n AS MATERIALIZED (
    SELECT * FROM unnest(%(runs)s::text[], %(fns)s::text[], %(dues)s::float8[])
        AS n(run_id, function_id, due_at)),
picked AS MATERIALIZED (
    SELECT n.run_id, n.due_at FROM n
    WHERE (SELECT 1 FROM paused p
           WHERE p.app_id IN (%(app)s, '') AND p.function_id = n.function_id LIMIT 1) IS NULL
      {AHEAD_OF_NAMED.format(app="%(app)s", now="%(now)s")}
      {AHEAD_OF_NAMED.format(app="''", now="%(now)s")}
    ORDER BY n.due_at, n.run_id LIMIT %(limit)s),
{_TAKE.format(runs="= ANY(ARRAY(SELECT run_id FROM picked))", returning="")}
SELECT run_id FROM picked ORDER BY due_at, run_id"""
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
# one probe of an index a served (app, function) for the queue's arms: their first entry (a
# MIN over every function at once, ``function_id = ANY(...)``, read each function's whole range
# of the index: 96 ms behind 100,000 queued runs, at every idle of a busy worker);
# its inbox arm: when the first row of each function was received (sqlite/queries.py,
# NEXT_INBOX_OF), one probe of inbox_function a function: the first index entry at or after
# the function's (a range of a row comparison, so no plan filters the primary key's order)
NEXT_DUE_OF = """
SELECT MIN(t) FROM (
    SELECT (SELECT due_at FROM queue
            WHERE app_id = a AND function_id = f AND lease_owner IS NULL
            ORDER BY due_at LIMIT 1) AS t
    FROM unnest(%(apps)s::text[]) AS a, unnest(%(fns)s::text[]) AS f
    UNION ALL
    SELECT (SELECT lease_expires_at FROM queue
            WHERE app_id = a AND function_id = f AND lease_owner IS NOT NULL
            ORDER BY lease_expires_at LIMIT 1) AS t
    FROM unnest(%(apps)s::text[]) AS a, unnest(%(fns)s::text[]) AS f
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
