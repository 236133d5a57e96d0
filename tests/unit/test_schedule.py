"""Cron arithmetic and the beat entry built from it."""
from datetime import datetime, timedelta, timezone

import pytest
from celery.schedules import crontab

from app.config import Settings
from app.cron import parse_cron
from beat_schedule import TASK_NAME, build_schedule

UTC = timezone.utc


def test_default_schedule_is_aligned_to_the_quarter_hour():
    s = parse_cron("*/15 * * * *")
    assert s.previous(datetime(2026, 1, 1, 10, 29, 59, tzinfo=UTC)) == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert s.previous(datetime(2026, 1, 1, 10, 30, 0, tzinfo=UTC)) == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert s.next(datetime(2026, 1, 1, 10, 30, 0, tzinfo=UTC)) == datetime(2026, 1, 1, 10, 45, tzinfo=UTC)
    assert s.next(datetime(2026, 1, 1, 23, 50, tzinfo=UTC)) == datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert s.shortest_interval() == timedelta(minutes=15)


def test_ranges_lists_and_weekdays():
    s = parse_cron("0,30 9-17 * * 1-5")  # half-hourly in office hours, Monday to Friday
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert s.next(friday_evening) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday
    assert s.previous(friday_evening) == datetime(2026, 11, 27, 17, 30, tzinfo=UTC)
    assert s.shortest_interval() == timedelta(minutes=30)


@pytest.mark.parametrize("line", ["* * * *", "*/0 * * * *", "60 * * * *", "a * * * *", "0 0 31 2 *"])
def test_bad_lines_are_refused(line):
    with pytest.raises(ValueError):
        parse_cron(line)


def test_a_line_celery_cannot_run_is_refused_naming_the_field():
    # Our former parser took '5/15' as 5, 20, 35, 50; Celery's crontab refuses it, and beat died on it.
    with pytest.raises(ValueError) as err:
        parse_cron("5/15 * * * *")
    assert "minute field '5/15'" in str(err.value) and "5-59/15" in str(err.value)
    assert parse_cron("5-59/15 * * * *").minute == {5, 20, 35, 50}


def test_leap_day_fires_every_four_years():
    s = parse_cron("0 0 29 2 *")
    assert s.next(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2028, 2, 29, tzinfo=UTC)
    assert s.previous(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2024, 2, 29, tzinfo=UTC)
    assert s.shortest_interval() == timedelta(days=4 * 365 + 1)
    assert s.next(datetime(2096, 3, 1, tzinfo=UTC)) == datetime(2104, 2, 29, tzinfo=UTC)  # 2100 is no leap year


def test_beat_entry_matches_the_cron_line_and_expires_before_the_next_tick():
    settings = Settings.from_env({})
    entry = build_schedule(settings)[TASK_NAME]
    assert entry["task"] == "tasks.store_crypto_stats"
    assert entry["schedule"] == crontab(minute="*/15")
    assert entry["kwargs"] == {"scheduled": True}
    assert 0 < entry["options"]["expires"] < 15 * 60
    assert entry["schedule"].minute == {0, 15, 30, 45} and len(entry["schedule"].hour) == 24
