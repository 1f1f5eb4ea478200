"""The runs this process's committed pass commits marked RUNNING, by lease token (both stores:
SQLite's ``MarkedRuns`` of its store, PostgreSQL's in ``LeaseTokens``).

A pass's first commit marks its run RUNNING (started, no pass spent: ``MARK_RUNNING``); the run
stays so until that lease ends (a lease taken anew counts a pass, with another token; an end, a
suspension or a cancellation ends the lease: RESCHEDULE clears the token, the others delete the
queue row). So the later commits of the same lease need not mark it again: their transaction
reads the lease token first (``hold_lease``), and skips the update when a committed commit of
that token marked the run (PostgreSQL's ``LeaseTokens`` keeps its marks here too). Only optimistic
transactions record their marks (all or nothing: no savepoint can undo one), and only once
committed.

The ``size`` most recent (token, run) pairs are kept, not tokens: one lease attempt gives all
the runs it takes one token, so 4,096 tokens held up to 4,096 times as many runs (their ids and
sets: ~4 MB a 30,000 suspended runs, most of a scale worker's growth, issue 6). A lease in
progress whose pair was dropped marks its run again at its next commit (an update that changes
nothing), and is remembered again.
"""

from __future__ import annotations

import threading


class MarkedRuns:
    """(lease token, run id) pairs marked RUNNING by committed transactions, the ``size`` most
    recent kept."""

    def __init__(self, size: int = 4096) -> None:
        self._pairs: dict[tuple[str, str], None] = {}  # in the order they were first added
        self._size = size
        self._lock = threading.Lock()

    def add(self, marked: list[tuple[str, str]]) -> None:
        """A transaction that committed marked these runs, each under its lease's token."""
        with self._lock:
            pairs = self._pairs
            pairs.update(dict.fromkeys(marked))
            while len(pairs) > self._size:
                del pairs[next(iter(pairs))]

    def marked(self, token: str, run_id: str) -> bool:
        """Whether a committed commit of the lease ``token`` marked ``run_id``."""
        return (token, run_id) in self._pairs

    def __len__(self) -> int:
        """The pairs kept."""
        return len(self._pairs)
