"""The generic cell rate algorithm (GCRA), as Inngest uses it for throttle and rate limit.

Pure arithmetic over one stored value per bucket, the theoretical arrival time (``tat``).
``limit`` admissions per ``period`` are spaced ``period / limit`` apart; ``capacity`` of them may
happen at once (a burst). Stores call these inside the transaction that admits a run, so several
processes share one bucket exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GcraSpec:
    """One bucket: ``limit`` per ``period`` seconds, ``capacity`` admissions at once."""

    bucket: str
    limit: int
    period: float
    capacity: int

    @property
    def interval(self) -> float:
        """Seconds between admissions at the steady rate."""
        return self.period / self.limit

    @property
    def tolerance(self) -> float:
        """How far ahead of now the arrival time may run (the burst allowance)."""
        return (self.capacity - 1) * self.interval


def admit_or_reject(spec: GcraSpec, tat: float | None, now: float) -> tuple[bool, float | None]:
    """Rate limiting: admit now or not at all. Returns (admitted, new tat to store)."""
    current = now if tat is None else max(tat, now)
    if current - now > spec.tolerance + 1e-9:
        return False, tat
    return True, current + spec.interval


def schedule(spec: GcraSpec, tat: float | None, now: float) -> tuple[float, float]:
    """Throttling: the time this admission may start (now or later, first come first served)
    and the new tat to store."""
    current = now if tat is None else max(tat, now)
    start = max(now, current - spec.tolerance)
    return start, current + spec.interval
