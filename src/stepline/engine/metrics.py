"""Counters this process keeps for monitoring (``/metrics``): step attempts and their durations,
events accepted. Process-local, like any Prometheus target: each server or worker process
reports what it did; the store's counts (runs by state, queue depth) come from the database."""

from __future__ import annotations

import bisect
import threading

# seconds: a step's duration from a few milliseconds to minutes
STEP_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0
)  # fmt: skip


class Histogram:
    """Counts of observations per upper bound (cumulated when read), their sum and count."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count one observation."""
        with self._lock:
            self._observe(value)

    def _observe(self, value: float) -> None:
        """``observe`` under ``_lock`` (held by the caller)."""
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> tuple[list[int], float, int]:
        """(cumulative counts per bound then +Inf, sum, count)."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, total, running


class EngineMetrics:
    """What an engine did in this process. Counted from any thread (senders in threads, the
    writer, workers in other loops): every update takes the lock, so none is lost."""

    def __init__(self) -> None:
        self.step_seconds = Histogram(STEP_BUCKETS)
        self._lock = self.step_seconds._lock  # one lock: a step attempt's two counts at once
        self._step_attempts = {"completed": 0, "failed": 0}
        self._events_accepted = 0

    @property
    def events_accepted(self) -> int:
        """Events accepted (committed) by this process."""
        return self._events_accepted

    @property
    def step_attempts(self) -> dict[str, int]:
        """Step attempts ended in this process, by outcome (``completed``, ``failed``)."""
        with self._lock:
            return dict(self._step_attempts)

    def accept_events(self, count: int) -> None:
        """``count`` more events were committed."""
        with self._lock:
            self._events_accepted += count

    def step_attempt(self, duration: float, ok: bool) -> None:
        """A step attempt ended after ``duration`` seconds (``ok``: it returned a value)."""
        histogram = self.step_seconds
        with self._lock:  # Histogram._observe's, inline (an attempt a step)
            histogram._counts[bisect.bisect_left(histogram.bounds, duration)] += 1
            histogram._sum += duration
            self._step_attempts["completed" if ok else "failed"] += 1
