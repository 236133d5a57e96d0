"""The thin Celery task `tasks.store_crypto_stats` and the worker's start-up hooks."""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta

from celery import current_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import after_setup_logger, after_setup_task_logger, beat_init, worker_process_init, worker_ready

from app import logs
from app.bootstrap import Services, announce, bootstrap
from app.domain.errors import AppError, UpstreamUnavailable
from app.queue import TASK_NAME
from app.services.polling import (STARTUP_CLAIM, needs_startup_update, report_failure, retry_decision, run_deadline,
                                  run_update, scheduled_slot)
from tasks.celery_app import celery, process_role, settings

log = logging.getLogger(TASK_NAME)

_services: Services | None = None
_schema_ready = False


@worker_process_init.connect
def build_process_services(**_):
    """Each pool process builds its own services after fork (PyMongo and sockets must not cross a fork)."""
    global _services, _schema_ready
    _services, _schema_ready = bootstrap(settings), False


def services() -> Services:
    """This process's services: a pool process's own (worker_process_init), else built on first use (the solo and
    thread pools run tasks in the worker's main process, which also runs the start-up check)."""
    global _services
    if _services is None:
        _services = bootstrap(settings)
    return _services


def _ensure_schema(s: Services) -> None:
    global _schema_ready
    if not _schema_ready:
        s.repo.ensure_schema()
        _schema_ready = True


@celery.task(name=TASK_NAME, bind=True, max_retries=None)
def store_crypto_stats(self, scheduled: bool = False, slot: str | None = None, deadline: str | None = None,
                       attempt: int = 0) -> None:
    """Fetch all tracked coins from CoinGecko, store them, announce on `crypto-update`.

    Beat sends scheduled=True: the run then belongs to the cron slot it fired in, and a slot already stored is
    skipped. Transient failures are retried with backoff until the next scheduled run (then that run takes over).
    """
    s = services()
    now = s.clock()
    slot_at = datetime.fromisoformat(slot) if slot else (scheduled_slot(settings.schedule, now) if scheduled else None)
    deadline_at = datetime.fromisoformat(deadline) if deadline else run_deadline(settings.schedule, now, slot_at)
    try:
        _ensure_schema(s)
        # The tracked set is re-read at each run (one small read): coins tracked at run time are fetched at once.
        report = run_update(s.update_context(), slot=slot_at, run_id=self.request.id)
    except (AppError, SoftTimeLimitExceeded) as caught:
        if self.request.id in s.finished_runs:  # stopped after its batch was stored: a retry would be skipped
            log.warning("the run stored its batch but was stopped before it could announce it (%s); the web "
                        "re-reads the store", type(caught).__name__)
            return
        # A server that trickles bytes defeats per-read timeouts; the soft time limit ends such a run as a
        # transient failure, retried like any other.
        exc = caught if isinstance(caught, AppError) else UpstreamUnavailable(
            f"the run took longer than {settings.budget.attempt_seconds:.0f} s and was stopped")
        now = s.clock()  # the attempt itself may have taken a while (timeouts, busy store)
        delay, reason = retry_decision(exc, attempt, now, deadline_at, max_delay=settings.budget.max_retry_delay_seconds,
                                       base_seconds=settings.retry_base_seconds)
        report_failure(s.bus, exc, s.clock, delay, s.metrics)
        if delay is None:
            log.error("update failed (%s): %s; next try at the scheduled run %s", reason, exc.message,
                      deadline_at.strftime("%H:%M UTC"))
            return
        retry_at = now + timedelta(seconds=delay)
        log.warning("update failed: %s; retrying in %.0f s (at %s)", exc.message, delay, retry_at.strftime("%H:%M:%S UTC"))
        # A retry would otherwise inherit beat's `expires` and could be discarded although we logged it.
        raise self.retry(countdown=delay, max_retries=None, expires=deadline_at, kwargs={
            "scheduled": scheduled, "slot": slot_at.isoformat() if slot_at else None,
            "deadline": deadline_at.isoformat(), "attempt": attempt + 1})
    if report is not None:
        log.info("stored %d new records (%d prices) for %s; observed %s", report.new_records, report.observations,
                 ", ".join(report.coins), report.observed_at)


@worker_ready.connect
def update_now_if_stale(sender=None, **_):
    """At worker start, queue an update at once when the store has no fresh data, instead of waiting up to a whole
    interval. A short Redis claim makes it happen once however many workers start together; the run carries the
    current slot, so a beat catching up on the same tick does not fetch again."""
    announce(settings, "worker")
    s = services()
    try:
        _ensure_schema(s)
        if not needs_startup_update(s.repo, s.tracked_now(), s.clock(), settings.update_interval):
            return
        if s.claims.claim(STARTUP_CLAIM, settings.budget.startup_claim_seconds):
            # The current slot exactly (not scheduled_slot's skew allowance, which near a tick would claim the
            # coming one and make beat's real run for it skip).
            current = settings.schedule.previous(s.clock()).isoformat()
            store_crypto_stats.apply_async(kwargs={"scheduled": True, "slot": current})
            log.info("no fresh data in the store: an update is queued now rather than at the next tick")
    except AppError as exc:
        log.warning("start-up freshness check failed (%s); the next scheduled run will update", exc.message)
    finally:
        s.close()  # pool processes forked later must not inherit this process's open connections


@beat_init.connect
def announce_beat(sender=None, **_):
    announce(settings, "beat")
    log.info("update schedule: %r (UTC), every %s at the shortest", settings.update_cron, settings.update_interval)


@after_setup_logger.connect
def quieter_task_logs(logger=None, **_):
    # LOG_LEVEL, whatever --loglevel says (Celery's default is WARNING): one setting for every process.
    if logger is not None:
        logger.setLevel(settings.log_level)
        logs.use(logger, settings.log_format, process_role(sys.argv))  # LOG_FORMAT=json
    # Our own lines say what a run did, when it retries and why; Celery's per-task "succeeded"/"retry" lines would
    # repeat them on every attempt.
    level = logging.getLevelName(settings.log_level)
    logging.getLogger("celery.app.trace").setLevel(max(logging.WARNING, level))


@after_setup_task_logger.connect
def task_log_level(logger=None, **_):
    if logger is not None:
        logger.setLevel(settings.log_level)
        logs.use(logger, settings.log_format, process_role(sys.argv))


def _record_with_task_id(factory):
    """Every log record of this process gets `task`: " <task id>" while a task runs, else "" (the log format shows
    it after the process name), so lines of the services and adapters a run calls carry the run's id too."""
    def make(*args, **kwargs):
        record = factory(*args, **kwargs)
        task = current_task
        task_id = getattr(getattr(task, "request", None), "id", None) if task else None
        record.task = f" {task_id}" if task_id else ""
        return record
    return make


logging.setLogRecordFactory(_record_with_task_id(logging.getLogRecordFactory()))
