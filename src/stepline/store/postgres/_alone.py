"""A lone step's commit on the event loop (``PostgresStore.commit_steps_on_loop``): the
statements ``PostgresTx.commit_pass`` queues for a pass commit of step results alone, queued
here straight, without the transaction object, the job and the shared sequence around them.

The commit qualifies (``queue_steps`` says so) when it has step rows and history rows and
nothing else (no end, waits, events, child runs, wake-ups, start time), its lease was taken by
this process (``LeaseTokens.owner``: assumed held, as the optimistic ``commit_pass`` assumes)
and a committed commit of that lease marked its run RUNNING already (``marked_running``: the
shared sequence's ``mark_running`` writes nothing then). For such a commit the shared sequence
(``_pass_rules.commit_pass``, optimistic, lease assumed) queues exactly: the lease hold
(``Statements.hold``), one ``UPSERT_STEP`` per step and one ``INSERT_HISTORY`` per history row
(the lease's owner as their worker), in that order, and returns no ingest results. A lease lost
meanwhile fails the hold, so the round trip's implicit transaction: nothing committed
(``Replay``), the generic job then made carefully decides (a cancelled run keeps its results).
``tests/store/test_pg_alone.py`` checks the queue is the one ``PostgresTx`` makes.

The commit of one step and its one history row (a step's result, the usual case) is sent as the
one statement ``_merging`` makes of that queue (``ONE_STEP``: the hold joined to the two writes),
built here and committed whole (``Statements.commit_statement_on_loop``): the same text and
parameters, without queueing and planning them each time (a tenth of a step's instructions).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from stepline.store import _rows as shapes
from stepline.store.postgres import queries as q
from stepline.store.postgres._hints import LeaseTokens
from stepline.store.postgres._merging import _held_with
from stepline.store.postgres._statements import Statements
from stepline.store.records import PassCommit


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
    token = commit.lease_token
    owner = tokens.owner(token)
    if owner is None or not tokens.marked_running(token, commit.run_id):
        return None
    return owner


def queue_steps(statements: Statements, commit: PassCommit, owner: str) -> bool:
    """Queue ``commit``'s statements on ``statements`` (an optimistic transaction's): what the
    shared sequence queues for it (see the module). True: applied (the job's result)."""
    statements.hold(commit.run_id, commit.lease_token)
    for step in commit.steps:
        statements.write(q.UPSERT_STEP, shapes.step_params(step), "steps")
    for row in commit.history:
        statements.write(q.INSERT_HISTORY, shapes.history_params(row, owner), "history")
    return True


# the statement ``_merging`` makes of the queue of one step and one history row (``queue_steps``)
ONE_STEP = _held_with(q.HOLD_LEASE, (q.UPSERT_STEP, q.INSERT_HISTORY))


def one_step(commit: PassCommit, owner: str) -> tuple[str, list[Any]] | None:
    """``ONE_STEP`` and its parameters, as ``_merging`` sends ``queue_steps``'s queue for
    ``commit`` when it holds one step and one history row (else None)."""
    if len(commit.steps) != 1 or len(commit.history) != 1:
        return None
    return ONE_STEP, [
        commit.run_id,
        commit.lease_token,
        *shapes.step_params(commit.steps[0]),
        *shapes.history_params(commit.history[0], owner),
    ]


async def commit_steps(statements: Statements, commit: PassCommit, owner: str) -> bool:
    """``commit`` committed on the running loop on ``statements``' connection: its one
    statement whole (``one_step``), else its queue (``Statements.commit_on_loop``). True:
    applied."""
    one = one_step(commit, owner)
    if one is not None:
        await statements.commit_statement_on_loop(*one)
        return True
    return await statements.commit_on_loop(
        partial(queue_steps, statements, commit, owner), _nothing_last
    )


def _nothing_last() -> list[tuple[str, Any, str | None]]:
    """What a lone step commit sends with its commit: nothing (durable, it makes no work)."""
    return []
