"""The Celery Beat schedule, built from Settings: one entry, `tasks.store_crypto_stats`, on UPDATE_CRON (UTC)."""
from __future__ import annotations

from app.config import Settings
from app.cron import beat_crontab
from app.queue import TASK_NAME


def build_schedule(settings: Settings) -> dict:
    """The beat entry: aligned to the cron line (*/15 → :00, :15, :30, :45 like the original cron), flagged as
    scheduled so the worker knows its slot, and expiring before the next tick so a backlog never piles up."""
    return {
        TASK_NAME: {
            "task": TASK_NAME,
            "schedule": beat_crontab(settings.schedule),
            "kwargs": {"scheduled": True},
            "options": {"expires": settings.budget.beat_expiry_seconds},
        }
    }
