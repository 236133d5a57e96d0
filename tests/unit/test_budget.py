"""The run's time budget (app/domain/budget.py): the relations between its durations hold for every schedule and
timeout the settings accept, and Celery, beat and the runs are configured from it."""
from datetime import timedelta

import pytest

from app.config import Settings
from app.domain.budget import TimeBudget

SCHEDULES = ["* * * * *", "*/5 * * * *", "*/15 * * * *", "0 * * * *", "0 0 * * *", "0 9 * * 1"]
TIMEOUTS = [(0.1, 0.1), (5, 20), (10, 60), (120, 600)]
VISIBILITY = [None, "1", "30", "300", "86400"]


def budgets():
    for cron in SCHEDULES:
        for connect, read in TIMEOUTS:
            for visibility in VISIBILITY:
                env = {"UPDATE_CRON": cron, "UPSTREAM_CONNECT_TIMEOUT_SECONDS": str(connect),
                       "UPSTREAM_READ_TIMEOUT_SECONDS": str(read)}
                if visibility:
                    env["BROKER_VISIBILITY_TIMEOUT_SECONDS"] = visibility
                yield Settings.from_env(env)


@pytest.mark.parametrize("settings", list(budgets()), ids=lambda s: s.update_cron)
def test_the_durations_of_a_run_agree_with_each_other(settings):
    b = settings.budget
    # One attempt fits CoinGecko's timeouts; the soft limit stops it after that, the hard limit after the soft one.
    assert b.attempt_seconds > settings.upstream_connect_timeout_seconds + settings.upstream_read_timeout_seconds
    assert b.hard_limit_seconds > b.soft_limit_seconds > b.attempt_seconds
    # No countdown as long as the visibility timeout (the held message would be handed to a second worker), and
    # countdown plus a whole attempt fit in it whenever the timeout leaves room for that at all.
    assert b.max_retry_delay_seconds < b.visibility_timeout_seconds
    if b.visibility_timeout_seconds >= 2 * b.soft_limit_seconds:
        assert b.max_retry_delay_seconds + b.soft_limit_seconds <= b.visibility_timeout_seconds
    # Without a setting, a dead worker's run comes back within the interval it belongs to.
    if settings.broker_visibility_timeout_seconds is None:
        assert b.visibility_timeout_seconds < b.interval.total_seconds() or b.visibility_timeout_seconds == 60
    # kombu sweeps for overdue runs several times per visibility timeout (or every second when it is that short).
    assert 1 <= b.restore_interval_seconds <= max(1, b.visibility_timeout_seconds / 5)
    # A run keeps its slot to itself for one attempt at most, and never past half the visibility timeout (its
    # redelivery must find the twin trigger skipped, not the slot still claimed by a dead run for long).
    assert 1 <= b.fetch_claim_seconds <= b.attempt_seconds
    assert b.fetch_claim_seconds <= max(1.0, b.visibility_timeout_seconds / 2)
    # "Stored" outlives the tick (a late twin trigger is still skipped); a cooldown never outlasts an interval.
    assert b.slot_done_ttl > b.interval and b.max_cooldown <= b.interval
    # Beat's runs expire before the next tick (a backlog never piles up), after at least 30 s.
    assert 30 <= b.beat_expiry_seconds < b.interval.total_seconds()
    assert b.stale_after > b.interval


def test_the_default_budget_is_the_documented_one():
    b = Settings.from_env({}).budget
    assert (b.attempt_seconds, b.soft_limit_seconds, b.hard_limit_seconds) == (40, 50, 70)
    assert (b.visibility_timeout_seconds, b.max_retry_delay_seconds, b.fetch_claim_seconds) == (450, 400, 40)
    assert b.restore_interval_seconds == 10 and b.beat_expiry_seconds == 840
    assert b.slot_done_ttl == b.stale_after == timedelta(minutes=30) and b.max_cooldown == timedelta(minutes=15)


def test_celery_and_beat_take_their_numbers_from_the_budget(settings):
    from beat_schedule import build_schedule
    from tasks.celery_app import celery_config

    b, conf = settings.budget, celery_config(settings)
    assert conf["task_soft_time_limit"] == b.soft_limit_seconds and conf["task_time_limit"] == b.hard_limit_seconds
    assert conf["broker_transport_options"]["visibility_timeout"] == int(b.visibility_timeout_seconds)
    assert conf["broker_transport_options"]["unacked_restore_interval"] == b.restore_interval_seconds
    [entry] = build_schedule(settings).values()
    assert entry["options"]["expires"] == b.beat_expiry_seconds


def test_derive_needs_no_settings():
    b = TimeBudget.derive(timedelta(minutes=15), 5, 20)
    assert b == Settings.from_env({}).budget
