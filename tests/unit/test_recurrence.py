"""Recurrence: pattern JSON, expansion, virtual ids and scope edits (pure, no services)."""
import json
import time as clock
from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from handlers.recurrence import (
    NO_HOLIDAYS,
    BadReference,
    EntryRef,
    Holidays,
    Pattern,
    PatternError,
    Series,
    continue_from,
    expand,
    is_occurrence,
    may_overlap,
    parse_reference,
    truncate_before,
    virtual_id,
    with_exception,
)

UTC = timezone.utc
MASTER = "0b9d4a52-7c1e-4f3a-9d2b-5e6f7a8b9c0d"
OTHER = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
PROPERTY = settings(max_examples=200, deadline=None)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def make_series(pattern: dict, start: datetime, duration: timedelta = timedelta(hours=1)) -> Series:
    return Series(MASTER, start, start + duration, Pattern.from_json(pattern))


def days_of(starts: list[datetime]) -> list[date]:
    return [s.date() for s in starts]


# --- expansion: concrete cases -------------------------------------------------------------

def test_weekly_on_tuesday_and_thursday():
    series = make_series({"frequency": "weekly", "interval": 1, "daysOfWeek": [1, 3], "startDate": "2026-01-05T00:00:00.000Z"}, at(2026, 1, 6, 9))
    assert expand(series, at(2026, 1, 1), at(2026, 1, 20)) == [at(2026, 1, 6, 9), at(2026, 1, 8, 9), at(2026, 1, 13, 9), at(2026, 1, 15, 9)]


def test_weekly_every_other_week_keeps_monday_weeks():
    # the start is a Thursday; weeks run Monday to Sunday, so the Tuesday of the start week is not generated
    series = make_series({"frequency": "weekly", "interval": 2, "daysOfWeek": [1, 3], "startDate": "2026-01-08"}, at(2026, 1, 8, 9))
    assert days_of(expand(series, at(2026, 1, 1), at(2026, 2, 1))) == [date(2026, 1, 8), date(2026, 1, 20), date(2026, 1, 22)]


def test_weekly_without_days_uses_the_start_weekday():
    series = make_series({"frequency": "weekly", "interval": 1, "startDate": "2026-01-07"}, at(2026, 1, 7, 9))
    assert days_of(expand(series, at(2026, 1, 1), at(2026, 1, 25))) == [date(2026, 1, 7), date(2026, 1, 14), date(2026, 1, 21)]


def test_daily_with_interval_two():
    series = make_series({"frequency": "daily", "interval": 2, "startDate": "2026-03-01"}, at(2026, 3, 1, 10, 30))
    assert expand(series, at(2026, 3, 1), at(2026, 3, 10)) == [at(2026, 3, d, 10, 30) for d in (1, 3, 5, 7, 9)]


def test_monthly_on_the_31st_skips_short_months():
    series = make_series({"frequency": "monthly", "interval": 1, "dayOfMonth": 31, "startDate": "2026-01-31"}, at(2026, 1, 31, 8))
    expected = [date(2026, 1, 31), date(2026, 3, 31), date(2026, 5, 31), date(2026, 7, 31)]
    assert days_of(expand(series, at(2026, 1, 1), at(2026, 8, 1))) == expected
    implicit = make_series({"frequency": "monthly", "interval": 1, "startDate": "2026-01-31"}, at(2026, 1, 31, 8))
    assert days_of(expand(implicit, at(2026, 1, 1), at(2026, 8, 1))) == expected


def test_yearly():
    series = make_series({"frequency": "yearly", "interval": 1, "startDate": "2026-05-15"}, at(2026, 5, 15, 12))
    assert expand(series, at(2026, 1, 1), at(2029, 1, 1)) == [at(2026, 5, 15, 12), at(2027, 5, 15, 12), at(2028, 5, 15, 12)]
    leap = make_series({"frequency": "yearly", "interval": 1, "startDate": "2024-02-29"}, at(2024, 2, 29, 12))
    assert days_of(expand(leap, at(2024, 1, 1), at(2033, 1, 1))) == [date(2024, 2, 29), date(2028, 2, 29), date(2032, 2, 29)]
    in_month = make_series({"frequency": "yearly", "interval": 2, "monthOfYear": 3, "startDate": "2026-01-10"}, at(2026, 1, 10, 12))
    assert days_of(expand(in_month, at(2026, 1, 1), at(2031, 1, 1))) == [date(2026, 3, 10), date(2028, 3, 10), date(2030, 3, 10)]


