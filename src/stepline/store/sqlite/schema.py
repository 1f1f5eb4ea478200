"""SQLite schema as numbered migrations, applied in order; the version is in ``schema_version``."""

from __future__ import annotations

# The migrations that change what rows mean to the code of the version before them, beyond
# adding what it does not read: that code, still running on the file (a worker of the previous
# version in a rolling deploy), would read the migrated rows as it knows them. ``migrate``
# applies them only while no worker is alive on the file (``stepline db migrate up --force``
# for an operator who knows the old ones are stopped). 20: a resolved wait's row is kept until
# a purge, which an older worker reads as pending: it resolved it again (21 makes its claim
# delete nothing) or times it out on the run's next pass (writing null over the event). 25: a
# wait an ingest resolves gets its step's output and WAIT_MATCHED row on its run's next lease or
# commit, which an older worker does not make: it would replay the wait without its event. 26:
# the other way back (a sender writes them again): a worker of 25 would go on leaving them to
# leases that no longer write them (a sender of 25 still open fails: the marks lose 25's columns).
# 27: a cancelled run's announcements nothing hears are one ``cancel_announcements`` row, which
# the readers of a worker of 26 do not read (one taking another app's event would not see an
# announcement after it that cancels the run: ``events_received``). 28: a resolved wait is no
# longer marked (``waits_resolved`` dropped): a worker of 27 would fail at its first read or
# resolution of a wait (loudly: the table is gone), and its plain claim of a resolved wait's
# row (21's trigger dropped too) would find it (a sender of 27 still open fails the same way).
STOP_WORKERS_FIRST: frozenset[int] = frozenset({20, 25, 26, 27, 28})

# 21 (made again by 26): a marked wait's row is not deleted
_KEEP_RESOLVED = """
    CREATE TRIGGER waits_keep_resolved BEFORE DELETE ON waits
    WHEN EXISTS (
        SELECT 1 FROM waits_resolved r WHERE r.run_id = OLD.run_id AND r.wait_id = OLD.wait_id)
    BEGIN
        SELECT RAISE(IGNORE);
    END;
"""

# 26: the resolutions a sender of schema 25 left unwritten (a mark naming the event, ``at`` its
# time), as its runs' leases would have written them: the waiting step completed at that time
# with the event's payload (``Event.payload``'s JSON, made of the event row's stored JSON; null
# if the event is gone), a WAIT_MATCHED row naming the event after every row of its run, a run's
# in the order they were resolved (the time, the event, the wait's age)
_UNWRITTEN = """
WITH unwritten AS (
    SELECT r.run_id, r.event_id, r.at, w.step_hash, w.created_at, w.wait_id,
           coalesce(w.step_id, (SELECT s.step_id FROM steps AS s
                                WHERE s.run_id = r.run_id AND s.hash = w.step_hash)) AS step_id,
           CASE WHEN e.name IS NULL OR e.data IS NULL OR e.user_data IS NULL OR e.ts IS NULL
                THEN CAST('null' AS BLOB)
                ELSE CAST('{"id":' || json_quote(coalesce(e.sender_id, r.event_id))
                          || ',"name":' || json_quote(e.name)
                          || ',"data":' || CAST(e.data AS TEXT)
                          || ',"user":' || CAST(e.user_data AS TEXT)
                          || ',"ts":' || CAST(e.ts * 1000 AS INTEGER) || '}' AS BLOB)
           END AS output
    FROM waits_resolved AS r
    JOIN waits AS w ON w.run_id = r.run_id AND w.wait_id = r.wait_id
    LEFT JOIN events AS e ON e.internal_id = r.event_id
    WHERE r.event_id IS NOT NULL)"""

