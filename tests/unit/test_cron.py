"""Cron triggers: parsing, next tick, DST, error messages, and the one-catch-up policy."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepline.cron import CronSchedule, catch_up_tick, parse_cron
from stepline.errors import ConfigError, CronError

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def local_day_ticks(schedule: CronSchedule, day: date, zone: ZoneInfo) -> list[datetime]:
    """The schedule's ticks during one local calendar day, as local datetimes."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    ticks = schedule.ticks_between(start - timedelta(microseconds=1), end)
    return [t.astimezone(zone) for t in ticks if t < end]


# --- parsing -------------------------------------------------------------------------------------


def test_parse_plain_expression_defaults_to_utc() -> None:
    schedule = parse_cron("0 */6 * * *")
    assert schedule.expression == "0 */6 * * *"
    assert schedule.timezone == "UTC"
    assert schedule.fields == "0 */6 * * *"
    assert str(schedule) == "0 */6 * * *"


@pytest.mark.parametrize(
    ("text", "timezone", "fields"),
    [
        ("TZ=Europe/Paris 0 12 * * 5", "Europe/Paris", "0 12 * * 5"),
        ("CRON_TZ=America/New_York 30 2 * * *", "America/New_York", "30 2 * * *"),
        ("  TZ=Asia/Tokyo\t0  9 * *   MON-FRI ", "Asia/Tokyo", "0 9 * * MON-FRI"),
        ("cron_tz=UTC 0 0 * * *", "UTC", "0 0 * * *"),
    ],
)
def test_parse_timezone_prefix(text: str, timezone: str, fields: str) -> None:
    schedule = parse_cron(text)
    assert schedule.expression == text
    assert schedule.timezone == timezone
    assert schedule.fields == fields