def test_count_limits_and_exceptions_use_it_up():
    pattern = {"frequency": "daily", "interval": 1, "startDate": "2026-01-05", "count": 3}
    assert days_of(expand(make_series(pattern, at(2026, 1, 5, 9)), at(2026, 1, 1), at(2026, 2, 1))) == [
        date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
    skipped = {**pattern, "exceptions": ["2026-01-06T00:00:00.000Z"]}
    assert days_of(expand(make_series(skipped, at(2026, 1, 5, 9)), at(2026, 1, 1), at(2026, 2, 1))) == [date(2026, 1, 5), date(2026, 1, 7)]
    # a window after the count ran out
    assert expand(make_series(pattern, at(2026, 1, 5, 9)), at(2026, 1, 8), at(2027, 1, 1)) == []


def test_end_date_is_inclusive_whatever_its_time():
    series = make_series({"frequency": "daily", "interval": 1, "startDate": "2026-01-05", "endDate": "2026-01-08T00:00:00.000Z"}, at(2026, 1, 5, 15))
    assert days_of(expand(series, at(2026, 1, 1), at(2026, 2, 1))) == [date(2026, 1, d) for d in (5, 6, 7, 8)]


def test_exceptions_are_removed_by_utc_date():
    series = make_series({
        "frequency": "weekly", "interval": 1, "daysOfWeek": [1, 3], "startDate": "2026-01-05",
        # the second value is 2026-01-14 in UTC, a Wednesday, so it removes nothing
        "exceptions": ["2026-01-08T00:00:00.000Z", "2026-01-13T22:00:00-05:00"],
    }, at(2026, 1, 6, 9))
    assert days_of(expand(series, at(2026, 1, 1), at(2026, 1, 20))) == [date(2026, 1, 6), date(2026, 1, 13), date(2026, 1, 15)]


def test_fixed_and_recurring_holidays_are_skipped():
    series = make_series({"frequency": "daily", "interval": 1, "startDate": "2025-12-30"}, at(2025, 12, 30, 9))
    holidays = Holidays(dates=frozenset({date(2026, 1, 7)}), recurring_month_days=frozenset({(1, 1)}))
    got = days_of(expand(series, at(2025, 12, 30), at(2026, 1, 9), holidays))
    assert got == [date(2025, 12, 30), date(2025, 12, 31)] + [date(2026, 1, d) for d in range(2, 9) if d != 7]
    # a recurring holiday returns every year; a fixed one does not
    assert date(2027, 1, 1) not in days_of(expand(series, at(2026, 12, 31), at(2027, 1, 9), holidays))
    assert date(2027, 1, 7) in days_of(expand(series, at(2026, 12, 31), at(2027, 1, 9), holidays))


def test_holidays_from_table_rows():
    holidays = Holidays.from_rows([(date(2026, 1, 7), False), (date(2020, 12, 25), True)])
    assert holidays == Holidays(dates=frozenset({date(2026, 1, 7)}), recurring_month_days=frozenset({(12, 25)}))
    assert holidays.contains(date(2031, 12, 25)) and holidays.contains(date(2026, 1, 7))
    assert not holidays.contains(date(2027, 1, 7)) and not NO_HOLIDAYS.contains(date(2026, 1, 7))


def test_the_masters_own_first_occurrence_is_returned():
    series = make_series({"frequency": "daily", "interval": 1, "startDate": "2026-01-05T09:00:00.000Z"}, at(2026, 1, 5, 9))
    assert expand(series, at(2026, 1, 5), at(2026, 1, 12))[0] == at(2026, 1, 5, 9)
    assert len(expand(series, at(2026, 1, 5), at(2026, 1, 12))) == 7
    assert is_occurrence(series, series.start)


def test_start_weekday_outside_the_days_is_not_an_occurrence():
    series = make_series({"frequency": "weekly", "interval": 1, "daysOfWeek": [1, 3], "startDate": "2026-01-05"}, at(2026, 1, 5, 9))
    assert expand(series, at(2026, 1, 5), at(2026, 1, 7))[0] == at(2026, 1, 6, 9)
    assert not is_occurrence(series, at(2026, 1, 5, 9))


def test_window_far_in_the_future_is_cheap():
    daily = make_series({"frequency": "daily", "interval": 1, "startDate": "2026-01-05"}, at(2026, 1, 5, 9))
    weekly = make_series({"frequency": "weekly", "interval": 3, "daysOfWeek": [0, 4], "startDate": "2026-01-05"}, at(2026, 1, 5, 9))
    counted = make_series({"frequency": "daily", "interval": 1, "startDate": "0001-01-01", "count": 10**9}, at(1, 1, 1, 9))
    began = clock.perf_counter()
    assert expand(daily, at(2526, 6, 1), at(2526, 6, 4)) == [at(2526, 6, d, 9) for d in (1, 2, 3)]
    far = expand(weekly, at(2526, 6, 1), at(2526, 7, 1))
    assert len(expand(counted, at(9000, 1, 1), at(9000, 1, 8))) == 7
    assert clock.perf_counter() - began < 2
    assert far and all((s.date() - date(2026, 1, 5)).days // 7 % 3 == 0 and s.weekday() in (0, 4) for s in far)
    assert all(b - a in (timedelta(days=4), timedelta(days=17)) for a, b in zip(far, far[1:]))


def test_rules_that_never_match_again_terminate_quickly():
    never = [
        {"frequency": "daily", "interval": 7, "daysOfWeek": [1], "startDate": "2026-01-05"},  # start is a Monday
        {"frequency": "monthly", "interval": 2, "monthOfYear": 2, "startDate": "2026-01-05"},  # odd months only
        {"frequency": "yearly", "interval": 4, "monthOfYear": 2, "dayOfMonth": 29, "startDate": "2025-01-01"},
    ]
    began = clock.perf_counter()
    for pattern in never:
        series = make_series(pattern, at(2026, 1, 5, 9))
        assert expand(series, at(2026, 1, 1), at(2030, 1, 1)) == []
        assert expand(series, at(9999, 12, 1), datetime.max.replace(tzinfo=UTC)) == []
    rare = make_series({"frequency": "weekly", "interval": 20871, "startDate": "2026-01-05"}, at(2026, 1, 5, 9))
    assert expand(rare, at(2026, 1, 6), at(2400, 1, 1)) == []
    every_day = make_series({"frequency": "weekly", "interval": 1, "daysOfWeek": list(range(7)), "startDate": "9999-12-20"}, at(9999, 12, 20, 9))
    assert len(expand(every_day, at(9999, 12, 25), datetime.max.replace(tzinfo=UTC))) == 7
    assert clock.perf_counter() - began < 2


def test_time_of_day_comes_from_the_master_in_utc():
    # the pattern's own time of day is ignored; only its UTC date anchors the series
    pattern = {"frequency": "daily", "interval": 1, "startDate": "2026-01-05T23:00:00.000Z"}
    precise = make_series(pattern, at(2026, 1, 5, 17, 45, 30, 123456))
    assert expand(precise, at(2026, 1, 5), at(2026, 1, 7)) == [at(2026, 1, 5, 17, 45, 30, 123456), at(2026, 1, 6, 17, 45, 30, 123456)]
    berlin = timezone(timedelta(hours=2))
    local = make_series(pattern, datetime(2026, 1, 5, 10, 0, tzinfo=berlin))
    assert local.start == at(2026, 1, 5, 8) and expand(local, at(2026, 1, 6), at(2026, 1, 7)) == [at(2026, 1, 6, 8)]


def test_overlap_is_strict_at_both_ends():
    series = make_series({"frequency": "daily", "interval": 1, "startDate": "2026-01-05"}, at(2026, 1, 5, 9))
    day = [at(2026, 1, 6, 9)]
    assert expand(series, at(2026, 1, 6, 10), at(2026, 1, 6, 11)) == []  # ends exactly at window_start
    assert expand(series, at(2026, 1, 6, 8), at(2026, 1, 6, 9)) == []  # starts exactly at window_end
    assert expand(series, at(2026, 1, 6, 9, 59, 59, 999999), at(2026, 1, 6, 11)) == day
    assert expand(series, at(2026, 1, 6, 8), at(2026, 1, 6, 9, 0, 0, 1)) == day
    assert expand(series, at(2026, 1, 6, 11), at(2026, 1, 6, 10)) == []


def test_occurrence_running_past_midnight_overlaps_the_next_day():
    series = make_series({"frequency": "daily", "interval": 1, "startDate": "2026-01-05"}, at(2026, 1, 5, 23), timedelta(hours=2))
    assert expand(series, at(2026, 1, 6), at(2026, 1, 6, 0, 30)) == [at(2026, 1, 5, 23)]


def test_naive_datetimes_are_rejected():
    series = make_series({"frequency": "daily", "interval": 1, "startDate": "2026-01-05"}, at(2026, 1, 5, 9))
    with pytest.raises(ValueError):
        expand(series, datetime(2026, 1, 5), at(2026, 1, 6))
    with pytest.raises(ValueError):
        Series(MASTER, datetime(2026, 1, 5), at(2026, 1, 5, 1), series.pattern)
    assert series.duration == timedelta(hours=1)


# --- virtual ids ---------------------------------------------------------------------------

def test_virtual_id_is_the_master_and_epoch_milliseconds():
    assert virtual_id(MASTER, at(2026, 1, 1)) == f"{MASTER}_1767225600000"
    assert virtual_id(MASTER, at(2026, 1, 1, 0, 0, 0, 999)) == f"{MASTER}_1767225600000"
    with pytest.raises(ValueError):
        virtual_id(MASTER, at(1969, 12, 31, 23, 59))


def test_parse_reference_accepts_plain_and_virtual_ids():
    assert parse_reference(MASTER.upper()) == EntryRef(MASTER, None)
    ref = parse_reference(f"{MASTER}_1767225600000")
    assert ref == EntryRef(MASTER, 1767225600000) and ref.occurrence_start == at(2026, 1, 1)
    assert parse_reference(f"{MASTER}_0").occurrence_start == at(1970, 1, 1)
    assert parse_reference(MASTER).occurrence_start is None


@pytest.mark.parametrize("ref", [
    "", "not-a-uuid", MASTER[:-1], MASTER.replace("-", ""), f"{{{MASTER}}}", f" {MASTER}", f"{MASTER}\n",
    f"{MASTER}_", f"{MASTER}_abc", f"{MASTER}_12_34", f"{MASTER}_-5", f"{MASTER}_1.5", f"{MASTER}_+5",
    f"{MASTER}_\uff11\uff12", f"{MASTER}_{'9' * 16}", f"{MASTER}__1", f"_{MASTER}", f"x_{1767225600000}",
    None, 1767225600000,
])
def test_parse_reference_rejects(ref):
    with pytest.raises(BadReference):
        parse_reference(ref)


def test_is_occurrence_needs_the_exact_millisecond():
    series = make_series({"frequency": "daily", "interval": 1, "startDate": "2026-01-05", "exceptions": ["2026-01-07"], "count": 10},
                         at(2026, 1, 5, 9, 0, 0, 250400))
    assert is_occurrence(series, at(2026, 1, 6, 9, 0, 0, 250000))  # what a virtual id carries
    assert not is_occurrence(series, at(2026, 1, 6, 9, 0, 0, 251000))
    assert not is_occurrence(series, at(2026, 1, 7, 9, 0, 0, 250000))  # an exception
    assert not is_occurrence(series, at(2026, 1, 15, 9, 0, 0, 250000))  # past the count
    assert not is_occurrence(series, at(2026, 1, 4, 9, 0, 0, 250000))  # before the start
    assert not is_occurrence(series, at(2026, 1, 6, 9, 0, 0, 250000), Holidays(dates=frozenset({date(2026, 1, 6)})))


# --- pattern JSON --------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [None, "", "   ", "null", {}, "{}"])
def test_missing_patterns_are_none(raw):
    assert Pattern.from_json(raw) is None


def test_from_json_reads_the_upstream_shape():
    raw = {
        "frequency": "WEEKLY", "interval": 2, "daysOfWeek": [3, 1, 3], "startDate": "2026-01-05T09:30:00+02:00",
        "endDate": "2026-06-30", "exceptions": ["2026-01-13T00:00:00.000Z", "2026-01-08"], "count": 12, "workdaysOnly": False,
        "somethingNew": "ignored",
    }
    pattern = Pattern.from_json(raw)
    assert pattern == Pattern(
        frequency="weekly", interval=2, days_of_week=(1, 3), start_date=at(2026, 1, 5, 7, 30), end_date=at(2026, 6, 30),
        exceptions=(date(2026, 1, 8), date(2026, 1, 13)), count=12, workdays_only=False,
    )
    assert Pattern.from_json(json.dumps(raw)) == pattern
    # upstream stores a JSON string inside the jsonb column
    assert Pattern.from_json(json.dumps(json.dumps(raw))) == pattern


def test_to_json_writes_the_upstream_shape():
    pattern = Pattern(frequency="monthly", interval=1, day_of_month=31, start_date=at(2026, 1, 31, 8), exceptions=(date(2026, 3, 31),))
    assert pattern.to_json() == {
        "frequency": "monthly", "interval": 1, "dayOfMonth": 31, "startDate": "2026-01-31T08:00:00.000Z",
        "exceptions": ["2026-03-31T00:00:00.000Z"],
    }
    precise = Pattern(frequency="daily", start_date=at(2026, 1, 5, 8, 0, 0, 123456), end_date=at(2026, 2, 1, 23, 59, 59, 999000), count=3, workdays_only=True)
    assert precise.to_json() == {
        "frequency": "daily", "interval": 1, "startDate": "2026-01-05T08:00:00.123456Z", "endDate": "2026-02-01T23:59:59.999Z",
        "exceptions": [], "count": 3, "workdaysOnly": True,
    }
    assert Pattern.from_json(precise.to_json()) == precise


@pytest.mark.parametrize("changes, field", [
    ({"frequency": "hourly"}, "frequency"),
    ({"frequency": None}, "frequency"),
    ({"interval": 0}, "interval"),
    ({"interval": "2"}, "interval"),
    ({"interval": 1.5}, "interval"),
    ({"interval": True}, "interval"),
    ({"daysOfWeek": [7]}, "daysOfWeek"),
    ({"daysOfWeek": [-1]}, "daysOfWeek"),
    ({"daysOfWeek": "1"}, "daysOfWeek"),
    ({"dayOfMonth": 0}, "dayOfMonth"),
    ({"dayOfMonth": 32}, "dayOfMonth"),
    ({"monthOfYear": 13}, "monthOfYear"),
    ({"monthOfYear": 2, "dayOfMonth": 30}, "dayOfMonth"),
    ({"count": 0}, "count"),
    ({"startDate": None}, "startDate"),
    ({"startDate": "next tuesday"}, "startDate"),
    ({"startDate": 1767225600000}, "startDate"),
    ({"endDate": "2026-13-01"}, "endDate"),
    ({"exceptions": ["nope"]}, "exceptions"),
    ({"exceptions": "2026-01-06"}, "exceptions"),
    ({"workdaysOnly": "yes"}, "workdaysOnly"),
])
def test_invalid_patterns_name_the_field(changes, field):
    raw = {"frequency": "daily", "interval": 1, "startDate": "2026-01-05", **changes}
    with pytest.raises(PatternError) as caught:
        Pattern.from_json(raw)
    assert caught.value.field == field
    assert field in str(caught.value) and str(caught.value).startswith("invalid recurrence pattern")


@pytest.mark.parametrize("changes, message", [
    ({"interval": 0}, "invalid recurrence pattern: interval must be an integer >= 1 (got 0)"),
    ({"frequency": "hourly"}, "invalid recurrence pattern: frequency must be one of daily, weekly, monthly, yearly (got 'hourly')"),
    ({"daysOfWeek": [1, 7]}, "invalid recurrence pattern: daysOfWeek must only hold integers between 0 and 6 (got 7)"),
    ({"monthOfYear": 4, "dayOfMonth": 31}, "invalid recurrence pattern: dayOfMonth 31 never occurs in monthOfYear 4"),
])
def test_pattern_error_messages(changes, message):
    with pytest.raises(PatternError) as caught:
        Pattern.from_json({"frequency": "daily", "startDate": "2026-01-05", **changes})
    assert str(caught.value) == message


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"daily"'])
def test_pattern_text_must_be_a_json_object(raw):
    with pytest.raises(PatternError, match="invalid recurrence pattern"):
        Pattern.from_json(raw)


def test_constructed_patterns_are_validated_and_normalised():
    pattern = Pattern(frequency="weekly", days_of_week=(4, 1, 4), start_date=at(2026, 1, 5),
                      exceptions=(date(2026, 2, 3), datetime(2026, 1, 6, 23, tzinfo=timezone(timedelta(hours=-5))), date(2026, 2, 3)))
    assert pattern.days_of_week == (1, 4) and pattern.exceptions == (date(2026, 1, 7), date(2026, 2, 3))
    assert Pattern(frequency="weekly", days_of_week=(), start_date=at(2026, 1, 5)).days_of_week is None
    with pytest.raises(PatternError, match="startDate"):
        Pattern(frequency="daily", start_date=datetime(2026, 1, 5))
    with pytest.raises(PatternError, match="frequency"):
        Pattern(frequency="Daily", start_date=at(2026, 1, 5))


# --- scope edits: concrete cases -----------------------------------------------------------

WEEKLY = Pattern(frequency="weekly", days_of_week=(1, 3), start_date=at(2026, 1, 5), exceptions=(date(2026, 1, 8), date(2026, 1, 29)))


def test_with_exception_adds_the_utc_date_once():
    edited = with_exception(WEEKLY, at(2026, 1, 20, 9))
    assert edited.exceptions == (date(2026, 1, 8), date(2026, 1, 20), date(2026, 1, 29))
    assert with_exception(edited, at(2026, 1, 20, 9)) == edited


def test_truncate_before_ends_the_day_before():
    cut = truncate_before(WEEKLY, at(2026, 1, 22, 9))
    assert cut.end_date == at(2026, 1, 21, 23, 59, 59, 999000) and cut.exceptions == (date(2026, 1, 8),)
    earlier_end = Pattern(frequency="daily", start_date=at(2026, 1, 5), end_date=at(2026, 1, 10, 12))
    assert truncate_before(earlier_end, at(2026, 3, 1)).end_date == at(2026, 1, 10, 12)  # never extends the series


def test_truncate_before_turns_a_count_into_an_end_date():
    counted = Pattern(frequency="daily", start_date=at(2026, 1, 5), count=5)
    assert truncate_before(counted, at(2026, 1, 8, 9)) == Pattern(frequency="daily", start_date=at(2026, 1, 5), end_date=at(2026, 1, 7, 23, 59, 59, 999000))
    # the count ran out before the split: the end is its last day, not the day before the split
    assert truncate_before(counted, at(2026, 2, 1, 9)).end_date == at(2026, 1, 9, 23, 59, 59, 999000)


def test_continue_from_keeps_the_rest_of_the_series():
    counted = Pattern(frequency="daily", start_date=at(2026, 1, 5), end_date=at(2026, 3, 1), count=5,
                      exceptions=(date(2026, 1, 6), date(2026, 1, 8)))
    rest = continue_from(counted, at(2026, 1, 7, 9), at(2026, 1, 7, 14))
    assert rest == Pattern(frequency="daily", start_date=at(2026, 1, 7, 14), end_date=at(2026, 3, 1), count=3, exceptions=(date(2026, 1, 8),))
    with pytest.raises(ValueError, match="count"):
        continue_from(counted, at(2026, 1, 10, 9), at(2026, 1, 10, 9))


# --- properties ----------------------------------------------------------------------------

MONTH_LENGTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


@st.composite
def patterns(draw) -> Pattern:
    start = draw(st.dates(date(2000, 1, 1), date(2030, 12, 31)))
    # mostly unconstrained rules, so that most windows hold occurrences
    month = draw(st.integers(1, 12)) if draw(st.integers(0, 3)) == 3 else None
    day_of_month = draw(st.integers(1, MONTH_LENGTH[month] if month else 31)) if draw(st.integers(0, 3)) == 3 else None
    end = start + timedelta(days=draw(st.integers(0, 3000))) if draw(st.integers(0, 2)) == 2 else None
    return Pattern(
        frequency=draw(st.sampled_from(["daily", "weekly", "monthly", "yearly"])),
        interval=draw(st.integers(1, 4)),
        days_of_week=draw(st.lists(st.integers(0, 6), min_size=1, max_size=5).map(tuple)) if draw(st.booleans()) else None,
        day_of_month=day_of_month,
        month_of_year=month,
        start_date=datetime.combine(start, time(), UTC) + draw(st.integers(0, 86_399_999_999)) * timedelta(microseconds=1),
        end_date=None if end is None else datetime.combine(end, time(draw(st.integers(0, 23))), UTC),
        exceptions=tuple(start + timedelta(days=n) for n in draw(st.lists(st.integers(0, 400), max_size=6))),
        count=draw(st.integers(1, 60)) if draw(st.integers(0, 2)) == 2 else None,
        workdays_only=draw(st.none() | st.booleans()),
    )


def spread(draw, low: int, high: int) -> int:
    """An integer anywhere in [low, high]; plain st.integers favours small magnitudes."""
    return low + (high - low) * draw(st.integers(0, 100)) // 100 + draw(st.integers(0, 59))


@st.composite
def cases(draw) -> tuple[Series, datetime, datetime, Holidays]:
    pattern = draw(patterns())
    start = datetime.combine(pattern.start_date.date(), time(), UTC) + draw(st.integers(0, 86_399_999)) * timedelta(milliseconds=1) \
        + draw(st.sampled_from([0, 0, 417])) * timedelta(microseconds=1)
    duration = draw(st.sampled_from([timedelta(hours=1), timedelta(minutes=30), timedelta(hours=8), timedelta(days=2), timedelta(0)]))
    window_start = start + spread(draw, -30 * 24 * 60, 6 * 365 * 24 * 60) * timedelta(minutes=1)
    # up to a few periods of the rule, so that most windows hold occurrences
    span_days = {"daily": 60, "weekly": 180, "monthly": 720, "yearly": 3000}[pattern.frequency]
    window_end = window_start + spread(draw, 0, span_days * 24 * 60) * timedelta(minutes=1)
    first = pattern.start_date.date()
    holidays = Holidays(
        dates=frozenset(first + timedelta(days=n) for n in draw(st.lists(st.integers(0, 3000), max_size=5))),
        recurring_month_days=frozenset(draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 28)), max_size=3))),
    )
    return Series(MASTER, start, start + duration, pattern), window_start, window_end, holidays


