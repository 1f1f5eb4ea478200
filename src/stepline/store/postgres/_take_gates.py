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
its bucket, or ``GATE_HOLD`` seconds after it closed when no take of this process got it
(another worker took the row: a timer, and the process's housekeeping should the timer be
lost: ``_late_cancels.late_cancels``), or when its session ends (the process died). The
gates' statements run on a thread of their own, in the order they were asked for: the take
asks and goes on, so
neither the gates' round trips nor their connection's opening ever hold up the transaction (a
retried take may find a gate still closing: it is refused once more, a moment later).

Correctness does not depend on a gate: the buckets order takes and ingestions (docs/design.md,
"Handing over"); a closed gate only makes ingestions note events they could have matched at
once (the notes are matched again, a cancel applies once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg

from stepline.store.postgres import _answers
from stepline.store.postgres import queries as q
from stepline.store.postgres._database import CLIENT_ENCODING

GATE_HOLD = 1.0  # seconds a gate stays closed when no take of this process got its bucket

log = logging.getLogger("stepline.store.postgres")


class TakeGates:
    """The gates this process closed, on a connection opened the first time one is closed;
    their statements on a thread of their own (``_run``)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self._url = url
        # libpq's, beside the URL's (link_options), and its deadline (_answers.connect)
        # libpq options of its session: the store's (its connect timeout, link options)
        self._options = {"connect_timeout": 5, **(options or {})}
        self._lock = threading.Lock()  # guards _asked, _thread and _stopped
        self._asked: set[int] = set()  # buckets whose gates were asked closed, not open
        self._thread: ThreadPoolExecutor | None = None
        self._stopped = False
        # on the gates' thread only:
        self._conn: psycopg.Connection[Any] | None = None
        self._closed_at: dict[int, float] = {}  # bucket -> when its gate was closed (monotonic)

    def close_gates(self, buckets: Sequence[int]) -> None:
        """Close the gates of ``buckets`` (those another process closed stay as they are)."""
        with self._lock:
            new = [b for b in buckets if b not in self._asked]
            self._asked.update(new)
        if new:
            self._run(self._close, new)

    def open_gates(self, buckets: Sequence[int]) -> None:
        """Open the gates of ``buckets`` this process closed (its take got them)."""
        if not self._asked:
            return
        with self._lock:
            mine = [b for b in buckets if b in self._asked]
            self._asked.difference_update(mine)
        if mine:
            self._run(self._open, mine)

    def open_stale(self) -> None:
        """Open the gates closed more than ``GATE_HOLD`` seconds ago."""
        if self._asked:
            self._run(self._open_stale)

    def _run(self, work: Callable[..., None], *args: Any) -> Future[None] | None:
        with self._lock:
            if self._stopped:
                return None
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="stepline-gates")
            return self._thread.submit(work, *args)

    def wait(self) -> None:
        """Return once the gates' statements asked for so far have run (tests)."""
        done = self._run(lambda: None)
        if done is not None:
            done.result()

    # -- on the gates' thread ---------------------------------------------------------------------
    def _close(self, buckets: list[int]) -> None:
        now = time.monotonic()
        try:
            for b in buckets:
                row = self._connection().execute(q.CLOSE_GATE, (b,)).fetchone()
                if row is not None and row[0]:
                    self._closed_at[b] = now
                    self._open_later()
                else:  # another process's gate: closed already, and not ours to open
                    with self._lock:
                        self._asked.discard(b)
        except psycopg.Error as exc:  # only liveness: the take is tried again anyway
            log.warning("take gates: %s", exc)
            with self._lock:  # not closed: asked again by the take's next refusal
                self._asked.difference_update(b for b in buckets if b not in self._closed_at)
            self._drop()

    def _open_later(self) -> None:
        """Open the gates still closed ``GATE_HOLD`` from now (a timer of its own: no lease
        job, no housekeeping of this process need come by, an idle worker's neither)."""
        timer = threading.Timer(GATE_HOLD, self.open_stale)
        timer.daemon = True
        timer.start()

    def _open_stale(self) -> None:
        since = time.monotonic() - GATE_HOLD
        stale = [b for b, at in self._closed_at.items() if at <= since]
        with self._lock:
            self._asked.difference_update(stale)
        self._open(stale)

    def _open(self, buckets: list[int]) -> None:
        mine = [b for b in buckets if b in self._closed_at]
        if not mine:
            return
        try:
            conn = self._connection()
            for b in mine:
                conn.execute(q.OPEN_GATE, (b,))
                del self._closed_at[b]
        except psycopg.Error as exc:
            log.warning("take gates: %s", exc)
            self._drop()  # the session's end opens them all

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            self._drop()
            conn = None
        if conn is None:
            self._conn = conn = _answers.connect(
                self._url,
                autocommit=True,
                client_encoding=CLIENT_ENCODING,
                **self._options,
            )
        return conn

    def _drop(self) -> None:
        """End the session: its gates open (those asked closed since are closed after)."""
        conn, self._conn = self._conn, None
        with self._lock:
            self._asked.difference_update(self._closed_at)
        self._closed_at.clear()
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Open every gate (ending the session), once the statements asked for have run."""
        with self._lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        self._drop()
