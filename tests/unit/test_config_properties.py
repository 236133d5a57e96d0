"""Property tests of the configuration: whatever `Settings` accepts, the processes that read it accept too."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celery import Celery
from celery.schedules import ParseException, crontab
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from app.config import Settings
from app.domain.errors import ConfigError
from app.domain.schedule import FIELDS
from beat_schedule import TASK_NAME, build_schedule

UTC = timezone.utc
_RANGES = {"minute": (0, 59), "hour": (0, 23), "day_of_month": (1, 31), "month_of_year": (1, 12),
           "day_of_week": (0, 7)}  # 7 on purpose: classic cron's second Sunday, which Celery refuses


def _field(name: str) -> st.SearchStrategy[str]:
    low, high = _RANGES[name]
    number = st.integers(low - 1, high + 1).map(str)
    rng = st.tuples(st.integers(low, high), st.integers(low, high)).map(lambda ab: f"{ab[0]}-{ab[1]}")
    step = st.integers(0, 20).map(str)
    atom = st.one_of(st.just("*"), number, rng)
    stepped = st.tuples(atom, step).map(lambda t: f"{t[0]}/{t[1]}")
    part = st.one_of(atom, atom, stepped)
    return st.lists(part, min_size=1, max_size=3).map(",".join)


LINES = st.tuples(*(_field(name) for name in FIELDS)).map(" ".join)
_celery = Celery(set_as_current=False)
_celery.conf.update(timezone="UTC", enable_utc=True)


def _celery_next(line: str, after: datetime) -> datetime:
    entry = crontab(app=_celery, **dict(zip(FIELDS, line.split())))
    last, delta, _ = entry.remaining_delta(after)
    return last + delta


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES, st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31)))
def test_an_accepted_cron_line_is_one_beat_runs_and_fires_when_beat_does(line, moment):
    moment = moment.replace(second=0, microsecond=0, tzinfo=UTC)
    try:
        s = Settings.from_env({"UPDATE_CRON": line})
    except ConfigError as exc:  # refused: with the variable's name, and Celery would refuse or never fire it
        assert exc.variable == "UPDATE_CRON"
        return
    entry = build_schedule(s)[TASK_NAME]["schedule"]  # what beat is given
    assert isinstance(entry, crontab)
    crontab(**dict(zip(FIELDS, line.split())))  # Celery accepts the line itself
    assert s.update_interval > timedelta(0)
    assert s.schedule.next(moment) == _celery_next(line, moment)


@hsettings(max_examples=200, deadline=None)
@given(LINES)
def test_a_line_celery_runs_is_accepted(line):
    try:
        crontab(**dict(zip(FIELDS, line.split())))
    except (ValueError, TypeError, IndexError, ParseException):
        return
    assert Settings.from_env({"UPDATE_CRON": line}).update_cron == line
