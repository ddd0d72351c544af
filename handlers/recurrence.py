"""Recurring series: pattern JSON, occurrence expansion, virtual ids and scope edits.

A series is one master row plus a pattern; its occurrences are computed, never
stored, and addressed by the virtual id ``<master id>_<epoch ms>``. Everything
here works in UTC and is pure (no I/O).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import MAXYEAR, date, datetime, time, timedelta, timezone
from typing import Any, Callable, Iterable

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule

_FREQUENCIES = {"daily": DAILY, "weekly": WEEKLY, "monthly": MONTHLY, "yearly": YEARLY}
_MONTH_LENGTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_END_OF_DAY = time(23, 59, 59, 999000)
# The Gregorian calendar, weekdays included, repeats every 400 years.
_CYCLE_YEARS = 400


class PatternError(ValueError):
    """An invalid recurrence pattern; ``field`` names the offending JSON field."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(f"invalid recurrence pattern: {field} {problem}" if field else f"invalid recurrence pattern: {problem}")
        self.field = field


class BadReference(ValueError):
    """A string that is neither an entry UUID nor ``<UUID>_<epoch ms>``."""


@dataclass(frozen=True, kw_only=True)
class Pattern:
    """A recurrence pattern (upstream IRecurrencePattern); validated and normalised on construction."""

    frequency: str
    interval: int = 1
    days_of_week: tuple[int, ...] | None = None  # 0 = Monday … 6 = Sunday
    day_of_month: int | None = None
    month_of_year: int | None = None
    start_date: datetime
    end_date: datetime | None = None  # inclusive: occurrences on this UTC date still happen
    exceptions: tuple[date, ...] = ()  # UTC calendar dates
    count: int | None = None
    workdays_only: bool | None = None  # a UI hint, kept for round trips; expansion ignores it

    def __post_init__(self) -> None:
        if self.frequency not in _FREQUENCIES:
            raise PatternError("frequency", f"must be one of {', '.join(_FREQUENCIES)} (got {self.frequency!r:.60})")
        _check_int("interval", self.interval, 1, None)
        for day in self.days_of_week or ():
            _check_int("daysOfWeek", day, 0, 6, need="only hold integers")
        # rrule (upstream's and dateutil's) treats an empty weekday list as absent.
        _set(self, "days_of_week", tuple(sorted(set(self.days_of_week))) if self.days_of_week else None)
        if self.day_of_month is not None:
            _check_int("dayOfMonth", self.day_of_month, 1, 31)
        if self.month_of_year is not None:
            _check_int("monthOfYear", self.month_of_year, 1, 12)
            # a date that never exists is a mistake to report, not a series without occurrences
            if self.day_of_month is not None and self.day_of_month > _MONTH_LENGTH[self.month_of_year]:
                raise PatternError("dayOfMonth", f"{self.day_of_month} never occurs in monthOfYear {self.month_of_year}")
        _set(self, "start_date", _pattern_utc("startDate", self.start_date))
        if self.end_date is not None:
            _set(self, "end_date", _pattern_utc("endDate", self.end_date))
        _set(self, "exceptions", tuple(sorted({_exception_date(value) for value in self.exceptions})))
        if self.count is not None:
            _check_int("count", self.count, 1, None)
        if self.workdays_only is not None and not isinstance(self.workdays_only, bool):
            raise PatternError("workdaysOnly", f"must be a boolean (got {self.workdays_only!r:.60})")

    @classmethod
    def from_json(cls, raw: str | dict[str, Any] | None) -> Pattern | None:
        """Parse upstream camelCase JSON (a string or an object); None or empty gives None.

        A missing interval is 1 (rrule's default); unknown keys are ignored.
        """
        data = _load_json(raw)
        if not data:
            return None
        frequency = data.get("frequency")
        if not isinstance(frequency, str):
            raise PatternError("frequency", f"is required and must be a string (got {frequency!r:.60})")
        days = data.get("daysOfWeek")
        if days is not None and not isinstance(days, list):
            raise PatternError("daysOfWeek", f"must be a list of integers (got {days!r:.60})")
        exceptions = data.get("exceptions")
        if exceptions is not None and not isinstance(exceptions, list):
            raise PatternError("exceptions", f"must be a list of dates (got {exceptions!r:.60})")
        if data.get("startDate") is None:
            raise PatternError("startDate", "is required")
        interval = _json_int(data, "interval")
        end_date = data.get("endDate")
        return cls(
            # upstream upper-cases the frequency before mapping it, so any case is accepted
            frequency=frequency.strip().lower(),
            interval=1 if interval is None else interval,
            days_of_week=None if days is None else tuple(_as_int("daysOfWeek", day, "only hold integers") for day in days),
            day_of_month=_json_int(data, "dayOfMonth"),
            month_of_year=_json_int(data, "monthOfYear"),
            start_date=_parse_instant("startDate", data.get("startDate")),
            end_date=None if end_date is None else _parse_instant("endDate", end_date),
            exceptions=tuple(_parse_instant("exceptions", value, "only hold ISO-8601 dates").date() for value in exceptions or ()),
            count=_json_int(data, "count"),
            workdays_only=data.get("workdaysOnly"),
        )

    def to_json(self) -> dict[str, Any]:
        """The upstream camelCase shape; None fields are left out."""
        out: dict[str, Any] = {"frequency": self.frequency, "interval": self.interval}
        if self.days_of_week is not None:
            out["daysOfWeek"] = list(self.days_of_week)
        if self.day_of_month is not None:
            out["dayOfMonth"] = self.day_of_month
        if self.month_of_year is not None:
            out["monthOfYear"] = self.month_of_year
        out["startDate"] = _iso(self.start_date)
        if self.end_date is not None:
            out["endDate"] = _iso(self.end_date)
        out["exceptions"] = [_iso(datetime.combine(day, time(), timezone.utc)) for day in self.exceptions]
        if self.count is not None:
            out["count"] = self.count
        if self.workdays_only is not None:
            out["workdaysOnly"] = self.workdays_only
        return out


