"""The fair lease order (issue 8), decided once for every backend.

A backend reads the candidates (due runs, and runs whose lease expired) and the live leases;
``fair_pick`` chooses which to lease:

- among the functions that have candidates, the next run comes from the function with the fewest
  live leases (counting the ones taken in this call), the oldest candidate breaking ties;
- within that function, from the concurrency-key group (the run's concurrency keys, e.g. one
  tenant) with the fewest live leases, the oldest candidate breaking ties;
- within a group, runs keep the queue order: due time (priority moves it earlier), then run id.

So a new run of a quiet function (or tenant) is leased at once behind any backlog of another,
even when the worker's slots free one at a time; each function keeps its own order; and no run
starves: a function holding fewer leases than the others goes first, and between equals the
oldest work goes first. The order is stateless (counts of live leases, which every worker sharing
the database sees), so several workers on one database are fair together.

A backend need not read a function's whole backlog: the oldest runs of each function (a window
larger than the lease limit) plus the oldest run of each concurrency-key group (a bounded number
of groups per call, rotating) are enough for this order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from operator import attrgetter

GROUP_SEPARATOR = "\x1e"  # between the concurrency keys of a group (keys use "\x1f" inside)
_NO_KEYS = GROUP_SEPARATOR  # the group of a run without concurrency keys (``group_of(())``)


def group_of(slots: tuple[tuple[str, int], ...]) -> str:
    """The concurrency-key group of a run with ``slots``: its keys ("" for none), joined as the
    SQLite store's ``queue_fn_group`` index joins ``ckey1`` and ``ckey2``."""
    first = slots[0][0] if slots else ""
    second = slots[1][0] if len(slots) > 1 else ""
    return first + GROUP_SEPARATOR + second


@dataclass(frozen=True, slots=True)
class Candidate:
    """A run that may be leased now: due (or its lease expired), of a served, unpaused function."""

    run_id: str
    due_at: float
    function_id: str
    slots: tuple[tuple[str, int], ...] = ()  # (concurrency key, limit)
    held_by: str | None = None  # the worker whose lease expired, if any

    @property
    def group(self) -> str:
        return group_of(self.slots)


def fair_pick(
    candidates: Iterable[Candidate],
    live: Iterable[tuple[str, str]],
    busy: Counter[str],
    limit: int,
) -> list[Candidate]:
    """Up to ``limit`` of ``candidates`` in the fair order (above). ``live``: the (function id,
    group) of each live lease; ``busy``: live leases per concurrency key, updated with the runs
    taken. A candidate whose concurrency key is full is skipped. Duplicates are ignored."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    seen: set[str] = set()
    for c in candidates:  # (a run without keys, most of them: its group without a call)
        if c.run_id not in seen:
            seen.add(c.run_id)
            groups.setdefault((c.function_id, c.group if c.slots else _NO_KEYS), []).append(c)
    if not groups:
        return []
    fn_load: Counter[str] = Counter()
    group_load: Counter[tuple[str, str]] = Counter()
    for function_id, group in live:
        fn_load[function_id] += 1
        group_load[function_id, group] += 1
    # each function's groups in a heap by (load, oldest run); the functions in one by the same
    function_heaps: dict[str, list[tuple[int, float, str, str]]] = {}
    for (function_id, group), runs in groups.items():
        runs.sort(key=_queue_order, reverse=True)  # the next run of the group is runs[-1]
        head = runs[-1]
        entry = (group_load[function_id, group], head.due_at, head.run_id, group)
        function_heaps.setdefault(function_id, []).append(entry)
    top: list[tuple[int, float, str, str]] = []
    for function_id, heap in function_heaps.items():
        heapify(heap)
        top.append((fn_load[function_id], heap[0][1], heap[0][2], function_id))
    heapify(top)
    taken: list[Candidate] = []
    while top and len(taken) < limit:
        load, _, _, function_id = heappop(top)
        heap = function_heaps[function_id]
        group_count, _, _, group = heappop(heap)
        runs = groups[function_id, group]
        run = runs.pop()
        slots = run.slots
        if not slots or not any(busy[key] >= cap for key, cap in slots):
            if slots:
                busy.update(key for key, _ in slots)
            taken.append(run)
            load += 1
            group_count += 1
        if runs:
            heappush(heap, (group_count, runs[-1].due_at, runs[-1].run_id, group))
        if heap:
            heappush(top, (load, heap[0][1], heap[0][2], function_id))
    return taken


_queue_order = attrgetter("due_at", "run_id")  # (due time, run id) of a candidate
