"""Durations (``"1h30m"``, seconds, ``timedelta``) and points in time, parsed and formatted.

Pure functions, used for sleeps, timeouts, flow-control periods and ``RetryAfterError``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from stepline.errors import DurationError

__all__ = ["format_duration", "parse_duration", "parse_instant", "to_seconds"]

_MICROS = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_PART = r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w)"
_DURATION = re.compile(rf"\s*(?:{_PART}\s*)+")
_PARTS = re.compile(_PART)
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_ACCEPTED = (
    "expected a non-negative duration such as '30s', '5m', '1h30m', '1h 30m', '2d', '1w' or "
    "'500ms' (units: ms, s, m, h, d, w), a number of seconds, or a timedelta"
)
_ACCEPTED_INSTANT = (
    "expected an ISO-8601 date-time such as '2024-05-01T12:00:00Z' (no offset means UTC), "
    "a datetime, or a number of seconds since the epoch"
)


# the longest duration accepted: a due time must stay a date (Python's datetime ends with year
# 9999, and every view of a run shows its times as dates); a sleep of "100000000d" (273,790
# years) was accepted, and reading its times failed ("year 275817 is out of range")
MAX_DURATION = timedelta(days=365_250)
_TOO_LARGE = "too large: at most 1,000 years"


def _invalid(value: object, why: str = "") -> DurationError:
    detail = f" ({why})" if why else ""
    return DurationError(f"invalid duration {value!r}{detail}: {_ACCEPTED}")


def _parse_text(value: str) -> timedelta:
    if _DURATION.fullmatch(value) is None:
        text = value.strip()
        if not text:
            raise _invalid(value, "empty")
        if text.startswith("-"):
            raise _invalid(value, "negative")
        if _NUMBER.fullmatch(text):
            raise _invalid(value, "a unit is required")
        raise _invalid(value)
    micros = Decimal(0)
    try:
        for number, unit in _PARTS.findall(value):
            micros += Decimal(number) * _MICROS[unit]
        parsed = timedelta(microseconds=int(micros.to_integral_value()))
    except (OverflowError, InvalidOperation):
        raise _invalid(value, _TOO_LARGE) from None
    if parsed > MAX_DURATION:
        raise _invalid(value, _TOO_LARGE)
    return parsed


def parse_duration(value: str | timedelta | int | float) -> timedelta:
    """Parse a duration: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1h 30m"``, ``"2d"``, ``"1w"``,
    ``"500ms"`` (decimals such as ``"1.5h"`` too), a number of seconds, or a ``timedelta``.

    Raises ``DurationError`` (quoting the input and listing what is accepted) for a negative,
    empty, unknown-unit or malformed value, or one over ``MAX_DURATION`` (1,000 years).
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise _invalid(value, "negative")
        if value > MAX_DURATION:
            raise _invalid(value, _TOO_LARGE)
        return value
    if isinstance(value, bool):
        raise _invalid(value, "a bool is not a duration")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):  # an int of any size is
            raise _invalid(value, "not finite")
        if value < 0:
            raise _invalid(value, "negative")
        if value > MAX_DURATION.total_seconds():
            raise _invalid(value, _TOO_LARGE)
        return timedelta(seconds=value)
    if isinstance(value, str):
        return _parse_text(value)
    raise _invalid(value, f"unsupported type {type(value).__name__}")


def to_seconds(value: str | timedelta | int | float) -> float:
    """The duration ``value`` (as accepted by :func:`parse_duration`) in seconds."""
    return parse_duration(value).total_seconds()


def parse_instant(value: datetime | str | int | float) -> datetime:
    """Parse a point in time into an aware UTC ``datetime``.

    Accepts a ``datetime`` (naive means UTC), an ISO-8601 string (``Z`` or an offset; none means
    UTC) or a number of seconds since the epoch. Raises ``DurationError`` otherwise.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        raise DurationError(f"invalid time {value!r}: {_ACCEPTED_INSTANT}")
    elif isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise DurationError(f"invalid time {value!r}: {_ACCEPTED_INSTANT}") from None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DurationError(f"invalid time {value!r}: {_ACCEPTED_INSTANT}") from None
    else:
        raise DurationError(f"invalid time {value!r}: {_ACCEPTED_INSTANT}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise DurationError(f"invalid time {value!r}: out of range") from None


def _fraction(whole: int, part: int, digits: int) -> str:
    tail = f"{part:0{digits}d}".rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)


def format_duration(seconds: float) -> str:
    """Format seconds for display: ``"1h30m"``, ``"2d"``, ``"1m1.5s"``, ``"250ms"``, ``"0s"``.

    Precision is one microsecond (exact for durations under about a century, where a float of
    seconds still holds every microsecond); the output is accepted by :func:`parse_duration`
    (for non-negative values).
    """
    if not math.isfinite(seconds):
        return str(seconds)
    micros = round(seconds * 1_000_000)
    sign = "-" if micros < 0 else ""
    rest = abs(micros)
    parts: list[str] = []
    for unit in ("d", "h", "m"):
        count, rest = divmod(rest, _MICROS[unit])
        if count:
            parts.append(f"{count}{unit}")
    if rest >= _MICROS["s"]:
        parts.append(_fraction(*divmod(rest, _MICROS["s"]), digits=6) + "s")
    elif rest:
        parts.append(_fraction(*divmod(rest, _MICROS["ms"]), digits=3) + "ms")
    return sign + ("".join(parts) or "0s")
