"""Wake-ups across processes: ``LISTEN stepline`` on a connection of its own.

A write transaction that may have made work due (a new run, a woken or rescheduled run, a
released lease, a run that ended and freed a concurrency slot, a debounce or batch, a resumed
function, changed schedules) sends ``NOTIFY stepline`` inside itself, so the notification is
delivered only if the transaction commits, and after it. Each process that runs workers holds one
listening connection (a daemon thread) and wakes its workers on every notification; they then
look for due work at once instead of at their next poll. The workers' bounded poll stays as the
safety net: a notification lost while the listener reconnects costs at most one poll interval
(the listener also wakes the workers each time it has reconnected).

A transaction whose only work made is a few new runs due now (an event sent, usually) names them
in the notification's payload (``notify``): a worker serving their function may lease them with
one statement sent with its ``COMMIT`` (``PostgresTx.lease_named``, one round trip) instead of
looking for any due work (``lease_due``: two). Before naming them, the same round trip leases
each to an idle live worker of its function that offers hand-offs, and the payload carries that
lease (``_handoffs.py``): that worker starts the pass without a lease of its own; the
listeners of other processes name such a run to none of their workers (none could lease it
while that lease lives), and wake nobody for a notification that hands only such runs. Such a
transaction, durable (an event sent), commits without waiting for its WAL's flush and then waits
for it (``Statements.flush_after``: a transaction of its own committed after it, with
``synchronous_commit`` on) before it is acknowledged: its notification, sent at its commit, goes
out a disk flush earlier (1-2 ms). Meanwhile other sessions may act on its rows (a worker may run
the run's first step); if the server crashes then, the transaction is lost with everything
after it in the WAL (a commit made after it, a step's, cannot be on disk without it), and the
sender is told the outcome is unknown (``StoreUnavailable``): a step body may have run for a run
that is gone, as a crash between a step body and its commit runs it again. A notification
without a payload says "look".
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import selectors
import socket
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson
import psycopg

from stepline import _readers
from stepline._reconnects import reconnect_delay
from stepline.store.postgres import _answers
from stepline.store.postgres._database import CLIENT_ENCODING
from stepline.store.postgres._handoffs import (
    HAND_OFF,
    HAND_OFF_ONE,
    HANDING,
    Handed,
    hand_off_params,
    read_payload,
)

CHANNEL = "stepline"
# pg_notify (not NOTIFY): a write that reads nothing, sent as the last part of the statement of
# the writes before it (_statements._merged: a statement less a transaction); "": plain
NOTIFY = "SELECT pg_notify('stepline', %s)"
NOTIFY_TABLE = "\x00notify"  # its write(table=…): no table of the database
MAX_NAMED = 16  # new runs a notification names at most (more: a plain one)
_MAX_PAYLOAD = 4000  # bytes (PostgreSQL's bound is 8,000)
_LOOP_CHECK = 1.0  # seconds between two looks at whether the reading loop closed
_HAND_OFFS = (HAND_OFF, HAND_OFF_ONE)

log = logging.getLogger("stepline.store.postgres")


def notify(new_runs: Mapping[str, str], made_other_work: bool) -> list[tuple[str, Any, str | None]]:
    """The statement (query, parameters, its ``write`` table) that wakes the workers of a
    transaction that created ``new_runs`` (run id: function id; due now, without concurrency
    keys) and, ``made_other_work``, made other work due: naming the runs (a JSON list of
    [function id, run id]) when they are all it made and at most ``MAX_NAMED``, each handed
    to an idle worker that takes it (``_handoffs.HAND_OFF``, ``HAND_OFF_ONE`` for one run: a
    statement of its own, its generic plan asked for by the statement before it, ``HANDING``,
    which also makes the commit not wait for its WAL's flush: the caller waits for it after the
    commit), else plain."""
    if not made_other_work and 0 < len(new_runs) <= MAX_NAMED:
        size = _named_size([[fn, run] for run, fn in new_runs.items()])
        if size <= _MAX_PAYLOAD:
            tokens = [secrets.token_hex(8) for _ in new_runs]
            hand_off = HAND_OFF_ONE if len(new_runs) == 1 else HAND_OFF
            return [
                (HANDING, None, None),
                (hand_off, hand_off_params(dict(new_runs), tokens, size), None),
            ]
    return [(NOTIFY, ("",), NOTIFY_TABLE)]


def _named_size(named: list[list[str]]) -> int:
    """The bytes of ``named`` as compact JSON with its non-ASCII characters escaped
    (``json.dumps(named, separators=(",", ":"))``): ``orjson`` when the text is ASCII, the
    usual case (ids), a fifth of the time."""
    text = orjson.dumps(named)
    if text.isascii() and b"\x7f" not in text:  # (orjson writes those as they are)
        return len(text)
    return len(json.dumps(named, separators=(",", ":")).encode())


def names_runs(statements: list[tuple[str, Any, str | None]]) -> bool:
    """Whether ``statements`` (``notify``'s) name new runs (and may hand them over)."""
    return statements[-1][0] in _HAND_OFFS


def named_runs(payload: str) -> list[tuple[str, str]]:
    """The (function id, run id) a notification's payload names (none: look for any work)."""
    return read_payload(payload)[0]


class WakeupListener:
    """Calls ``on_wake`` for each notification on ``stepline``, with the runs it names
    (``named_runs``; empty: look for any due work).

    Started in a running event loop (a worker's: ``Engine.add_waker``), the notifications are
    read in that loop (``add_reader`` on the listening connection's socket) and ``on_wake`` is
    called there: a notification reaches the worker without a thread's wake-up and a hop to
    the loop (the listening thread → the loop: 0.10-0.18 ms of an event's way to its first
    step, and one more process to schedule on busy cores). Its thread connects, listens and
    reconnects (a blocking connect never runs in the loop), hands the connection to the loop
    and sleeps until the loop gives it back (the session ended: it connects again), ``stop()``,
    or the loop stopped or closed (looked at once a second: the thread then takes the reading
    back and reads the notifications itself from then on, so that workers of the engine in
    other loops still hear them). While that loop runs but is blocked (a long synchronous call
    in it), the notifications wait for it, those of the engine's workers in other loops too.
    Started without a running loop (or in one that cannot wait on a socket), its thread reads
    them and calls ``on_wake`` there. Either way nothing polls: the thread sleeps until a socket
    has something to read (a 50 ms ``notifies(timeout=…)`` loop cost it ~14 ms of CPU a
    second)."""

    def __init__(
        self,
        url: str,
        on_wake: Callable[[Sequence[tuple[str, str]]], None],
        on_handed: Callable[[list[Handed]], Collection[str]] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = url
        # libpq's, beside the URL's (``_database.link_options``): a listening connection whose
        # link went silent is ended by its keepalives, and the listener connects again; the
        # deadline of its round trips (``_answers.connect``): a LISTEN unanswered is cut (it
        # connects again), while it waits for notifications it owes nothing; and the store's
        # ``connect_timeout`` (without it, libpq's none: a connect to an unreachable machine
        # waited on the OS's SYN retries, ~130 s, without wake-ups meanwhile)
        self._options = dict(options or {})
        self._on_wake = on_wake
        # called first with the leases a notification hands over; returns the runs leased to
        # workers it does not keep leases for (another process's)
        self._on_handed = on_handed
        self._stopped = threading.Event()
        # stop() writes a byte to one end; the listening thread waits on the other too
        self._stop_w, self._stop_r = socket.socketpair()
        # the loop writes a byte to one end when it gives the connection back
        self._back_w, self._back_r = socket.socketpair()
        # attach() writes a byte to one end: a running loop may read the connection again
        self._loop_w, self._loop_r = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="stepline-pg-listen", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop to read in, if any
        # guards the hand-over: the loop reads the connection only while it is handed to it
        # (re-entrant: on_wake, called in the loop under it, may stop the listener)
        self._lock = threading.RLock()
        self._handed: object | None = None  # the connection handed to the loop, if any
        self._reading: tuple[asyncio.AbstractEventLoop, int] | None = None  # (loop, socket)
        self._watching: Any = None  # the socket read in the loop, polled (_readers.ended)
        self._lost: psycopg.Error | OSError | None = None  # why the loop gave it back
        self.notifications = 0  # received so far (tests read it)
        self._encoding = "utf-8"  # the listening connection's (CLIENT_ENCODING's codec)

    def start(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def attach(self) -> None:
        """(In a running event loop) Read the notifications in this loop from now on if no
        loop reads them (the one they were read in stopped or closed, and this thread took the
        reading back: ``_take_back``; or the listener started without a loop). Else nothing."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is not None or self._stopped.is_set():
                return
            self._loop = loop
        try:
            self._loop_w.send(b"\0")  # the thread's _listen hands the connection to it
        except OSError:  # stopped meanwhile: its sockets are closed
            pass

    def stop(self) -> None:
        self._stopped.set()
        self._detach()  # the loop reads the connection no more: the thread may close it
        try:
            self._stop_w.send(b"\0")
        except OSError:  # stopped before: the sockets are closed
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            for end in (self._stop_w, self._stop_r, self._back_w, self._back_r):
                end.close()
            self._loop_w.close()
            self._loop_r.close()

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                # UTF-8 as every connection of the store (``_database.CLIENT_ENCODING``): a
                # payload the server builds (a hand-off's names its function and event raw)
                # read in another encoding killed this thread (SQL_ASCII: decoded as ASCII)
                # or the session (a character the session's encoding lacks)
                with _answers.connect(
                    self._url, autocommit=True, client_encoding=CLIENT_ENCODING, **self._options
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # its payloads' codec, read once: ``conn.info`` makes an object and asks
                    # libpq at each access (a notification's way to its pass)
                    self._encoding = conn.info.encoding
                    failures = 0
                    self._on_wake(())  # anything committed while nobody listened
                    # read in the loop, in this thread when it cannot be, and in the loop
                    # again when a running loop attaches (until stopped)
                    while not self._listen_in_loop(conn) and self._listen(conn):
                        pass
            except Exception as exc:  # any: the thread must go on listening
                failures += 1
                delay = reconnect_delay(failures)  # the workers' backoff after a store failure
                if not isinstance(exc, psycopg.Error | OSError):  # OSError: its socket's
                    # a bug (a callback's, a payload's): said, and the thread listens again
                    # rather than leaving the workers to their poll for good
                    log.exception("wake-ups: the listener failed; listening again")
                elif failures == 1:
                    log.warning("wake-ups: lost the listening connection (%s); reconnecting", exc)
                self._stopped.wait(delay)

    def _listen(self, conn: psycopg.Connection[tuple[object, ...]]) -> bool:
        """Read the notifications as they come, until ``stop()`` (False) or a running loop
        attached (True: hand it the connection). The connection is this thread's alone
        meanwhile: its socket is read here (libpq's ``consume_input``, which raises
        ``OperationalError`` when the server ended the connection: ``_run`` reconnects). Any
        notification psycopg read while ``LISTEN`` ran is covered by the look ``_run`` asks for
        right after it."""
        with selectors.DefaultSelector() as selector:
            selector.register(conn.pgconn.socket, selectors.EVENT_READ)
            selector.register(self._stop_r, selectors.EVENT_READ)
            selector.register(self._loop_r, selectors.EVENT_READ)
            while not self._stopped.is_set():
                ready = {key.fileobj for key, _ in selector.select()}
                if self._stopped.is_set():
                    return False
                self._read(conn)
                if self._loop_r in ready:
                    self._loop_r.recv(64)
                    if self._loop is not None:  # else an attach the loop since gave back
                        return True
        return False

    def _read(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Call ``on_wake`` for each notification that came (``stop()``: no more)."""
        pgconn, encoding = conn.pgconn, self._encoding
        pgconn.consume_input()
        while (notification := pgconn.notifies()) is not None:
            self.notifications += 1
            named, handed = read_payload(notification.extra.decode(encoding))
            if handed and self._on_handed is not None:
                elsewhere = self._on_handed(handed)
                # a run leased to another process's worker is no work for this one's (a lease
                # by name cannot take it; a full look would not either, while its lease lives):
                # not named to them, and a notification of such runs only wakes nobody
                if elsewhere:
                    named = [run for run in named if run[1] not in elsewhere]
            if named or not handed:  # (an empty list alone: a plain wake-up)
                self._on_wake(named)
            if self._stopped.is_set():
                return

    def _listen_in_loop(self, conn: psycopg.Connection[tuple[object, ...]]) -> bool:
        """Have the loop read ``conn`` until ``stop()`` (True) or it gives it back: the
        session ended (its error raised here: ``_run`` reconnects). False, at once or once
        the loop is seen not running (stopped or closed): this thread reads it (no loop, or
        one without ``add_reader``)."""
        loop = self._loop
        if loop is None:
            return False
        with self._lock:
            self._handed = conn
        try:
            loop.call_soon_threadsafe(self._attach, conn)
        except RuntimeError:  # closed
            self._loop = None
            return False
        with selectors.DefaultSelector() as selector:
            selector.register(self._stop_r, selectors.EVENT_READ)
            selector.register(self._back_r, selectors.EVENT_READ)
            while not self._stopped.is_set():
                if selector.select(_LOOP_CHECK):
                    if self._stopped.is_set():
                        break
                    self._back_r.recv(1)
                    lost, self._lost = self._lost, None
                    if lost is not None:
                        raise lost
                    return False  # the loop cannot wait on a socket (self._loop is None)
                if not loop.is_running():  # stopped or closed: nothing is read there now
                    self._take_back(loop)
                    return False
        return True

    def _take_back(self, loop: asyncio.AbstractEventLoop) -> None:
        """(In the thread) the loop reads the connection no more, nor will (not even a call
        to ``_attach`` or ``_readable`` it still has queued): this thread reads it from now on.
        The loop is not running (it was not a moment ago): its reader is removed from here."""
        with self._lock:
            self._handed = None
            reading, self._reading = self._reading, None
            self._loop = None
            if reading is not None and not loop.is_closed():
                loop.remove_reader(reading[1])

    def _attach(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """(In the loop) read ``conn``'s notifications here, as they come."""
        loop = asyncio.get_running_loop()
        with self._lock:
            # taken back meanwhile, or stopped: the thread may have closed the connection
            # (its socket is then unreadable) before this call the loop had queued ran
            if self._stopped.is_set() or self._handed is not conn or conn.closed:
                return
            fileno = conn.pgconn.socket
            try:
                loop.add_reader(fileno, self._readable, conn)
            except NotImplementedError:  # a loop without add_reader: the thread reads
                self._loop = None
                self._back_w.send(b"\0")
                return
            self._reading = (loop, fileno)
            self._watching = _readers.poller(fileno) if _readers.drops_readers(loop) else None

    def _readable(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """(In the loop) the connection's socket has something to read. On a loop that drops
        a reader of a socket in error (uvloop), registered again while the socket has ended
        (``_readers``): a read of the server's last message, the reset after it unread, left
        the listener deaf for good."""
        with self._lock:
            reading = self._reading
            if self._stopped.is_set() or self._handed is not conn or reading is None:
                return  # taken back by the thread (a call the loop had queued)
            try:
                self._read(conn)
            except (psycopg.Error, OSError) as exc:  # the session ended: the thread reconnects
                self._detach()
                self._handed = None
                self._lost = exc
                self._back_w.send(b"\0")
                return
            if self._watching is not None and self._reading is reading:
                _readers.keep_reading(reading[0], reading[1], self._watching, self._readable, conn)

    def _detach(self) -> None:
        """Make sure no loop reads the connection any more (from any thread): at once in the
        loop's own thread or a loop not running, else in the loop, waited for."""
        with self._lock:
            reading = self._reading
            if reading is None:
                return
            loop, fileno = reading
            try:
                current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                current = None
            if loop is current or not loop.is_running():
                self._reading = None
                if not loop.is_closed():
                    loop.remove_reader(fileno)
                return
            done = threading.Event()
            loop.call_soon_threadsafe(self._detached, done)
        done.wait(5)

    def _detached(self, done: threading.Event) -> None:
        self._detach()
        done.set()