MIGRATIONS: tuple[str, ...] = (
    # 1: the core tables
    """
    CREATE TABLE events (
        internal_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        data BLOB NOT NULL,
        user_data BLOB NOT NULL,
        sender_id TEXT,
        ts REAL NOT NULL,
        received_at REAL NOT NULL,
        duplicate INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX events_name_received ON events(name, received_at);
    CREATE TABLE event_ids (
        sender_id TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        function_id TEXT NOT NULL,
        status TEXT NOT NULL,
        event_ids TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        output BLOB,
        error TEXT,
        attempt INTEGER NOT NULL DEFAULT 0,
        parent_run_id TEXT,
        parent_step_hash TEXT
    ) WITHOUT ROWID;
    CREATE INDEX runs_function ON runs(function_id, run_id);
    CREATE INDEX runs_status ON runs(status, run_id);
    CREATE TABLE run_events (
        event_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        PRIMARY KEY (event_id, run_id)
    ) WITHOUT ROWID;
    CREATE TABLE steps (
        run_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        step_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        output BLOB,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL,
        started_at REAL,
        ended_at REAL,
        PRIMARY KEY (run_id, hash)
    ) WITHOUT ROWID;
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        step_id TEXT,
        attempt INTEGER,
        duration REAL,
        data TEXT
    );
    CREATE INDEX history_run ON history(run_id, seq);
    CREATE TABLE waits (
        wait_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        step_hash TEXT NOT NULL,
        event_name TEXT NOT NULL,
        expression TEXT,
        index_path TEXT,
        index_value TEXT,
        expires_at REAL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX waits_lookup ON waits(event_name, index_path, index_value);
    CREATE INDEX waits_run ON waits(run_id);
    CREATE TABLE wait_paths (
        event_name TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (event_name, path)
    ) WITHOUT ROWID;
    CREATE TABLE queue (
        run_id TEXT PRIMARY KEY,
        due_at REAL,
        lease_owner TEXT,
        lease_token TEXT,
        lease_expires_at REAL,
        wake INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX queue_due ON queue(due_at) WHERE lease_owner IS NULL;
    CREATE INDEX queue_lease ON queue(lease_expires_at) WHERE lease_owner IS NOT NULL;
    CREATE INDEX queue_owner ON queue(lease_owner) WHERE lease_owner IS NOT NULL;
    """,
    # 2: list runs newest first by creation time (run ids are opaque to the store)
    """
    DROP INDEX runs_function;
    DROP INDEX runs_status;
    CREATE INDEX runs_created ON runs(created_at, run_id);
    CREATE INDEX runs_function_created ON runs(function_id, created_at, run_id);
    CREATE INDEX runs_status_created ON runs(status, created_at, run_id);
    """,
    # 3: flow control, cancellation, schedules
    """
    ALTER TABLE runs ADD COLUMN start_timeout REAL;
    ALTER TABLE runs ADD COLUMN finish_timeout REAL;
    ALTER TABLE runs ADD COLUMN singleton_key TEXT;
    CREATE INDEX runs_singleton ON runs(singleton_key) WHERE singleton_key IS NOT NULL;
    ALTER TABLE queue ADD COLUMN function_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE queue ADD COLUMN ckey1 TEXT;
    ALTER TABLE queue ADD COLUMN climit1 INTEGER;
    ALTER TABLE queue ADD COLUMN ckey2 TEXT;
    ALTER TABLE queue ADD COLUMN climit2 INTEGER;
    CREATE TABLE matchers (
        matcher_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        event_name TEXT NOT NULL,
        expression TEXT,
        index_path TEXT,
        index_value TEXT,
        expires_at REAL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX matchers_lookup ON matchers(event_name, index_path, index_value);
    CREATE INDEX matchers_run ON matchers(run_id);
    CREATE TABLE matcher_paths (
        event_name TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (event_name, path)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE gcra (
        bucket TEXT PRIMARY KEY,
        tat REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE skips (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        function_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX skips_function ON skips(function_id, seq);
    CREATE TABLE deferrals (
        kind TEXT NOT NULL,
        function_id TEXT NOT NULL,
        key TEXT NOT NULL,
        event_ids TEXT NOT NULL,
        first_at REAL NOT NULL,
        due_at REAL NOT NULL,
        run TEXT NOT NULL,
        PRIMARY KEY (kind, function_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX deferrals_due ON deferrals(due_at);
    CREATE TABLE paused (
        function_id TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    CREATE TABLE crons (
        function_id TEXT NOT NULL,
        cron TEXT NOT NULL,
        next_at REAL NOT NULL,
        PRIMARY KEY (function_id, cron)
    ) WITHOUT ROWID;
    CREATE INDEX crons_next ON crons(next_at);
    """,
    # 4: runs carry their app; workers lease only the functions they registered (by app and
    # function id, through the per-function indexes); workers are registered; history rows and
    # runs name the worker of their pass. Rows recorded before carry the app id '' and are
    # adopted by the first worker of an app that registers their function.
    """
    ALTER TABLE runs ADD COLUMN app_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN worker_id TEXT;
    ALTER TABLE queue ADD COLUMN app_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX queue_fn_due ON queue(app_id, function_id, due_at) WHERE lease_owner IS NULL;
    CREATE INDEX queue_fn_lease ON queue(app_id, function_id, lease_expires_at)
        WHERE lease_owner IS NOT NULL;
    CREATE INDEX runs_unowned ON runs(function_id) WHERE app_id = '';
    CREATE INDEX queue_unowned ON queue(function_id) WHERE app_id = '';
    ALTER TABLE history ADD COLUMN worker_id TEXT;
    CREATE TABLE crons_by_app (
        app_id TEXT NOT NULL,
        function_id TEXT NOT NULL,
        cron TEXT NOT NULL,
        next_at REAL NOT NULL,
        PRIMARY KEY (app_id, function_id, cron)
    ) WITHOUT ROWID;
    INSERT INTO crons_by_app (app_id, function_id, cron, next_at)
        SELECT '', function_id, cron, next_at FROM crons;
    DROP TABLE crons;
    ALTER TABLE crons_by_app RENAME TO crons;
    CREATE INDEX crons_next ON crons(next_at);
    CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        function_ids TEXT NOT NULL,
        started_at REAL NOT NULL,
        seen_at REAL NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE worker_functions (
        function_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        worker_id TEXT NOT NULL,
        PRIMARY KEY (function_id, app_id, worker_id)
    ) WITHOUT ROWID;
    CREATE INDEX worker_functions_worker ON worker_functions(worker_id);
    """,
    # 5: the lease token a run's pass held when the run was cancelled (only that pass may still
    # keep the result of the step it was executing)
    """
    ALTER TABLE runs ADD COLUMN cancelled_lease TEXT;
    """,
    # 6: passes begun since the run's last commit (lease_due fails a run re-entered too often)
    """
    ALTER TABLE runs ADD COLUMN passes INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: a function is paused per app; pauses recorded before hold it in every app ('') until
    # an app registering the function adopts them
    """
    CREATE TABLE paused_by_app (
        app_id TEXT NOT NULL,
        function_id TEXT NOT NULL,
        PRIMARY KEY (app_id, function_id)
    ) WITHOUT ROWID;
    INSERT INTO paused_by_app (app_id, function_id) SELECT '', function_id FROM paused;
    DROP TABLE paused;
    ALTER TABLE paused_by_app RENAME TO paused;
    """,
    # 8: fair leasing: a function's due runs per concurrency-key group (its keys joined as
    # ``_fair_order.group_of`` joins them), so lease_due finds each group's oldest run
    """
    CREATE INDEX queue_fn_group ON queue(
        app_id, function_id, (coalesce(ckey1, '') || char(30) || coalesce(ckey2, '')), due_at)
        WHERE lease_owner IS NULL;
    """,
    # 9: list events newest first by the time they were received (the server's events list)
    """
    CREATE INDEX events_received ON events(received_at, internal_id);
    """,
    # 10: the latest sync of each Inngest SDK app (its /fn/register body), kept across restarts
    """
    CREATE TABLE sdk_apps (
        app_id TEXT NOT NULL,
        name TEXT NOT NULL,
        registration BLOB NOT NULL,
        synced_at REAL NOT NULL,
        PRIMARY KEY (app_id, name)
    ) WITHOUT ROWID;
    """,
    # 11: what an event did to each run it acted on (started, resumed, cancelled): one event
    # may both resume and cancel a run, so the effect is part of the key; rows recorded before
    # are the runs their events started. Indexed by run too (a purge deletes a run's rows).
    """
    CREATE TABLE run_effects (
        event_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        effect TEXT NOT NULL,
        PRIMARY KEY (event_id, run_id, effect)
    ) WITHOUT ROWID;
    INSERT INTO run_effects (event_id, run_id, effect)
        SELECT event_id, run_id, 'started' FROM run_events;
    DROP TABLE run_events;
    ALTER TABLE run_effects RENAME TO run_events;
    CREATE INDEX run_events_run ON run_events(run_id);
    """,
    # 12: an effect defaults to 'started', as on PostgreSQL: a process of the version before 11
    # still running during an upgrade inserts (event_id, run_id) only, which INSERT OR IGNORE
    # dropped without a word when the column had no default
    """
    CREATE TABLE run_effects (
        event_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        effect TEXT NOT NULL DEFAULT 'started',
        PRIMARY KEY (event_id, run_id, effect)
    ) WITHOUT ROWID;
    INSERT INTO run_effects (event_id, run_id, effect)
        SELECT event_id, run_id, effect FROM run_events;
    DROP TABLE run_events;
    ALTER TABLE run_effects RENAME TO run_events;
    CREATE INDEX run_events_run ON run_events(run_id);
    """,
    # 13: events are environment-wide (as in Inngest): the trigger catalog (the event names
    # each app's functions start runs on, replaced by each registration of the app; its
    # version changes with it, so a store reads the rows again only then), and the inbox of
    # events handed to another app's functions, taken by that app's workers
    """
    CREATE TABLE triggers (
        app_id TEXT NOT NULL,
        event_name TEXT NOT NULL,
        function_id TEXT NOT NULL,
        PRIMARY KEY (app_id, event_name, function_id)
    ) WITHOUT ROWID;
    CREATE TABLE trigger_catalog (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    );
    CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY,
        app_id TEXT NOT NULL,
        function_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX inbox_function ON inbox(app_id, function_id, seq);
    CREATE INDEX inbox_event ON inbox(event_id);
    """,
    # 14: the start deadlines of queued runs not started yet, for the housekeeping that
    # cancels them at the deadline (as Inngest's eager cancellation) and the worker's timer
    """
    CREATE INDEX runs_start_deadline ON runs(created_at + start_timeout)
        WHERE status = 'QUEUED' AND started_at IS NULL AND start_timeout IS NOT NULL;
    """,
    # 15: the inbox by received time, for the purge of rows nobody took within the
    # retention (a range, never a scan of the rows waiting for a retired app)
    """
    CREATE INDEX inbox_received ON inbox(received_at);
    """,
    # 16: the events ingested while a take of runs with cancel_on held its lock: their
    # cancel matching is made again once the take ended (docs/design.md, "Handing over")
    # (written by PostgreSQL only: SQLite has one writer, so a take and an ingestion never
    # overlap; the table is here so that both schemas hold the same tables, for db copy)
    """
    CREATE TABLE cancel_notes (
        event_id TEXT PRIMARY KEY,
        bucket INTEGER NOT NULL,
        tx INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 17: fewer index entries moved each time a run becomes due, is leased, woken or cancelled
    # (each costs a B-tree delete and insert): ``queue_due`` served only the global reads
    # (``stats``, ``next_due_at`` of every function), which ``queue_fn_due`` serves as well;
    # ``queue_fn_group`` holds only the runs with a concurrency key (a function without one
    # has a single group, whose oldest due run ``queue_fn_due`` already gives the lease)
    """
    DROP INDEX queue_due;
    DROP INDEX queue_fn_group;
    CREATE INDEX queue_fn_group ON queue(
        app_id, function_id, (coalesce(ckey1, '') || char(30) || coalesce(ckey2, '')), due_at)
        WHERE lease_owner IS NULL AND ckey1 IS NOT NULL;
    """,
    # 18: a wait resolved by an event writes fewer B-trees and reads no step: the waits are
    # kept by run (the key serves the reads and deletes of a run's waits, so no ``waits_run``
    # index to move), and each carries its step's id, which its WAIT_MATCHED history row
    # names (waits stored before get it from their step here; a wait a process of the version
    # before stores without it has its step read when it is resolved)
    """
    CREATE TABLE waits_by_run (
        wait_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        step_hash TEXT NOT NULL,
        event_name TEXT NOT NULL,
        expression TEXT,
        index_path TEXT,
        index_value TEXT,
        expires_at REAL,
        created_at REAL NOT NULL,
        step_id TEXT,
        PRIMARY KEY (run_id, wait_id)
    ) WITHOUT ROWID;
    INSERT INTO waits_by_run (wait_id, run_id, step_hash, event_name, expression, index_path,
                              index_value, expires_at, created_at, step_id)
        SELECT w.wait_id, w.run_id, w.step_hash, w.event_name, w.expression, w.index_path,
               w.index_value, w.expires_at, w.created_at,
               (SELECT s.step_id FROM steps s WHERE s.run_id = w.run_id AND s.hash = w.step_hash)
        FROM waits w;
    DROP TABLE waits;
    ALTER TABLE waits_by_run RENAME TO waits;
    CREATE INDEX waits_lookup ON waits(event_name, index_path, index_value);
    """,
    # 19: the column PostgreSQL migration 13 drops from its ``cancel_notes`` (a note's
    # transaction id, read by nothing), so both schemas hold the same columns, for db copy
    """
    CREATE TABLE cancel_notes_kept (
        event_id TEXT PRIMARY KEY,
        bucket INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO cancel_notes_kept (event_id, bucket) SELECT event_id, bucket FROM cancel_notes;
    DROP TABLE cancel_notes;
    ALTER TABLE cancel_notes_kept RENAME TO cancel_notes;
    """,
    # 20: a wait an ingest resolves is marked resolved here, its row kept, and deleted later in
    # batches (``purge_resolved_waits``, the worker's housekeeping): deleting it at once
    # rewrote a page of ``waits_lookup`` per wait (its keys are spread over the whole index),
    # 44 % of a resolving batch's WAL pages. A wait whose key is here is not pending: every
    # read of waits leaves it out, and no delete of a wait claims it again
    """
    CREATE TABLE waits_resolved (
        run_id TEXT NOT NULL,
        wait_id TEXT NOT NULL,
        PRIMARY KEY (run_id, wait_id)
    ) WITHOUT ROWID;
    """,
    # 21: a process of a version before 20 still running on the file (a rolling restart) does
    # not know the marks: its claim of a resolved wait whose row is kept (a plain DELETE, whose
    # count decides) deletes nothing, so it does not resolve the wait again. The purge removes
    # a wait's mark before its row
    _KEEP_RESOLVED,
    # 22: a run's cancel matchers are kept by run (as the waits since 18): the key serves the
    # deletes of a run's matchers (its end, its cancellation), so no ``matchers_run`` index is
    # written when a run with ``cancel_on`` is created or removed when it ends; and the lookup
    # of an event's candidates reads ``matchers_lookup`` alone (it holds every column a
    # candidate needs). The same columns, so code of the version before reads and writes the
    # table as it did
    """
    CREATE TABLE matchers_by_run (
        matcher_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        event_name TEXT NOT NULL,
        expression TEXT,
        index_path TEXT,
        index_value TEXT,
        expires_at REAL,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, matcher_id)
    ) WITHOUT ROWID;
    INSERT INTO matchers_by_run (matcher_id, run_id, event_name, expression, index_path,
                                 index_value, expires_at, created_at)
        SELECT matcher_id, run_id, event_name, expression, index_path, index_value, expires_at,
               created_at
        FROM matchers;
    DROP TABLE matchers;
    ALTER TABLE matchers_by_run RENAME TO matchers;
    CREATE INDEX matchers_lookup ON matchers(event_name, index_path, index_value, expires_at,
                                             created_at, expression);
    """,
    # 23: the WAIT_MATCHED rows by their data, which names the event that resolved the wait:
    # the runs an event resumed are read there (``EVENT_RUNS``), so an ingest writes no
    # ``run_events`` row for a resumed run (its two B-trees were 63 of the 358 pages a batch
    # of 1,000 resolving events wrote). A process of the version before still writes both:
    # the readers take the union
    """
    CREATE INDEX history_wait_matched ON history(data) WHERE kind = 'WAIT_MATCHED';
    """,
    # 24: the runs whose announcements (``inngest/function.finished`` and ``.cancelled``) a
    # sender's transaction owes: cancelled by its events with nothing hearing those names, their
    # two 475-byte event rows (four B-trees each) are written by a worker's housekeeping (or the
    # sender's engine when it closes) instead, as Inngest's executor emits them after the
    # cancellation. Appended in key order: a batch of 1,000 cancellations writes ~10 pages here
    # instead of ~285 for the announcements. A process of the version before neither writes nor
    # reads it (it announces at once, as it did)
    """
    CREATE TABLE owed_announcements (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
    # 25: a wait an ingest resolves is marked with the event that resolved it and the time
    # (``event_id``, ``at``); the three effects of the resolution that concern its run alone
    # (the waiting step's output, its WAIT_MATCHED row, which links the run to the event) are
    # no longer written by the sender but derived from the mark by every read, until the
    # run's next lease or commit writes them in pages it writes anyway (``_resolved.fold``:
    # the mark's ``event_id`` is then cleared; its row goes with the purge, as before). They
    # were 214 of the 358 pages a batch of 1,000 resolving events wrote
    """
    ALTER TABLE waits_resolved ADD COLUMN event_id TEXT;
    ALTER TABLE waits_resolved ADD COLUMN at REAL;
    """,
    # 26: a wait an ingest resolves gets its step's output and WAIT_MATCHED row from the sender
    # again (25 undone: its fold on the run's lease cost more than the sender saved, counted
    # together: 247 k instructions a resolution against 192 k); what senders of 25 left
    # unwritten is written here (``_UNWRITTEN``; 25 kept the events a mark named, so none is
    # gone), and the marks lose 25's columns (the table rebuilt as 20 made it, around 21's
    # trigger): a process of 25 still open on the file (a sender: ``STOP_WORKERS_FIRST`` sees
    # only workers) fails its next resolution loudly instead of leaving it to leases that no
    # longer write it (its run would wait for ever)
    f"""
    {_UNWRITTEN}
    UPDATE steps
    SET status = 'COMPLETED',
        output = (SELECT u.output FROM unwritten AS u
                  WHERE u.run_id = steps.run_id AND u.step_hash = steps.hash),
        ended_at = (SELECT u.at FROM unwritten AS u
                    WHERE u.run_id = steps.run_id AND u.step_hash = steps.hash)
    WHERE (run_id, hash) IN (SELECT run_id, step_hash FROM unwritten);
    {_UNWRITTEN}
    INSERT INTO history (run_id, ts, kind, step_id, attempt, duration, data, worker_id)
    SELECT run_id, at, 'WAIT_MATCHED', step_id, NULL, NULL,
           json_object('event_id', event_id), NULL
    FROM unwritten ORDER BY run_id, at, event_id, created_at, wait_id;
    DROP TRIGGER waits_keep_resolved;
    CREATE TABLE waits_resolved_by_key (
        run_id TEXT NOT NULL,
        wait_id TEXT NOT NULL,
        PRIMARY KEY (run_id, wait_id)
    ) WITHOUT ROWID;
    INSERT INTO waits_resolved_by_key (run_id, wait_id) SELECT run_id, wait_id FROM waits_resolved;
    DROP TABLE waits_resolved;
    ALTER TABLE waits_resolved_by_key RENAME TO waits_resolved;
    {_KEEP_RESOLVED}
    """,
    # 27: the two announcements (``inngest/function.finished`` and ``.cancelled``) nothing hears
    # of a cancelled run of one trigger event (the usual cancel-on) are one row: the first one's
    # id (the second's is the next id, ``new_ids``), when they were sent, the run and the
    # reason; their data is made again from the run and its trigger event when they are read
    # (``_derived``; none for a run started by an announcement), the same bytes, so every
    # reader shows the same events. Their two event rows (four B-trees each, the trigger
    # event's payload twice) were 29 % of what a cancelling event cost, counted in all. One
    # B-tree, in the lists' order: an id is looked up by its time (an id's first 48 bits are
    # the milliseconds it was made at, those of ``received_at``). A process of 26 still open
    # writes event rows as before (read as any event); its readers do not see these rows
    # (``STOP_WORKERS_FIRST``; a server or dashboard shows them once restarted)
    """
    CREATE TABLE cancel_announcements (
        received_at REAL NOT NULL,
        internal_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (received_at, internal_id)
    ) WITHOUT ROWID;
    """,
    # 28: a wait is pending while its step is PENDING (``_wait_queries.PENDING``), so an ingest
    # that resolves it marks nothing: completing its step (``status = 'PENDING'`` in the
    # update, whose count is the claim) is what makes it resolved. The marks were a B-tree
    # write of every resolving event (9.4k of its ~152k instructions, 17 of the ~300 WAL pages
    # of a batch of 1,000). A resolved wait's row is still kept and deleted later
    # (``purge_resolved_waits``, now a sweep of ``waits`` in key order); the rows the marks
    # name are deleted here (each one's step was completed with its mark), then the marks and
    # 21's trigger, which read them
    """
    DROP TRIGGER waits_keep_resolved;
    DELETE FROM waits WHERE (run_id, wait_id) IN (SELECT run_id, wait_id FROM waits_resolved);
    DROP TABLE waits_resolved;
    """,
    # 29: an event's ``v`` (the sender's version of its shape, Inngest's ``v``), given back with
    # the event; NULL when it had none (and for the events a process of 28 still open writes)
    """
    ALTER TABLE events ADD COLUMN v TEXT;
    """,
    # 30: a GCRA bucket's last admission time (``gcra.Bucket.decided_at``): a sender whose
    # clock is behind it decides at that time, so a burst is admitted whole when concurrent
    # senders' clocks are not in commit order. NULL in the rows written before (and by a
    # process of 29 still open): decided at the sender's clock then, as before
    """
    ALTER TABLE gcra ADD COLUMN decided_at REAL;
    """,
)
