"""Which kinds of write job need a read before their commit (``BatchWriter``'s loop commits).

A job that reads before the commit (a lease by ``lease_due``, most ingests) cannot be committed
on the event loop: the store refuses it there with nothing sent (``WouldBlock``) and the writer
thread makes it, after the job ran on the loop up to its read in vain. A kind of job (its
function's code: the closures of one ``def`` share it) refused twice in a row, with no commit of
it on the loop between, is left to the thread for 16 batches, then twice as many each time it
is refused right after, up to 1,024; a commit of it on the loop forgets all that. So a kind that
reads only at times (a pass commit that ends its run, its finished event ingested) stays on the
loop, and one that always reads is tried there once in a long while.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

Job = Callable[..., Any]
FIRST, MOST = 16, 1024  # the batches a kind is left to the thread: first, at most (doubling)
KINDS = 256  # the kinds remembered (past it they are learned again)


class ReadingKinds:
    """The kinds of job refused on the loop lately. Not thread-safe: the writer calls it
    under its lock."""

    def __init__(self) -> None:
        # per kind: [refusals in a row, batches still left to the thread, the next such wait];
        # empty: no kind is refused (the writer looks at it before calling: no call a commit)
        self.kinds: dict[CodeType | None, list[int]] = {}  # never a None key

    def skip(self, jobs: Iterable[Job]) -> bool:
        """Whether a batch of ``jobs`` is to be left to the thread (one of them is of a kind
        refused lately); each of their kinds left to the thread counts this batch."""
        if not self.kinds:
            return False
        found = False
        for job in jobs:
            kind = self.kinds.get(_code(job))
            if kind is not None and kind[1] > 0:
                kind[1] -= 1
                found = True
        return found

    def skips(self, job: Job) -> bool:
        """``skip`` of a batch of ``job`` alone (a loop commit's usual)."""
        kind = self.kinds.get(_code(job))
        if kind is None or kind[1] <= 0:
            return False
        kind[1] -= 1
        return True

    def refused(self, job: Job) -> None:
        """``job`` needed a read before the commit."""
        code = _code(job)
        if code is None:
            return
        if code not in self.kinds and len(self.kinds) >= KINDS:
            self.kinds.clear()
        kind = self.kinds.setdefault(code, [0, 0, FIRST])
        kind[0] += 1
        if kind[0] >= 2:
            kind[1], kind[2] = kind[2], min(kind[2] * 2, MOST)

    def committed(self, jobs: Iterable[Job]) -> None:
        """``jobs`` were committed on the loop: their kinds are forgotten."""
        for job in jobs:
            self.forget(job)

    def forget(self, job: Job) -> None:
        """``committed`` of ``job`` alone."""
        self.kinds.pop(_code(job), None)


def _code(job: Job) -> CodeType | None:
    """What tells a job's kind: its function's code (None for a callable without one)."""
    return getattr(job, "__code__", None)
