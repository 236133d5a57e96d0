"""Celery entry point: `celery -A tasks worker|beat|call` finds the Celery app here (attribute `celery`)."""
from tasks.celery_app import celery
from tasks import prices  # noqa: F401  (registers tasks.store_crypto_stats)
from tasks import backfill  # noqa: F401  (registers tasks.backfill_coin)

__all__ = ["celery"]
