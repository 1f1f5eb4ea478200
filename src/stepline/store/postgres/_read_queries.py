"""The PostgreSQL store's statements that read runs for callers: a run loaded with its events,
steps and waits, run lists and payload searches, what the dashboard reads (psycopg placeholders)."""

from __future__ import annotations

from stepline.store.postgres.queries import EVENT_COLUMNS, STEP_COLUMNS, WAIT_COLUMNS, WAITING

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
SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = %s ORDER BY position"


# a run with its events, steps and waits in one statement (one snapshot: a statement sees what
# committed before it began), each of them as one array per column. The arrays of one table
# follow one row order (the aggregates of one query level read the same rows in the same
# order), not a sorted one: `_rows.run_state` orders the rows (an `ORDER BY` in each aggregate
# is a sort per column on PostgreSQL 15, about half of the statement's time for a run)
def _arrays(columns: str) -> str:
    return ", ".join(f"array_agg({c.strip()})" for c in columns.split(","))


# the run's events by primary key from an array (an init plan): with `IN (SELECT …)` the planner
# chose a hash semi-join over a scan of the whole events table, at every load
LOAD_RUN = f"""
SELECT {RUN_COLUMNS}, e.*, s.*, w.*
FROM runs r
CROSS JOIN LATERAL (
    SELECT {_arrays(EVENT_COLUMNS)} FROM events
    WHERE internal_id = ANY(ARRAY(SELECT jsonb_array_elements_text(r.event_ids::jsonb)))
) e
CROSS JOIN LATERAL (
    SELECT {_arrays(STEP_COLUMNS)} FROM steps WHERE steps.run_id = r.run_id
) s
CROSS JOIN LATERAL (
    SELECT {_arrays(WAIT_COLUMNS)} FROM waits WHERE waits.run_id = r.run_id
) w
WHERE r.run_id = %s"""
LOAD_RUNS = LOAD_RUN.replace("WHERE r.run_id = %s", "WHERE r.run_id = ANY(%s)")
# a run's history: its rows, and the STEP_COMPLETED lines written in its steps' first rows
# (queries.INSERT_FRESH_STEP), in the order of their numbers (one sequence numbers both)
HISTORY_LINES = """
SELECT seq, run_id, ts, kind, step_id, attempt, duration, data, worker_id FROM history
UNION ALL
SELECT history_seq, run_id, history_ts, 'STEP_COMPLETED', step_id, history_attempt,
       history_duration, NULL, history_worker
FROM steps WHERE history_seq IS NOT NULL"""
SELECT_HISTORY = """
SELECT run_id, ts, kind, step_id, attempt, duration, data, worker_id FROM (
    SELECT seq, run_id, ts, kind, step_id, attempt, duration, data, worker_id FROM history
    WHERE run_id = %(run)s
    UNION ALL
    SELECT history_seq, run_id, history_ts, 'STEP_COMPLETED', step_id, history_attempt,
           history_duration, NULL, history_worker
    FROM steps WHERE run_id = %(run)s AND history_seq IS NOT NULL
) AS lines ORDER BY seq"""
SELECT_EVENTS = f"SELECT {EVENT_COLUMNS} FROM events WHERE internal_id = ANY(%s)"

# -- what the dashboard reads ---------------------------------------------------------------------
QUEUE_STATES = """
SELECT run_id, due_at, lease_owner IS NOT NULL AND lease_expires_at > %s, ckey1, climit1, ckey2,
       climit2
FROM queue WHERE run_id = ANY(%s)"""
# the pending waits of several runs (a stale one's row is no wait: ``queries.WAITING``)
WAITS_OF_RUNS = f"SELECT {WAIT_COLUMNS} FROM waits w WHERE run_id = ANY(%s) AND {WAITING}"
LIST_EVENTS = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}}
ORDER BY received_at DESC, internal_id DESC LIMIT %s"""
# the same by internal id (``EventFilter.id_below``; ``_rows.listed_by_id``): first among the
# newest events below the cursor (the primary key read backward, the cursor and how many the
# first parameters), then, if they held too few, from every match: the matches materialized
# (read by the filter's index, a name's or the received time's) and sorted, so the planner
# cannot read the key backward through the whole table (its guess for a name not received
# among the newest events)
LIST_EVENTS_BY_ID_RECENT = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM (
  SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events
  WHERE internal_id < %s ORDER BY internal_id DESC LIMIT %s) AS recent {{where}}
ORDER BY internal_id DESC LIMIT %s"""
# without a name, by the planner's choice: its statistics of the received time and of the key
# are those of single columns (a name's events among the newest, two columns, it guesses)
LIST_EVENTS_BY_ID_PLANNED = f"""
SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}}
ORDER BY internal_id DESC LIMIT %s"""
LIST_EVENTS_BY_ID = f"""
WITH matching AS MATERIALIZED (
  SELECT {EVENT_COLUMNS}, received_at, duplicate FROM events {{where}})
SELECT * FROM matching ORDER BY internal_id DESC LIMIT %s"""
# sent before LIST_EVENTS_BY_ID in its transaction: the matches of a name read by its index
# whatever the planner guesses of them (it takes the name and the received time for
# independent: for a name of 1/6 of a compact table whose events are all older than the window
# it chose, in one gate of six thousand rows, to read the whole table)
BY_INDEX = "SELECT set_config('enable_seqscan', 'off', true)"
STEPS_OF = f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ANY(%s) ORDER BY run_id, position"
RUNS_BY_STATUS = "SELECT status, COUNT(*) FROM runs GROUP BY status"
QUEUE_DEPTH = "SELECT COUNT(*) FROM queue"
QUEUE_DUE = "SELECT COUNT(*), MIN(due_at) FROM queue WHERE lease_owner IS NULL AND due_at <= %s"
