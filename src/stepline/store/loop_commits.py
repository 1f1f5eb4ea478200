"""The optional verbs of a store that commits from an event loop without blocking it
(PostgreSQL): ``LoopCommits``, ``LoneStepCommits`` and their refusal ``WouldBlock``. Part of
the Store seam (``store/interface.py`` names them too)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from stepline.store.records import PassCommit

if TYPE_CHECKING:
    from stepline.store.interface import StoreTx


class WouldBlock(Exception):
    """A ``LoopCommits`` transaction could not go on without waiting (no idle connection, a
    job's read before the commit, a connection to check): nothing of it was sent, and its jobs
    are to be applied on a thread instead (they may run again: the writer's contract). ``job``:
    the index of the job that needed a read before the commit (it will again: the writer gives
    such jobs to its thread from then on), None for any other cause."""

    def __init__(self, reason: str, job: int | None = None) -> None:
        super().__init__(reason)
        self.job = job


@runtime_checkable
class LoopCommits(Protocol):
    """A store that can commit a group commit's jobs from an event loop without blocking it
    (PostgreSQL: the commit's round trip written without blocking, its reply awaited through
    the loop), so that a lone commit costs no hop to a thread and back. Memory and SQLite do
    not: the writer applies their jobs on its thread."""

    async def commit_on_loop(self, jobs: Sequence[Callable[[StoreTx], Any]]) -> list[Any]:
        """Apply ``jobs`` in order in one transaction as ``OptimisticStore`` does, called in
        the running event loop and never blocking it: the jobs run in this call before
        anything is sent, then the commit's round trip is awaited. Returns their results once
        the transaction committed. Raises ``WouldBlock`` (nothing was sent) when it would have
        to wait other than for the commit's reply, ``Replay`` when nothing committed (a job
        raised, a statement failed or a lease was lost: make the jobs again carefully), and
        ``StoreUnavailable`` (or another ``StoreError``) when the transaction failed as a
        whole, "the commit's outcome is unknown" when its round trip failed after the commit
        may have been flushed. Cancelled during the round trip, it closes the connection
        (the outcome is unknown then) and the cancellation goes on."""
        ...


@runtime_checkable
class LoneStepCommits(Protocol):
    """A ``LoopCommits`` store that commits a pass commit of step results alone on the event
    loop without a job around it (PostgreSQL: its statements queued straight)."""

    async def commit_steps_on_loop(
        self,
        commit: PassCommit,
        now: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> bool:
        """``commit_on_loop`` of one job applying ``StoreTx.commit_pass(commit, now, ...)``
        (True: applied), for a ``commit`` that has only step results and their history, the
        run's lease this process's; ``WouldBlock`` (nothing sent) for any other, and as
        ``commit_on_loop`` raises. ``now``: the time that job gives ``commit_pass`` (the run's
        start when this commit marks it running); without it, a commit that would mark its run
        running (none of its lease's did yet) is refused (``WouldBlock``). ``loop``: the
        running loop, when the caller holds it (else looked up)."""
        ...