@dataclass(frozen=True)
class Series:
    """A master entry's window and pattern; every occurrence copies the master's time of day and duration."""

    master_id: str
    start: datetime
    end: datetime
    pattern: Pattern

    def __post_init__(self) -> None:
        _set(self, "start", _utc(self.start, "start"))
        _set(self, "end", _utc(self.end, "end"))

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Holidays:
    """Dates on which no occurrence happens: fixed dates, and month-days that recur every year."""

    dates: frozenset[date] = frozenset()
    recurring_month_days: frozenset[tuple[int, int]] = frozenset()

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[date, bool]]) -> Holidays:
        """Build from ``(holiday_date, is_recurring)`` rows of the holidays table."""
        rows = list(rows)
        return cls(
            dates=frozenset(day for day, recurring in rows if not recurring),
            recurring_month_days=frozenset((day.month, day.day) for day, recurring in rows if recurring),
        )

    def contains(self, d: date) -> bool:
        return d in self.dates or (d.month, d.day) in self.recurring_month_days


NO_HOLIDAYS = Holidays()


@dataclass(frozen=True)
class EntryRef:
    """A parsed entry reference: a master (or plain entry) id, plus the occurrence for a virtual id."""

    master_id: str
    occurrence_ms: int | None = None

    @property
    def occurrence_start(self) -> datetime | None:
        return None if self.occurrence_ms is None else _EPOCH + self.occurrence_ms * _MS


_REFERENCE = re.compile(r"([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})(?:_([0-9]{1,20}))?")
_MAX_MS = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // _MS


def virtual_id(master_id: str, occurrence_start: datetime) -> str:
    """``<master id>_<epoch milliseconds>``, the id upstream gives an occurrence."""
    ms = _epoch_ms(_utc(occurrence_start, "occurrence_start"))
    if ms < 0:
        # parse_reference rejects a signed suffix, so such an id could never be resolved
        raise ValueError("occurrences before 1970 have no virtual id")
    return f"{master_id}_{ms}"


def parse_reference(ref: str) -> EntryRef:
    """Split an entry id into master UUID (lower-case canonical) and occurrence milliseconds."""
    match = _REFERENCE.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        raise BadReference(f"not an entry id (a UUID or <UUID>_<epoch milliseconds>): {ref!r:.80}")
    master_id, suffix = str(uuid.UUID(match[1])), match[2]
    if suffix is None:
        return EntryRef(master_id)
    ms = int(suffix)
    if ms > _MAX_MS:
        raise BadReference(f"occurrence timestamp out of range: {ref!r:.80}")
    return EntryRef(master_id, ms)


