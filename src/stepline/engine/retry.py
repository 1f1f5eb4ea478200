"""Retry timing: the app's ``RetryBackoff``, and ``RetryAfterError`` deadlines."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from stepline._text import is_digits
from stepline.durations import parse_duration
from stepline.errors import DurationError, RetryAfterError
from stepline.sdk.backoff import RetryBackoff

# Inngest's server clamps a retry's delay to these (pkg/consts/consts.go: MinRetryDuration,
# MaxRetryDuration)
RETRY_AFTER_MIN_SECONDS = 1.0
RETRY_AFTER_MAX_SECONDS = 24 * 3600.0


def retry_after_time(
    error: RetryAfterError, now: float, backoff: RetryBackoff, attempt: int = 0
) -> float:
    """The epoch time a ``RetryAfterError`` asks to retry at, its delay clamped to 1 s .. 24 h;
    an unreadable string falls back to ``backoff`` for ``attempt``."""
    value = error.retry_after
    if isinstance(value, str):
        text = value.strip()
        if is_digits(text):
            delay = float(text)
        else:
            try:
                delay = parse_duration(text).total_seconds()
            except DurationError:
                try:
                    delay = parsedate_to_datetime(text).timestamp() - now
                except (TypeError, ValueError):
                    return now + backoff.delay(attempt)
    elif isinstance(value, datetime):
        delay = value.timestamp() - now
    elif isinstance(value, timedelta):
        delay = value.total_seconds()
    else:
        delay = float(value)
    return now + min(RETRY_AFTER_MAX_SECONDS, max(RETRY_AFTER_MIN_SECONDS, delay))
