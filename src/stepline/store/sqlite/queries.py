"""Every SQL statement the SQLite store runs, by name (those of waits: ``_wait_queries``)."""

from __future__ import annotations

from stepline.store.sqlite._wait_queries import PENDING

INSERT_EVENT = """
INSERT OR IGNORE INTO events (internal_id, name, data, user_data, ts, received_at, duplicate,
                              sender_id, v)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# the same for events without a sender id nor a ``v`` (most): those NULL, not None parameters
INSERT_UNSENT_EVENT = """
INSERT OR IGNORE INTO events (internal_id, name, data, user_data, ts, received_at, duplicate)
VALUES (?, ?, ?, ?, ?, ?, ?)"""
# the same for events of one name (?1) without user data, received at ?2 (a batch, usually):
# those two bound once a statement (``_multirow.insert_shared``), the rest each event's own
INSERT_UNSENT_EVENTS_OF_NAME = """
INSERT OR IGNORE INTO events (internal_id, name, data, user_data, ts, received_at, duplicate)
VALUES (?, ?1, ?, X'7B7D', ?, ?2, 0)"""
# an event nothing hears (an announcement of a cancelled run): no user data, no sender id
INSERT_UNHEARD_EVENT = """
INSERT OR IGNORE INTO events (internal_id, name, data, user_data, ts, received_at, duplicate)
VALUES (?, ?, ?, X'7B7D', ?, ?, 0)"""
EVENTS_AMONG = """
SELECT internal_id, name, data, user_data, sender_id, ts, v FROM events
WHERE internal_id IN (SELECT value FROM json_each(?))"""
STORED_EVENT_IDS = """
SELECT internal_id FROM events WHERE internal_id IN (SELECT value FROM json_each(?))"""
SEEN_SENDER_ID = "SELECT seen_at FROM event_ids WHERE sender_id = ?"
REMEMBER_SENDER_ID = "INSERT OR REPLACE INTO event_ids (sender_id, seen_at) VALUES (?, ?)"
INSERT_RUN = """
INSERT INTO runs (run_id, function_id, status, event_ids, created_at, parent_run_id,
                  parent_step_hash, start_timeout, finish_timeout, singleton_key, app_id)