def brute_force(series: Series, window_start: datetime, window_end: datetime, holidays: Holidays) -> list[datetime]:
    """RFC 5545 semantics for this subset, one day at a time from the series start."""
    p = series.pattern
    start = p.start_date.date()
    monday = start - timedelta(days=start.weekday())
    months = None if p.month_of_year is None else {p.month_of_year}
    weekdays = None if p.days_of_week is None else set(p.days_of_week)
    month_day = p.day_of_month
    if month_day is None and weekdays is None:
        if p.frequency == "yearly":
            months, month_day = months or {start.month}, start.day
        elif p.frequency == "monthly":
            month_day = start.day
        elif p.frequency == "weekly":
            weekdays = {start.weekday()}
    visited = {
        "daily": lambda d: (d - start).days % p.interval == 0,
        "weekly": lambda d: (d - monday).days // 7 % p.interval == 0,
        "monthly": lambda d: ((d.year - start.year) * 12 + d.month - start.month) % p.interval == 0,
        "yearly": lambda d: (d.year - start.year) % p.interval == 0,
    }[p.frequency]
    tod = series.start - datetime.combine(series.start.date(), time(), UTC)
    found, generated, day = [], 0, start
    while day <= window_end.date() and (p.end_date is None or day <= p.end_date.date()) and (p.count is None or generated < p.count):
        if visited(day) and (months is None or day.month in months) and (month_day is None or day.day == month_day) \
                and (weekdays is None or day.weekday() in weekdays):
            generated += 1
            occurrence = datetime.combine(day, time(), UTC) + tod
            if day not in p.exceptions and not holidays.contains(day) and occurrence < window_end and occurrence + series.duration > window_start:
                found.append(occurrence)
        day += timedelta(days=1)
    return found


