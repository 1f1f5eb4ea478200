"""Cron triggers, as Inngest has them: parsing, next tick, and the catch-up policy.

A cron trigger is a 5-field cron string (``minute hour day-of-month month day-of-week``) with an
optional ``TZ=Area/City `` or ``CRON_TZ=Area/City `` prefix, or one of the macros ``@hourly``,
``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``. Without a prefix
the schedule runs in UTC.

Field syntax is what ``cronsim`` accepts: ``*``, numbers, ranges ``1-5``, steps ``*/15`` and
``10-40/10`` (``5/15`` means ``5-59/15``), lists ``1,15``, month names ``JAN``-``DEC`` and day
names ``SUN``-``SAT`` (any case), day-of-week ``0`` or ``7`` for Sunday, ``L`` (last day) and
``LW`` (last weekday) in day-of-month, ``5L`` (last Friday) and ``MON#2`` (second Monday) in
day-of-week. As in Vixie/Debian cron, when both day fields are restricted (neither starts with
``*``) a day matches if *either* matches; otherwise both must match.

Daylight saving time follows Debian cron, as ``cronsim`` implements it. For a schedule whose
minute and hour fields are both fixed (neither starts with ``*``, e.g. ``30 2 * * *``), a local
time skipped by a spring-forward fires once at the next valid time (03:00), and a local time
repeated by a fall-back fires once, at its first occurrence. Schedules whose minute or hour field
starts with ``*`` (``0 * * * *``, ``*/15 * * * *``) run on elapsed time instead: an hourly job
ticks 23 times on a spring-forward day and 25 times on a fall-back day.

Everything here is pure: no clock reads, no I/O. Callers pass aware datetimes in (any timezone)
and get aware UTC datetimes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from stepline.errors import CronError

__all__ = ["CronSchedule", "catch_up_tick", "parse_cron"]

_TZ_PREFIXES = ("TZ=", "CRON_TZ=")

_MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_LAYOUT = "minute hour day-of-month month day-of-week"
_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELD_ALLOWED = (
    "a number 0-59",
    "a number 0-23",
    "a number 1-31, L (last day) or LW (last weekday)",
    "a number 1-12 or a month name JAN-DEC",
    "a number 0-7 (0 and 7 are Sunday), a day name SUN-SAT, 5L (last Friday) or MON#2",
)
_DOM, _MONTH, _DOW = 2, 3, 4

# A fixed, UTC reference instant for validating fields with cronsim (construction only).
_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)
# next_after skips cronsim results that are not after the instant (a repeated fall-back hour can
# yield a few); this bounds that loop far above anything a real timezone can produce.
_MAX_SKIPPED = 100_000
_DIGITS = frozenset("0123456789")


def _fail(text: str, reason: str) -> CronError:
    return CronError(f"invalid cron expression {text!r}: {reason}")


def _is_uint(value: str) -> bool:
    return value != "" and all(ch in _DIGITS for ch in value)


def _cronsim_accepts(fields: str) -> bool:
    try:
        CronSim(fields, _REFERENCE)
    except CronSimError:
        return False
    return True


def _field_accepts(index: int, value: str) -> bool:
    """Whether cronsim accepts ``value`` as field ``index`` with every other field ``*``."""
    if value == "" or any(ch.isspace() for ch in value):
        return False
    parts = ["*"] * 5
    parts[index] = value
    return _cronsim_accepts(" ".join(parts))


def _explain_value(index: int, value: str) -> str:
    low, high = _FIELD_RANGES[index]
    if value == "":
        return "a value is missing"
    if _is_uint(value) and not low <= int(value) <= high:
        return f"{value} is out of range {low}-{high}"
    if index == _DOW and "#" in value:
        day, _, nth = value.partition("#")
        if not _is_uint(nth) or not 1 <= int(nth) <= 5:
            return f"in {value!r} the occurrence after '#' must be 1-5"
        if not _field_accepts(index, day):
            return _explain_value(index, day)
    if index == _DOW and value.upper().endswith("L") and value.upper() != "L":
        return f"{value!r} is not valid: write a day number 0-7 then L (5L: the last Friday)"
    return f"{value!r} is not {_FIELD_ALLOWED[index]}"


def _explain_term(index: int, term: str) -> str:
    """Why cronsim rejects one comma-separated term of field ``index``."""
    if term == "":
        return "empty item in the list"
    if "/" in term:
        base, _, step = term.partition("/")
        if not _is_uint(step) or int(step) == 0:
            return f"the step {step!r} in {term!r} must be a whole number of at least 1"
        if not _field_accepts(index, base):
            return _explain_term(index, base)
        return f"{term!r} is not a valid step"
    if "-" in term:
        start, _, end = term.partition("-")
        if "-" in end:
            return f"{term!r} is not a valid range (write start-end)"
        for value in (start, end):
            if not _field_accepts(index, value):
                return _explain_value(index, value)
        return f"the range {term!r} runs backwards (start after end)"
    return _explain_value(index, term)


def _validate_fields(text: str, fields: str) -> None:
    """Raise ``CronError`` (quoting ``text``) unless ``fields`` is a valid 5-field cron spec."""
    parts = fields.split()
    if len(parts) != 5:
        if not parts:
            raise _fail(text, f"no schedule; expected 5 fields ({_FIELD_LAYOUT})")
        if len(parts) == 6:
            raise _fail(
                text,
                "6 fields given, but cron with a seconds field is not supported; "
                f"use 5 fields ({_FIELD_LAYOUT})",
            )
        raise _fail(text, f"expected 5 fields ({_FIELD_LAYOUT}), got {len(parts)}")
    for index, part in enumerate(parts):
        if _field_accepts(index, part):
            continue
        reason = next(
            (_explain_term(index, t) for t in part.split(",") if not _field_accepts(index, t)),
            f"{part!r} is not {_FIELD_ALLOWED[index]}",
        )
        raise _fail(text, f"{_FIELD_NAMES[index]} field {part!r}: {reason}")
    if not _cronsim_accepts(fields):
        # Every field is valid alone: cronsim rejects a day-of-month no chosen month has.
        raise _fail(
            text,
            f"day-of-month {parts[_DOM]!r} never occurs in month {parts[_MONTH]!r}, "
            "so the schedule would never fire",
        )


def _resolve_timezone(text: str, name: str) -> tzinfo:
    if name == "UTC":
        # cronsim's fast path is keyed on datetime.timezone.utc itself.
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _fail(
            text, f"unknown timezone {name!r} (use an IANA name such as 'Europe/Paris')"
        ) from None


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron trigger. Build one with :func:`parse_cron`.

    ``expression`` is the text as given, ``timezone`` the IANA name the schedule runs in
    (``"UTC"`` by default), ``fields`` the 5-field part (a macro is expanded, e.g. ``@daily`` has
    ``"0 0 * * *"``). Constructing one directly validates ``timezone`` and ``fields`` too.
    """

    expression: str
    timezone: str
    fields: str
    _tzinfo: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate_fields(self.expression, self.fields)
        object.__setattr__(self, "_tzinfo", _resolve_timezone(self.expression, self.timezone))

    def __str__(self) -> str:
        return self.expression

    def next_after(self, instant: datetime) -> datetime:
        """Return the first tick strictly after ``instant``, as an aware UTC datetime.

        ``instant`` must be timezone-aware (any timezone). Raises ``CronError`` if the schedule
        has no tick in the 50 years after ``instant`` (cronsim's search horizon).
        """
        _require_aware(instant, "instant")
        ticks = CronSim(self.fields, instant.astimezone(self._tzinfo))
        for _ in range(_MAX_SKIPPED):
            try:
                candidate = next(ticks).astimezone(UTC)
            except StopIteration:
                raise CronError(
                    f"cron expression {self.expression!r} has no tick in the 50 years after "
                    f"{instant.isoformat()}"
                ) from None
            # cronsim walks wall-clock time for fixed-time schedules: from inside a repeated
            # (fall-back) hour it can yield that hour's first occurrence, already in the past.
            if candidate > instant:
                return candidate
        raise RuntimeError(f"cron expression {self.expression!r}: no tick after {instant}")

    def ticks_between(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        """Return the ticks in ``(start, end]``, oldest first, as aware UTC datetimes.

        At most ``limit`` ticks are returned (the earliest ones). Both bounds must be aware.
        """
        _require_aware(start, "start")
        _require_aware(end, "end")
        if limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        ticks: list[datetime] = []
        cursor = start
        while len(ticks) < limit:
            tick = self.next_after(cursor)
            if tick > end:
                break
            ticks.append(tick)
            cursor = tick
        return ticks


def parse_cron(text: str) -> CronSchedule:
    """Parse a cron trigger: 5 fields or a macro, with an optional ``TZ=``/``CRON_TZ=`` prefix.

    Examples: ``"0 */6 * * *"``, ``"TZ=Europe/Paris 0 12 * * FRI"``, ``"@daily"``. Raises
    ``CronError`` quoting ``text`` and naming what is wrong: the field and value, an unknown
    timezone, a 6-field (seconds) expression, an unknown macro, or an empty string.
    """
    if not isinstance(text, str):
        raise CronError(f"a cron expression must be a string, got {type(text).__name__}")
    body = text.strip()
    if not body:
        raise _fail(text, f"empty; expected 5 fields ({_FIELD_LAYOUT}) or a macro like @daily")
    timezone = "UTC"
    head, *rest = body.split(None, 1)
    for prefix in _TZ_PREFIXES:
        if head.upper().startswith(prefix):
            timezone = head[len(prefix) :]
            if not timezone:
                raise _fail(text, f"{head!r} names no timezone")
            body = rest[0] if rest else ""
            if not body:
                raise _fail(text, f"no schedule after {head!r}")
            break
    if body.startswith("@"):
        parts = body.split()
        macro = parts[0].lower()
        if macro not in _MACROS:
            known = ", ".join(_MACROS)
            raise _fail(text, f"unknown macro {parts[0]!r} (supported: {known})")
        if len(parts) > 1:
            raise _fail(text, f"unexpected text after {parts[0]!r}")
        fields = _MACROS[macro]
    else:
        fields = " ".join(body.split())
    return CronSchedule(expression=text, timezone=timezone, fields=fields)


def catch_up_tick(
    schedule: CronSchedule, last_fired: datetime | None, now: datetime
) -> datetime | None:
    """Return the one missed tick to run now, or ``None``: missed ticks are not replayed in bulk.

    ``last_fired`` is the last tick that fired (``None`` for a new schedule, which starts from
    ``now`` and so has missed nothing). The result is the most recent tick in
    ``(last_fired, now]``, to be run once; older missed ticks are dropped. Both datetimes must be
    aware; the result is an aware UTC datetime.
    """
    _require_aware(now, "now")
    if last_fired is None:
        return None
    _require_aware(last_fired, "last_fired")
    if last_fired >= now:
        return None
    first = schedule.next_after(last_fired)
    if first > now:
        return None
    # Bisect for the latest tick <= now without walking every missed tick (a minutely job down
    # for a month missed ~43k): keep next_after(low) <= now < next_after(high), which holds at
    # the start since next_after(last_fired) == first <= now and next_after(now) > now.
    low, high = last_fired, now
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if schedule.next_after(middle) <= now:
            low = middle
        else:
            high = middle
    tick = schedule.next_after(low)
    # Ticks are at least a minute apart, so this finds none; it only guards the bisection.
    while (following := schedule.next_after(tick)) <= now:
        tick = following
    return tick