def test_schedule_is_a_frozen_value() -> None:
    first = parse_cron("TZ=Europe/Paris 0 12 * * 5")
    second = parse_cron("TZ=Europe/Paris 0 12 * * 5")
    assert first == second
    assert hash(first) == hash(second)
    assert first != parse_cron("0 12 * * 5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.fields = "* * * * *"  # type: ignore[misc]


def test_direct_construction_is_validated() -> None:
    schedule = CronSchedule(expression="x", timezone="Europe/Paris", fields="0 12 * * 5")
    assert schedule.next_after(utc(2026, 1, 1)) == utc(2026, 1, 2, 11)
    with pytest.raises(CronError, match="unknown timezone 'Nowhere/City'"):
        CronSchedule(expression="x", timezone="Nowhere/City", fields="0 12 * * 5")
    with pytest.raises(CronError, match="minute field '99'"):
        CronSchedule(expression="x", timezone="UTC", fields="99 12 * * 5")


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_expand(macro: str, fields: str) -> None:
    assert parse_cron(macro).fields == fields
    assert parse_cron(macro).expression == macro


@pytest.mark.parametrize(
    ("macro", "after", "expected"),
    [
        ("@hourly", utc(2026, 5, 5, 10, 30), utc(2026, 5, 5, 11)),
        ("@daily", utc(2026, 5, 5, 10, 30), utc(2026, 5, 6)),
        ("@midnight", utc(2026, 5, 5), utc(2026, 5, 6)),
        ("@weekly", utc(2026, 5, 5, 10, 30), utc(2026, 5, 10)),  # the next Sunday
        ("@monthly", utc(2026, 5, 5, 10, 30), utc(2026, 6, 1)),
        ("@yearly", utc(2026, 5, 5, 10, 30), utc(2027, 1, 1)),
        ("@annually", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1)),
    ],
)
def test_macros_tick(macro: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(macro).next_after(after) == expected


def test_macro_with_timezone_prefix() -> None:
    schedule = parse_cron("TZ=Europe/Paris @daily")
    assert schedule.timezone == "Europe/Paris"
    assert schedule.next_after(utc(2026, 7, 1, 12)) == utc(2026, 7, 1, 22)  # midnight CEST


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["''", "empty"]),
        ("   ", ["'   '", "empty"]),
        ("* * *", ["'* * *'", "expected 5 fields", "got 3"]),
        ("0 0 * * * * 2026", ["expected 5 fields", "got 7"]),
        ("0 0 0 * * *", ["'0 0 0 * * *'", "seconds", "not supported"]),
        ("61 * * * *", ["'61 * * * *'", "minute field '61'", "out of range 0-59"]),
        ("0 24 * * *", ["hour field '24'", "out of range 0-23"]),
        ("0 0 32 * *", ["day-of-month field '32'", "out of range 1-31"]),
        ("0 0 0 * *", ["day-of-month field '0'", "out of range 1-31"]),
        ("0 0 * 13 *", ["month field '13'", "out of range 1-12"]),
        ("0 0 * * 8", ["day-of-week field '8'", "out of range 0-7"]),
        ("0 0 * * 1-9", ["day-of-week field '1-9'", "9 is out of range 0-7"]),
        ("0,5,75 * * * *", ["minute field '0,5,75'", "75 is out of range"]),
        ("*/0 * * * *", ["minute field '*/0'", "step '0'"]),
        ("10-5 * * * *", ["minute field '10-5'", "backwards"]),
        ("1,,2 * * * *", ["minute field '1,,2'", "empty item"]),
        ("0 0 * FOO *", ["month field 'FOO'", "month name"]),
        ("0 0 * * FUNDAY", ["day-of-week field 'FUNDAY'", "day name"]),
        ("0 0 * * MON#6", ["day-of-week field 'MON#6'", "1-5"]),
        ("x * * * *", ["minute field 'x'", "not a number 0-59"]),
        ("0 0 30 2 *", ["day-of-month '30'", "never"]),
        ("TZ=Mars/Olympus 0 * * * *", ["unknown timezone 'Mars/Olympus'"]),
        ("TZ=Europe 0 * * * *", ["unknown timezone 'Europe'"]),
        ("TZ=../etc/passwd 0 * * * *", ["unknown timezone '../etc/passwd'"]),
        ("TZ= 0 * * * *", ["names no timezone"]),
        ("TZ=Europe/Paris", ["no schedule after 'TZ=Europe/Paris'"]),
        ("@reboot", ["unknown macro '@reboot'", "@daily"]),
        ("@daily 0", ["unexpected text after '@daily'"]),
    ],
)
def test_invalid_expressions_are_explained(text: str, fragments: list[str]) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(text)
    message = str(caught.value)
    assert message.startswith(f"invalid cron expression {text!r}")
    for fragment in fragments:
        assert fragment in message


def test_cron_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_cron("nope")
    with pytest.raises(ValueError, match="5 fields"):
        parse_cron("nope")


# --- next_after and ticks_between ----------------------------------------------------------------


def test_next_after_is_strictly_after() -> None:
    schedule = parse_cron("0 0 * * *")
    assert schedule.next_after(utc(2026, 5, 5)) == utc(2026, 5, 6)
    assert schedule.next_after(utc(2026, 5, 4, 23, 59, 59, 999999)) == utc(2026, 5, 5)


def test_next_after_returns_utc_for_any_input_zone() -> None:
    schedule = parse_cron("*/15 * * * *")
    instant = datetime(2026, 5, 5, 12, 7, tzinfo=ZoneInfo("Asia/Kolkata"))  # 06:37 UTC
    tick = schedule.next_after(instant)
    assert tick == utc(2026, 5, 5, 6, 45)
    assert tick.tzinfo is UTC


