"""The memory store's queue: its rows in a dict, with what ``lease_due`` and ``next_due_at`` read
kept alongside, so neither scans the whole queue (a backlog of 100,000 runs costs a lease a few
heap operations, as an index range costs SQLite).

Kept alongside the rows: per (app, function), a heap of (due time, run id) of the rows not
leased; per (app, function, concurrency-key group) another; and the leased rows. The heaps are
lazy: a write pushes the row's new entry and leaves the old one, which is dropped when a reader
meets it (it no longer matches the row). Every write goes through ``__setitem__``/``pop``, the
undo journal's too, so a rolled-back verb leaves the index as right as the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from heapq import heappop, heappush
from typing import Any, Protocol

from stepline.store._fair_order import Candidate, group_of
from stepline.store.records import FunctionSet


class QueueRow(Protocol):
    """What the index reads of a queue row (``QueueItem``)."""

    @property
    def due_at(self) -> float | None: ...

    @property
    def lease_owner(self) -> str | None: ...

    @property
    def lease_expires_at(self) -> float | None: ...

    @property
    def function_id(self) -> str: ...

    @property
    def concurrency(self) -> tuple[tuple[str, int], ...]: ...

    @property
    def app_id(self) -> str: ...


Entry = tuple[float, str]  # (due time, run id)
GROUP_VISITS = 16  # concurrency-key groups of a function visited per lease, at least


class QueueTable(dict[str, Any]):
    """Queue rows by run id, indexed for leasing (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.due: dict[tuple[str, str], list[Entry]] = {}
        self.groups: dict[tuple[str, str], dict[str, list[Entry]]] = {}
        self.leased: dict[str, QueueRow] = {}
        self._cursor: dict[tuple[str, str], int] = {}  # where the next group visit starts

    def __setitem__(self, run_id: str, row: QueueRow) -> None:
        super().__setitem__(run_id, row)
        if row.lease_owner is not None:
            self.leased[run_id] = row
            return
        self.leased.pop(run_id, None)
        if row.due_at is not None:
            key = (row.app_id, row.function_id)
            entry = (row.due_at, run_id)
            heappush(self.due.setdefault(key, []), entry)
            groups = self.groups.setdefault(key, {})
            heappush(groups.setdefault(group_of(row.concurrency), []), entry)

    def pop(self, run_id: str, *default: Any) -> Any:
        self.leased.pop(run_id, None)
        return super().pop(run_id, *default)

    def _current(self, key: tuple[str, str], entry: Entry) -> QueueRow | None:
        """The row ``entry`` stands for, if the entry is still its place in ``key``'s queue."""
        row: QueueRow | None = self.get(entry[1])
        if (
            row is None
            or row.lease_owner is not None
            or row.due_at != entry[0]
            or (row.app_id, row.function_id) != key
        ):
            return None
        return row

    def _head(self, key: tuple[str, str], heap: list[Entry]) -> Entry | None:
        """The first live entry of ``heap`` (stale ones above it are dropped)."""
        while heap:
            if self._current(key, heap[0]) is not None:
                return heap[0]
            heappop(heap)
        return None

    def next_due(self, key: tuple[str, str]) -> float | None:
        """The earliest due time of ``key``'s rows not leased."""
        heap = self.due.get(key)
        head = None if heap is None else self._head(key, heap)
        return None if head is None else head[0]

    def oldest(
        self, key: tuple[str, str], now: float, window: int, full: set[str]
    ) -> Iterator[Candidate]:
        """Up to ``window`` rows of ``key`` due at ``now``, not leased and holding no slot of a
        ``full`` concurrency key, in queue order."""
        heap = self.due.get(key)
        if not heap:
            return
        found: list[Entry] = []
        seen: set[str] = set()
        taken = 0  # rows of full keys are passed over, up to a bound (their groups' turn comes)
        while heap and taken < window and len(found) < 4 * window and heap[0][0] <= now:
            entry = heappop(heap)
            row = self._current(key, entry)
            if row is not None and entry[1] not in seen:
                seen.add(entry[1])
                found.append(entry)
                if not any(k in full for k, _ in row.concurrency):
                    taken += 1
                    yield _candidate(entry, row)
        for entry in found:  # still there: leasing one makes its entry stale
            heappush(heap, entry)

    def group_heads(self, key: tuple[str, str], now: float, visits: int) -> Iterator[Candidate]:
        """The first due row (not leased) of each of up to ``visits`` concurrency-key groups of
        ``key``, starting where the previous call stopped (each group gets its turn)."""
        groups = self.groups.get(key)
        if not groups:
            return
        names = list(groups)
        start = self._cursor.get(key, 0) % len(names)
        visited = names[start:] + names[:start]
        visited = visited[:visits]
        self._cursor[key] = start + len(visited)
        for name in visited:
            heap = groups[name]
            head = self._head(key, heap)
            if head is None:
                del groups[name]
            elif head[0] <= now:
                row = self._current(key, head)
                assert row is not None
                yield _candidate(head, row)

    def expired_and_live(self, now: float) -> tuple[list[tuple[str, QueueRow]], list[QueueRow]]:
        """Leased rows whose lease expired at ``now`` (with their run ids), and the live ones."""
        expired: list[tuple[str, QueueRow]] = []
        live: list[QueueRow] = []
        for run_id, row in self.leased.items():
            if (row.lease_expires_at or 0.0) > now:
                live.append(row)
            else:
                expired.append((run_id, row))
        return expired, live


def candidate_of(run_id: str, row: QueueRow) -> Candidate:
    """A leased row whose lease expired, as a candidate (it keeps its place: its due time)."""
    due_at = row.due_at if row.due_at is not None else 0.0
    return Candidate(run_id, due_at, row.function_id, row.concurrency, row.lease_owner)


def _candidate(entry: Entry, row: QueueRow) -> Candidate:
    return Candidate(entry[1], entry[0], row.function_id, row.concurrency, None)


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A run's queue row: when it is due, its lease, and what leasing it reads."""

    due_at: float | None
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    wake: bool = False
    function_id: str = ""
    concurrency: tuple[tuple[str, int], ...] = ()
    app_id: str = ""
    passes: int = 0  # leased since the run's last commit (see ``lease_due``)

    def served_by(self, functions: FunctionSet) -> bool:
        """Whether a worker serving ``functions`` may lease this run."""
        return self.app_id in (functions.app_id, "") and self.function_id in functions.function_ids

    def released(self, due_at: float | None) -> QueueItem:
        return replace(
            self,
            due_at=due_at,
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
            wake=False,
        )


def live_lease(item: QueueItem, now: float) -> bool:
    """Whether a row's lease is held at ``now`` (not expired)."""
    return item.lease_owner is not None and (item.lease_expires_at or 0.0) > now
