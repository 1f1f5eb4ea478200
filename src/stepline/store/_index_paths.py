"""What a SQL backend remembers within one write transaction about the indexed paths of waits
and cancel matchers, shared by SQLite and PostgreSQL.

An event is matched against waits (and cancel matchers) by looking up, for each path some wait
of its name is indexed on, the value the event has there; and against the unindexed ones of its
name by scanning them. A batch of events of one name would ask the same questions for each
event: the paths of a name are read once per transaction (paths are only ever added; the
transaction's own additions are added to what it remembers), and a name found to have no
unindexed waits is not scanned again until the transaction adds one. Another transaction's
paths or waits added meanwhile are concurrent with this transaction's events, which match what
was there when they were looked up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Read = Callable[[str, Sequence[Any]], list[Any]]  # (query, params) -> rows
Write = Callable[[str, Sequence[Any]], object]  # (statement, params)


class IndexPaths:
    """The per-transaction memory of one SQL write transaction (``read``/``write``: its own
    statements)."""

    def __init__(self, read: Read, write: Write) -> None:
        self._read = read
        self._write = write
        self._paths: dict[tuple[str, str], list[str]] = {}
        self._unindexed: dict[tuple[str, str], bool] = {}

    def forget(self) -> None:
        """Read everything again (the transaction may have released what kept it valid)."""
        self._paths.clear()
        self._unindexed.clear()

    def unindexed_rows(self, query: str, event_name: str, *params: Any) -> list[Any]:
        """Rows of ``query`` (the unindexed waits or matchers of an event name); none without
        asking once they were found to be none."""
        if self._unindexed.get((query, event_name)) is False:
            return []
        rows = self._read(query, (event_name, *params))
        if not rows:
            self._unindexed[(query, event_name)] = False
        return rows

    def known(self, query: str, event_name: str) -> bool:
        """Whether the paths ``query`` lists for an event name were read in this transaction."""
        return (query, event_name) in self._paths

    def read_ahead(self, paths: str, unindexed: str, event_name: str, found: Any) -> None:
        """What ``indexed_paths(paths, …)`` and ``unindexed_rows(unindexed, …)`` would read
        for an event name, read by the caller in advance (``found``: the rows of each)."""
        path_rows, unindexed_rows = found
        self._paths[(paths, event_name)] = [r[0] for r in path_rows]
        if not unindexed_rows:
            self._unindexed[(unindexed, event_name)] = False

    def added_unindexed(self, query: str, event_name: str) -> None:
        """This transaction added a row ``query`` finds: ask again."""
        self._unindexed.pop((query, event_name), None)

    def indexed_paths(self, query: str, event_name: str) -> list[str]:
        """The paths ``query`` lists for an event name, read once per transaction."""
        cached = self._paths.get((query, event_name))
        if cached is None:
            cached = [r[0] for r in self._read(query, (event_name,))]
            self._paths[(query, event_name)] = cached
        return cached

    def add_indexed_path(self, insert: str, query: str, event_name: str, path: str) -> None:
        """Record ``path`` for an event name (``insert`` ignores a path already there)."""
        self._write(insert, (event_name, path))
        cached = self._paths.get((query, event_name))
        if cached is not None and path not in cached:
            cached.append(path)
