"""Cron arithmetic for the update schedule: parse a five-field cron line, find the slot a run belongs to."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day_of_month", 1, 31), ("month_of_year", 1, 12), ("day_of_week", 0, 6))


def _parse_field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step must be positive in {part!r}")
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            a, b = rng.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(rng)
            end = high if step_text else start
        if not (low <= start <= end <= high):
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron line (minute hour day-of-month month day-of-week, Sunday = 0), evaluated in UTC.

    Day-of-month and day-of-week must both match (Celery's crontab semantics, which beat uses), unlike classic cron's
    "either" rule when both are restricted.
    """

    expression: str
    minute: frozenset[int]
    hour: frozenset[int]
    day_of_month: frozenset[int]
    month_of_year: frozenset[int]
    day_of_week: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> "CronSchedule":
        """Raises ValueError with a readable reason on a bad line."""
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
        try:
            sets = [_parse_field(p, lo, hi) for p, (_, lo, hi) in zip(parts, _FIELDS)]
        except ValueError as exc:
            raise ValueError(str(exc).replace("invalid literal for int() with base 10", "not a number")) from None
        return cls(" ".join(parts), *sets)

    def fields(self) -> dict[str, str]:
        """The line split into Celery crontab's keyword arguments."""
        return dict(zip((name for name, _, _ in _FIELDS), self.expression.split()))

    def _day_matches(self, day: datetime) -> bool:
        return (
            day.month in self.month_of_year
            and day.day in self.day_of_month
            and (day.isoweekday() % 7) in self.day_of_week
        )

    def previous(self, at: datetime) -> datetime:
        """The latest tick at or before `at` (UTC, whole minute). Looks back up to about four years."""
        at = at.astimezone(timezone.utc).replace(second=0, microsecond=0)
        day = at.replace(hour=0, minute=0)
        for _ in range(366 * 4 + 1):
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
        for _ in range(366 * 4 + 1):
            if self._day_matches(day):
                for hour in sorted(self.hour):
                    for minute in sorted(self.minute):
                        tick = day.replace(hour=hour, minute=minute)
                        if tick > after:
                            return tick
            day += timedelta(days=1)
        raise ValueError(f"cron line {self.expression!r} never fires")

    def shortest_interval(self) -> timedelta:
        """The shortest gap between two ticks, measured over the coming ticks of a reference week."""
        tick = self.next(datetime(2024, 1, 1, tzinfo=timezone.utc))
        best: timedelta | None = None
        for _ in range(200):
            following = self.next(tick)
            gap = following - tick
            best = gap if best is None else min(best, gap)
            tick = following
        assert best is not None
        return best