def test_naive_datetimes_are_rejected() -> None:
    schedule = parse_cron("* * * * *")
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.ticks_between(utc(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        catch_up_tick(schedule, None, datetime(2026, 1, 1))


def test_every_six_hours() -> None:
    schedule = parse_cron("0 */6 * * *")
    ticks = schedule.ticks_between(utc(2026, 5, 5), utc(2026, 5, 6))
    assert ticks == [utc(2026, 5, 5, h) for h in (6, 12, 18)] + [utc(2026, 5, 6)]
    assert schedule.next_after(utc(2026, 5, 5, 5, 59)) == utc(2026, 5, 5, 6)
    assert schedule.next_after(utc(2026, 5, 5, 18)) == utc(2026, 5, 6)


def test_ticks_between_bounds_and_limit() -> None:
    schedule = parse_cron("0 * * * *")
    # (start, end]: a tick at start is excluded, a tick at end included.
    assert schedule.ticks_between(utc(2026, 1, 1, 1), utc(2026, 1, 1, 3)) == [
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
    ]
    assert schedule.ticks_between(utc(2026, 1, 1, 3), utc(2026, 1, 1, 3)) == []
    assert schedule.ticks_between(utc(2026, 1, 2), utc(2026, 1, 1)) == []
    assert schedule.ticks_between(utc(2026, 1, 1), utc(2026, 1, 1, 0, 59)) == []
    first_five = schedule.ticks_between(utc(2026, 1, 1), utc(2027, 1, 1), limit=5)
    assert first_five == [utc(2026, 1, 1, h) for h in range(1, 6)]
    assert len(schedule.ticks_between(utc(2026, 1, 1), utc(2027, 1, 1))) == 1000
    assert schedule.ticks_between(utc(2026, 1, 1), utc(2027, 1, 1), limit=0) == []


@pytest.mark.parametrize(
    ("fields", "after", "expected"),
    [
        ("5-10/5,30 * * * *", utc(2026, 1, 1), [(0, 5), (0, 10), (0, 30), (1, 5)]),
        ("5/20 * * * *", utc(2026, 1, 1), [(0, 5), (0, 25), (0, 45), (1, 5)]),
        ("0 9 * * MON-FRI", utc(2026, 1, 2, 10), [(5, 9), (6, 9), (7, 9), (8, 9)]),
        ("0 0 * * sun", utc(2026, 1, 1), [(4, 0), (11, 0), (18, 0), (25, 0)]),
        ("0 0 * * 7", utc(2026, 1, 1), [(4, 0), (11, 0), (18, 0), (25, 0)]),
    ],
)
def test_field_syntax(fields: str, after: datetime, expected: list[tuple[int, int]]) -> None:
    """Ranges, steps, lists and names; ``expected`` is (day, hour) or (hour, minute) pairs."""
    ticks = parse_cron(fields).ticks_between(after, after + timedelta(days=40), limit=4)
    if fields.startswith("0 "):
        assert [(t.day, t.hour) for t in ticks] == expected
    else:
        assert [(t.hour, t.minute) for t in ticks] == expected


@pytest.mark.parametrize(
    ("fields", "expected_days"),
    [
        ("0 0 L * *", [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)]),
        ("0 0 LW * *", [date(2026, 1, 30), date(2026, 2, 27), date(2026, 3, 31)]),
        ("0 0 * * 5L", [date(2026, 1, 30), date(2026, 2, 27), date(2026, 3, 27)]),
        ("0 0 * * MON#2", [date(2026, 1, 12), date(2026, 2, 9), date(2026, 3, 9)]),
        ("0 0 * JAN,mar *", [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)]),
        ("0 0 29 2 *", [date(2028, 2, 29), date(2032, 2, 29), date(2036, 2, 29)]),
        # Both day fields restricted: either one matches (Vixie cron).
        ("0 0 13 * FRI", [date(2026, 1, 2), date(2026, 1, 9), date(2026, 1, 13)]),
    ],
)
def test_day_features(fields: str, expected_days: list[date]) -> None:
    schedule = parse_cron(fields)
    cursor = utc(2025, 12, 31, 12)
    days = []
    for _ in expected_days:
        cursor = schedule.next_after(cursor)
        days.append(cursor.date())
    assert days == expected_days


