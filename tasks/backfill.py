"""The thin Celery task `tasks.backfill_coin` (one chunk per run, then it queues itself again) and the start-up
check of the month's CoinGecko budget."""
from __future__ import annotations

import logging

from celery.signals import beat_init, worker_ready

from app.domain.errors import BrokerUnavailable
from app.queue import BACKFILL_TASK_NAME
from app.services.backfill import backfill_step
from app.services.usage import budget_warning
from tasks.celery_app import celery, settings
from tasks.prices import services

log = logging.getLogger(BACKFILL_TASK_NAME)


@celery.task(name=BACKFILL_TASK_NAME, bind=True, max_retries=None)
def backfill_coin(self, coin: str, currency: str, days: int):
    """One step of a backfill (app.services.backfill.backfill_step): a chunk fetched and stored, or a wait. The
    next step is queued with the countdown the step asked for; a worker that dies mid-step has its message
    redelivered (acks_late), and the step is taken again, storing only what is missing."""
    s = services()
    try:
        step = backfill_step(s.history, s.repo, s.counters, s.counters, s.claims, coin, currency, days, s.clock,
                             max_cooldown=settings.budget.max_cooldown, metrics=s.metrics, owner=self.request.id)
    except BrokerUnavailable as exc:
        log.warning("backfill of %s/%s cannot read its progress (%s); trying again in 30 s", coin, currency,
                    exc.message)
        raise self.retry(countdown=30, max_retries=None)
    if step.next_in_seconds is not None:
        backfill_coin.apply_async(kwargs={"coin": coin, "currency": currency, "days": days},
                                  countdown=step.next_in_seconds)


def warn_if_over_budget(coin_count: int) -> None:
    """One warning line when the schedule's month of calls exceeds COINGECKO_MONTHLY_CALLS (call it at start and
    whenever the tracked set changes)."""
    warning = budget_warning(settings.schedule, coin_count, settings.coingecko_monthly_calls,
                             services().clock())
    if warning:
        log.warning("%s", warning)


@worker_ready.connect
def budget_at_worker_start(sender=None, **_):
    warn_if_over_budget(len(settings.tracked.source_ids()))


@beat_init.connect
def budget_at_beat_start(sender=None, **_):
    warn_if_over_budget(len(settings.tracked.source_ids()))


