"""The conflict query's time-of-day filter, in PostgreSQL, against the Python check that decides."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime, bindparam, select

from handlers.conflicts import may_overlap_sql
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
def test_the_sql_filter_keeps_every_slot_the_python_check_keeps_and_drops_the_others(conn, first_start, slot, window_start, window):
    params = {"first_start": first_start, "first_end": first_start + slot, "window_start": window_start, "window_end": window_start + window}
    expected = may_overlap(params["first_start"], params["first_end"], params["window_start"], params["window_end"])
    assert conn.execute(_QUERY, params).scalar() is expected
