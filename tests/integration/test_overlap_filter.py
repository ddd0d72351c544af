"""The conflict query's time-of-day filter, in PostgreSQL, against the Python check that decides.

The filter may keep a slot within FILTER_SLACK_S of the window that the Python check drops, never
drop one it keeps, and drops everything farther away."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime, bindparam, select

from handlers.conflicts import FILTER_SLACK_S, may_overlap_sql
from handlers.recurrence import may_overlap

pytestmark = pytest.mark.integration

_INSTANT = DateTime(timezone=True)
_QUERY = select(may_overlap_sql(*(bindparam(n, type_=_INSTANT) for n in ("first_start", "first_end", "window_start", "window_end"))))
_BASE = datetime(2027, 1, 4, tzinfo=timezone.utc)
# Microsecond instants over a few years, slots and windows from nothing to a few days: the edges
# (touching windows, slots across midnight, exact multiples of a day) come up often at this scale.
_instants = st.integers(0, 3 * 365 * 24 * 3600 * 10**6).map(lambda us: _BASE + timedelta(microseconds=us))
_lengths = st.one_of(st.integers(-3600, 3 * 24 * 3600).map(lambda s: timedelta(seconds=s)), st.integers(0, 4).map(lambda d: timedelta(days=d)))


@pytest.fixture(scope="module")
def conn(owner):
    with owner.connect() as connection:
        yield connection


@settings(max_examples=400, deadline=None)
@given(_instants, _lengths, st.one_of(_instants, _instants.map(lambda i: i.replace(second=0, microsecond=0))), _lengths)
def test_the_sql_filter_keeps_every_slot_the_python_check_keeps_and_drops_those_clear_of_the_window(conn, first_start, slot, window_start, window):
    first_end, window_end = first_start + slot, window_start + window
    params = {"first_start": first_start, "first_end": first_end, "window_start": window_start, "window_end": window_end}
    kept = conn.execute(_QUERY, params).scalar()
    if may_overlap(first_start, first_end, window_start, window_end):
        assert kept
    margin = timedelta(seconds=FILTER_SLACK_S + 1)
    if not may_overlap(first_start, first_end, window_start - margin, window_end + margin):
        assert not kept
