"""A worker's spare slot (issue 8, fair leasing): a worker serving several functions (with a
``concurrency`` of 2 or more) fills its last free slot only with a run of a function that has no
pass running in it.

The fair order (``store/_fair_order.py``) decides which runs a lease takes, but a saturated
worker's slots free only as its passes end, and a backlog's passes end together (a wave: they
were leased together and commit in one group commit). A new run of another function then waited
for the next wave to end before any lease could take it (~20-40 ms behind a 100-pass wave on
PostgreSQL). With one slot kept, the in-process ``send`` that starts it leases it in its own
transaction (``Worker.lease_new_runs``), and a run handed to the worker or named by a wake-up
starts at once: a backlog of one function uses ``concurrency - 1`` slots while others may come.

Exact, with every way a run gets a slot here:

- the worker's own lease attempts leave the last slot out (``limit`` one less than its free
  slots) while it has others free; when the last slot is all that is free, an attempt leases
  it only from the functions with no pass here (``lease_due`` with those functions: the fair
  order among them, each function's own order kept, priority and concurrency keys as always);
- a lease that would fill the worker otherwise (an in-process send's, runs leased by name, runs
  handed over by another process's send) gives its last slot only to a run of a function with
  no pass here nor earlier in that lease (``fitting``; a send's lease: ``lease_due`` with those
  functions for the last slot);
- while an in-process send's write is in flight, the last slot is that send's: the worker's own
  attempts, claims and hand-offs leave it out (so two of them never fill it at once);
- a sender in another process (PostgreSQL's ``HAND_OFF``) offers such a worker's last free
  slot by the same rule, from its live leases (a worker keeps a spare when its offer has 2
  slots or more and it registered 2 functions or more, as ``keeps_spare`` says): a run of a
  function with a pass there goes to another worker with room, or is named for any worker to
  lease, instead of being handed to this one and given back. What the sender cannot see (an
  in-process send holding the spare, a claim in flight) still makes the worker give a run
  back (``Worker.give_back``).

Nothing starves: a function with passes here keeps every other slot, and its runs are leased in
the fair order as before; due timers and old work of a function that has a pass here wait only
for one of its slots, as they waited for any slot before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from stepline.store.records import FunctionSet


def keeps_spare(concurrency: int, served: FunctionSet) -> bool:
    """Whether a worker of ``concurrency`` serving ``served`` keeps a spare slot (the same
    rule is PostgreSQL's ``_handoffs.HAND_OFF``'s, from the worker's offer and registration)."""
    return concurrency >= 2 and len(served.function_ids) >= 2


def alone(served: FunctionSet, here: Collection[str | None]) -> FunctionSet | None:
    """``served`` without the functions ``here`` (those with a pass in the worker); None if
    that leaves none."""
    others = tuple(fn for fn in served.function_ids if fn not in here)
    return FunctionSet(served.app_id, others) if others else None


def fitting(
    free: int, runs: Sequence[tuple[str, str | None]], here: Collection[str | None]
) -> list[str]:
    """The run ids of ``runs`` ((run id, function id), in order) that start in ``free`` slots
    whose last is the spare: every run fits in the others; the last goes to the first run left
    whose function has no pass ``here`` nor earlier among the runs taken (a run whose function is
    not known does not take it)."""
    taken: list[str] = []
    functions: set[str | None] = set()
    for run_id, function_id in runs:
        if len(taken) >= free:
            break
        if len(taken) == free - 1 and (
            function_id is None or function_id in here or function_id in functions
        ):
            continue
        taken.append(run_id)
        functions.add(function_id)
    return taken


def room(concurrency: int, served: FunctionSet, sends: int, free: int) -> tuple[int, bool]:
    """Of a worker's ``free`` slots, those a lease that is not its own attempt (an in-process
    send's, runs named or handed over) may fill, and whether the last of them is the spare
    (only for a function with no pass here). While an in-process send's write is in flight
    (``sends``), the spare is that send's."""
    if free <= 0 or not keeps_spare(concurrency, served):
        return max(free, 0), False
    if sends:
        return free - 1, False
    return free, True


def attempt(
    concurrency: int,
    served: FunctionSet,
    sends: int,
    free: int,
    here: Callable[[], Collection[str | None]],
) -> tuple[int, FunctionSet] | None:
    """A worker's own lease attempt with ``free`` slots: up to how many runs of which functions
    (None: no attempt). It leaves the spare to the others while it has other slots free, and
    leases it alone only from the functions with no pass ``here``."""
    slots, spare = room(concurrency, served, sends, free)
    if slots <= 0:
        return None
    if not spare:
        return slots, served
    if slots >= 2:
        return slots - 1, served
    others = alone(served, here())
    return None if others is None else (1, others)