@PROPERTY
@given(cases())
def test_expand_matches_a_day_by_day_reading_of_the_rule(case):
    series, window_start, window_end, holidays = case
    starts = expand(series, window_start, window_end, holidays)
    assert starts == brute_force(series, window_start, window_end, holidays)
    assert starts == sorted(set(starts))
    assert all(s < window_end and s + series.duration > window_start for s in starts)
    assert not {s.date() for s in starts} & set(series.pattern.exceptions)


@PROPERTY
@given(cases(), st.data())
def test_a_series_ruled_out_by_its_time_of_day_has_no_occurrence_in_the_window(case, data):
    series, window_start, _, holidays = case
    # Short windows, where the time of day decides.
    window_end = window_start + data.draw(st.integers(0, 3 * 24 * 60)) * timedelta(minutes=1)
    if not may_overlap(series.start, series.end, window_start, window_end):
        assert expand(series, window_start, window_end, holidays) == []
        assert not (series.start < window_end and series.end > window_start)


def test_an_evening_series_is_ruled_out_for_a_morning_window():
    evening = datetime(2027, 1, 4, 18, tzinfo=UTC)
    morning = datetime(2027, 3, 2, 9, tzinfo=UTC)
    assert not may_overlap(evening, evening + timedelta(hours=1), morning, morning + timedelta(hours=1))
    assert may_overlap(evening, evening + timedelta(hours=16), morning, morning + timedelta(hours=1))


