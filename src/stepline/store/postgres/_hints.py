"""What a PostgreSQL store's transactions remember between them, in this process: the hints its
optimistic transactions assume (``Hints``) and the lease tokens it issued (``LeaseTokens``)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from stepline.store._marked_runs import MarkedRuns


class Hints:
    """What this process's transactions found lately, so that its optimistic ones assume
    what usually holds (a wrong assumption costs a replay, never a wrong decision):
    ``deferrals_due_at``, when a transaction last found a debounce or batch due;
    ``indexed_names``, event names found with waits or cancel matchers (paths stay)."""

    def __init__(self, size: int = 10_000) -> None:
        self.deferrals_due_at = float("-inf")
        # until when a take of this process may have caused notes, and when they were read
        self.notes_until = float("-inf")
        self.notes_read_at = float("-inf")
        self.indexed_names: set[str] = set()
        # per (app, function): the concurrency-key group where lease_due's visits resume
        self.group_cursors: dict[tuple[str, str], str] = {}
        self._size = size

    def has_index(self, event_name: str) -> None:
        if len(self.indexed_names) >= self._size:  # relearned, at the cost of replays
            self.indexed_names = set()
        self.indexed_names = self.indexed_names | {event_name}  # read by other threads


class LeaseTokens:
    """The lease tokens this process issued lately, with their owners (at most ``size``),
    those whose run a committed pass commit marked RUNNING (``mark_running``), and the steps
    their passes showed executing (``show``)."""

    def __init__(self, size: int = 4096) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()
        # (token, run) pairs marked, the ``size`` most recent: one lease statement gives all
        # its runs one token, so keeping every run of each token kept up to size x 100 runs
        self._running = MarkedRuns(size)
        # (token, step hash) pairs shown executing (``show``), the ``size`` most recent
        self._shown = MarkedRuns(size)
        self._size = size
        self._lock = threading.Lock()

    def remember(self, token: str, owner: str) -> None:
        with self._lock:
            self._owners[token] = owner
            if len(self._owners) > self._size:
                self._owners.popitem(last=False)

    def mark_running(self, marked: list[tuple[str, str]]) -> None:
        """A transaction that committed marked these runs RUNNING (started, no pass spent),
        each under its lease's token: such a run stays so until its lease ends (a lease taken
        anew counts a pass, with another token; an end, a suspension or a cancellation ends
        it), so its later pass commits need not mark it again (``PostgresTx.mark_running``).
        Keyed by run as well: one lease statement gives all the runs it takes one token."""
        with self._lock:
            owned = [pair for pair in marked if pair[0] in self._owners]
        self._running.add(owned)

    def marked_running(self, token: str, run_id: str) -> bool:
        return self._running.marked(token, run_id)

    def show(self, token: str, hashes: list[str]) -> None:
        """The pass of lease ``token`` is writing RUNNING rows for these steps (shown
        executing: ``PostgresTx.mark_steps_running``, told before it writes them, committed or
        not), so their results are not their first rows (``_alone.one_step``)."""
        self._shown.add([(token, step) for step in hashes])

    def shown(self, token: str, step_hash: str) -> bool:
        """Whether the pass of lease ``token`` may have written a row for step ``step_hash``
        (``show``; a pair dropped from the most recent says no: its statement then finds the
        row and fails, nothing committed, and the commit is made again carefully)."""
        return self._shown.marked(token, step_hash)

    def owner(self, token: str) -> str | None:
        with self._lock:
            return self._owners.get(token)
