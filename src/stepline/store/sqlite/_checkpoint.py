"""WAL checkpoints, mostly off the writer's path.

By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000 pages: that
commit copies the WAL's pages into the database file and syncs it (100-300 ms on a large file
on a busy disk), and every write queued behind it waits as long: the lease of a timer that is
due, a send's ingest. The store's connections never checkpoint on commit
(``wal_autocheckpoint = 0``). Instead, after a commit that left the WAL past the same size:

1. a thread with a connection of its own runs PASSIVE checkpoints (they block no reader and no
   writer), again while the last one still had many pages to copy (written while the one
   before ran): it copies the bulk of the WAL and syncs the database file;
2. the next commit past the size finishes with a PASSIVE checkpoint of its own, on the
   writer's connection: only the pages written meanwhile, and one sync. SQLite starts a WAL
   over only at a write transaction that finds all of it copied (and no reader on an old
   snapshot): a checkpoint that runs while the writer appends never gets there, and the WAL
   would grow without bound.

The store's connections set ``journal_size_limit`` to the same size, so a WAL started over is
cut back to it and a file past it holds new pages. Durability does not change: a commit is
durable in the WAL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("stepline.store")

# the WAL size (bytes) past which a checkpoint is started: SQLite's default of 1,000 pages
CHECKPOINT_WAL_BYTES = 1000 * 4096
# the thread checkpoints again while the last pass copied more pages than this (written while
# the previous one ran), at most MAX_PASSES times; the writer finishes the rest
TAIL_PAGES = 64
MAX_PASSES = 8


class Checkpointer:
    """Checkpoints one database's WAL (see the module's doc); ``committed`` after each write
    transaction, ``close`` to stop its thread (started on first need)."""

    def __init__(
        self, wal_path: str, connect: Callable[[], sqlite3.Connection], wal_bytes: int
    ) -> None:
        self._wal_path = wal_path
        self._connect = connect
        self._wal_bytes = wal_bytes
        self._due = threading.Event()
        self._lock = threading.Lock()  # guards _thread, _closed and _tail_left
        self._thread: threading.Thread | None = None
        self._closed = False
        self._tail_left = False  # the thread copied the bulk: the writer's next one finishes
        self._copying = False  # the thread is asked for, or runs, a checkpoint
        self.checkpoints = 0  # background checkpoints run (tests read it)
        self.finished = 0  # checkpoints finished by a writer (tests read it)

    def committed(self, conn: sqlite3.Connection) -> None:
        """A write transaction committed on ``conn`` (no longer in it): if the WAL has grown
        past the size, finish here the checkpoint the thread made, or ask the thread for one
        (one ``stat`` of the WAL file)."""
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            return
        if size <= self._wal_bytes:
            return
        with self._lock:
            if self._closed:
                return
            finish, self._tail_left = self._tail_left, False
            if not finish:
                if self._copying:
                    return
                self._copying = True
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="stepline-checkpoint", daemon=True
                    )
                    self._thread.start()
        if not finish:
            self._due.set()
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.finished += 1
        except sqlite3.Error as exc:  # busy, I/O: the next commit asks again
            log.debug("checkpoint of %s failed: %s", self._wal_path, exc)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._due.wait()
                with self._lock:
                    if self._closed:
                        return
                    self._due.clear()
                copied = False
                try:
                    if conn is None:
                        conn = self._connect()
                    copied = self._copy(conn)
                except Exception as exc:  # never end the thread: the WAL would grow unchecked
                    log.warning("checkpoint of %s failed: %s", self._wal_path, exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                with self._lock:
                    self._copying = False
                    self._tail_left = copied
        finally:
            if conn is not None:
                conn.close()

    def _copy(self, conn: sqlite3.Connection) -> bool:
        """PASSIVE checkpoints until one had at most ``TAIL_PAGES`` pages to copy (the writer
        appends meanwhile); False if one failed or the store closes."""
        done = 0
        for _ in range(MAX_PASSES):
            if self._closed:
                return False
            try:
                row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # busy, I/O: the next commit asks again
                log.debug("checkpoint of %s failed: %s", self._wal_path, exc)
                return False
            self.checkpoints += 1
            backfilled = int(row[2])  # pages of the WAL copied so far (-1: not WAL)
            copied, done = (backfilled - done if backfilled >= done else backfilled), backfilled
            if copied <= TAIL_PAGES:
                break
        return True

    def close(self) -> None:
        """Stop the thread (a checkpoint in progress ends first)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._due.set()
        if thread is not None:
            thread.join()