@PROPERTY
@given(cases())
def test_every_occurrence_has_a_virtual_id_that_resolves(case):
    series, window_start, window_end, holidays = case
    for start in expand(series, window_start, window_end, holidays):
        ref = parse_reference(virtual_id(series.master_id, start))
        assert ref.master_id == series.master_id
        assert is_occurrence(series, ref.occurrence_start, holidays)
        assert not is_occurrence(series, ref.occurrence_start + timedelta(milliseconds=1), holidays)


def early_occurrences(series: Series, holidays: Holidays) -> list[datetime]:
    """Occurrences of the series' first five years, to pick an occurrence from (in the window or not)."""
    return expand(series, series.start - timedelta(days=1), series.start + timedelta(days=5 * 366), holidays)


@PROPERTY
@given(cases(), st.data())
def test_an_exception_removes_exactly_that_occurrence(case, data):
    series, window_start, window_end, holidays = case
    candidates = early_occurrences(series, holidays)
    assume(candidates)
    removed = data.draw(st.sampled_from(candidates))
    starts = expand(series, window_start, window_end, holidays)
    edited = Series(series.master_id, series.start, series.end, with_exception(series.pattern, removed))
    assert expand(edited, window_start, window_end, holidays) == [s for s in starts if s != removed]
    assert not is_occurrence(edited, removed, holidays)


@PROPERTY
@given(cases(), st.data())
def test_a_future_split_keeps_every_occurrence(case, data):
    series, window_start, window_end, holidays = case
    candidates = early_occurrences(series, holidays)
    assume(candidates)
    split = data.draw(st.sampled_from(candidates))
    starts = expand(series, window_start, window_end, holidays)
    before = Series(series.master_id, series.start, series.end, truncate_before(series.pattern, split))
    after = Series(OTHER, split, split + series.duration, continue_from(series.pattern, split, split))
    head = expand(before, window_start, window_end, holidays)
    tail = expand(after, window_start, window_end, holidays)
    assert all(s < split for s in head) and all(s >= split for s in tail)
    assert head + tail == starts


@PROPERTY
@given(patterns())
def test_pattern_json_round_trips(pattern):
    assert Pattern.from_json(pattern.to_json()) == pattern
    assert Pattern.from_json(json.dumps(pattern.to_json())) == pattern
