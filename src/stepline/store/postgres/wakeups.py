"""Wake-ups across processes: ``LISTEN stepline`` on a connection of its own.

A write transaction that may have made work due (a new run, a woken or rescheduled run, a
released lease, a run that ended and freed a concurrency slot, a debounce or batch, a resumed
function, changed schedules) sends ``NOTIFY stepline`` inside itself, so the notification is
delivered only if the transaction commits, and after it. Each process that runs workers holds one
listening connection (a daemon thread) and wakes its workers on every notification; they then
look for due work at once instead of at their next poll. The workers' bounded poll stays as the
safety net: a notification lost while the listener reconnects costs at most one poll interval
(the listener also wakes the workers each time it has reconnected).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

CHANNEL = "stepline"
NOTIFY = "NOTIFY stepline"
_CHECK_STOP = 0.05  # seconds between looks at the stop flag (how long stop() may wait)
_RETRY = (0.1, 0.5, 1.0, 2.0, 5.0)  # seconds between reconnection attempts

log = logging.getLogger("stepline.store.postgres")


class WakeupListener:
    """Calls ``on_wake`` (from its own thread) for each notification on ``stepline``."""

    def __init__(self, url: str, on_wake: Callable[[], None]) -> None:
        self._url = url
        self._on_wake = on_wake
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stepline-pg-listen", daemon=True)
        self.notifications = 0  # received so far (tests read it)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self._on_wake()  # anything committed while nobody listened
                    self._listen(conn)
            except psycopg.Error as exc:
                delay = _RETRY[min(failures, len(_RETRY) - 1)]
                failures += 1
                if failures == 1:
                    log.warning("wake-ups: lost the listening connection (%s); reconnecting", exc)
                self._stopped.wait(delay)

    def _listen(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        while not self._stopped.is_set():
            for _ in conn.notifies(timeout=_CHECK_STOP):
                self.notifications += 1
                self._on_wake()
                if self._stopped.is_set():
                    return
