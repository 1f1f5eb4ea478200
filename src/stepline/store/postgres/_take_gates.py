"""The gates of contended buckets: a take refused never waits, and is not starved either.

A take of inbox rows whose runs have ``cancel_on`` tries their names' buckets exclusive
(``queries.TRY_TAKE_BUCKETS``) inside the worker's group-commit transaction. It never waits for
the ingestions holding one shared: that would hold up every other commit of the process's
batch. Refused, it gives its row back and closes the buckets' gates: session-level advisory
locks (``queries.CANCEL_GATES``) this process holds on a connection of its own. An ingestion
that finds a bucket's gate closed notes its event (``cancel_notes``, matched again once no
take holds the bucket) instead of holding the bucket (PostgreSQL migration 10), so once the
ingestions in flight when the gate closed have ended, the next try of the take succeeds, and
a stream of overlapping ingestions cannot starve it. A gate is opened by the take that gets
its bucket, or after ``GATE_HOLD`` seconds when no take of this process got it (another
worker took the row), or when its session ends (the process died).

Correctness does not depend on a gate: the buckets order takes and ingestions (docs/design.md,
"Handing over"); a closed gate only makes ingestions note events they could have matched at
once (the notes are matched again, a cancel applies once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from stepline.store.postgres import queries as q

GATE_HOLD = 1.0  # seconds a gate stays closed when no take of this process got its bucket

log = logging.getLogger("stepline.store.postgres")


class TakeGates:
    """The gates this process closed, on a connection opened the first time one is closed."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._closed_at: dict[int, float] = {}  # bucket -> when its gate was closed (monotonic)
        self._lock = threading.Lock()

    def close_gates(self, buckets: Sequence[int]) -> None:
        """Close the gates of ``buckets`` (those another process closed stay as they are)."""
        with self._lock:
            now = time.monotonic()
            try:
                for b in buckets:
                    if b in self._closed_at:
                        continue
                    row = self._connection().execute(q.CLOSE_GATE, (b,)).fetchone()
                    if row is not None and row[0]:
                        self._closed_at[b] = now
            except psycopg.Error as exc:  # only liveness: the take is tried again anyway
                log.warning("take gates: %s", exc)
                self._drop()

    def open_gates(self, buckets: Sequence[int]) -> None:
        """Open the gates of ``buckets`` this process closed (its take got them)."""
        if self._closed_at:
            with self._lock:
                self._open([b for b in buckets if b in self._closed_at])

    def open_stale(self) -> None:
        """Open the gates closed more than ``GATE_HOLD`` seconds ago."""
        if self._closed_at:
            with self._lock:
                since = time.monotonic() - GATE_HOLD
                self._open([b for b, at in self._closed_at.items() if at <= since])

    @property
    def closed(self) -> list[int]:
        """The buckets whose gates this process holds closed."""
        return sorted(self._closed_at)

    def _open(self, buckets: list[int]) -> None:
        if not buckets:
            return
        try:
            conn = self._connection()
            for b in buckets:
                conn.execute(q.OPEN_GATE, (b,))
                del self._closed_at[b]
        except psycopg.Error as exc:
            log.warning("take gates: %s", exc)
            self._drop()  # the session's end opens them all

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop()
            self._conn = conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._closed_at.clear()  # the locks go with the session
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Open every gate (ending the session)."""
        with self._lock:
            self._drop()