def test_fridays_noon_in_paris_across_a_year() -> None:
    schedule = parse_cron("TZ=Europe/Paris 0 12 * * 5")
    ticks = schedule.ticks_between(utc(2026, 1, 1), utc(2027, 1, 1))
    assert len(ticks) == 52  # 2026 has 52 Fridays
    for tick in ticks:
        local = tick.astimezone(PARIS)
        assert (local.weekday(), local.hour, local.minute) == (4, 12, 0)
        summer = date(2026, 3, 29) <= tick.date() < date(2026, 10, 25)
        assert tick.hour == (10 if summer else 11)
    assert ticks[0] == utc(2026, 1, 2, 11)
    assert utc(2026, 3, 27, 11) in ticks  # last Friday of winter time
    assert utc(2026, 4, 3, 10) in ticks  # first Friday of summer time
    assert utc(2026, 10, 23, 10) in ticks
    assert utc(2026, 10, 30, 11) in ticks
    assert {t.hour for t in ticks} == {10, 11}


DST_DAYS = [
    pytest.param(PARIS, date(2026, 3, 29), 23, id="paris-spring-forward"),
    pytest.param(PARIS, date(2026, 10, 25), 25, id="paris-fall-back"),
    pytest.param(NEW_YORK, date(2026, 3, 8), 23, id="new-york-spring-forward"),
    pytest.param(NEW_YORK, date(2026, 11, 1), 25, id="new-york-fall-back"),
]


@pytest.mark.parametrize(("zone", "day", "hours"), DST_DAYS)
def test_daily_0230_fires_once_on_dst_days(zone: ZoneInfo, day: date, hours: int) -> None:
    schedule = parse_cron(f"TZ={zone.key} 30 2 * * *")
    ticks = local_day_ticks(schedule, day, zone)
    assert len(ticks) == 1
    (tick,) = ticks
    if hours == 23:
        # 02:30 does not exist: it fires at the next valid time.
        assert (tick.hour, tick.minute) == (3, 0)
    else:
        # 02:30 happens twice: it fires at the first one only.
        assert (tick.hour, tick.minute, tick.fold) == (2, 30, 0)
    # And the day before and after are ordinary.
    for other in (day - timedelta(days=1), day + timedelta(days=1)):
        (normal,) = local_day_ticks(schedule, other, zone)
        assert (normal.hour, normal.minute) == (2, 30)


@pytest.mark.parametrize(("zone", "day", "hours"), DST_DAYS)
def test_hourly_follows_elapsed_time_on_dst_days(zone: ZoneInfo, day: date, hours: int) -> None:
    schedule = parse_cron(f"TZ={zone.key} 0 * * * *")
    ticks = local_day_ticks(schedule, day, zone)
    assert len(ticks) == hours
    # Aware datetimes in one zone subtract as wall-clock times: compare them in UTC.
    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in pairwise(ticks)}
    assert gaps == {timedelta(hours=1)}
    assert len(local_day_ticks(parse_cron(f"TZ={zone.key} @hourly"), day, zone)) == hours


def test_next_after_from_inside_the_repeated_hour_does_not_go_back() -> None:
    schedule = parse_cron("TZ=Europe/Paris 30 2 * * *")
    # 2026-10-25 01:15 UTC is 02:15 CET, the second 02:15 of the day; 02:30 already fired at
    # 00:30 UTC (02:30 CEST).
    assert schedule.next_after(utc(2026, 10, 25, 0, 15)) == utc(2026, 10, 25, 0, 30)
    assert schedule.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


# --- catch-up ------------------------------------------------------------------------------------


def test_catch_up_new_schedule_starts_from_now() -> None:
    assert catch_up_tick(parse_cron("* * * * *"), None, utc(2026, 5, 5, 12)) is None


def test_catch_up_nothing_missed() -> None:
    schedule = parse_cron("0 * * * *")
    assert catch_up_tick(schedule, utc(2026, 5, 5, 12), utc(2026, 5, 5, 12, 59)) is None
    assert catch_up_tick(schedule, utc(2026, 5, 5, 12), utc(2026, 5, 5, 12)) is None
    assert catch_up_tick(schedule, utc(2026, 5, 5, 13), utc(2026, 5, 5, 12)) is None


