"""The CoinGecko call budget: calls counted this minute and month (every process, every endpoint), 429s, the
cooldown, and what the schedule will spend in the month against COINGECKO_MONTHLY_CALLS."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from app.domain.errors import BrokerUnavailable
from app.domain.schedule import CronSchedule
from app.ports import Claims, UsageCounter
from app.services.polling import COOLDOWN_KEY

# One /simple/price call carries every tracked coin (coingecko.md §7: up to ~515 ids per call), so a tick costs
# one call per this many coins, rounded up.
IDS_PER_CALL = 500
# Schedules offered when the projection exceeds the budget, finest first (each a valid UPDATE_CRON line).
CANDIDATE_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month of `now`: [first instant, first instant of the next month)."""
    now = now.astimezone(timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def ticks_between(schedule: CronSchedule, start: datetime, end: datetime) -> int:
    """How many ticks of `schedule` fall in the whole UTC days [start, end): per matching day, hours x minutes
    (Celery's rule: day of month AND day of week must match, as CronSchedule evaluates it)."""
    day, count = start, 0
    while day < end:
        if (day.month in schedule.month_of_year and day.day in schedule.day_of_month
                and day.isoweekday() % 7 in schedule.day_of_week):
            count += len(schedule.hour) * len(schedule.minute)
        day += timedelta(days=1)
    return count


def calls_per_tick(coin_count: int) -> int:
    return max(1, math.ceil(coin_count / IDS_PER_CALL))


def projected_month_calls(schedule: CronSchedule, coin_count: int, now: datetime) -> int:
    """Calls the schedule makes in the whole UTC month of `now` for `coin_count` coins (retries not counted)."""
    start, end = month_bounds(now)
    return ticks_between(schedule, start, end) * calls_per_tick(coin_count)


def _cron_every(minutes: int) -> str:
    if minutes < 60:
        return f"*/{minutes} * * * *"
    if minutes < 1440:
        return f"0 */{minutes // 60} * * *"
    return "0 0 * * *"


def fitting_schedule(coin_count: int, budget: int, now: datetime) -> str | None:
    """The most frequent regular UPDATE_CRON whose month fits `budget`, or None when not even daily does."""
    start, end = month_bounds(now)
    month_minutes = (end - start).total_seconds() / 60
    for minutes in CANDIDATE_MINUTES:
        if math.ceil(month_minutes / minutes) * calls_per_tick(coin_count) <= budget:
            return _cron_every(minutes)
    return None


def budget_warning(schedule: CronSchedule, coin_count: int, budget: int, now: datetime) -> str | None:
    """A sentence when the schedule's month exceeds `budget`: by how much, and a schedule that fits; else None."""
    projected = projected_month_calls(schedule, coin_count, now)
    if projected <= budget:
        return None
    fit = fitting_schedule(coin_count, budget, now)
    advice = (f"UPDATE_CRON={fit!r} would fit" if fit else "not even one update a day fits; raise the budget")
    return (f"UPDATE_CRON {schedule.expression!r} for {coin_count} coins makes {projected} CoinGecko calls this "
            f"month, {projected - budget} more than COINGECKO_MONTHLY_CALLS={budget}; {advice}")


def usage_report(counter: UsageCounter, claims: Claims, schedule: CronSchedule, coin_count: int, budget: int,
                 now: datetime) -> dict[str, Any]:
    """What GET /api/v1/usage answers. Redis unreachable: the counts and the cooldown are null (unknown), and
    `error` says so; the projection needs no Redis."""
    error = None
    try:
        counts: dict[str, int | None] = dict(counter.usage(now))
        cooldown = claims.remaining(COOLDOWN_KEY)
    except BrokerUnavailable as exc:
        counts, cooldown = {"minute": None, "month": None, "rate_limited_month": None}, None
        error = {"code": exc.code, "message": "Redis is unreachable: the counts are unknown"}
    projected = projected_month_calls(schedule, coin_count, now)
    return {
        "calls_this_minute": counts["minute"],
        "calls_this_month": counts["month"],
        "rate_limited_this_month": counts["rate_limited_month"],
        "no_calls_before": (now + timedelta(seconds=cooldown)).isoformat() if cooldown else None,
        "month": now.astimezone(timezone.utc).strftime("%Y-%m"),
        "projection": {"schedule": schedule.expression, "coins": coin_count, "calls": projected,
                       "budget": budget, "over_budget_by": max(0, projected - budget),
                       "warning": budget_warning(schedule, coin_count, budget, now)},
        "error": error,
    }
