"""The one cron parser: UPDATE_CRON is judged by Celery's own `crontab`, the class beat schedules with, so a line
the settings accept is a line beat runs, and the slot arithmetic works on the sets Celery expanded it to."""
from __future__ import annotations

from celery.schedules import ParseException, crontab

from app.domain.schedule import FIELDS, CronSchedule


# What Celery raises for a line it cannot run (ParseException is not a ValueError).
_REFUSED = (ValueError, TypeError, IndexError, ParseException)


def parse_cron(expression: str) -> CronSchedule:
    """A five-field line (minute hour day-of-month month day-of-week, UTC, Sunday = 0) as beat reads it.

    Raises ValueError with a readable reason: the wrong number of fields, the field Celery refused (with Celery's
    words), or a line that never fires (`0 0 31 2 *`; `0 0 29 2 *` fires in leap years and is accepted)."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
    fields = dict(zip(FIELDS, parts))
    for name, text in fields.items():  # one field at a time, so the message names the field Celery refused
        try:
            crontab(**{name: text})
        except _REFUSED as exc:
            hint = ""
            if any("/" in part and part.split("/")[0] not in ("*", "") and "-" not in part.split("/")[0]
                   for part in text.split(",")):
                hint = " (a step needs * or a range before it, e.g. 5-59/15)"  # Celery's words say "weekday" here
            raise ValueError(f"{name.replace('_', ' ')} field {text!r}: {exc}{hint}") from None
    try:
        entry = crontab(**fields)
    except _REFUSED as exc:
        raise ValueError(str(exc)) from None
    schedule = CronSchedule(" ".join(parts), frozenset(entry.minute), frozenset(entry.hour),
                            frozenset(entry.day_of_month), frozenset(entry.month_of_year),
                            frozenset(entry.day_of_week))
    schedule.shortest_interval()  # raises ValueError when it never fires
    return schedule


def beat_crontab(schedule: CronSchedule) -> crontab:
    """The Celery crontab beat runs for `schedule`: built from the very line the settings accepted."""
    return crontab(**schedule.fields())
