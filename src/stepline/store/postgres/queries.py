"""The PostgreSQL store's statements that commit passes and ingest events, by name (psycopg
placeholders): events, runs, steps, waits, cancel matchers, admission state, the trigger catalog
and the inbox, the cancel locks, and the coalesced forms. The others by concern: leasing and due
times (``_lease_queries``), reads (``_read_queries``), keeping the database
(``_upkeep_queries``)."""

from __future__ import annotations

# a transaction-level advisory lock on a named key (flow-control state that may not have a row
# yet): held until the transaction ends, so the next transaction deciding on the same key reads
# what this one wrote (READ COMMITTED: each statement sees what committed before it began)
LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
TRY_LOCK_KEY = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))"

INSERT_EVENT = """
INSERT INTO events (internal_id, name, data, user_data, sender_id, ts, received_at, duplicate, v)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (internal_id) DO NOTHING"""
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
INSERT_EVENT_EFFECT = """
INSERT INTO run_events (event_id, run_id, effect) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"""
INSERT_QUEUE = """
INSERT INTO queue (run_id, due_at, function_id, ckey1, climit1, ckey2, climit2, app_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_HISTORY = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
STEP_COLUMNS = """run_id, hash, step_id, kind, position, status, output, error, attempts, due_at,
                   started_at, ended_at"""
_UPSERT_STEP_CONFLICT = """
ON CONFLICT (run_id, hash) DO UPDATE SET
    step_id = excluded.step_id, kind = excluded.kind, position = excluded.position,
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, due_at = excluded.due_at, started_at = excluded.started_at,
    ended_at = excluded.ended_at"""
UPSERT_STEP = f"""
INSERT INTO steps ({STEP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)\
{_UPSERT_STEP_CONFLICT}"""
# a step's first row, with its STEP_COMPLETED history line in it (schema 17: the line's number
# from history's own sequence, as a row of history would take it, its time, attempt, duration
# and worker; ``_read_queries.SELECT_HISTORY`` reads it back as a line), under its pass's lease:
# the row's run id is the lease hold's, the queue row of the run with that token locked FOR
# UPDATE by a sub-select evaluated before the row is made. No such row (a lost lease) gives a
# NULL run id, and a row of the step there already a duplicate key: either fails the INSERT
# (not_null_violation, unique_violation) and its transaction commits nothing
FRESH_STEP_COLUMNS = f"""{STEP_COLUMNS}, history_seq, history_ts, history_attempt,
                   history_duration, history_worker"""
INSERT_FRESH_STEP = f"""
INSERT INTO steps ({FRESH_STEP_COLUMNS})
VALUES ((SELECT run_id FROM queue WHERE run_id = %s AND lease_token = %s FOR UPDATE),
        %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
        nextval('history_seq_seq'), %s, %s, %s, %s)"""
INSERT_STEP_IF_UNSETTLED = f"""
INSERT INTO steps ({STEP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id, hash) DO UPDATE SET
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at, ended_at = excluded.ended_at
WHERE steps.status NOT IN ('COMPLETED', 'FAILED')"""
# the step of a wait resolved or timed out completed, if it is still PENDING: a stale wait row
# (its step settled already) leaves the step's output as it is (SQLite's has the same guard)
COMPLETE_STEP = """
UPDATE steps SET status = 'COMPLETED', output = %s, ended_at = %s
WHERE run_id = %s AND hash = %s AND status = 'PENDING'"""
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
# the one who deletes a wait decides it (resolved, timed out or cancelled): the others see no row
# whether a wait's step is PENDING (``w``: the wait's row): its run waits for it; else the wait
# is stale (the run moved on), its row deleted unclaimed (``_primitives.delete_wait``)
WAITING = """EXISTS (
    SELECT 1 FROM steps s
    WHERE s.run_id = w.run_id AND s.hash = w.step_hash AND s.status = 'PENDING')"""
# a wait's row deleted: one row, saying whether the deletion claimed it (WAITING)
DELETE_WAIT = f"DELETE FROM waits w WHERE wait_id = %s RETURNING {WAITING}"
# a run's expired waits' rows deleted, each with whether it times out (WAITING) last
DELETE_EXPIRED_WAITS_OF_RUN = f"""
DELETE FROM waits w WHERE run_id = %s AND expires_at IS NOT NULL AND expires_at <= %s
RETURNING {WAIT_COLUMNS}, {WAITING}"""
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
CANCEL_RUN = """
UPDATE runs SET status = 'CANCELLED', ended_at = %s, error = %s,
       cancelled_lease = (SELECT lease_token FROM queue WHERE queue.run_id = runs.run_id)
WHERE run_id = %s AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')
RETURNING function_id, parent_run_id, parent_step_hash"""
RUN_EVENT_IDS = "SELECT event_ids FROM runs WHERE run_id = %s"
CANCELLED_LEASE = """
SELECT cancelled_lease, worker_id FROM runs WHERE run_id = %s AND status = 'CANCELLED'"""

# an event's columns as ``_rows.event_record`` reads them
EVENT_COLUMNS = "internal_id, name, data, user_data, sender_id, ts, v"

# -- flow control ---------------------------------------------------------------------------------
DELETE_MATCHERS_OF_RUN = "DELETE FROM matchers WHERE run_id = %s"
# the marks of steps a pass was executing when its run ended (their results never came)
DELETE_EXECUTING_STEPS = "DELETE FROM steps WHERE run_id = %s AND status = 'RUNNING'"
# An ended run's lease frees a slot of each of its concurrency keys: a run a key held back is
# due, and the workers learn of it by a notification (wakeups.CHANNEL, delivered at the commit,
# dropped with a rolled-back savepoint): the one that ran the pass too, its own process's
# listener hearing it (its pass's end also wakes it in process, but only when a look may find
# work it has not looked for: Worker._pass_end_looks). Only then: a run without keys, or not
# leased, frees nothing another run waits for
_FREES_A_SLOT = """
SELECT pg_notify('stepline', '') WHERE EXISTS (
    SELECT 1 FROM queue_row
    WHERE lease_owner IS NOT NULL AND (ckey1 IS NOT NULL OR ckey2 IS NOT NULL))"""
# an ended run's queue row, waits, matchers and RUNNING marks, in one statement (four tables,
# none read by another part: the same as the four statements one after the other), and the
# workers woken if its lease held a concurrency slot
DROP_RUN_WORK = f"""
WITH queue_row AS ({DELETE_QUEUE} RETURNING lease_owner, ckey1, ckey2),
     its_waits AS ({DELETE_WAITS_OF_RUN}), its_matchers AS ({DELETE_MATCHERS_OF_RUN}),
     its_steps AS ({DELETE_EXECUTING_STEPS})
{_FREES_A_SLOT}"""
# the rows linking a new run (``run``: its row as inserted) to the events that started it
_RUN_EVENTS_OF_NEW = """
its_events AS (
    INSERT INTO run_events (event_id, run_id, effect)
    SELECT e.event_id, run.run_id, 'started'
    FROM run, json_array_elements_text(run.event_ids::json) AS e (event_id)
    ON CONFLICT DO NOTHING)"""
# a new run's row, queue row, its events' run_events rows and its RUN_QUEUED history row, in
# one statement (as DROP_RUN_WORK; a statement less a new run than with run_events apart)
CREATE_RUN = f"""
WITH run AS ({INSERT_RUN} RETURNING run_id, event_ids), queue_row AS ({INSERT_QUEUE}),
{_RUN_EVENTS_OF_NEW}
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
_NO_WAITS_NOR_MATCHERS = """
    NOT EXISTS (SELECT 1 FROM wait_paths WHERE event_name = ANY(%(names)s))
    AND NOT EXISTS (SELECT 1 FROM matcher_paths WHERE event_name = ANY(%(names)s))
    AND NOT EXISTS (
        SELECT 1 FROM waits WHERE event_name = ANY(%(names)s) AND index_path IS NULL)
    AND NOT EXISTS (
        SELECT 1 FROM matchers WHERE event_name = ANY(%(names)s) AND index_path IS NULL
        AND (expires_at IS NULL OR expires_at >= %(now)s))"""
NO_WAITS_NOR_MATCHERS = f"""
SELECT 1 / ({_NO_WAITS_NOR_MATCHERS}
)::int"""
# the same, and the trigger catalog's version still the one given (``CATALOG_IS``): the two
# assumptions of an optimistic ingestion checked by one statement (a statement less a send)
NO_WAITS_NOR_MATCHERS_IN_CATALOG = f"""
SELECT 1 / ({_NO_WAITS_NOR_MATCHERS}
    AND coalesce((SELECT version FROM trigger_catalog WHERE id = 1), 0) = %(version)s
)::int"""
MATCHERS_INDEXED = f"""
SELECT {MATCHER_COLUMNS} FROM matchers
WHERE event_name = %s AND index_path = %s AND index_value = ANY(%s)
  AND (expires_at IS NULL OR expires_at >= %s)"""
IDEMPOTENCY_SEEN = "SELECT seen_at FROM idempotency WHERE key = %s"
REMEMBER_IDEMPOTENCY = """
INSERT INTO idempotency (key, seen_at) VALUES (%s, %s)
ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at"""
GCRA_BUCKET = "SELECT tat, decided_at FROM gcra WHERE bucket = %s"
SET_GCRA_BUCKET = """
INSERT INTO gcra (bucket, tat, decided_at) VALUES (%s, %s, %s)
ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat, decided_at = excluded.decided_at"""
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
STORED_EVENT_IDS = "SELECT internal_id FROM events WHERE internal_id = ANY(%s)"

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
INSERT INTO steps ({STEP_COLUMNS})
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
WITH queue_row AS (
         DELETE FROM queue WHERE run_id = ANY({_T}) RETURNING lease_owner, ckey1, ckey2),
     its_waits AS (DELETE FROM waits WHERE run_id = ANY({_T})),
     its_matchers AS (DELETE FROM matchers WHERE run_id = ANY({_T})),
     its_steps AS (DELETE FROM steps WHERE run_id = ANY({_T}) AND status = 'RUNNING')
{_FREES_A_SLOT}"""
CREATE_RUN_MANY = f"""
WITH run AS (
    INSERT INTO runs (run_id, function_id, status, event_ids, created_at, parent_run_id,
                      parent_step_hash, start_timeout, finish_timeout, singleton_key, app_id)
    SELECT r.run_id, r.function_id, 'QUEUED', r.event_ids, r.created_at, r.parent_run_id,
           r.parent_step_hash, r.start_timeout, r.finish_timeout, r.singleton_key, r.app_id
    FROM unnest({_T}, {_T}, {_T}, {_F}, {_T}, {_T}, {_F}, {_F}, {_T}, {_T})
         AS r (run_id, function_id, event_ids, created_at, parent_run_id, parent_step_hash,
               start_timeout, finish_timeout, singleton_key, app_id)
    RETURNING run_id, event_ids),{_RUN_EVENTS_OF_NEW},
queue_row AS (
    INSERT INTO queue (run_id, due_at, function_id, ckey1, climit1, ckey2, climit2, app_id)
    SELECT * FROM unnest({_T}, {_F}, {_T}, {_T}, {_I}, {_T}, {_I}, {_T}))
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
{_HISTORY_ROWS}"""
INSERT_EVENT_MANY = f"""
INSERT INTO events (internal_id, name, data, user_data, sender_id, ts, received_at, duplicate, v)
SELECT * FROM unnest({_T}, {_T}, {_B}, {_B}, {_T}, {_F}, {_F}, %b::boolean[], {_T})
ON CONFLICT (internal_id) DO NOTHING"""
