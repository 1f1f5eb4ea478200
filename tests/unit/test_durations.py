"""Durations and instants: parsing, rejection messages, formatting, format/parse round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepline.durations import format_duration, parse_duration, parse_instant, to_seconds
from stepline.errors import ConfigError, DurationError

# --- parse_duration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        (" 1h  30m ", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("365250d", timedelta(days=365_250)),  # 1,000 years: the longest
        ("500ms", timedelta(milliseconds=500)),
        ("1m500ms", timedelta(minutes=1, milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        (".5s", timedelta(milliseconds=500)),
        ("0s", timedelta(0)),
        (
            "1w2d3h4m5s6ms",
            timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5, milliseconds=6),
        ),
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        (0, timedelta(0)),
        (timedelta(minutes=3), timedelta(minutes=3)),
    ],
)
def test_parse_duration_accepts(value: str | int | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "negative"),
        (-1, "negative"),
        (-0.5, "negative"),
        (timedelta(seconds=-1), "negative"),
        ("5", "a unit is required"),
        ("5x", ""),
        ("5 sec", ""),
        ("1h30", ""),
        ("h", ""),
        ("1.h", ""),
        ("abc", ""),
        (True, "bool"),
        (float("nan"), "not finite"),
        (float("inf"), "not finite"),
        ("9999999999999999w", "too large"),
        # a due time must stay a date: "100000000d" ended in year 275817 (lead, 18th stop)
        ("100000000d", "at most 1,000 years"),
        ("365251d", "at most 1,000 years"),
        (10**12, "at most 1,000 years"),
        (10**400, "at most 1,000 years"),  # an int beyond a float: was OverflowError
        (timedelta(days=10**6), "at most 1,000 years"),
        (None, "NoneType"),
    ],
)
def test_parse_duration_rejects(value: object, hint: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    message = str(caught.value)
    assert repr(value) in message
    assert hint in message
    assert "'1h30m'" in message  # says what is accepted
    assert isinstance(caught.value, ConfigError)


def test_to_seconds() -> None:
    assert to_seconds("1h30m") == 5400.0
    assert to_seconds("250ms") == 0.25
    assert to_seconds(12) == 12.0
    assert to_seconds(timedelta(minutes=1)) == 60.0
    with pytest.raises(DurationError):
        to_seconds("soon")


# --- parse_instant -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T12:00:00.250-05:30", datetime(2024, 5, 1, 17, 30, 0, 250000, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1_700_000_000.5, datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
        (datetime(2024, 5, 1, 12), datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (
            datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=-4))),
            datetime(2024, 5, 1, 16, tzinfo=UTC),
        ),
    ],
)
def test_parse_instant(value: datetime | str | int | float, expected: datetime) -> None:
    parsed = parse_instant(value)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("value", ["", "tomorrow", "2024-13-01", True, 1e20, float("nan"), None])
def test_parse_instant_rejects(value: object) -> None:
    with pytest.raises(DurationError) as caught:
        parse_instant(value)  # type: ignore[arg-type]
    assert repr(value) in str(caught.value)


# --- format_duration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (0.0005, "0.5ms"),
        (1.5, "1.5s"),
        (30, "30s"),
        (60.25, "1m250ms"),
        (90.25, "1m30.25s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400 * 3 + 1, "3d1s"),
        (-5, "-5s"),
        (float("inf"), "inf"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


# Up to ~100 years a float of seconds still holds every microsecond exactly.
@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=36_500)))
def test_format_then_parse_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value.total_seconds())) == value


@given(st.integers(min_value=0, max_value=10**12))
def test_parse_then_format_is_stable_for_whole_milliseconds(millis: int) -> None:
    text = format_duration(millis / 1000)
    assert format_duration(to_seconds(text)) == text
