"""Instants on the wire."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from handlers.timeutil import iso

ZONES = st.sampled_from([timezone.utc, timezone(timedelta(hours=-5, minutes=-30)), ZoneInfo("Etc/UTC"), ZoneInfo("Europe/Berlin")])


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES))
def test_an_instant_is_written_in_utc_with_milliseconds_and_a_z(value):
    assert iso(value) == value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_no_instant_is_written_as_none():
    assert iso(None) is None
