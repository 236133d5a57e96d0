"""Cron arithmetic for the update schedule: the tick before or after a moment, on the sets Celery parsed."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# The five fields, in order, named as Celery's crontab names its keyword arguments (app/cron.py parses with it).
FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
# The longest gap between two ticks of a line that fires at all: a date on a given weekday (day-of-month AND
# day-of-week, Celery's rule) may skip 40 years, Feb 29 on a Monday from 2072 to 2112 (2100 is no leap year).
_LOOKAHEAD_DAYS = 366 * 41
_REFERENCE_DAYS = 366 * 8 + 2  # shortest_interval looks at this stretch: every leap-day pattern repeats in it


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron line (minute hour day-of-month month day-of-week, Sunday = 0), evaluated in UTC. Build it
    with `app.cron.parse_cron`, which lets Celery's crontab parse the line.

    Day-of-month and day-of-week must both match (Celery's crontab semantics, which beat uses), unlike classic cron's
    "either" rule when both are restricted.
    """

    expression: str
    minute: frozenset[int]
    hour: frozenset[int]
    day_of_month: frozenset[int]
    month_of_year: frozenset[int]
    day_of_week: frozenset[int]

    def fields(self) -> dict[str, str]:
        """The line split into Celery crontab's keyword arguments."""
        return dict(zip(FIELDS, self.expression.split()))

    def _day_matches(self, day: datetime) -> bool:
        return (
            day.month in self.month_of_year
            and day.day in self.day_of_month
            and (day.isoweekday() % 7) in self.day_of_week
        )

    def previous(self, at: datetime) -> datetime:
        """The latest tick at or before `at` (UTC, whole minute). Looks back up to 41 years."""
        at = at.astimezone(timezone.utc).replace(second=0, microsecond=0)
        day = at.replace(hour=0, minute=0)
        for _ in range(_LOOKAHEAD_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hour, reverse=True):
                    for minute in sorted(self.minute, reverse=True):
                        tick = day.replace(hour=hour, minute=minute)
                        if tick <= at:
                            return tick
            day -= timedelta(days=1)
        raise ValueError(f"cron line {self.expression!r} never fires")

    def next(self, after: datetime) -> datetime:
        """The first tick strictly after `after`."""
        at = after.astimezone(timezone.utc).replace(second=0, microsecond=0)
        day = at.replace(hour=0, minute=0)
        for _ in range(_LOOKAHEAD_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hour):
                    for minute in sorted(self.minute):
                        tick = day.replace(hour=hour, minute=minute)
                        if tick > after:
                            return tick
            day += timedelta(days=1)
        raise ValueError(f"cron line {self.expression!r} never fires")

    def shortest_interval(self) -> timedelta:
        """The shortest gap between two ticks, over up to 200 ticks of a reference stretch of eight years (leap
        days included). Raises ValueError for a line that never fires."""
        start = datetime(2024, 1, 1, tzinfo=timezone.utc)
        end = start + timedelta(days=_REFERENCE_DAYS)
        tick = self.next(start)
        best: timedelta | None = None
        for _ in range(200):
            following = self.next(tick)
            gap = following - tick
            best = gap if best is None else min(best, gap)
            tick = following
            if tick > end:
                break
        assert best is not None
        return best
