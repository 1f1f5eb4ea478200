"""PostgreSQL schema as numbered migrations, applied in order; the version is in
``schema_version``. Times are seconds since the epoch (``double precision``), as the engine's
clock gives them; JSON payloads are stored as the exact bytes Stepline encoded (``bytea``)."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the whole schema of this version (the SQLite store's migrations 1-7 in one)
    """
    CREATE TABLE events (
        internal_id text PRIMARY KEY,
        name text NOT NULL,
        data bytea NOT NULL,
        user_data bytea NOT NULL,
        sender_id text,
        ts double precision NOT NULL,
        received_at double precision NOT NULL,
        duplicate boolean NOT NULL DEFAULT false
    );
    CREATE INDEX events_name_received ON events (name, received_at);
    CREATE INDEX events_received ON events (received_at);
    CREATE TABLE event_ids (
        sender_id text PRIMARY KEY,
        seen_at double precision NOT NULL
    );
    CREATE TABLE runs (
        run_id text PRIMARY KEY,
        function_id text NOT NULL,
        status text NOT NULL,
        event_ids text NOT NULL,
        created_at double precision NOT NULL,
        started_at double precision,
        ended_at double precision,
        output bytea,
        error text,
        attempt integer NOT NULL DEFAULT 0,
        parent_run_id text,
        parent_step_hash text,
        start_timeout double precision,
        finish_timeout double precision,
        singleton_key text,
        app_id text NOT NULL DEFAULT '',
        worker_id text,
        cancelled_lease text,
        passes integer NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_created ON runs (created_at, run_id);
    CREATE INDEX runs_function_created ON runs (function_id, created_at, run_id);
    CREATE INDEX runs_status_created ON runs (status, created_at, run_id);
    CREATE INDEX runs_singleton ON runs (singleton_key) WHERE singleton_key IS NOT NULL;
    CREATE INDEX runs_unowned ON runs (function_id) WHERE app_id = '';
    CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;
    CREATE TABLE run_events (
        event_id text NOT NULL,
        run_id text NOT NULL,
        PRIMARY KEY (event_id, run_id)
    );
    CREATE INDEX run_events_run ON run_events (run_id);
    CREATE TABLE steps (
        run_id text NOT NULL,
        hash text NOT NULL,
        step_id text NOT NULL,
        kind text NOT NULL,
        position integer NOT NULL,
        status text NOT NULL,
        output bytea,
        error text,
        attempts integer NOT NULL DEFAULT 0,
        due_at double precision,
        started_at double precision,
        ended_at double precision,
        PRIMARY KEY (run_id, hash)
    );
    CREATE TABLE history (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id text NOT NULL,
        ts double precision NOT NULL,
        kind text NOT NULL,
        step_id text,
        attempt integer,
        duration double precision,
        data text,
        worker_id text
    );
    CREATE INDEX history_run ON history (run_id, seq);
    CREATE TABLE waits (
        wait_id text PRIMARY KEY,
        run_id text NOT NULL,
        step_hash text NOT NULL,
        event_name text NOT NULL,
        expression text,
        index_path text,
        index_value text,
        expires_at double precision,
        created_at double precision NOT NULL
    );
    CREATE INDEX waits_lookup ON waits (event_name, index_path, index_value);
    CREATE INDEX waits_run ON waits (run_id);
    CREATE TABLE wait_paths (
        event_name text NOT NULL,
        path text NOT NULL,
        PRIMARY KEY (event_name, path)
    );
    CREATE TABLE queue (
        run_id text PRIMARY KEY,
        app_id text NOT NULL DEFAULT '',
        function_id text NOT NULL DEFAULT '',
        due_at double precision,
        lease_owner text,
        lease_token text,
        lease_expires_at double precision,
        wake boolean NOT NULL DEFAULT false,
        ckey1 text,
        climit1 integer,
        ckey2 text,
        climit2 integer
    );
    CREATE INDEX queue_fn_due ON queue (app_id, function_id, due_at, run_id)
        WHERE lease_owner IS NULL;
    CREATE INDEX queue_fn_lease ON queue (app_id, function_id, lease_expires_at)
        WHERE lease_owner IS NOT NULL;
    CREATE INDEX queue_owner ON queue (lease_owner) WHERE lease_owner IS NOT NULL;
    CREATE INDEX queue_unowned ON queue (function_id) WHERE app_id = '';
    CREATE TABLE matchers (
        matcher_id text PRIMARY KEY,
        run_id text NOT NULL,
        event_name text NOT NULL,
        expression text,
        index_path text,
        index_value text,
        expires_at double precision,
        created_at double precision NOT NULL
    );
    CREATE INDEX matchers_lookup ON matchers (event_name, index_path, index_value);
    CREATE INDEX matchers_run ON matchers (run_id);
    CREATE TABLE matcher_paths (
        event_name text NOT NULL,
        path text NOT NULL,
        PRIMARY KEY (event_name, path)
    );
    CREATE TABLE idempotency (
        key text PRIMARY KEY,
        seen_at double precision NOT NULL
    );
    CREATE TABLE gcra (
        bucket text PRIMARY KEY,
        tat double precision NOT NULL
    );
    CREATE TABLE skips (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text NOT NULL,
        function_id text NOT NULL,
        reason text NOT NULL,
        at double precision NOT NULL
    );
    CREATE INDEX skips_function ON skips (function_id, seq);
    CREATE INDEX skips_at ON skips (at);
    CREATE TABLE deferrals (
        kind text NOT NULL,
        function_id text NOT NULL,
        key text NOT NULL,
        event_ids text NOT NULL,
        first_at double precision NOT NULL,
        due_at double precision NOT NULL,
        run text NOT NULL,
        PRIMARY KEY (kind, function_id, key)
    );
    CREATE INDEX deferrals_due ON deferrals (due_at);
    CREATE TABLE paused (
        app_id text NOT NULL,
        function_id text NOT NULL,
        PRIMARY KEY (app_id, function_id)
    );
    CREATE TABLE crons (
        app_id text NOT NULL,
        function_id text NOT NULL,
        cron text NOT NULL,
        next_at double precision NOT NULL,
        PRIMARY KEY (app_id, function_id, cron)
    );
    CREATE INDEX crons_next ON crons (next_at);
    CREATE TABLE workers (
        worker_id text PRIMARY KEY,
        app_id text NOT NULL,
        function_ids text NOT NULL,
        started_at double precision NOT NULL,
        seen_at double precision NOT NULL,
        expires_at double precision NOT NULL
    );
    CREATE TABLE worker_functions (
        function_id text NOT NULL,
        app_id text NOT NULL,
        worker_id text NOT NULL,
        PRIMARY KEY (function_id, app_id, worker_id)
    );
    CREATE INDEX worker_functions_worker ON worker_functions (worker_id);
    """,
    # 2: the latest sync of each Inngest SDK app (its /fn/register body), kept across restarts
    """
    CREATE TABLE sdk_apps (
        app_id text NOT NULL,
        name text NOT NULL,
        registration bytea NOT NULL,
        synced_at double precision NOT NULL,
        PRIMARY KEY (app_id, name)
    );
    """,
    # 3: what an event did to each run it acted on (started, resumed, cancelled): one event
    # may both resume and cancel a run, so the effect is part of the key; rows recorded before
    # are the runs their events started
    """
    ALTER TABLE run_events ADD COLUMN effect text NOT NULL DEFAULT 'started';
    ALTER TABLE run_events DROP CONSTRAINT run_events_pkey;
    ALTER TABLE run_events ADD PRIMARY KEY (event_id, run_id, effect);
    """,
    # 4: events are environment-wide (as in Inngest): the trigger catalog (the event names
    # each app's functions start runs on, replaced by each registration of the app; its
    # version changes with it, so a store reads the rows again only then), and the inbox of
    # events handed to another app's functions, taken by that app's workers
    """
    CREATE TABLE triggers (
        app_id text NOT NULL,
        event_name text NOT NULL,
        function_id text NOT NULL,
        PRIMARY KEY (app_id, event_name, function_id)
    );
    CREATE TABLE trigger_catalog (
        id integer PRIMARY KEY,
        version bigint NOT NULL
    );
    CREATE TABLE inbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app_id text NOT NULL,
        function_id text NOT NULL,
        event_id text NOT NULL,
        received_at double precision NOT NULL
    );
    CREATE INDEX inbox_function ON inbox (app_id, function_id, seq);
    CREATE INDEX inbox_event ON inbox (event_id);
    """,
    # 5: the start deadlines of queued runs not started yet, for the housekeeping that
    # cancels them at the deadline (as Inngest's eager cancellation) and the worker's timer
    """
    CREATE INDEX runs_start_deadline ON runs ((created_at + start_timeout))
        WHERE status = 'QUEUED' AND started_at IS NULL AND start_timeout IS NOT NULL;
    """,
    # 6: the inbox by received time, for the purge of rows nobody took within the
    # retention (a range, never a scan of the rows waiting for a retired app)
    """
    CREATE INDEX inbox_received ON inbox (received_at);
    """,
    # 7: the events ingested while a take of runs with cancel_on held its lock: their
    # cancel matching is made again once the take ended (docs/design.md, "Handing over")
    """
    CREATE TABLE cancel_notes (
        event_id text PRIMARY KEY,
        bucket integer NOT NULL,
        tx bigint NOT NULL
    );
    """,
    # 8: an ingestion's try of its events' buckets (queries.NOTE_UNLESS_SHARED) as one function
    # call: a quarter of the server time of the statement it replaces. A bucket refused once in
    # a transaction is remembered (a transaction-local setting, undone with its savepoint) and
    # notes the transaction's later events of that bucket too: their cancel matchers may have
    # been read from the transaction's memory, from before the take committed
    """
    CREATE FUNCTION stepline_note_unless_shared(ids text[], buckets integer[])
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
        noted text;
    BEGIN
        FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
            noted := coalesce(current_setting('stepline.noted_buckets', true), '');
            IF NOT pg_try_advisory_xact_lock_shared(1953066350, buckets[i])
               OR position(',' || buckets[i] || ',' IN noted) > 0 THEN
                INSERT INTO cancel_notes (event_id, bucket, tx)
                VALUES (ids[i], buckets[i], pg_current_xact_id()::text::bigint)
                ON CONFLICT (event_id) DO NOTHING;
                IF position(',' || buckets[i] || ',' IN noted) = 0 THEN
                    PERFORM set_config('stepline.noted_buckets',
                                       coalesce(nullif(noted, ''), ',') || buckets[i] || ',', true);
                END IF;
            END IF;
        END LOOP;
    END
    $$;
    """,
    # 9: a take's buckets exclusive, waiting at most ``wait`` for the ingestions holding them
    # (queries.TRY_TAKE_BUCKETS): an ingestion that tries one meanwhile is refused (it notes its
    # event), so a take is never starved by ingestions that keep overlapping; one that cannot
    # have them in time (it may hold row locks such an ingestion waits for) gives up, its locks
    # released with the block, and the caller gives the row back
    """
    CREATE FUNCTION stepline_take_buckets(buckets integer[], wait text)
    RETURNS boolean LANGUAGE plpgsql AS $$
    DECLARE
        previous text := current_setting('lock_timeout');
        b integer;
    BEGIN
        PERFORM set_config('lock_timeout', wait, true);
        FOREACH b IN ARRAY buckets LOOP
            PERFORM pg_advisory_xact_lock(1953066350, b);
        END LOOP;
        PERFORM set_config('lock_timeout', previous, true);
        RETURN true;
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;
    END
    $$;
    """,
    # 10: an ingestion's try of its events' buckets also looks at the bucket's gate (class
    # 1953066351, session-level): a take refused the bucket closes it (_take_gates.py), and
    # an ingestion that finds it closed notes its event without holding the bucket, so the
    # take gets it once the ingestions in flight ended. The gate is looked at by taking it
    # shared and letting it go at once (nested IFs: never the bucket when the gate is closed).
    # A take no longer waits (queries.TRY_TAKE_BUCKETS): migration 9's function is unused
    """
    CREATE OR REPLACE FUNCTION stepline_note_unless_shared(ids text[], buckets integer[])
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
        noted text;
        refused boolean;
    BEGIN
        FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
            noted := coalesce(current_setting('stepline.noted_buckets', true), '');
            refused := position(',' || buckets[i] || ',' IN noted) > 0;
            IF NOT refused THEN
                IF pg_try_advisory_lock_shared(1953066351, buckets[i]) THEN
                    PERFORM pg_advisory_unlock_shared(1953066351, buckets[i]);
                    refused := NOT pg_try_advisory_xact_lock_shared(1953066350, buckets[i]);
                ELSE
                    refused := true;
                END IF;
            END IF;
            IF refused THEN
                INSERT INTO cancel_notes (event_id, bucket, tx)
                VALUES (ids[i], buckets[i], pg_current_xact_id()::text::bigint)
                ON CONFLICT (event_id) DO NOTHING;
                IF position(',' || buckets[i] || ',' IN noted) = 0 THEN
                    PERFORM set_config('stepline.noted_buckets',
                                       coalesce(nullif(noted, ''), ',') || buckets[i] || ',', true);
                END IF;
            END IF;
        END LOOP;
    END
    $$;
    """,
    # 11: a wait carries its step's id, as on SQLite (schema 18 there, where its WAIT_MATCHED
    # row names the step without reading it; here it is written, so both schemas hold the same
    # columns for db copy, and the resolution still reads the step)
    """
    ALTER TABLE waits ADD COLUMN step_id TEXT;
    UPDATE waits SET step_id = steps.step_id FROM steps
        WHERE steps.run_id = waits.run_id AND steps.hash = waits.step_hash;
    """,
    # 12: migration 10's look at a gate, made with a transaction-level lock in a block rolled
    # back at once (its subtransaction's end lets the lock go, whatever happens): a session-level
    # lock, let go by the next statement, stayed held for the connection's life when a cancel
    # (statement_timeout, pg_cancel_backend) came between the two, and that bucket's gate could
    # never be closed again. The block writes nothing (no transaction id of its own)
    """
    CREATE OR REPLACE FUNCTION stepline_note_unless_shared(ids text[], buckets integer[])
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
        noted text;
        refused boolean;
    BEGIN
        FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
            noted := coalesce(current_setting('stepline.noted_buckets', true), '');
            refused := position(',' || buckets[i] || ',' IN noted) > 0;
            IF NOT refused THEN
                BEGIN
                    refused := NOT pg_try_advisory_xact_lock_shared(1953066351, buckets[i]);
                    RAISE SQLSTATE 'SLG01';  -- rolls the block back: the gate let go
                EXCEPTION WHEN SQLSTATE 'SLG01' THEN
                    NULL;
                END;
                IF NOT refused THEN
                    refused := NOT pg_try_advisory_xact_lock_shared(1953066350, buckets[i]);
                END IF;
            END IF;
            IF refused THEN
                INSERT INTO cancel_notes (event_id, bucket, tx)
                VALUES (ids[i], buckets[i], pg_current_xact_id()::text::bigint)
                ON CONFLICT (event_id) DO NOTHING;
                IF position(',' || buckets[i] || ',' IN noted) = 0 THEN
                    PERFORM set_config('stepline.noted_buckets',
                                       coalesce(nullif(noted, ''), ',') || buckets[i] || ',', true);
                END IF;
            END IF;
        END LOOP;
    END
    $$;
    """,
    # 13: what nothing reads is gone: a note's transaction id (``cancel_notes.tx``, the only use
    # of ``pg_current_xact_id``, which PostgreSQL 12 lacks) and migration 9's function (a take
    # tries its buckets, queries.TRY_TAKE_BUCKETS); migration 12's function writes no id
    """
    DROP FUNCTION stepline_take_buckets(integer[], text);
    CREATE OR REPLACE FUNCTION stepline_note_unless_shared(ids text[], buckets integer[])
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
        noted text;
        refused boolean;
    BEGIN
        FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
            noted := coalesce(current_setting('stepline.noted_buckets', true), '');
            refused := position(',' || buckets[i] || ',' IN noted) > 0;
            IF NOT refused THEN
                BEGIN
                    refused := NOT pg_try_advisory_xact_lock_shared(1953066351, buckets[i]);
                    RAISE SQLSTATE 'SLG01';  -- rolls the block back: the gate let go
                EXCEPTION WHEN SQLSTATE 'SLG01' THEN
                    NULL;
                END;
                IF NOT refused THEN
                    refused := NOT pg_try_advisory_xact_lock_shared(1953066350, buckets[i]);
                END IF;
            END IF;
            IF refused THEN
                INSERT INTO cancel_notes (event_id, bucket) VALUES (ids[i], buckets[i])
                ON CONFLICT (event_id) DO NOTHING;
                IF position(',' || buckets[i] || ',' IN noted) = 0 THEN
                    PERFORM set_config('stepline.noted_buckets',
                                       coalesce(nullif(noted, ''), ',') || buckets[i] || ',', true);
                END IF;
            END IF;
        END LOOP;
    END
    $$;
    ALTER TABLE cancel_notes DROP COLUMN tx;
    """,
    # 14: the hand-offs workers offer (_handoffs.py): the transaction that makes a new run due
    # leases it to an idle live worker of its function and its NOTIFY carries the lease. A
    # row per offering worker: the prefix of its lease tokens (its presence lock's), its slots
    # and lease TTL (a worker of an earlier version never offers). The offers of live workers
    # only: never copied (db copy refuses a source with live workers; each offers as it starts)
    """
    CREATE TABLE handoffs (
        worker_id text PRIMARY KEY,
        prefix text NOT NULL,
        slots integer NOT NULL,
        ttl double precision NOT NULL
    );
    """,
    # 15: the rows a transaction committed without waiting for its WAL's flush writes to wait for
    # it (_statements.FLUSHED: a commit waits for the flush only when its transaction wrote
    # WAL); one a server process (its pid modulo 1024), never copied
    """
    CREATE TABLE wal_flushes (
        backend integer PRIMARY KEY,
        flushes bigint NOT NULL
    );
    """,
    # 16: a function's due runs with a concurrency key by group (the key values, "C" order),
    # for the lease's skip-scan of the groups' oldest runs behind a backlog (``GROUP_HEADS``:
    # two index probes a group, as SQLite's queue_fn_group). Without it that read sorted every
    # due run of the function: 245 ms behind 100,000, paid by each lease of a busy worker
    """
    CREATE INDEX queue_fn_group ON queue (
        app_id, function_id, ((ckey1 || E'\\x1e' || coalesce(ckey2, '')) COLLATE "C"),
        due_at, run_id)
        WHERE lease_owner IS NULL AND ckey1 IS NOT NULL;
    """,
    # 17: a step's STEP_COMPLETED history line written with the step's first row, in it
    # (``queries.INSERT_FRESH_STEP``, a lone step's commit): its number from history's own
    # sequence, its time, attempt, duration and worker. One row and one index entry a step
    # instead of two rows and three (the server's cost of a step's commit: docs/design.md,
    # "A step's history line in its row"); read back as a line of the run's history
    # (``_read_queries.SELECT_HISTORY``), never changed after (no statement sets them again)
    """
    ALTER TABLE steps ADD COLUMN history_seq bigint, ADD COLUMN history_ts double precision,
        ADD COLUMN history_attempt integer, ADD COLUMN history_duration double precision,
        ADD COLUMN history_worker text;
    """,
    # 18: an event's ``v`` (the sender's version of its shape, Inngest's ``v``), given back with
    # the event; NULL when it had none (and for the events a process of 17 still open writes).
    # A column with no default: added without rewriting the table
    """
    ALTER TABLE events ADD COLUMN v text;
    """,
    # 19: a GCRA bucket's last admission time (``gcra.Bucket.decided_at``): a sender whose
    # clock is behind it decides at that time, so a burst is admitted whole when concurrent
    # senders' clocks are not in commit order. NULL in the rows written before (and kept by a
    # process of 18 still open, whose upsert sets the tat only: a time it decided at before):
    # decided at the sender's clock then, as before. No default: added without a rewrite
    """
    ALTER TABLE gcra ADD COLUMN decided_at double precision;
    """,
)