VALUES (?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_RUN_EVENT = """
INSERT OR IGNORE INTO run_events (event_id, run_id, effect) VALUES (?, ?, 'started')"""
INSERT_EVENT_EFFECT = "INSERT OR IGNORE INTO run_events (event_id, run_id, effect) VALUES (?, ?, ?)"
INSERT_QUEUE = """
INSERT INTO queue (run_id, due_at, function_id, ckey1, climit1, ckey2, climit2, app_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_HISTORY = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
# a history row of a run's own (no step, attempt, duration or worker: RUN_CANCELLED), its NULLs
# written by the statement (each NULL bound costs ~0.4 us, see _multirow.blob)
INSERT_RUN_HISTORY = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (?, ?, ?, NULL, NULL, NULL, ?, NULL)"""
# a new run's RUN_QUEUED row, its NULLs written by the statement
INSERT_RUN_QUEUED = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (?, ?, 'RUN_QUEUED', NULL, NULL, NULL, NULL, NULL)"""
# a history row without data (a step's attempt), its NULL written by the statement
INSERT_HISTORY_NO_DATA = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (?, ?, ?, ?, ?, ?, NULL, ?)"""
UPSERT_STEP = """
INSERT OR REPLACE INTO steps (run_id, hash, step_id, kind, position, status, output, error,
                              attempts, due_at, started_at, ended_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# a step with its output and neither an error nor a due time (a step that completed), NULLs
# written by the statement: a None parameter costs an adapter lookup (see _multirow.blob)
UPSERT_STEP_DONE = """
INSERT OR REPLACE INTO steps (run_id, hash, step_id, kind, position, status, output, error,
                              attempts, due_at, started_at, ended_at)
VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?)"""
INSERT_STEP_IF_UNSETTLED = """
INSERT INTO steps (run_id, hash, step_id, kind, position, status, output, error, attempts,
                   due_at, started_at, ended_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, hash) DO UPDATE SET
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at, ended_at = excluded.ended_at
WHERE steps.status NOT IN ('COMPLETED', 'FAILED')"""
SETTLE_PENDING_STEP = """
UPDATE steps SET status = ?, output = ?, error = ?, ended_at = ?, attempts = 1
WHERE run_id = ? AND hash = ? AND status = 'PENDING'
  AND EXISTS (SELECT 1 FROM runs WHERE runs.run_id = steps.run_id
              AND runs.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED'))"""
# a run's waits dropped with its work: by a pass or a verb, every one; inside an ingest (a run
# it cancelled: ``Deferred.leased``) its pending ones only, the resolved ones left to the purge
# (the cancelling batch writes no page of the index for them)
DELETE_WAITS_OF_RUN = "DELETE FROM waits WHERE run_id = ?"
DELETE_WAITS_OF_RUNS = f"DELETE FROM waits WHERE run_id IN ({{}}) AND {PENDING}"  # update_among
WAKE = """
UPDATE queue SET wake = 1,
       due_at = CASE WHEN lease_owner IS NULL THEN ? ELSE due_at END
WHERE run_id = ?"""
# WAKE of several runs (``_multirow.update_among``: ``{}`` is the list of their ids)
WAKE_AMONG = """
UPDATE queue SET wake = 1,
       due_at = CASE WHEN lease_owner IS NULL THEN ? ELSE due_at END
WHERE run_id IN ({})"""
LEASE_TOKEN = "SELECT lease_token, lease_owner FROM queue WHERE run_id = ?"
# a commit of the run's own is progress: its count of passes begun starts again (lease_due)
# a pass's later commits find the run so already: no row written, no page of runs or of its
# status index in the commit (a step's commit writes 3 pages instead of 4)
MARK_RUNNING = """
UPDATE runs SET status = 'RUNNING', started_at = COALESCE(started_at, ?), passes = 0
WHERE run_id = ? AND (status != 'RUNNING' OR started_at IS NULL OR passes != 0)"""
END_RUN_TERMINAL = """
UPDATE runs SET status = ?, output = ?, error = ?, ended_at = ?,
       attempt = COALESCE(?, attempt), started_at = COALESCE(started_at, ?)
WHERE run_id = ?"""
END_RUN_SUSPENDED = """
UPDATE runs SET status = ?, attempt = COALESCE(?, attempt), started_at = COALESCE(started_at, ?),
       passes = 0
WHERE run_id = ?"""
DELETE_QUEUE = "DELETE FROM queue WHERE run_id = ?"
DELETE_QUEUE_AMONG = "DELETE FROM queue WHERE run_id IN ({})"  # _multirow.update_among
# runs (of a JSON list of ids) leased ``?2`` times without a commit of their own: lease_due fails
# them instead of leasing them again
PASSES_SPENT = """
SELECT run_id, parent_run_id, parent_step_hash, function_id FROM runs
WHERE run_id IN (SELECT value FROM json_each(?1)) AND passes >= ?2"""
FAIL_RUN = "UPDATE runs SET status = 'FAILED', error = ?, ended_at = ? WHERE run_id = ?"
RESCHEDULE = """
UPDATE queue SET due_at = CASE WHEN wake = 1 THEN ? ELSE ? END,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, wake = 0
WHERE run_id = ?"""
# the live leases: their functions and concurrency slots (fair order, full keys)
LIVE_LEASES = """
SELECT function_id, ckey1, climit1, ckey2, climit2 FROM queue
WHERE lease_owner IS NOT NULL AND lease_expires_at > ?"""
# the function ids (``?2``, a JSON list) paused in app ``?1`` or in every app ('')
PAUSED_AMONG = """
SELECT function_id FROM paused
WHERE app_id IN (?1, '') AND function_id IN (SELECT value FROM json_each(?2))"""
# One arm per function a worker serves (``?4`` its app id or '' for runs recorded without one,
# ``?6``... the function ids), each an index range of its own (queue_fn_due, queue_fn_lease)
# cut at the LIMIT: runs of other apps and functions are never read. ``?1`` now, ``?2`` the full
# concurrency keys (JSON), ``?3`` the limit (per function: the fair order needs each one's),
# ``?5`` the time runs are leased due by (now, or a little later to lease timers ahead).
# ``app_id = +?`` here and below, never ``app_id = ?``: compared with the partial index
# queue_unowned's ``app_id = ''``, a bare parameter makes SQLite re-prepare the statement each
# time it is bound (whether the index applies depends on its value): ~470k instructions a run,
# ten times the statement itself. The unary plus is a no-op on the value.
DUE_ARM = """
SELECT * FROM (
    SELECT run_id, due_at, ckey1, climit1, ckey2, climit2, lease_owner, function_id FROM queue
    WHERE app_id = +?4 AND function_id = ?{n} AND lease_owner IS NULL AND due_at <= ?5
      AND (ckey1 IS NULL OR ckey1 NOT IN (SELECT value FROM json_each(?2)))
      AND (ckey2 IS NULL OR ckey2 NOT IN (SELECT value FROM json_each(?2)))
    ORDER BY due_at, run_id LIMIT ?3)
UNION ALL
SELECT * FROM (
    SELECT run_id, due_at, ckey1, climit1, ckey2, climit2, lease_owner, function_id FROM queue
    WHERE app_id = +?4 AND function_id = ?{n} AND lease_owner IS NOT NULL
      AND lease_expires_at <= ?1
    ORDER BY due_at, run_id LIMIT ?3)"""
# a run's concurrency-key group, as the queue_fn_group index has it (runs with a key only)
_GROUP = "(coalesce(ckey1, '') || char(30) || coalesce(ckey2, ''))"
_KEYED = "lease_owner IS NULL AND ckey1 IS NOT NULL"
# The oldest due run of each concurrency-key group of one function (``?1`` app id, ``?2``
# function id) whose group sorts after ``?3``, visiting at most ``?4`` groups (a skip-scan of
# queue_fn_group: two index probes a group); ``?5`` the time runs are due by. A visited group
# without a due run gives a row of NULLs but its name (where the next call starts). Runs without
# a concurrency key are not visited: their oldest are DUE_ARM's.
GROUP_HEADS = f"""
WITH RECURSIVE g(k) AS (
    SELECT (SELECT {_GROUP} FROM queue
            WHERE app_id = +?1 AND function_id = ?2 AND {_KEYED} AND {_GROUP} > ?3
            ORDER BY {_GROUP} LIMIT 1)
    UNION ALL
    SELECT (SELECT {_GROUP} FROM queue
            WHERE app_id = +?1 AND function_id = ?2 AND {_KEYED} AND {_GROUP} > g.k
            ORDER BY {_GROUP} LIMIT 1)
    FROM g WHERE g.k IS NOT NULL LIMIT ?4)
SELECT g.k, q.run_id, q.due_at, q.ckey1, q.climit1, q.ckey2, q.climit2
FROM g LEFT JOIN queue q ON q.run_id = (
    SELECT run_id FROM queue
    WHERE app_id = +?1 AND function_id = ?2 AND {_KEYED} AND {_GROUP} = g.k
      AND due_at <= ?5
    ORDER BY due_at, run_id LIMIT 1)
WHERE g.k IS NOT NULL"""
NEXT_DUE_ARM = """
SELECT MIN(due_at) AS t FROM queue
WHERE app_id = +?1 AND function_id = ?{n} AND lease_owner IS NULL
UNION ALL
SELECT MIN(lease_expires_at) AS t FROM queue
WHERE app_id = +?1 AND function_id = ?{n} AND lease_owner IS NOT NULL"""
TAKE_LEASE = """
UPDATE queue SET lease_owner = ?, lease_token = ?, lease_expires_at = ?, wake = 0,
       app_id = CASE WHEN app_id = '' THEN ? ELSE app_id END
WHERE run_id = ?"""
# a leased run's first pass starts it, unless its start timeout passed (that pass cancels it)
RECORD_RUN_STARTED = """
INSERT INTO history (run_id, ts, kind, worker_id)
SELECT run_id, ?, 'RUN_STARTED', ? FROM runs
WHERE run_id = ? AND started_at IS NULL
  AND (start_timeout IS NULL OR ? <= created_at + start_timeout)"""
MARK_LEASED = """
UPDATE runs SET status = 'RUNNING', worker_id = ?, passes = passes + 1,
       started_at = CASE WHEN started_at IS NULL
                          AND (start_timeout IS NULL OR ? <= created_at + start_timeout)
                         THEN ? ELSE started_at END,
       app_id = CASE WHEN app_id = '' THEN ? ELSE app_id END
WHERE run_id = ?"""
MARK_STEP_RUNNING = """
INSERT INTO steps (run_id, hash, step_id, kind, position, status, output, error, attempts,
                   due_at, started_at, ended_at)
VALUES (?, ?, ?, ?, ?, 'RUNNING', NULL, NULL, ?, NULL, ?, NULL)
ON CONFLICT (run_id, hash) DO UPDATE SET status = 'RUNNING', started_at = excluded.started_at
WHERE steps.status NOT IN ('COMPLETED', 'FAILED') AND steps.attempts <= excluded.attempts"""
HEARTBEAT = """
UPDATE queue SET lease_expires_at = ? WHERE run_id = ? AND lease_owner = ?"""
RELEASE_OWNER = """
UPDATE queue SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, wake = 0,
       due_at = MIN(COALESCE(due_at, ?), ?)
WHERE lease_owner = ?"""
# and whether the run has one trigger event (its announcements are kept as a row, schema 27)
UNFINISHED_RUN_FUNCTION = """
SELECT function_id, parent_run_id, parent_step_hash, event_ids, status,
       json_array_length(event_ids) = 1
FROM runs WHERE run_id = ? AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"""
UNFINISHED_RUNS_AMONG = """
SELECT run_id, function_id, parent_run_id, parent_step_hash, event_ids, status,
       json_array_length(event_ids) = 1
FROM runs
WHERE run_id IN (SELECT value FROM json_each(?))
  AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"""
CANCEL_RUN = """
UPDATE runs SET status = 'CANCELLED', ended_at = ?, error = ?,
       cancelled_lease = (SELECT lease_token FROM queue WHERE queue.run_id = runs.run_id)
WHERE run_id = ?"""
# a run cancelled while QUEUED was never leased (a lease makes it RUNNING in the same
# transaction that gives its queue item a token): no lease token to remember
CANCEL_QUEUED_RUN = "UPDATE runs SET status = 'CANCELLED', ended_at = ?, error = ? WHERE run_id = ?"
# CANCEL_RUN and CANCEL_QUEUED_RUN of several runs (``_multirow.update_among``)
CANCEL_RUN_AMONG = """
UPDATE runs SET status = 'CANCELLED', ended_at = ?, error = ?,
       cancelled_lease = (SELECT lease_token FROM queue WHERE queue.run_id = runs.run_id)
WHERE run_id IN ({})"""
CANCEL_QUEUED_RUN_AMONG = """
UPDATE runs SET status = 'CANCELLED', ended_at = ?, error = ? WHERE run_id IN ({})"""
RUN_EVENT_IDS = "SELECT event_ids FROM runs WHERE run_id = ?"
CANCELLED_LEASE = """
SELECT cancelled_lease, worker_id FROM runs WHERE run_id = ? AND status = 'CANCELLED'"""
RUN_COLUMNS = """run_id, function_id, status, event_ids, created_at, started_at, ended_at, output,
    error, attempt, parent_run_id, parent_step_hash, start_timeout, finish_timeout, app_id,
    worker_id"""
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
# the runs some events acted on, up to ``?2`` per event, newest first (``?1``: JSON pairs of
# each event's id and the data of a WAIT_MATCHED row naming it): their ``run_events`` rows, and
# the runs they resumed read from their WAIT_MATCHED rows (schema 23: an ingest writes no
# ``run_events`` row for a resumed run; a process of the version before does: the union)
EVENT_RUNS = f"""
SELECT event_id, effect, {RUN_COLUMNS} FROM (
    SELECT e.event_id, e.effect, r.*, row_number() OVER (
        PARTITION BY e.event_id ORDER BY r.created_at DESC, r.run_id DESC, e.effect) AS n
    FROM (SELECT event_id, run_id, effect FROM run_events
          WHERE event_id IN (SELECT value ->> 0 FROM json_each(?1))
          UNION
          SELECT v.value ->> 0, h.run_id, 'resumed' FROM json_each(?1) AS v
          JOIN history AS h ON h.kind = 'WAIT_MATCHED' AND h.data = v.value ->> 1) AS e
    JOIN runs r ON r.run_id = e.run_id)
WHERE n <= ?2 ORDER BY event_id, n"""
# the runs an event resumed, as ``run_events`` rows (``db copy``: the store it copies into
# reads them there)
RESUMED_RUN_EVENTS = """
SELECT data ->> '$.event_id', run_id, 'resumed' FROM history
WHERE kind = 'WAIT_MATCHED' AND data ->> '$.event_id' IS NOT NULL"""
LIST_RUNS = f"""
SELECT {RUN_COLUMNS} FROM runs {{where}} ORDER BY created_at DESC, run_id DESC LIMIT ?"""
# a payload search's window: the newest runs the filter ({where}) selects, newest first, down to
# one past the window (the LIMIT), each with whether the clauses ({match}) keep it (the store
# numbers them and skips the others: SQLite's window functions cost more than the rows). The
# clauses read the columns {added} from the rows {join}ed; without those, one index scan.
SEARCH_WINDOW = f"""
SELECT ({{match}}), {RUN_COLUMNS} FROM runs {{where}}
ORDER BY created_at DESC, run_id DESC LIMIT ?"""
SEARCH_WINDOW_JOINED = f"""
SELECT ({{match}}), {RUN_COLUMNS} FROM (
    SELECT newest.*{{added}}
    FROM (SELECT {RUN_COLUMNS} FROM runs {{where}} ORDER BY created_at DESC, run_id DESC
          LIMIT ?) AS newest{{join}})
ORDER BY created_at DESC, run_id DESC"""
# the run's first event, for clauses that read it
SEARCH_EVENT_COLUMNS = ", e.name AS event_name, CAST(e.data AS TEXT) AS event_data"
SEARCH_EVENT_JOIN = """
    LEFT JOIN events e ON e.internal_id = json_extract(newest.event_ids, '$[0]')"""
# the run's queue row, for clauses that read it
SEARCH_QUEUE_COLUMNS = ", qr.due_at AS queue_due_at"
SEARCH_QUEUE_JOIN = """
    LEFT JOIN queue qr ON qr.run_id = newest.run_id"""
COUNT_RUNS = "SELECT count(*) FROM (SELECT 1 FROM runs {where} LIMIT ?)"
SELECT_STEPS = """
SELECT run_id, hash, step_id, kind, position, status, output, error, attempts, due_at,
       started_at, ended_at
FROM steps WHERE run_id = ? ORDER BY position"""
SELECT_HISTORY = """
SELECT run_id, ts, kind, step_id, attempt, duration, data, worker_id FROM history
WHERE run_id = ? ORDER BY seq"""
# an event's columns as ``_rows.event_record`` reads them
EVENT_COLUMNS = "internal_id, name, data, user_data, sender_id, ts, v"
# a queue row whose function is paused neither in its app nor in every app ('')
_NOT_PAUSED = """function_id NOT IN (SELECT function_id FROM paused WHERE app_id = '')
      AND (app_id, function_id) NOT IN (SELECT app_id, function_id FROM paused)"""
NEXT_DUE = f"""
SELECT MIN(t) FROM (
    SELECT MIN(due_at) AS t FROM queue
    WHERE lease_owner IS NULL AND {_NOT_PAUSED}
    UNION ALL
    SELECT MIN(lease_expires_at) AS t FROM queue
    WHERE lease_owner IS NOT NULL AND {_NOT_PAUSED}
    UNION ALL
    SELECT MIN(due_at) AS t FROM deferrals
    UNION ALL
    SELECT MIN(next_at) AS t FROM crons
)"""
NEXT_DEFERRAL = "SELECT MIN(due_at) FROM deferrals"
# a queued run not started yet with a start timeout (the index runs_start_deadline)
_UNSTARTED_OF = """status = 'QUEUED' AND started_at IS NULL AND start_timeout IS NOT NULL
  AND app_id IN (?1, '') AND function_id IN (SELECT value FROM json_each(?2))"""
NEXT_START_DEADLINE_OF = f"""
SELECT (SELECT created_at + start_timeout FROM runs INDEXED BY runs_start_deadline
        WHERE {_UNSTARTED_OF} ORDER BY created_at + start_timeout LIMIT 1)"""
OVERDUE_STARTS = f"""
SELECT run_id, function_id, start_timeout FROM runs INDEXED BY runs_start_deadline
WHERE {_UNSTARTED_OF} AND created_at + start_timeout < ?3
ORDER BY created_at + start_timeout LIMIT ?4"""
NEXT_CRON_OF = """
SELECT MIN(next_at) FROM crons
WHERE app_id = ? AND function_id IN (SELECT value FROM json_each(?))"""
# A runs filter's status placeholder (``status = +?``, never ``status = ?``): compared with the
# partial index runs_start_deadline's ``status = 'QUEUED'``, a bare parameter makes SQLite
# re-prepare the statement each time it is bound, to check whether that index applies (it never
# does here: its other terms are not in a filter); the unary plus is a no-op on the value and the
# plans stay the same (runs_status_created), without ~90k instructions of re-prepare a listing.
STATUS_MARK = "+?"
# a run waits for a worker: it has not ended and no live worker registered its function
WAITING_FOR_WORKER = """status IN ('QUEUED', 'RUNNING', 'SLEEPING', 'WAITING', 'RETRYING')
  AND NOT EXISTS (
    SELECT 1 FROM worker_functions wf JOIN workers w ON w.worker_id = wf.worker_id
    WHERE wf.function_id = runs.function_id AND (runs.app_id = '' OR wf.app_id = runs.app_id)
      AND w.expires_at > ?)"""
REGISTER_WORKER = """
INSERT OR REPLACE INTO workers (worker_id, app_id, function_ids, started_at, seen_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?)"""
INSERT_WORKER_FUNCTION = """
INSERT OR IGNORE INTO worker_functions (function_id, app_id, worker_id) VALUES (?, ?, ?)"""
DELETE_WORKER = "DELETE FROM workers WHERE worker_id = ?"
DELETE_WORKER_FUNCTIONS = "DELETE FROM worker_functions WHERE worker_id = ?"
TOUCH_WORKER = "UPDATE workers SET seen_at = ?, expires_at = ? WHERE worker_id = ?"
LIVE_WORKERS = """
SELECT worker_id, app_id, function_ids, started_at, seen_at, expires_at FROM workers
WHERE expires_at > ? ORDER BY worker_id"""
PURGE_WORKERS = """
DELETE FROM worker_functions
WHERE worker_id IN (SELECT worker_id FROM workers WHERE expires_at < ?)"""
PURGE_WORKER_ROWS = "DELETE FROM workers WHERE expires_at < ?"
ADOPT_RUNS = """
UPDATE runs SET app_id = ?
WHERE app_id = '' AND function_id IN (SELECT value FROM json_each(?))"""
ADOPT_QUEUE = """
UPDATE queue SET app_id = ?
WHERE app_id = '' AND function_id IN (SELECT value FROM json_each(?))"""
ANY_UNOWNED = "SELECT 1 FROM queue WHERE app_id = '' LIMIT 1"
ADOPT_CRONS = """
UPDATE OR IGNORE crons SET app_id = ?
WHERE app_id = '' AND function_id IN (SELECT value FROM json_each(?))"""
DROP_UNOWNED_CRONS = """
DELETE FROM crons WHERE app_id = '' AND function_id IN (SELECT value FROM json_each(?))"""
ADOPT_PAUSES = """
UPDATE OR IGNORE paused SET app_id = ?
WHERE app_id = '' AND function_id IN (SELECT value FROM json_each(?))"""
DROP_UNOWNED_PAUSES = """
DELETE FROM paused WHERE app_id = '' AND function_id IN (SELECT value FROM json_each(?))"""

# -- flow control ---------------------------------------------------------------------------------
DELETE_MATCHERS_OF_RUN = "DELETE FROM matchers WHERE run_id = ?"
DELETE_MATCHERS_OF_RUNS = "DELETE FROM matchers WHERE run_id IN ({})"  # _multirow.update_among
# the marks of steps a pass was executing when its run ended (their results never came)
DELETE_EXECUTING_STEPS = "DELETE FROM steps WHERE run_id = ? AND status = 'RUNNING'"
DELETE_EXECUTING_STEPS_AMONG = "DELETE FROM steps WHERE run_id IN ({}) AND status = 'RUNNING'"
INSERT_MATCHER = """
INSERT INTO matchers (matcher_id, run_id, event_name, expression, index_path, index_value,
                      expires_at, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_MATCHER_PATH = "INSERT OR IGNORE INTO matcher_paths (event_name, path) VALUES (?, ?)"
MATCHER_PATHS = "SELECT path FROM matcher_paths WHERE event_name = ?"
MATCHER_COLUMNS = """matcher_id, run_id, '' AS step_hash, event_name, expression, index_path,
    index_value, expires_at, created_at"""
MATCHERS_UNINDEXED = f"""
SELECT {MATCHER_COLUMNS} FROM matchers
WHERE event_name = ? AND index_path IS NULL AND (expires_at IS NULL OR expires_at >= ?)"""
MATCHERS_INDEXED = f"""
SELECT {MATCHER_COLUMNS} FROM matchers
WHERE event_name = ? AND index_path = ? AND index_value = ?
  AND (expires_at IS NULL OR expires_at >= ?)"""
MATCHERS_INDEXED_AMONG = f"""
SELECT {MATCHER_COLUMNS} FROM matchers
WHERE event_name = ? AND index_path = ? AND index_value IN (SELECT value FROM json_each(?))
  AND (expires_at IS NULL OR expires_at >= ?)"""
# the same (but the columns the caller knows: the event name and index path it asked for, and
# the empty step hash; each column read costs ~1.4k instructions), each with its run's
# UNFINISHED_RUN_FUNCTION columns (NULL: the run has ended) and whether it has one trigger event
# (its cancellation's announcements are then kept as a row, schema 27, made of the run and the
# event when read: ``_cancels._kept``; the event itself is not read here)
_MATCHERS_WITH_RUNS = """
FROM matchers AS m
LEFT JOIN runs AS r
  ON r.run_id = m.run_id AND r.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')
WHERE m.event_name = ? AND m.index_path = ?
  AND m.index_value IN (SELECT value FROM json_each(?))
  AND (m.expires_at IS NULL OR m.expires_at >= ?)"""
MATCHERS_INDEXED_AMONG_WITH_RUNS = f"""
SELECT m.matcher_id, m.run_id, m.expression, m.index_value, m.expires_at, m.created_at,
       r.function_id, r.parent_run_id, r.parent_step_hash, r.event_ids, r.status,
       json_array_length(r.event_ids) = 1{_MATCHERS_WITH_RUNS}"""
# the same but a candidate's matcher id and expiry (``_cancel_rules.MatcherRow``'s columns first)
MATCHER_ROWS_AMONG_WITH_RUNS = f"""
SELECT m.run_id, m.expression, m.index_value, m.created_at,
       r.function_id, r.parent_run_id, r.parent_step_hash, r.event_ids, r.status,
       json_array_length(r.event_ids) = 1{_MATCHERS_WITH_RUNS}"""
# the runs whose announcements a sender of the version before owed (schema 24), oldest first,
# each with its function (NULL: the run is gone, purged since), its event ids and, for a run of
# whether it has one trigger event (its announcements are then kept as a row, schema 27)
OWED_ANNOUNCEMENTS = """
SELECT o.seq, o.run_id, r.function_id, o.reason, o.at, r.event_ids,
       json_array_length(r.event_ids) = 1
FROM owed_announcements AS o
LEFT JOIN runs AS r ON r.run_id = o.run_id
ORDER BY o.seq LIMIT ?"""
FORGET_OWED_ANNOUNCEMENTS = "DELETE FROM owed_announcements WHERE seq <= ?"
COUNT_OWED_ANNOUNCEMENTS = "SELECT count(*) FROM owed_announcements"
RUNS_EVENT_IDS_AMONG = """
SELECT run_id, event_ids FROM runs WHERE run_id IN (SELECT value FROM json_each(?))"""
IDEMPOTENCY_SEEN = "SELECT seen_at FROM idempotency WHERE key = ?"
REMEMBER_IDEMPOTENCY = "INSERT OR REPLACE INTO idempotency (key, seen_at) VALUES (?, ?)"
GCRA_BUCKET = "SELECT tat, decided_at FROM gcra WHERE bucket = ?"
SET_GCRA_BUCKET = "INSERT OR REPLACE INTO gcra (bucket, tat, decided_at) VALUES (?, ?, ?)"
ACTIVE_SINGLETON_RUNS = """
SELECT run_id FROM runs
WHERE singleton_key = ? AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"""
INSERT_SKIP = "INSERT INTO skips (event_id, function_id, reason, at) VALUES (?, ?, ?, ?)"
LIST_SKIPS = """
SELECT event_id, function_id, reason, at FROM skips {where} ORDER BY seq DESC LIMIT ?"""
DEFERRAL_COLUMNS = "kind, function_id, key, event_ids, first_at, due_at, run"
GET_DEFERRAL = f"""
SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE kind = ? AND function_id = ? AND key = ?"""
PUT_DEFERRAL = f"INSERT OR REPLACE INTO deferrals ({DEFERRAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
DELETE_DEFERRAL = "DELETE FROM deferrals WHERE kind = ? AND function_id = ? AND key = ?"
DUE_DEFERRALS = f"SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE due_at <= ? ORDER BY due_at"
CRONS_OF = """
SELECT function_id, cron FROM crons
WHERE app_id = ? AND function_id IN (SELECT value FROM json_each(?))"""
INSERT_CRON = """
INSERT OR IGNORE INTO crons (function_id, cron, next_at, app_id) VALUES (?, ?, ?, ?)"""
DELETE_CRON = "DELETE FROM crons WHERE app_id = ? AND function_id = ? AND cron = ?"
DUE_CRONS = """
SELECT function_id, cron, next_at, app_id FROM crons
WHERE next_at <= ? AND app_id = ? AND function_id IN (SELECT value FROM json_each(?))"""
ADVANCE_CRON = """
UPDATE crons SET next_at = ? WHERE app_id = ? AND function_id = ? AND cron = ? AND next_at = ?"""
PAUSE = "INSERT OR IGNORE INTO paused (app_id, function_id) VALUES (?, ?)"
RESUME = "DELETE FROM paused WHERE app_id IN (?, '') AND function_id = ?"
RESUME_EVERY_APP = "DELETE FROM paused WHERE function_id = ?"
PUT_SDK_APP = """
INSERT INTO sdk_apps (app_id, name, registration, synced_at) VALUES (?, ?, ?, ?)
ON CONFLICT (app_id, name) DO UPDATE SET registration = excluded.registration,
    synced_at = excluded.synced_at
"""
SDK_APPS = "SELECT name, registration FROM sdk_apps WHERE app_id = ? ORDER BY name"
PAUSED = "SELECT DISTINCT function_id FROM paused"
PAUSED_IN = "SELECT function_id FROM paused WHERE app_id IN (?, '')"
COPY_STEPS = """
INSERT INTO steps (run_id, hash, step_id, kind, position, status, output, error, attempts,
                   due_at, started_at, ended_at)
SELECT ?, hash, step_id, kind, position, status, output, error, attempts, due_at, started_at,
       ended_at
FROM steps WHERE run_id = ? AND position < ? AND status = 'COMPLETED'"""

# -- retention ------------------------------------------------------------------------------------
# purges delete a bounded batch (the last parameter) per statement
PURGE_SENDER_IDS = """
DELETE FROM event_ids WHERE sender_id IN (
  SELECT sender_id FROM event_ids WHERE seen_at < ? LIMIT ?)"""
PURGE_IDEMPOTENCY = """
DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency WHERE seen_at < ? LIMIT ?)"""
PURGE_GCRA = "DELETE FROM gcra WHERE bucket IN (SELECT bucket FROM gcra WHERE tat < ? LIMIT ?)"
ENDED_BEFORE = """
SELECT run_id FROM runs
WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND ended_at < ? LIMIT ?"""
DELETE_RUN = "DELETE FROM runs WHERE run_id = ?"
DELETE_STEPS_OF_RUN = "DELETE FROM steps WHERE run_id = ?"
DELETE_HISTORY_OF_RUN = "DELETE FROM history WHERE run_id = ?"
DELETE_RUN_EVENTS_OF_RUN = "DELETE FROM run_events WHERE run_id = ?"
# inbox rows nobody took within the retention (a retired app's, ...): their events go too
PURGE_INBOX = """
DELETE FROM inbox WHERE seq IN (SELECT seq FROM inbox WHERE received_at < ? LIMIT ?)"""
PURGE_EVENTS = """
DELETE FROM events WHERE internal_id IN (
  SELECT internal_id FROM events WHERE received_at < ?
    AND NOT EXISTS (SELECT 1 FROM run_events WHERE run_events.event_id = events.internal_id)
    AND NOT EXISTS (SELECT 1 FROM history WHERE history.kind = 'WAIT_MATCHED'
                    AND history.data = json_object('event_id', events.internal_id))
    AND internal_id NOT IN (SELECT value FROM deferrals, json_each(deferrals.event_ids))
    AND NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.event_id = events.internal_id)
  LIMIT ?)"""
PURGE_SKIPS = "DELETE FROM skips WHERE seq IN (SELECT seq FROM skips WHERE at < ? LIMIT ?)"

TABLE_NAMES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"

# -- the dashboard's "waiting on" (queue_states) ---------------------------------------------------
QUEUE_STATES = """
SELECT run_id, due_at, lease_owner IS NOT NULL AND lease_expires_at > ?2, ckey1, climit1, ckey2,
       climit2
