"""The trigger catalog as the SQL backends read it: once per transaction at most, and only the
version row when it has not changed (shared by SQLite and PostgreSQL).

Every event an app ingests is handed to the other apps' functions listening to its name
(``_ingest_rules``), so each event asks the catalog ``listeners(name)``. That must cost a
dictionary look-up, not a query: the store object keeps the catalog in memory with the version
it was read at (``TriggerCatalog``); a transaction reads the version row once, the first time it
needs the catalog, and reads the rows again only when another process changed them
(``sync_triggers`` writes a new random version with each change). A transaction that changed
the catalog itself reads its own rows and keeps them to itself: it may yet roll back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from stepline.store.records import AppRecord, FunctionSet, TriggerRow

UNREGISTERED = "unregistered"  # the skip reason of an inbox row whose function left the catalog
Listening = dict[str, tuple[tuple[str, str], ...]]  # event name -> (app id, function id) pairs


def listening(rows: Iterable[TriggerRow]) -> Listening:
    """The catalog by event name."""
    by_name: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_name.setdefault(row.event_name, []).append((row.app_id, row.function_id))
    return {name: tuple(pairs) for name, pairs in by_name.items()}


def app_records(
    rows: Iterable[Sequence[Any]],
    workers: Iterable[Sequence[Any]],
    waiting: Iterable[Sequence[Any]],
) -> list[AppRecord]:
    """``Store.apps`` from a backend's rows: the catalog (app, function, event name), its
    workers by app (app, latest ``seen_at``, how many alive) and its inbox by app (app, rows).
    The apps listed are those of the catalog and those events wait for (by id); workers only
    tell about them."""
    triggers: dict[str, list[TriggerRow]] = {}
    for app_id, function_id, event_name in rows:
        triggers.setdefault(app_id, []).append(TriggerRow(app_id, function_id, event_name))
    seen = {app_id: (last, int(alive or 0)) for app_id, last, alive in workers}
    inbox = {app_id: int(n) for app_id, n in waiting}
    return [
        AppRecord(
            app_id,
            tuple(sorted(triggers.get(app_id, ()), key=lambda r: (r.function_id, r.event_name))),
            seen.get(app_id, (None, 0))[1],
            seen.get(app_id, (None, 0))[0],
            inbox.get(app_id, 0),
        )
        for app_id in sorted(triggers.keys() | inbox.keys())
    ]


def catalog_of_app(
    rows: Sequence[TriggerRow],
    current: set[tuple[str, str]],
    served: FunctionSet | None,
    live: Iterable[str],
) -> set[tuple[str, str]]:
    """The (function, event name) pairs an app's catalog must hold after a registration of
    ``rows``: ``served`` (a worker's registration: the functions it serves) keeps the
    ``current`` pairs of the app's other functions a live worker of the app serves
    (``live``), so an older worker starting mid-rollout does not unhook a newer one's
    functions; without another live worker, or for an SDK app's sync (``served`` None), the
    registration replaces the app's part. A function the registration serves is defined by
    it (its triggers may have changed)."""
    wanted = {(r.function_id, r.event_name) for r in rows}
    if served is None:
        return wanted
    kept = set(live) - set(served.function_ids)
    return wanted | {pair for pair in current if pair[0] in kept}


def dropped_functions(current: set[tuple[str, str]], wanted: set[tuple[str, str]]) -> list[str]:
    """The app's functions a change of its catalog removes (their inbox rows are dropped)."""
    return sorted({f for f, _ in current} - {f for f, _ in wanted})


def new_version() -> int:
    """A version for a changed catalog: random, so a change rolled back never shares its
    version with another process's committed change."""
    return secrets.randbits(62) + 1


class Statements(Protocol):
    """A SQL backend's catalog statements (its ``queries`` module)."""

    TRIGGERS_OF_APP: str
    LIVE_FUNCTIONS_OF_APP: str
    DROP_INBOX_OF_FUNCTION: str
    INSERT_SKIP: str
    DELETE_TRIGGERS_OF_APP: str
    INSERT_TRIGGER: str
    SET_CATALOG_VERSION: str


Read = Callable[[str, Sequence[Any]], Iterable[Sequence[Any]]]
Write = Callable[[str, Sequence[Any]], object]
WriteMany = Callable[[str, Sequence[Sequence[Any]]], object]


class TriggerCatalog:
    """The catalog a store object read last, with its version (0: no catalog yet)."""

    def __init__(self) -> None:
        self.known: tuple[int, Listening] | None = None  # replaced whole: atomic for threads

    def view(
        self, read_version: Callable[[], int], read_rows: Callable[[], list[TriggerRow]]
    ) -> CatalogView:
        """One transaction's view (``read_*``: its own statements)."""
        return CatalogView(self, read_version, read_rows)


class CatalogView:
    """The catalog as one transaction sees it."""

    def __init__(
        self,
        catalog: TriggerCatalog,
        read_version: Callable[[], int],
        read_rows: Callable[[], list[TriggerRow]],
    ) -> None:
        self._catalog = catalog
        self._read_version = read_version
        self._read_rows = read_rows
        self._by_name: Listening | None = None
        self._wrote = False

    def listeners(self, event_name: str) -> Sequence[tuple[str, str]]:
        by_name = self._by_name
        if by_name is None:
            by_name = self._by_name = self._load(self._read_version())
        return by_name.get(event_name, ())

    def forget(self) -> None:
        """Read the catalog again when next asked (a rolled-back savepoint may have changed it,
        or read it after a change it undid)."""
        self._by_name = None

    def unread(self) -> bool:
        """Whether this transaction has not looked at the catalog yet."""
        return self._by_name is None

    def checked(self, version: int) -> None:
        """The caller read the version itself (with other statements): use it."""
        if self._by_name is None:
            self._by_name = self._load(version)

    def assumed(self) -> int | None:
        """The version this process knows, to be checked by the caller (``checked`` is not
        needed then: a different version fails the transaction), or None when the caller must
        read it."""
        known = self._catalog.known
        if known is None or self._wrote or self._by_name is not None:
            return None
        self._by_name = known[1]
        return known[0]

    def replace(
        self,
        app_id: str,
        rows: Sequence[TriggerRow],
        now: float,
        served: FunctionSet | None,
        q: Statements,
        read: Read,
        write: Write,
        write_many: WriteMany,
    ) -> tuple[int, int]:
        """``sync_triggers`` (``remove_app``: no ``rows``) with the backend's statements: the
        app's rows replaced (``catalog_of_app``) and a new version written only when they
        changed; the waiting inbox rows of the functions it removed are dropped and recorded
        as skipped. This transaction then reads the catalog again when asked, and keeps it to
        itself. Returns how many rows the app had and how many inbox rows were dropped."""
        current = {(r[0], r[1]) for r in read(q.TRIGGERS_OF_APP, (app_id,))}
        live = (
            () if served is None else [r[0] for r in read(q.LIVE_FUNCTIONS_OF_APP, (app_id, now))]
        )
        wanted = catalog_of_app(rows, current, served, live)
        if current == wanted:
            return len(current), 0
        write(q.DELETE_TRIGGERS_OF_APP, (app_id,))
        write_many(q.INSERT_TRIGGER, [(app_id, name, f) for f, name in sorted(wanted)])
        write(q.SET_CATALOG_VERSION, (new_version(),))
        self._wrote = True
        self._by_name = None
        dropped = 0
        for function_id in dropped_functions(current, wanted):
            gone = sorted(
                (r[0], r[1]) for r in read(q.DROP_INBOX_OF_FUNCTION, (app_id, function_id))
            )
            skips = [(event_id, function_id, UNREGISTERED, now) for _, event_id in gone]
            write_many(q.INSERT_SKIP, skips)
            dropped += len(skips)
        return len(current), dropped

    def _load(self, version: int) -> Listening:
        known = self._catalog.known
        if not self._wrote and known is not None and known[0] == version:
            return known[1]
        by_name = listening(self._read_rows())
        if not self._wrote:
            self._catalog.known = (version, by_name)
        return by_name
