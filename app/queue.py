"""The names the worker, beat and every caller share: the one task (the assignment's storeCryptoStats) and its queue."""

TASK_NAME = "tasks.store_crypto_stats"  # also the beat entry's key and the task's logger name
QUEUE_NAME = "cryptostats"  # Celery's default queue here: a Redis list of that name
