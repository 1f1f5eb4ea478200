"""Retry timing: exponential backoff with jitter, and ``RetryAfterError`` deadlines."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from stepline.durations import parse_duration
from stepline.errors import DurationError, RetryAfterError

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 3600.0


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` is the 0-based attempt
    that just failed): ``base * 2**attempt`` capped at one hour, then jittered to between half
    and all of it, so retries of many runs spread out: attempt 0 waits 1 to 2 s, attempt 1
    2 to 4 s, attempt 2 4 to 8 s."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (2.0 ** min(attempt, 30)))
    return ceiling / 2 + (rng or random).random() * ceiling / 2


def retry_after_time(error: RetryAfterError, now: float, attempt: int = 0) -> float:
    """The epoch time a ``RetryAfterError`` asks to retry at (never before ``now``); an
    unreadable string falls back to the backoff for ``attempt``."""
    value = error.retry_after
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return now + float(text)
        try:
            return now + parse_duration(text).total_seconds()
        except DurationError:
            pass
        try:
            return max(now, parsedate_to_datetime(text).timestamp())
        except (TypeError, ValueError):
            return now + backoff_delay(attempt)
    if isinstance(value, datetime):
        at = value.timestamp()
    elif isinstance(value, timedelta):
        at = now + value.total_seconds()
    else:
        at = now + float(value)
    return max(now, at)
