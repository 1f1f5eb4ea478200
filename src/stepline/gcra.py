"""The generic cell rate algorithm (GCRA), as Inngest uses it for throttle and rate limit.

Pure arithmetic over the stored state of a bucket (``Bucket``): the theoretical arrival time
(``tat``) and the time of its last admission (``decided_at``). ``limit`` admissions per
``period`` are spaced ``period / limit`` apart; ``capacity`` of them may happen at once (a
burst). Stores call these inside the transaction that admits a run, so several processes share
one bucket exactly.

Senders decide with their own clocks, and a transaction serialized after another may carry the
earlier ``now`` (read before it waited for the bucket, or on a machine a little behind). GCRA
assumes arrivals in time order: a ``tat`` pushed from a later ``now`` would make the earlier one
look further ahead of the arrival time than it is, and the last admission of a burst would be
refused. So a decision is made at ``max(now, decided_at)``: the admissions then happen in commit
order at non-decreasing times, where GCRA is exact. (A refusal writes nothing: deciding the next
admission at the last admission's time rather than at a later refusal's gives the same answers,
since a bucket that refused at time ``r`` refuses at every earlier time too.)
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


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket's stored state: its theoretical arrival time and when it last admitted (None
    when written by a process that did not record it: decided at the sender's ``now`` then)."""

    tat: float
    decided_at: float | None = None


def decision_time(bucket: Bucket | None, now: float) -> float:
    """The time a decision on ``bucket`` is made at: ``now``, or the bucket's last admission
    when the sender's clock is behind it."""
    if bucket is None or bucket.decided_at is None or bucket.decided_at <= now:
        return now
    return bucket.decided_at


def admit_or_reject(spec: GcraSpec, bucket: Bucket | None, now: float) -> Bucket | None:
    """Rate limiting: admit now or not at all. Returns the bucket to store when admitted, None
    when refused (nothing changes)."""
    at = decision_time(bucket, now)
    current = at if bucket is None else max(bucket.tat, at)
    if current - at > spec.tolerance + 1e-9:
        return None
    return Bucket(current + spec.interval, at)


def schedule(spec: GcraSpec, bucket: Bucket | None, now: float) -> tuple[float | None, Bucket]:
    """Throttling: when this admission may start — None for at once, else a later time (first
    come first served) — and the bucket to store."""
    at = decision_time(bucket, now)
    current = at if bucket is None else max(bucket.tat, at)
    start = current - spec.tolerance
    return (start if start > at else None), Bucket(current + spec.interval, at)
