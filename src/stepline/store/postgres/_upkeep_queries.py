"""The PostgreSQL store's statements that keep the database: workers, adoption of unowned rows,
schedules, pauses, replays' copied steps, retention purges, the schema's version, Inngest SDK
apps (psycopg placeholders)."""

from __future__ import annotations

from stepline.store.postgres.queries import STEP_COLUMNS

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
INSERT INTO steps ({STEP_COLUMNS})
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

# -- Inngest SDK apps -----------------------------------------------------------------------------
PUT_SDK_APP = """
INSERT INTO sdk_apps (app_id, name, registration, synced_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (app_id, name) DO UPDATE SET registration = excluded.registration,
    synced_at = excluded.synced_at"""
SDK_APPS = "SELECT name, registration FROM sdk_apps WHERE app_id = %s ORDER BY name"
