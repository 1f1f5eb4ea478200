"""A worker's view of its store's health (``StoreOutage``): an outage logged once, its end once,
and how long to back off before the next attempt."""

from __future__ import annotations

import logging
import time

from stepline._reconnects import reconnect_delay
from stepline.errors import StoreUnavailable

log = logging.getLogger("stepline.worker")


class StoreOutage:
    """A worker's view of its store's health: logs an outage once and its end once, and says
    how long to back off before the next attempt."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.since: float | None = None  # time.monotonic() of the first failure, while down
        self.failures = 0  # failed attempts in the current outage
        self.outages = 0  # outages seen (tests read it)

    def failed(self, error: StoreUnavailable) -> None:
        """An operation failed because the store is unavailable."""
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            self.outages += 1
            log.warning(
                "worker %s: %s; retrying with backoff until it recovers", self.worker_id, error
            )
        else:
            log.debug("worker %s: still unavailable: %s", self.worker_id, error)

    def recovered(self) -> None:
        """An operation succeeded: ends the outage, if there was one."""
        if self.since is not None:
            log.warning(
                "worker %s: the store is available again after %.1f s (%d failed attempts)",
                self.worker_id,
                time.monotonic() - self.since,
                self.failures,
            )
            self.since = None
            self.failures = 0

    def delay(self) -> float:
        """Real seconds to wait before the next attempt (exponential, jittered, capped)."""
        return reconnect_delay(self.failures)
