"""How long a failed step (or function) waits before its next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from stepline.durations import parse_duration
from stepline.errors import ConfigError, DurationError

DurationLike = str | timedelta | int | float


@dataclass(frozen=True)
class RetryBackoff:
    """The wait before retry number *n + 1*, after attempt *n* (0-based) failed:
    ``schedule[n]`` (the last entry repeats) plus a random ``0 … jitter``, so the retries of
    many runs spread out. Durations are ``"15s"``, ``timedelta`` or seconds.

    ``RetryBackoff.INNGEST`` is Inngest's table (15 s, 30 s, 1 m, 2 m, 5 m, 10 m, 20 m, 40 m,
    1 h, 2 h, plus up to 30 s): the default of an ``App``. ``RetryBackoff.FAST`` (1 s, 2 s, 4 s
    … doubling up to 1 h, plus up to 1 s) is what ``stepline dev`` and ``stepline.testing``'s
    ``TestEngine`` use unless the app sets ``App(retry_backoff=...)``.
    """

    schedule: tuple[DurationLike, ...]
    jitter: DurationLike = 0
    schedule_seconds: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)
    jitter_seconds: float = field(default=0.0, init=False, repr=False, compare=False)

    INNGEST: ClassVar[RetryBackoff]
    FAST: ClassVar[RetryBackoff]

    def __post_init__(self) -> None:
        if isinstance(self.schedule, str | bytes) or not self.schedule:
            raise ConfigError("RetryBackoff.schedule must be a non-empty sequence of durations")
        seconds = []
        for entry in self.schedule:
            value = _seconds("schedule", entry)
            if value <= 0 or value > 7 * 86400:
                raise ConfigError(
                    f"RetryBackoff.schedule: each delay must be more than 0 and at most 7 days, "
                    f"got {entry!r}"
                )
            seconds.append(value)
        jitter = _seconds("jitter", self.jitter)
        if jitter < 0:
            raise ConfigError(f"RetryBackoff.jitter must not be negative, got {self.jitter!r}")
        object.__setattr__(self, "schedule", tuple(self.schedule))
        object.__setattr__(self, "schedule_seconds", tuple(seconds))
        object.__setattr__(self, "jitter_seconds", jitter)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt ``attempt`` (0-based) failed."""
        table = self.schedule_seconds
        base = table[min(max(attempt, 0), len(table) - 1)]
        return base + (rng or random).random() * self.jitter_seconds


def _seconds(name: str, value: DurationLike) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration(value).total_seconds()
    except DurationError as exc:
        raise ConfigError(f"RetryBackoff.{name}: {exc}") from exc


# Inngest's server: pkg/backoff/backoff.go (BackoffTable, up to 30 s of jitter)
RetryBackoff.INNGEST = RetryBackoff(
    ("15s", "30s", "1m", "2m", "5m", "10m", "20m", "40m", "1h", "2h"), jitter="30s"
)
RetryBackoff.FAST = RetryBackoff((*(float(2**n) for n in range(12)), 3600.0), jitter=1)
