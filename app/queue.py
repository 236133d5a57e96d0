"""The names the worker, beat and every caller share: the tasks (the assignment's storeCryptoStats, the backfill) and
their queue."""

TASK_NAME = "tasks.store_crypto_stats"  # also the beat entry's key and the task's logger name
QUEUE_NAME = "cryptostats"  # Celery's default queue here: a Redis list of that name
BACKFILL_TASK_NAME = "tasks.backfill_coin"  # queued by POST /api/v1/coins/{id}/backfill, by name (the web imports no task)
