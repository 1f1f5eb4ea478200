"""The SAVEPOINTs of the SQLite store's verbs and of a group-commit job (``StoreTx.savepoint``).

When one fails, what was written inside it is undone and the transaction goes on. One opened
first thing in an open savepoint (a job's verb: nothing written since that one began, as the
connection's count of changed rows shows) makes none of its own: rolling back to the enclosing
one restores what it started from, and that one stays open for what follows (``ROLLBACK TO``
keeps it). SQLite counts a statement's changed rows once it is done: the store reads every
``... RETURNING`` cursor to its end before anything else runs. Classes rather than generator
context managers: a step commit enters two. A rollback also calls the transaction's ``undo``: what
it remembers of what it read (the index's paths, the trigger catalog) may have been read inside.

An optimistic transaction (``SQLiteStore.optimistic_transaction``) makes no SAVEPOINT at all:
its verbs' and jobs' savepoints are one ``Optimistic`` that remembers whether a block inside it
raised. Nothing can then be undone alone, so nothing of that transaction is committed: it is
rolled back and made again with a savepoint per job (``Replay``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from stepline.errors import StoreUnavailable
from stepline.store.interface import Replay


class _Mark:
    __slots__ = ("_c", "_opened", "_own", "_undo")

    def __init__(
        self, conn: sqlite3.Connection, opened: list[int], undo: Callable[[], None]
    ) -> None:
        self._c = conn
        self._opened = opened  # per open SAVEPOINT (innermost last): the changed rows then
        self._own = False
        self._undo = undo  # the transaction's memory of what it read, forgotten at a rollback

    def _begin(self) -> None:
        c = self._c
        if not c.in_transaction:  # SQLite rolled it back (disk full, I/O error): a SAVEPOINT
            # here would start a transaction of its own and commit this verb alone
            raise StoreUnavailable("the transaction was rolled back by SQLite")
        opened, changes = self._opened, c.total_changes
        if not opened or opened[-1] != changes:
            c.execute("SAVEPOINT verb")
            opened.append(changes)
            self._own = True

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        c = self._c
        if self._own:
            self._opened.pop()
            if kind is None:
                c.execute("RELEASE verb")
            elif c.in_transaction:  # else SQLite already rolled the whole transaction back
                c.execute("ROLLBACK TO verb")
                c.execute("RELEASE verb")
                self._undo()
        elif kind is not None and c.in_transaction:
            c.execute("ROLLBACK TO verb")  # the enclosing savepoint's, which stays open
            self._undo()


class Savepoint(_Mark):
    """A verb's savepoint: ``with Savepoint(conn, opened) as c``."""

    __slots__ = ()

    def __enter__(self) -> sqlite3.Connection:
        self._begin()
        return self._c


class JobSavepoint(_Mark):
    """A group-commit job's savepoint (``StoreTx.savepoint``)."""

    __slots__ = ()

    def __enter__(self) -> None:
        self._begin()


class Optimistic:
    """Every savepoint of an optimistic transaction (``with tx._savepoint() as c``, and a job's
    ``tx.savepoint()``): none is made, a block that raises marks the transaction ``failed``
    (it will not commit: ``Replay``), and none begins once it has failed or SQLite rolled the
    transaction back by itself (a statement then would commit alone)."""

    __slots__ = ("_c", "failed")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn
        self.failed = False

    def __enter__(self) -> sqlite3.Connection:
        if self.failed or not self._c.in_transaction:
            self.failed = True
            raise Replay("the optimistic transaction failed: made again carefully")
        return self._c

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.failed = True
