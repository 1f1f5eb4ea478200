"""The SQLite store's statements of waits: stored by a pass, looked up and resolved by an
ingest (their steps completed, schema 28: their rows purged later), timed out, and read by the
store's reads."""

from __future__ import annotations

from functools import lru_cache

# the step of a pending wait completed (the one that is PENDING: its count claims the wait,
# schema 28, which is resolved from then on, see PENDING)
COMPLETE_STEP = """
UPDATE steps SET status = 'COMPLETED', output = ?, ended_at = ?
WHERE run_id = ? AND hash = ? AND status = 'PENDING'"""
# COMPLETE_STEP of ``count`` runs' steps of one hash (?2) at ?1: the runs ?3, ?5, ... each
# with its output ?4, ?6, ... (chosen by a CASE: cheaper than a statement run per row)
STEPS_CHUNK = 25


@lru_cache(maxsize=4)
def complete_steps_of_hash(count: int) -> str:
    """The statement completing ``count`` runs' steps of one hash (see above)."""
    whens = " ".join(f"WHEN ?{3 + 2 * at} THEN ?{4 + 2 * at}" for at in range(count))
    runs = ", ".join(f"?{3 + 2 * at}" for at in range(count))
    return (
        f"UPDATE steps SET status = 'COMPLETED', output = CASE run_id {whens} END, ended_at = ?1"
        f" WHERE hash = ?2 AND run_id IN ({runs}) AND status = 'PENDING'"
    )


SELECT_STEP_ID = "SELECT step_id FROM steps WHERE run_id = ? AND hash = ?"
# the WAIT_MATCHED row of a resolved wait, which carries its step's id: the time (?1) bound once
# for many rows (``_multirow.insert_shared``), and the step's id (?2) too where they share it;
# the last form reads the step's where the wait has none (stored by a process of the version
# before schema 18)
INSERT_WAIT_MATCHED_AT = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (?, ?1, 'WAIT_MATCHED', ?, NULL, NULL, ?, NULL)"""
INSERT_WAIT_MATCHED_OF_STEP = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
VALUES (?, ?1, 'WAIT_MATCHED', ?2, NULL, NULL, ?, NULL)"""
INSERT_WAIT_MATCHED_READING_STEP = """
INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
SELECT ?, ?, 'WAIT_MATCHED', coalesce(?, (SELECT step_id FROM steps WHERE run_id = ? AND hash = ?)),
       NULL, NULL, ?, NULL"""
INSERT_WAIT = """
INSERT INTO waits (wait_id, run_id, step_hash, event_name, expression, index_path, index_value,
                   expires_at, created_at, step_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_WAIT_PATH = "INSERT OR IGNORE INTO wait_paths (event_name, path) VALUES (?, ?)"
WAIT_PATHS = "SELECT path FROM wait_paths WHERE event_name = ?"
WAIT_COLUMNS = """wait_id, run_id, step_hash, event_name, expression, index_path, index_value,
    expires_at, created_at, step_id"""
# a wait is pending while its row is in ``waits`` and its step is PENDING (schema 28): an
# ingest that resolves it completes the step and keeps the row, deleted later with others
# (``purge_resolved_waits``); a pass or a timeout that claims it deletes the row first
PENDING = """EXISTS (
    SELECT 1 FROM steps s
    WHERE s.run_id = waits.run_id AND s.hash = waits.step_hash AND s.status = 'PENDING')"""
WAITS_UNINDEXED = f"""
SELECT {WAIT_COLUMNS} FROM waits WHERE event_name = ? AND index_path IS NULL AND {PENDING}"""
# an index lookup reads neither the event name nor the path: they are the ones asked for
INDEXED_WAIT_COLUMNS = """wait_id, run_id, step_hash, expression, index_value, expires_at,
    created_at, step_id"""
WAITS_INDEXED = f"""
SELECT {INDEXED_WAIT_COLUMNS} FROM waits
WHERE event_name = ? AND index_path = ? AND index_value = ? AND {PENDING}"""
# the same for any of several distinct values (``?3``, a JSON list): one index probe per value,
# in the list's order (a join: ``IN (SELECT ...)`` would first copy the list into a temporary
# index, a B-tree insert per value)
WAITS_INDEXED_AMONG = f"""
SELECT {INDEXED_WAIT_COLUMNS} FROM json_each(?3) AS v CROSS JOIN waits
WHERE waits.event_name = ?1 AND waits.index_path = ?2 AND waits.index_value = v.value
  AND {PENDING}"""
# whether a wait's stored expression is the one equality ``prepare_match`` stores for its index
# value at the path ``?2`` (``expressions._string_equality``: a plain literal, nothing escaped):
# an incoming event whose string value there the lookup found equal to it satisfies it
DECIDED = """waits.expression = 'async.' || ?2 || ' == dyn("' || waits.index_value || '")'
    AND instr(waits.index_value, '"') = 0 AND instr(waits.index_value, '\\') = 0"""
# WAITS_INDEXED_AMONG as ``decided_waits`` reads them: their created_at NULL (never NULL in the
# table) where the index does not decide one by its text; neither expression nor expires_at
WAITS_DECIDED_AMONG = f"""
SELECT wait_id, run_id, step_hash, index_value, CASE WHEN {DECIDED} THEN created_at END, step_id
FROM json_each(?3) AS v CROSS JOIN waits
WHERE waits.event_name = ?1 AND waits.index_path = ?2 AND waits.index_value = v.value
  AND {PENDING}"""
WAITS_OF_RUN = f"SELECT {WAIT_COLUMNS} FROM waits WHERE run_id = ? AND {PENDING}"
EXPIRED_WAITS_OF_RUN = f"""
SELECT {WAIT_COLUMNS} FROM waits
WHERE run_id = ? AND expires_at IS NOT NULL AND expires_at <= ? AND {PENDING}"""
# a pending wait's claim (a resolved one's row is not claimed again)
DELETE_WAIT = f"DELETE FROM waits WHERE run_id = ? AND wait_id = ? AND {PENDING}"
# the waits in key order after a key (``?1``, ``?2``; two empty texts: from the first), ``?3``
# at most, each with whether it is resolved (kept until deleted: ``purge_resolved_waits``)
WAITS_SWEPT = f"""
SELECT run_id, wait_id, NOT {PENDING} FROM waits
WHERE (run_id, wait_id) > (?1, ?2) ORDER BY run_id, wait_id LIMIT ?3"""
# resolved waits' rows (``?``: their keys as a JSON list of pairs, a probe of each)
PURGE_RESOLVED_WAITS = """
DELETE FROM waits WHERE (run_id, wait_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))"""
# the pending waits of several runs (``?1``: their ids, a JSON list; the dashboard)
WAITS_OF_RUNS = f"""
SELECT {WAIT_COLUMNS} FROM waits WHERE run_id IN (SELECT value FROM json_each(?1)) AND {PENDING}"""
