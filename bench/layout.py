"""The benchmark's data set, as arithmetic: every id and window follows from small integers.

The seed, the command generator and the pgbench script all derive the same
rows from the same numbers, so the database ceiling can aim at real entries.

Each technician owns one entry per "lane" (a day after BASE). Lanes whose index
ends in 9 hold weekly recurring series in the evening; the others hold a plain
ticket appointment in office hours. A reschedule moves a plain entry within its
own lane, so it never collides with the technician's other entries, while the
conflict check still expands every series the technician has.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

BASE = datetime(2027, 1, 4, tzinfo=timezone.utc)  # a Monday
OFFICE_START_MIN = 8 * 60
# Plain entries start anywhere in the first 9 office hours, on the minute.
OFFICE_SLOTS = 9 * 60
DURATION = timedelta(hours=1)

# Kind prefixes of the structured UUIDs: `<prefix>-0000-4000-8000-<12 digits>`.
TENANT, USER, ENTRY, ROLE, PERMISSION = "a0000000", "b0000000", "e0000000", "c0000000", "d0000000"
DISPATCHER = 999  # user number of each tenant's dispatcher, after the technicians


def uid(prefix: str, number: int) -> str:
    return f"{prefix}-0000-4000-8000-{number:012d}"


def sql_uid(prefix: str, number_sql: str) -> str:
    """The same UUID computed in SQL from an integer expression (for pgbench)."""
    return f"('{prefix}-0000-4000-8000-' || lpad(({number_sql})::text, 12, '0'))"


@dataclass(frozen=True)
class Layout:
    tenants: int = 20
    technicians: int = 50
    entries: int = 100_000

    @property
    def lanes(self) -> int:
        """Entries per technician (at least 10, so every technician has a series)."""
        return max(10, self.entries // (self.tenants * self.technicians))

    @property
    def entries_per_tenant(self) -> int:
        return self.lanes * self.technicians

    @property
    def total_entries(self) -> int:
        return self.entries_per_tenant * self.tenants

    def tenant_id(self, t: int) -> str:
        return uid(TENANT, t)

    def user_number(self, t: int, u: int) -> int:
        return t * 1000 + u

    def technician_id(self, t: int, u: int) -> str:
        return uid(USER, self.user_number(t, u))

    def dispatcher_id(self, t: int) -> str:
        return uid(USER, self.user_number(t, DISPATCHER))

    def entry_number(self, t: int, u: int, lane: int) -> int:
        return t * self.entries_per_tenant + lane * self.technicians + u

    def entry_id(self, t: int, u: int, lane: int) -> str:
        return uid(ENTRY, self.entry_number(t, u, lane))

    @staticmethod
    def is_recurring_lane(lane: int) -> bool:
        return lane % 10 == 9

    @property
    def plain_lanes(self) -> int:
        return sum(1 for lane in range(self.lanes) if not self.is_recurring_lane(lane))

    @staticmethod
    def plain_lane(i: int) -> int:
        """The i-th lane that holds plain entries (skips 9, 19, …)."""
        return i + i // 9

    @staticmethod
    def window(lane: int, minute: int) -> tuple[datetime, datetime]:
        """A plain entry's window: its lane's day, `minute` minutes into office hours."""
        start = BASE + timedelta(days=lane, minutes=OFFICE_START_MIN + minute)
        return start, start + DURATION

    @staticmethod
    def series_window(lane: int) -> tuple[datetime, datetime, int]:
        """A series' first window and weekday: weekly, in the evening, one slot per series."""
        n = lane // 10
        day = n % 5
        start = BASE + timedelta(days=day, hours=18 + (n // 5) % 4)
        return start, start + DURATION, day