FROM queue WHERE run_id IN (SELECT value FROM json_each(?1))"""

# -- the server's reads (listing events, a page of runs' steps, monitoring) ------------------------
LIST_EVENTS = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}}
ORDER BY received_at DESC, internal_id DESC LIMIT ?"""
# the same by internal id (``EventFilter.id_below``; ``_rows.listed_by_id``): first among the
# newest events below the cursor, from the one that many below it (found in the primary key
# alone; the cursor and that many the last parameters but one; the first when fewer), the key
# read backward (the filter's name as ``+name``: not by its index); then, if they held too
# few, from every match (by the name's index, then sorted; without a name but from a time on,
# ``_RECEIVED``: by the received time's index, the key named ``+internal_id`` in the filter)
LIST_EVENTS_BY_ID_RECENT = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}}
  AND internal_id >= coalesce((SELECT internal_id FROM events WHERE internal_id < ?
                               ORDER BY internal_id DESC LIMIT 1 OFFSET ?), '')
ORDER BY internal_id DESC LIMIT ?"""
# how many events of a name the filter's window holds, counted in events_name_received alone
# and no further than the limit (the last parameter): few, and the name's index reads them
NAMED_AT_MOST = "SELECT count(*) FROM (SELECT 1 FROM events {where} LIMIT ?)"
LIST_EVENTS_BY_ID = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}}
ORDER BY internal_id DESC LIMIT ?"""
LIST_EVENTS_BY_ID_RECEIVED = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}}
ORDER BY +internal_id DESC LIMIT ?"""
STEPS_OF = """
SELECT run_id, hash, step_id, kind, position, status, output, error, attempts, due_at,
       started_at, ended_at
