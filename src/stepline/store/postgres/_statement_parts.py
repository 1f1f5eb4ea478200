"""The small parts of a write transaction's statements (``_statements.Statements``): an
optimistic transaction's savepoint mark, its failure, an error passed through savepoints, and a
statement's result read by ``run_all``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from stepline.store.postgres._statements import Statements


class Marked:
    """An optimistic transaction's savepoint: an exception raised through it spoils the
    transaction (``Statements.spoiled``), which then never commits. It keeps no state of its
    own: one may mark every savepoint of its transaction, nested or not (``PostgresTx``'s)."""

    __slots__ = ("_statements",)

    def __init__(self, statements: Statements) -> None:
        self._statements = statements

    def __enter__(self) -> Statements:
        self._statements._depth += 1
        return self._statements

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._statements._depth -= 1
        if kind is not None:
            self._statements.spoiled = True


class Spoiled(Exception):
    """An optimistic transaction was rolled back: a job raised or a statement failed."""


class _Elsewhere(BaseException):
    """``error`` of a statement held by the open savepoint number ``owner`` (its index among
    the open ones), raised through the savepoints opened after that one (``_owned``)."""

    def __init__(self, error: psycopg.Error, owner: int) -> None:
        super().__init__(error, owner)
        self.error = error
        self.owner = owner


class Rows:
    """A statement's result read by ``run_all``: its rows (None: it returned none) and
    ``rowcount``, read as from psycopg's cursor (``fetchone``, ``fetchall``, iterated)."""

    __slots__ = ("_at", "_rows", "rowcount")

    def __init__(self, rows: list[Any] | None, rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self._at = 0

    def _left(self) -> list[Any]:
        if self._rows is None:
            raise psycopg.ProgrammingError("the statement did not produce a result")
        return self._rows

    def fetchone(self) -> Any:
        rows = self._left()
        if self._at >= len(rows):
            return None
        self._at += 1
        return rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rows = self._left()
        left = rows[self._at :]
        self._at = len(rows)
        return left

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


Result = psycopg.Cursor[Any] | Rows  # a read's result (``Statements.run``, ``run_all``)
