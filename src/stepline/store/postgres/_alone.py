"""A lone step's commit on the event loop (``PostgresStore.commit_steps_on_loop``): the
statements ``PostgresTx.commit_pass`` queues for a pass commit of step results alone, queued
here straight, without the transaction object, the job and the shared sequence around them.

The commit qualifies (``owner_of_lone_steps`` says so) when it has step rows and history rows
and nothing else (no end, waits, events, child runs, wake-ups, start time) and its lease was
taken by this process (``LeaseTokens.owner``: assumed held, as the optimistic ``commit_pass``
assumes). For such a commit the shared sequence (``_pass_rules.commit_pass``, optimistic, lease
assumed) queues exactly: the lease hold (``Statements.hold``), one ``UPSERT_STEP`` per step and
one ``INSERT_HISTORY`` per history row (the lease's owner as their worker), in that order, then
``MARK_RUNNING`` (the run RUNNING, its start the commit's time if it has none, no pass spent)
unless a committed commit of that lease marked the run so already (``marked_running``: the
shared sequence's ``mark_running`` writes nothing then); it returns no ingest results. So the
pass's first commit (its run not marked yet: ``started_at``, the time the job's ``commit_pass``
is given) goes this way too, and once it committed the run is marked (``LeaseTokens.
mark_running``) as the transaction's ``marked`` would have been. A lease lost meanwhile fails the
hold, so the round trip's implicit transaction: nothing committed (``Replay``), the generic job
then made carefully decides (a cancelled run keeps its results). ``tests/store/test_pg_alone.py``
and ``test_pg_first.py`` check the queue is the one ``PostgresTx`` makes.

The commit of one step and its one history row (a step's result, the usual case) is sent as the
one statement ``_merging`` makes of that queue (``ONE_STEP``: the hold joined to the two writes),
built here and committed whole (``Statements.commit_statement_on_loop``): the same text and
parameters, without queueing and planning them each time (a tenth of a step's instructions).
The pass's first commit of one step is ``FIRST_STEP`` (``ONE_STEP`` with ``MARK_RUNNING`` joined
after its writes, as ``_merging`` joins the queue's fourth write) or ``FIRST_FRESH_STEP``
(below), prepared the same way: before, it was parsed and planned anew at every pass (~0.5 ms
of the server's time, one pass's second step ~1 ms slower than the others). It is sent after
``_handoffs.GENERIC`` in its pipeline (its implicit transaction's ``plan_cache_mode`` and
``enable_seqscan``, gone at its sync): its generic plan is made at its first execution on a
connection and kept, where PostgreSQL would plan it for its parameters at each of a
connection's first five passes (0.19-0.25 ms of the server's time each, the statement
executing in 0.08); a pass's later commits need no such setting (their statements run ~100
times a pass: their first five plans are a connection's first pass's).
Its parameters are encoded here to the binary forms of the types the statement declares
(``ONE_STEP_TYPES``, ``one_step_values``) and it is sent prepared once per connection with
libpq's calls (``_prepared.commit_prepared``), under the same outcome rules; a value of another
type than the record declares, or a connection where that cannot be done now, is sent as
before (psycopg adapting the parameters: ``Statements.commit_statement_on_loop``).

When that step's row is its first (a completed step's first attempt, not shown executing by its
pass: no row of it was loaded, none written since) and its history row is that attempt's plain
STEP_COMPLETED line, the statement is ``ONE_FRESH_STEP`` instead: one plain ``INSERT`` of the
step's row with that line in it (schema 17, read back as a line of the run's history), whose
run id is the lease hold (a sub-select locking the run's queue row with the lease's token FOR
UPDATE, before the row is made; none: NULL, and the row is refused): one row and one index
entry where ``ONE_STEP`` writes two rows, three index entries and a speculative insertion, and
three plan nodes where it has a dozen (docs/design.md, "A step's history line in its row"). It
fails when the lease is lost (not_null_violation) and when the row is there after all (a
RUNNING row of a pass that crashed, a PENDING row an SDK planned, a RUNNING row this process
no longer remembers showing: unique_violation); either way its implicit transaction commits
nothing, and the commit is made again carefully (``Replay``): the upsert and the history row
then. It returns no rows (``ONE_STEP`` returns its hold's). The pass's first commit of such a
step is ``FIRST_FRESH_STEP``: that ``INSERT`` with ``MARK_RUNNING`` as a ``WITH`` part no part
reads, which the server runs to completion after the ``INSERT`` (the hold first, the queue row
then the run row locked, as every commit of a lease locks them), in the same statement: it fails
with it, or both are committed.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Any

from stepline.serde import dumps
from stepline.store import _rows as shapes
from stepline.store.postgres import queries as q
from stepline.store.postgres._handoffs import GENERIC
from stepline.store.postgres._hints import LeaseTokens
from stepline.store.postgres._merging import _held_with
from stepline.store.postgres._prepared import BYTEA, FLOAT8, INT4, TEXT, Prepared, commit_prepared
from stepline.store.postgres._statements import Statements
from stepline.store.records import HistoryRecord, PassCommit, StepRecord


def owner_of_lone_steps(commit: PassCommit, tokens: LeaseTokens) -> str | None:
    """The worker that owns ``commit``'s lease when it is a lone step commit (see the module),
    else None."""
    if (
        commit.end is not None
        or commit.waits
        or commit.events
        or commit.child_runs
        or commit.wakes
        or commit.started_at is not None
        or not commit.steps
    ):
        return None
    return tokens.owner(commit.lease_token)


def queue_steps(
    statements: Statements, commit: PassCommit, owner: str, started_at: float | None = None
) -> bool:
    """Queue ``commit``'s statements on ``statements`` (an optimistic transaction's): what the
    shared sequence queues for it (see the module), ``MARK_RUNNING`` last when ``started_at``
    (the pass's first commit: its run not marked yet). True: applied (the job's result)."""
    statements.hold(commit.run_id, commit.lease_token)
    for step in commit.steps:
        statements.write(q.UPSERT_STEP, shapes.step_params(step), "steps")
    for row in commit.history:
        statements.write(q.INSERT_HISTORY, shapes.history_params(row, owner), "history")
    if started_at is not None:
        statements.write(q.MARK_RUNNING, (started_at, commit.run_id), "runs")
    return True


# the statement ``_merging`` makes of the queue of one step and one history row (``queue_steps``)
ONE_STEP = _held_with(q.HOLD_LEASE, (q.UPSERT_STEP, q.INSERT_HISTORY))
# ... and of the pass's first commit's (MARK_RUNNING after them): ONE_STEP's parameters, then the
# run's start and id
FIRST_STEP = _held_with(q.HOLD_LEASE, (q.UPSERT_STEP, q.INSERT_HISTORY, q.MARK_RUNNING))
# a step's first row with its STEP_COMPLETED line in it, its run id the lease hold's (see the
# module): parameters the run id and lease token, the step's but its run id (``_rows.
# step_params``), the line's time, attempt, duration and worker
ONE_FRESH_STEP = q.INSERT_FRESH_STEP
# ... in the pass's first commit: the run marked running by a part of the same statement, run
# after the INSERT (see the module): parameters the run's start and id, then ONE_FRESH_STEP's
FIRST_FRESH_STEP = f"WITH running AS ({q.MARK_RUNNING}) {q.INSERT_FRESH_STEP}"


def _first_row(
    commit: PassCommit, step: StepRecord, line: HistoryRecord, tokens: LeaseTokens
) -> bool:
    """Whether ``commit``'s one step and one history row (``step``, ``line``) are a step's first
    row and its plain STEP_COMPLETED line (``ONE_FRESH_STEP``: see the module)."""
    return (
        step.attempts == 1
        and line.kind == "STEP_COMPLETED"
        and line.data is None
        and step.status == "COMPLETED"
        and line.step_id == step.step_id
        and step.run_id == commit.run_id
        and not tokens.shown(commit.lease_token, step.hash)
    )


def one_step(
    commit: PassCommit, owner: str, tokens: LeaseTokens, started_at: float | None = None
) -> tuple[str, list[Any]] | None:
    """The one statement of ``commit`` when it holds one step and one history row (else
    None), with its parameters: ``ONE_FRESH_STEP`` for a step's first row with its plain
    STEP_COMPLETED line (see the module), else ``ONE_STEP``, as ``_merging`` sends
    ``queue_steps``'s queue; with ``started_at`` (the pass's first commit), ``FIRST_FRESH_STEP``
    or ``FIRST_STEP``."""
    if len(commit.steps) != 1 or len(commit.history) != 1:
        return None
    step = commit.steps[0]
    line = commit.history[0]
    if _first_row(commit, step, line, tokens):
        fresh = [
            commit.run_id,
            commit.lease_token,
            *shapes.step_params(step)[1:],
            line.ts,
            line.attempt,
            line.duration,
            owner,
        ]
        if started_at is None:
            return ONE_FRESH_STEP, fresh
        return FIRST_FRESH_STEP, [started_at, commit.run_id, *fresh]
    params = [
        commit.run_id,
        commit.lease_token,
        *shapes.step_params(step),
        *shapes.history_params(line, owner),
    ]
    if started_at is None:
        return ONE_STEP, params
    return FIRST_STEP, [*params, started_at, commit.run_id]


# ONE_STEP's parameters' types, in order (the hold's, UPSERT_STEP's, INSERT_HISTORY's): the
# columns' (``tests/store/test_pg_prepared.py`` checks them against the server's inference)
_STEP_TYPES = (TEXT, TEXT, TEXT, TEXT, INT4, TEXT, BYTEA, TEXT, INT4, FLOAT8, FLOAT8, FLOAT8)
ONE_STEP_TYPES = (
    *(TEXT, TEXT),
    *_STEP_TYPES,
    *(TEXT, FLOAT8, TEXT, TEXT, INT4, FLOAT8, TEXT, TEXT),
)
PREPARED_ONE_STEP = Prepared(ONE_STEP, ONE_STEP_TYPES)
# ONE_FRESH_STEP's: the hold's, the step's but its run id, its line's time, attempt, duration
# and worker
ONE_FRESH_STEP_TYPES = (*(TEXT, TEXT), *_STEP_TYPES[1:], *(FLOAT8, INT4, FLOAT8, TEXT))
PREPARED_ONE_FRESH_STEP = Prepared(ONE_FRESH_STEP, ONE_FRESH_STEP_TYPES)
# the first commit's: MARK_RUNNING's (the run's start and id) after ONE_STEP's, before
# ONE_FRESH_STEP's. Sent after GENERIC (its pipeline's implicit transaction's settings: see
# the module), so that each is planned once per connection, never for its parameters
FIRST_STEP_TYPES = (*ONE_STEP_TYPES, FLOAT8, TEXT)
PREPARED_GENERIC = Prepared(GENERIC, ())
PREPARED_FIRST_STEP = Prepared(FIRST_STEP, FIRST_STEP_TYPES, PREPARED_GENERIC)
FIRST_FRESH_STEP_TYPES = (FLOAT8, TEXT, *ONE_FRESH_STEP_TYPES)
PREPARED_FIRST_FRESH_STEP = Prepared(FIRST_FRESH_STEP, FIRST_FRESH_STEP_TYPES, PREPARED_GENERIC)
_int4 = struct.Struct(">i").pack
_float8 = struct.Struct(">d").pack


def one_step_values(
    commit: PassCommit, owner: str, tokens: LeaseTokens, started_at: float | None = None
) -> tuple[Prepared, list[bytes | None]] | None:
    """``one_step``'s statement prepared (``PREPARED_ONE_FRESH_STEP`` or
    ``PREPARED_ONE_STEP``; with ``started_at``, ``PREPARED_FIRST_FRESH_STEP`` or
    ``PREPARED_FIRST_STEP``) and its parameters, each the binary form of its type (None:
    NULL), or None when ``commit`` is not one step and one history row or a value is not of
    its record's declared type (a text not a ``str``, an integer not an ``int``, an output not
    ``bytes``, an integer out of range, a JSON value ``dumps`` refuses, a start not a
    ``float`` or ``int``): sent as before."""
    if len(commit.steps) != 1 or len(commit.history) != 1:
        return None
    s = commit.steps[0]
    h = commit.history[0]
    position, attempts, attempt, output = s.position, s.attempts, h.attempt, s.output_json
    if (
        type(position) is not int
        or type(attempts) is not int
        or (attempt is not None and type(attempt) is not int)
        or (output is not None and type(output) is not bytes)
    ):
        return None
    error, due, started, ended = s.error, s.due_at, s.started_at, s.ended_at
    step_id, duration, data = h.step_id, h.duration, h.data
    try:  # str.encode: AttributeError for a text of another type; struct: error, out of range
        values = [
            commit.run_id.encode(),
            commit.lease_token.encode(),
            s.hash.encode(),
            s.step_id.encode(),
            s.kind.encode(),
            _int4(position),
            s.status.encode(),
            output,
            None if error is None else dumps(error),
            _int4(attempts),
            None if due is None else _float8(due),
            None if started is None else _float8(started),
            None if ended is None else _float8(ended),
        ]
        if _first_row(commit, s, h, tokens):
            values += [
                _float8(h.ts),
                None if attempt is None else _int4(attempt),
                None if duration is None else _float8(duration),
                owner.encode(),
            ]
            if started_at is None:
                return PREPARED_ONE_FRESH_STEP, values
            return PREPARED_FIRST_FRESH_STEP, [_start(started_at), values[0], *values]
        values.insert(2, s.run_id.encode())
        values += [
            h.run_id.encode(),
            _float8(h.ts),
            h.kind.encode(),
            None if step_id is None else step_id.encode(),
            None if attempt is None else _int4(attempt),
            None if duration is None else _float8(duration),
            None if data is None else dumps(data),
            owner.encode(),
        ]
        if started_at is None:
            return PREPARED_ONE_STEP, values
        values += [_start(started_at), values[0]]
        return PREPARED_FIRST_STEP, values
    except Exception:  # the usual way raises what it raises for it
        return None


def _start(started_at: float) -> bytes:
    """The binary FLOAT8 of a run's start: a ``float`` or an ``int`` as psycopg adapts them
    for that column, anything else refused (``TypeError``: sent the usual way)."""
    if type(started_at) is not float and type(started_at) is not int:
        raise TypeError(f"not a time: {started_at!r}")
    return _float8(started_at)


async def commit_steps(
    statements: Statements,
    commit: PassCommit,
    owner: str,
    tokens: LeaseTokens,
    started_at: float | None = None,
) -> bool:
    """``commit`` committed on the running loop on ``statements``' connection: its one
    statement whole, prepared (``one_step_values``, ``_prepared.commit_prepared``) or as
    psycopg adapts it (``one_step``), else its queue (``Statements.commit_on_loop``), its run
    marked running with ``started_at`` if given (the pass's first commit). True: applied."""
    prepared = one_step_values(commit, owner, tokens, started_at)
    if prepared is not None and await commit_prepared(statements, *prepared):
        return True
    one = one_step(commit, owner, tokens, started_at)
    if one is not None:
        await statements.commit_statement_on_loop(*one)
        return True
    return await statements.commit_on_loop(
        partial(queue_steps, statements, commit, owner, started_at), _nothing_last
    )


def _nothing_last() -> list[tuple[str, Any, str | None]]:
    """What a lone step commit sends with its commit: nothing (durable, it makes no work)."""
    return []
