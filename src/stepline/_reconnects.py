"""How long to wait before the next attempt to reach the store after a failure: the workers'
backoff (``engine._outage``) and the PostgreSQL wake-up listener's between two reconnections
(``store.postgres.wakeups``)."""

from __future__ import annotations

import random

BACKOFF_FIRST = 0.1  # real seconds before the first retry after the store failed
BACKOFF_MAX = 5.0


def reconnect_delay(failures: int) -> float:
    """Real seconds to wait after ``failures`` failed attempts in a row (1: the first):
    exponential from ``BACKOFF_FIRST``, capped at ``BACKOFF_MAX``, jittered down to half of it
    (processes that lost the server together do not all come back at once)."""
    exponent = min(failures, 16) - 1
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** max(0, exponent)) * random.uniform(0.5, 1)