def test_catch_up_one_missed_tick() -> None:
    schedule = parse_cron("0 * * * *")
    assert catch_up_tick(schedule, utc(2026, 5, 5, 12), utc(2026, 5, 5, 13, 20)) == utc(
        2026, 5, 5, 13
    )
    # A tick exactly at now counts as missed.
    assert catch_up_tick(schedule, utc(2026, 5, 5, 12), utc(2026, 5, 5, 13)) == utc(2026, 5, 5, 13)


def test_catch_up_many_missed_returns_only_the_latest() -> None:
    schedule = parse_cron("*/5 * * * *")
    now = utc(2026, 5, 5, 12, 34, 56, 789)
    assert catch_up_tick(schedule, utc(2026, 5, 5, 8), now) == utc(2026, 5, 5, 12, 30)
    # Down for over a year on a minutely job: still one tick, the latest.
    minutely = parse_cron("* * * * *")
    assert catch_up_tick(minutely, utc(2025, 1, 1), now) == utc(2026, 5, 5, 12, 34)


def test_catch_up_sparse_schedule_and_timezone() -> None:
    schedule = parse_cron("TZ=Europe/Paris 0 12 * * 5")
    # Down from January to mid-July 2026: only the last Friday noon (CEST) is run.
    tick = catch_up_tick(schedule, utc(2026, 1, 2, 11), datetime(2026, 7, 15, tzinfo=PARIS))
    assert tick == utc(2026, 7, 10, 10)


def test_catch_up_on_fall_back_day() -> None:
    schedule = parse_cron("TZ=Europe/Paris 30 2 * * *")
    # Down since the day before; now is the second 02:15 (CET): the 02:30 CEST tick was missed.
    now = utc(2026, 10, 25, 1, 15)
    assert catch_up_tick(schedule, utc(2026, 10, 24, 0, 30), now) == utc(2026, 10, 25, 0, 30)
    assert catch_up_tick(schedule, utc(2026, 10, 25, 0, 30), now) is None


# --- properties ----------------------------------------------------------------------------------

SCHEDULES = [
    "* * * * *",
    "*/7 * * * *",
    "0 */6 * * *",
    "30 2 * * *",
    "0 0-23 * * *",
    "15 1-3 * * *",
    "59 23 L * *",
    "0 12 * * 5L",
    "0 0 * * MON#5",
    "0 0 29 2 *",
    "0 9 13 * FRI",
]
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # DST changes at midnight
    "Asia/Beirut",  # DST changes at midnight
    "Pacific/Chatham",  # +12:45
    "Asia/Kolkata",
]

schedules = st.builds(
    lambda fields, zone: parse_cron(f"TZ={zone} {fields}"),
    st.sampled_from(SCHEDULES),
    st.sampled_from(ZONES),
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(schedule=schedules, instant=instants)
def test_property_next_after_is_strictly_later_and_increasing(
    schedule: CronSchedule, instant: datetime
) -> None:
    tick = schedule.next_after(instant)
    assert tick > instant
    assert tick.tzinfo is UTC
    # No tick is skipped: from anywhere in [instant, tick) the next tick is the same one.
    just_before = max(instant, tick - timedelta(seconds=1))
    assert schedule.next_after(just_before) == tick
    ticks = [tick]
    for _ in range(5):
        ticks.append(schedule.next_after(ticks[-1]))
    assert all(a < b for a, b in pairwise(ticks))


@settings(max_examples=200, deadline=None)
@given(
    schedule=schedules,
    start=instants,
    span=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
)
def test_property_ticks_between_and_catch_up_agree(
    schedule: CronSchedule, start: datetime, span: timedelta
) -> None:
    end = start + span
    ticks = schedule.ticks_between(start, end, limit=10_000)
    assert all(start < t <= end for t in ticks)
    assert all(a < b for a, b in pairwise(ticks))
    assert catch_up_tick(schedule, start, end) == (ticks[-1] if ticks else None)
