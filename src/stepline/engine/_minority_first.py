"""The order a worker starts a lease attempt's passes in: the runs of the functions that have
few of them in the attempt first, those of the function(s) that have the most a few loop turns
later.

Passes started together interleave on the event loop: each turn runs one callback of every
pass that is ready, so a pass needs as many turns to reach its first step body as it would
alone (3 for an async function whose lease loaded its run), but each of those turns also runs
the other passes' callbacks (loading their state, starting their functions). A run of a quiet
function that a fair lease takes among a backlog's runs (issue 8: the first step of a function
behind another's backlog) waited for ~200 of the backlog's callbacks before its step body ran
(7 ms of the loop's CPU on PostgreSQL). The backlog's passes now start once the others have
their runs loaded and ``AHEAD`` more turns have passed (``Ahead``, found by each pass in
``Worker._starts``): the quiet run reaches its
body (or its first wait) alone. The backlog's passes are in ``Worker.active`` from the start
(counted against the worker's slots, heartbeated, waited for by a stop) and only wait at their
beginning; the leases of one function's runs (a backlog alone, the runs an event started, runs
a wake-up named: leases that do not say their function) start all at once, as before.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from stepline.store.records import Lease

AHEAD = 8  # loop turns between the minority's runs loaded and the rest's start (short turns)


class Ahead:
    """A lease attempt's passes that start first (``leading``: their runs) and the event the
    others wait for (``opened``): set ``AHEAD`` loop turns after the last of the first has its
    run loaded (a store whose lease reads no run loads it in a hop to a reader thread, which
    takes many turns) or ended before."""

    def __init__(self, leading: Sequence[Lease]) -> None:
        self.leading = {lease.run_id for lease in leading}
        self.opened = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def leads(self, run_id: str) -> bool:
        """Whether ``run_id``'s pass is one that starts first."""
        return run_id in self.leading

    def loaded(self, run_id: str) -> None:
        """``run_id``'s pass has its run loaded, or ended before (nothing for the others)."""
        leading = self.leading
        if run_id not in leading:
            return
        leading.discard(run_id)
        loop = self._loop
        if leading or loop.is_closed():  # (a pass's end when its loop is torn down)
            return

        def tick(left: int) -> None:
            if left <= 1:
                self.opened.set()
            else:
                loop.call_soon(tick, left - 1)

        loop.call_soon(tick, AHEAD)


def minority_first(leases: Sequence[Lease], starts: dict[str, Ahead]) -> list[Lease]:
    """``leases`` in the order their passes are started. When the runs of the function(s)
    with the most runs in ``leases`` are to wait (``split``), each run's ``Ahead`` is put in
    ``starts`` (the pass takes it from there)."""
    first, later = split(leases)
    if later:
        ahead = Ahead(first)
        for lease in leases:
            starts[lease.run_id] = ahead
    return [*first, *later]


def split(leases: Sequence[Lease]) -> tuple[list[Lease], list[Lease]]:
    """``leases`` split into those to start now and those to start ``AHEAD`` turns after them:
    the runs of the function(s) with the most runs in ``leases`` wait when another function
    has fewer. Nothing waits when a lease does not say its function, or all are of one
    function, or every function has as many."""
    counts = Counter(lease.function_id for lease in leases)
    if len(counts) < 2 or None in counts:
        return list(leases), []
    most = max(counts.values())
    if min(counts.values()) == most:
        return list(leases), []
    first = [lease for lease in leases if counts[lease.function_id] < most]
    later = [lease for lease in leases if counts[lease.function_id] == most]
    return first, later