FROM steps WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY run_id, position"""
RUNS_BY_STATUS = "SELECT status, COUNT(*) FROM runs GROUP BY status"
QUEUE_DEPTH = "SELECT COUNT(*) FROM queue"
QUEUE_DUE = "SELECT COUNT(*), MIN(due_at) FROM queue WHERE lease_owner IS NULL AND due_at <= ?"

# -- the trigger catalog and the inbox (events handed to other apps' functions) -------------------
CATALOG_VERSION = "SELECT coalesce((SELECT version FROM trigger_catalog WHERE id = 1), 0)"
CATALOG_ROWS = "SELECT app_id, function_id, event_name FROM triggers"
TRIGGERS_OF_APP = "SELECT function_id, event_name FROM triggers WHERE app_id = ?"
# the functions the app's live workers serve (a registration keeps their rows)
LIVE_FUNCTIONS_OF_APP = """
SELECT DISTINCT f.function_id FROM workers w JOIN worker_functions f ON f.worker_id = w.worker_id
WHERE w.app_id = ? AND w.expires_at > ?"""
DROP_INBOX_OF_FUNCTION = (
    "DELETE FROM inbox WHERE app_id = ? AND function_id = ? RETURNING seq, event_id"
)
DELETE_TRIGGERS_OF_APP = "DELETE FROM triggers WHERE app_id = ?"
INSERT_TRIGGER = "INSERT OR IGNORE INTO triggers (app_id, event_name, function_id) VALUES (?, ?, ?)"
SET_CATALOG_VERSION = """
INSERT INTO trigger_catalog (id, version) VALUES (1, ?)
ON CONFLICT (id) DO UPDATE SET version = excluded.version"""
# the apps (``Store.apps``, ``remove_app``): their workers and the events waiting for them
APP_WORKERS = """
SELECT app_id, max(seen_at), count(*) FILTER (WHERE expires_at > ?) FROM workers GROUP BY app_id"""
APP_INBOX = "SELECT app_id, count(*) FROM inbox GROUP BY app_id"
LIVE_WORKERS_OF_APP = "SELECT count(*) FROM workers WHERE app_id = ? AND expires_at > ?"
DROP_INBOX_OF_APP = "DELETE FROM inbox WHERE app_id = ?"
DROP_SDK_APPS_OF_APP = "DELETE FROM sdk_apps WHERE app_id = ?"
DELIVER = """
INSERT INTO inbox (app_id, function_id, event_id, received_at) VALUES (?, ?, ?, ?)"""
# when the first inbox row of each of these functions was received, for next_due_at: one probe
# of the index inbox_function a function (the row of its lowest seq), never a read of every row
# waiting. A row given back (TakeContended) has a later seq and its older reception, so the time
# may be a later reception than the oldest's: any waiting row's is past, so due now either way
NEXT_INBOX_OF = """
SELECT MIN((SELECT received_at FROM inbox WHERE app_id = ?1 AND function_id = f.value
            ORDER BY seq LIMIT 1))
FROM json_each(?2) AS f"""
TAKE_INBOX = """
DELETE FROM inbox WHERE seq IN (
  SELECT seq FROM inbox
  WHERE app_id = ? AND function_id IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?)
RETURNING seq, function_id, event_id, received_at"""
# the events of a name received after (received_at, internal_id) and at or before a time
EVENTS_RECEIVED = f"""
SELECT received_at, {EVENT_COLUMNS} FROM events
WHERE name = ? AND received_at >= ? AND received_at <= ? AND (received_at > ? OR internal_id > ?)
ORDER BY received_at, internal_id"""
