"""The runs this process's committed pass commits marked RUNNING, by lease token (SQLite).

A pass's first commit marks its run RUNNING (started, no pass spent: ``MARK_RUNNING``); the run
stays so until that lease ends (a lease taken anew counts a pass, with another token; an end, a
suspension or a cancellation ends the lease: RESCHEDULE clears the token, the others delete the
queue row). So the later commits of the same lease need not mark it again: their transaction
reads the lease token first (``hold_lease``), and skips the update when a committed commit of
that token marked the run (PostgreSQL's ``LeaseTokens`` does the same). Only optimistic
transactions record their marks (all or nothing: no savepoint can undo one), and only once
committed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class MarkedRuns:
    """(lease token, run id) pairs marked RUNNING by committed transactions, the ``size`` most
    recent tokens kept."""

    def __init__(self, size: int = 4096) -> None:
        self._runs: OrderedDict[str, set[str]] = OrderedDict()  # token -> its runs marked
        self._size = size
        self._lock = threading.Lock()

    def add(self, marked: list[tuple[str, str]]) -> None:
        """A transaction that committed marked these runs, each under its lease's token."""
        with self._lock:
            for token, run_id in marked:
                runs = self._runs.get(token)
                if runs is None:
                    runs = self._runs[token] = set()
                    if len(self._runs) > self._size:
                        self._runs.popitem(last=False)
                runs.add(run_id)

    def marked(self, token: str, run_id: str) -> bool:
        """Whether a committed commit of the lease ``token`` marked ``run_id``."""
        return run_id in self._runs.get(token, ())
