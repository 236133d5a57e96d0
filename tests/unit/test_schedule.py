"""Cron arithmetic and the beat entry built from it."""
from datetime import datetime, timedelta, timezone

import pytest
from celery.schedules import crontab

from app.config import Settings
from app.domain.schedule import CronSchedule
from beat_schedule import TASK_NAME, build_schedule

UTC = timezone.utc


def test_default_schedule_is_aligned_to_the_quarter_hour():
    s = CronSchedule.parse("*/15 * * * *")
    assert s.previous(datetime(2026, 1, 1, 10, 29, 59, tzinfo=UTC)) == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert s.previous(datetime(2026, 1, 1, 10, 30, 0, tzinfo=UTC)) == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert s.next(datetime(2026, 1, 1, 10, 30, 0, tzinfo=UTC)) == datetime(2026, 1, 1, 10, 45, tzinfo=UTC)
    assert s.next(datetime(2026, 1, 1, 23, 50, tzinfo=UTC)) == datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert s.shortest_interval() == timedelta(minutes=15)


def test_ranges_lists_and_weekdays():
    s = CronSchedule.parse("0,30 9-17 * * 1-5")  # half-hourly in office hours, Monday to Friday
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert s.next(friday_evening) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday
    assert s.previous(friday_evening) == datetime(2026, 11, 27, 17, 30, tzinfo=UTC)
    assert s.shortest_interval() == timedelta(minutes=30)


@pytest.mark.parametrize("line", ["* * * *", "*/0 * * * *", "60 * * * *", "a * * * *", "5-1 * * * *"])
def test_bad_lines_are_refused(line):
    with pytest.raises(ValueError):
        CronSchedule.parse(line)


def test_beat_entry_matches_the_cron_line_and_expires_before_the_next_tick():
    settings = Settings.from_env({})
    entry = build_schedule(settings)[TASK_NAME]
    assert entry["task"] == "tasks.store_crypto_stats"
    assert entry["schedule"] == crontab(minute="*/15")
    assert entry["kwargs"] == {"scheduled": True}
    assert 0 < entry["options"]["expires"] < 15 * 60
    assert entry["schedule"].minute == {0, 15, 30, 45} and len(entry["schedule"].hour) == 24
