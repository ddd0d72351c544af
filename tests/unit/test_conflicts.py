"""Conflict windows and the shift search, without services."""
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.conflicts import Overlap, earliest_free, is_inactive

T0 = datetime(2027, 3, 1, 10, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def slot(start_h: float, end_h: float) -> Overlap:
    return Overlap("e", "e", "u", T0 + start_h * HOUR, T0 + end_h * HOUR)


def test_free_window_is_the_requested_one():
    assert earliest_free([], T0, HOUR) == T0


def test_shift_past_an_overlapping_entry():
    # held 10:00-11:00, asked 10:30-11:30 → 11:00-12:00
    assert earliest_free([slot(0, 1)], T0 + 0.5 * HOUR, HOUR) == T0 + HOUR


def test_back_to_back_is_not_a_conflict_and_gaps_too_small_are_skipped():
    assert earliest_free([slot(1, 2)], T0, HOUR) == T0
    assert earliest_free([slot(0, 1), slot(1.5, 3)], T0, HOUR) == T0 + 3 * HOUR


def test_nothing_free_within_the_horizon():
    assert earliest_free([slot(0, 24 * 20)], T0, HOUR) is None


def test_inactive_statuses_in_any_spelling():
    assert all(is_inactive(s) for s in (" Cancelled ", "canceled", "DONE", "no-show", "No Show"))
    assert not any(is_inactive(s) for s in (None, "scheduled", "Scheduled", "en route"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), max_size=12),
    st.integers(0, 100),
    st.integers(1, 20),
)
def test_the_shifted_window_is_free_and_no_earlier_window_is(busy, start, length):
    taken = [Overlap("e", "e", "u", T0 + s * timedelta(minutes=15), T0 + (s + d) * timedelta(minutes=15)) for s, d in busy]
    step = timedelta(minutes=15)
    begin, duration = T0 + start * step, length * step
    found = earliest_free(taken, begin, duration, horizon=timedelta(days=30))

    def free(at: datetime) -> bool:
        return all(not (o.start < at + duration and o.end > at) for o in taken)

    assert found is not None and found >= begin and free(found)
    probe = begin
    while probe < found:
        assert not free(probe)
        probe += step