def expand(series: Series, window_start: datetime, window_end: datetime, holidays: Holidays = NO_HOLIDAYS) -> list[datetime]:
    """Sorted occurrence starts whose [start, start + duration) strictly overlaps [window_start, window_end)."""
    lo_us = _epoch_us(_utc(window_start, "window_start"))
    hi_us = _epoch_us(_utc(window_end, "window_end"))
    duration_us = series.duration // timedelta(microseconds=1)
    tod = _time_of_day(series.start)
    days = _candidate_days(tod // timedelta(microseconds=1), duration_us, lo_us, hi_us)
    if days is None:
        return []
    starts = []
    for day in _occurrence_dates(series.pattern, *days, holidays):
        start = datetime.combine(day, time(), timezone.utc) + tod
        start_us = _epoch_us(start)
        if start_us < hi_us and start_us + duration_us > lo_us:
            starts.append(start)
    return starts


def may_overlap(first_start: datetime, first_end: datetime, window_start: datetime, window_end: datetime) -> bool:
    """Whether a slot at this time of day and of this length overlaps the window on some day.

    False proves that no occurrence of a series whose first occurrence is
    [first_start, first_end) overlaps the window (nor that first occurrence
    itself), without reading its pattern.
    """
    return slot_filter(window_start, window_end)(first_start, first_end)


def slot_filter(window_start: datetime, window_end: datetime) -> Callable[[datetime, datetime], bool]:
    """`may_overlap` against one window, for checking many slots (the window is converted once)."""
    lo_us, hi_us = _epoch_us(_utc(window_start, "window_start")), _epoch_us(_utc(window_end, "window_end"))

    def may_overlap_window(first_start: datetime, first_end: datetime) -> bool:
        start = _utc(first_start, "first_start")
        duration_us = (_utc(first_end, "first_end") - start) // _US
        return duration_us <= 0 or _candidate_days(_time_of_day(start) // _US, duration_us, lo_us, hi_us) is not None

    return may_overlap_window


def _candidate_days(tod_us: int, duration_us: int, lo_us: int, hi_us: int) -> tuple[date, date] | None:
    """The first and last UTC day whose slot at this time of day can overlap [lo, hi); None if no day can."""
    # Integer arithmetic: the window may sit at the edge of the datetime range.
    first = _clamped_date(lo_us - duration_us - tod_us)
    last = _clamped_date(hi_us - tod_us)
    if first is None or last is None or first > last:
        return None
    # The edge days often cannot hold an overlapping occurrence (an evening series against a
    # morning window): dropping them first spares building the rule at all.
    lo_day, hi_day = first.toordinal(), last.toordinal()
    if _midnight_us(lo_day) + tod_us + duration_us <= lo_us:
        lo_day += 1
    if _midnight_us(hi_day) + tod_us >= hi_us:
        hi_day -= 1
    if lo_day > hi_day:
        return None
    return date.fromordinal(lo_day), date.fromordinal(hi_day)


def is_occurrence(series: Series, occurrence_start: datetime, holidays: Holidays = NO_HOLIDAYS) -> bool:
    """Whether the series generates an occurrence at this instant (compared to the millisecond)."""
    instant = _utc(occurrence_start, "occurrence_start")
    day = instant.date()
    generated = datetime.combine(day, time(), timezone.utc) + _time_of_day(series.start)
    return _epoch_ms(generated) == _epoch_ms(instant) and bool(_occurrence_dates(series.pattern, day, day, holidays))


def with_exception(pattern: Pattern, occurrence_start: datetime) -> Pattern:
    """The pattern without the occurrence on that UTC date (scope "single")."""
    return replace(pattern, exceptions=(*pattern.exceptions, _utc(occurrence_start, "occurrence_start").date()))


def truncate_before(pattern: Pattern, occurrence_start: datetime) -> Pattern:
    """The pattern cut to the occurrences before this one (scope "future", old master).

    The end becomes the UTC day before the occurrence (never later than the old end).
    A count is converted into that end date: while the count lasts past the split the
    end date alone gives the same occurrences, and when it ran out earlier the end date
    is the last counted day. If the split is the first occurrence the result is empty.
    """
    split = _utc(occurrence_start, "occurrence_start").date()
    last_day = split - _DAY
    if pattern.count is not None:
        counted = _rule_dates(pattern, date.min, last_day)
        if len(counted) == pattern.count:
            last_day = counted[-1]
    if pattern.end_date is not None and pattern.end_date.date() <= last_day:
        end_date = pattern.end_date
    else:
        end_date = datetime.combine(last_day, _END_OF_DAY, timezone.utc)
    return replace(pattern, end_date=end_date, count=None, exceptions=tuple(d for d in pattern.exceptions if d < split))


def continue_from(pattern: Pattern, occurrence_start: datetime, new_start: datetime) -> Pattern:
    """The pattern of the new master that takes over at this occurrence (scope "future").

    It starts at new_start, keeps the end date and the exceptions from the occurrence's
    date on, and a count keeps only what the old master had not used up before the split
    (exceptions and holidays use up count, as in rrule).
    """
    split = _utc(occurrence_start, "occurrence_start").date()
    count = pattern.count
    if count is not None:
        count -= len(_rule_dates(pattern, date.min, split - _DAY))
        if count < 1:
            raise ValueError("the series' count is used up before this occurrence")
    return replace(pattern, start_date=new_start, count=count, exceptions=tuple(d for d in pattern.exceptions if d >= split))


def _occurrence_dates(pattern: Pattern, first: date, last: date, holidays: Holidays) -> list[date]:
    """Occurrence dates in [first, last] after removing exceptions and holidays."""
    skipped = frozenset(pattern.exceptions)
    return [day for day in _rule_dates(pattern, first, last) if day not in skipped and not holidays.contains(day)]


def _rule_dates(pattern: Pattern, first: date, last: date) -> list[date]:
    """The dates rrule generates in [first, last] (count and end date applied)."""
    start = pattern.start_date.date()
    first = max(first, start)
    if pattern.end_date is not None:
        last = min(last, pattern.end_date.date())
    if first > last:
        return []
    count = pattern.count
    if count is not None and count > _most_dates(pattern, start, last):
        count = None  # it cannot run out within the range
    # A count numbers occurrences from the series start, so only then must rrule begin there.
    anchor = start if count is not None else _aligned_anchor(pattern, start, first)
    # rrule stops searching only at a match past the range or at year 9999; moving the whole
    # computation by whole calendar cycles to just below 9999 bounds that search for sparse
    # or empty rules (e.g. every 7 days on a weekday the start does not fall on).
    shift = _CYCLE_YEARS * max(0, (MAXYEAR - 1 - last.year) // _CYCLE_YEARS)
    rule = rrule(
        _FREQUENCIES[pattern.frequency],
        dtstart=_midnight(anchor, shift),
        interval=pattern.interval,
        wkst=0,  # upstream's weeks start on Monday; dateutil defaults to the process-wide calendar.firstweekday()
        count=count,
        **_by_rules(pattern, start),
    )
    stop = _midnight(last, shift)
    dates = []
    try:
        for found in rule.xafter(_midnight(first, shift), inc=True):
            if found > stop:
                break
            dates.append(_shifted(found.date(), -shift))
    except ValueError:
        # dateutil builds the week straddling 9999-12-31 before noticing year 10000 does not
        # exist; everything up to the end of the range has been collected by then.
        pass
    return dates


def _most_dates(pattern: Pattern, start: date, last: date) -> int:
    """An upper bound on the dates rrule can generate from start to last (periods times dates per period)."""
    n = pattern.interval
    if pattern.frequency == "daily":
        return (last - start).days // n + 1
    if pattern.frequency == "weekly":
        return ((last - start).days // (7 * n) + 2) * 7
    if pattern.frequency == "monthly":
        return ((last.year * 12 + last.month - start.year * 12 - start.month) // n + 1) * 31
    return ((last.year - start.year) // n + 1) * 366


def _by_rules(pattern: Pattern, start: date) -> dict[str, Any]:
    """BY* parts, with the ones rrule would infer from the series start spelled out."""
    by: dict[str, Any] = {
        "bymonth": pattern.month_of_year,
        "bymonthday": pattern.day_of_month,
        "byweekday": pattern.days_of_week,
    }
    # rrule infers these from dtstart, which may be a later aligned anchor rather than the start.
    if pattern.day_of_month is None and pattern.days_of_week is None:
        if pattern.frequency == "yearly":
            by["bymonth"] = pattern.month_of_year or start.month
            by["bymonthday"] = start.day
        elif pattern.frequency == "monthly":
            by["bymonthday"] = start.day
        elif pattern.frequency == "weekly":
            by["byweekday"] = (start.weekday(),)
    return by


def _aligned_anchor(pattern: Pattern, start: date, first: date) -> date:
    """The latest date <= first from which rrule visits the same periods as from start."""
    n = pattern.interval
    if pattern.frequency in ("daily", "weekly"):
        step = n if pattern.frequency == "daily" else 7 * n
        return start + (first - start).days // step * step * _DAY
    if pattern.frequency == "monthly":
        periods = ((first.year - start.year) * 12 + first.month - start.month) // n
        if periods == 0:
            return start
        month_index = start.year * 12 + start.month - 1 + periods * n
        return date(month_index // 12, month_index % 12 + 1, 1)
    periods = (first.year - start.year) // n
    return date(start.year + periods * n, 1, 1) if periods else start


def _shifted(day: date, years: int) -> date:
    return day.replace(year=day.year + years)


def _midnight(day: date, shift_years: int) -> datetime:
    return datetime.combine(_shifted(day, shift_years), time())


def _time_of_day(instant: datetime) -> timedelta:
    return instant - datetime.combine(instant.date(), time(), instant.tzinfo)


def _clamped_date(epoch_us: int) -> date | None:
    """The UTC date containing this instant, clamped to the date range; None if past its end."""
    ordinal = _EPOCH.toordinal() + epoch_us // (_DAY // timedelta(microseconds=1))
    if ordinal > date.max.toordinal():
        return None
    return date.fromordinal(max(ordinal, 1))


def _midnight_us(ordinal: int) -> int:
    """Epoch microseconds of 00:00 UTC on the day with this proleptic ordinal."""
    return (ordinal - _EPOCH.toordinal()) * (_DAY // timedelta(microseconds=1))


def _epoch_us(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(microseconds=1)


def _epoch_ms(instant: datetime) -> int:
    return (instant - _EPOCH) // _MS


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (got {value!r:.60})")
    return value.astimezone(timezone.utc)


def _pattern_utc(field: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise PatternError(field, f"must be a timezone-aware datetime (got {value!r:.60})")
    return value.astimezone(timezone.utc)


def _exception_date(value: date) -> date:
    if isinstance(value, datetime):
        return _pattern_utc("exceptions", value).date()
    if not isinstance(value, date):
        raise PatternError("exceptions", f"must only hold dates (got {value!r:.60})")
    return value


def _set(obj: object, name: str, value: Any) -> None:
    # normalising a frozen dataclass during __post_init__
    object.__setattr__(obj, name, value)


def _check_int(field: str, value: Any, lowest: int, highest: int | None, need: str = "be an integer") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest or (highest is not None and value > highest):
        bounds = f"between {lowest} and {highest}" if highest is not None else f">= {lowest}"
        raise PatternError(field, f"must {need} {bounds} (got {value!r:.60})")


def _as_int(field: str, value: Any, need: str = "be an integer") -> int:
    # JSON written by JavaScript may carry whole numbers as floats
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PatternError(field, f"must {need} (got {value!r:.60})")
    return value


def _json_int(data: dict[str, Any], field: str) -> int | None:
    value = data.get(field)
    return None if value is None else _as_int(field, value)


def _load_json(raw: str | dict[str, Any] | None) -> dict[str, Any] | None:
    data: Any = raw
    # the column holds a JSON string inside jsonb, so text may be encoded twice
    for _ in range(2):
        if not isinstance(data, str):
            break
        if not data.strip():
            return None
        try:
            data = json.loads(data)
        except ValueError:
            raise PatternError(None, "not valid JSON") from None
    if data is not None and not isinstance(data, dict):
        raise PatternError(None, f"must be a JSON object (got {type(data).__name__})")
    return data


def _parse_instant(field: str, value: Any, need: str = "be an ISO-8601 date") -> datetime:
    """An ISO-8601 date or date-time; without an offset it is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise PatternError(field, f"must {need} (got {value!r:.60})")
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _iso(instant: datetime) -> str:
    """ISO-8601 in UTC with a Z: milliseconds like upstream, microseconds only when present."""
    timespec = "milliseconds" if instant.microsecond % 1000 == 0 else "microseconds"
    return instant.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
