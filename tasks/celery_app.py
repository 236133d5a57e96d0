"""Builds the Celery app from Settings: Redis broker (external or embedded), reliable delivery, the beat schedule."""
from __future__ import annotations

import os
import sys

from celery import Celery
from celery.signals import beat_init, celeryd_init
from celery.worker.consumer import Consumer

from app.bootstrap import (broker_url, check_tracked_coins, configure_logging, load_settings, log_format, prepare,
                           read_environment)
from app.config import Settings
from app.queue import QUEUE_NAME
from beat_schedule import build_schedule


class BrokerLossTolerantConsumer(Consumer):
    """Celery's consumer, surviving a Redis outage while it holds an unacknowledged message (a retry countdown, a
    run in progress).

    Celery 5.7 tears a lost connection down twice: `collect()`, which detaches kombu's transport, then `close()`,
    which closes the default channel again. When the first close stopped half-way (Redis gone while a BRPOP was
    pending), the second one tries to restore the held messages through the detached transport and raises
    `AttributeError: 'NoneType' object has no attribute 'hostname'` (kombu `_connparams`), which `ignore_errors`
    does not ignore: the worker stops with "Unrecoverable error". Nothing is lost by ignoring it: the restore could
    not reach Redis anyway, and the messages stay in Redis's unacked set, redelivered after the visibility timeout.
    """

    def on_connection_error_after_connected(self, exc):
        connection = self.connection
        if connection is not None:
            close = connection.close

            def close_collected():
                try:
                    close()
                except AttributeError:  # the detached transport; see the class docstring
                    pass

            connection.close = connection.release = close_collected
        super().on_connection_error_after_connected(exc)


def celery_config(settings: Settings) -> dict:
    budget = settings.budget
    return dict(
        broker_url=broker_url(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep reconnecting through a Redis outage
        # A run is acknowledged only after it finished; if its worker dies (SIGKILL, OOM) Redis redelivers it once
        # the visibility timeout passes: half an interval by default, so the redelivered run is still before its
        # expiry. Retry countdowns are kept below it (a countdown message is held unacknowledged meanwhile).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Redis hands a dead worker's run back only when a live worker sweeps for overdue ones, and kombu sweeps
        # every 100 s by default (10 s x throttle 10): later than a short visibility timeout, and than the expiry of
        # a run on a short schedule. Sweep about five times per timeout instead (one cheap ZRANGE each).
        broker_transport_options={"visibility_timeout": int(budget.visibility_timeout_seconds),
                                  "unacked_restore_interval": budget.restore_interval_seconds,
                                  "unacked_restore_throttle": 1},
        # One attempt is one CoinGecko call and one batch: past its timeouts something hangs (a server trickling
        # bytes resets the read timeout on every byte). The soft limit turns that into a retried failure; the hard
        # one ends the pool process if even that does not return.
        task_soft_time_limit=budget.soft_limit_seconds,
        task_time_limit=budget.hard_limit_seconds,
        worker_prefetch_multiplier=1,
        worker_consumer="tasks.celery_app:BrokerLossTolerantConsumer",
        task_ignore_result=True,
        result_backend=None,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=build_schedule(settings),
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        # The platform's one line format; `%(task)s` is the running task's id (tasks/prices.py adds it to every
        # record), and beat, which formats with these too, names itself.
        worker_log_format=log_format(process_role(sys.argv) + "%(task)s"),
        worker_task_log_format=log_format(process_role(sys.argv) + "%(task)s"),
        task_default_queue=QUEUE_NAME,
    )


def process_role(argv: list[str]) -> str:
    """Which process this `celery -A tasks ...` command is, for its log lines: worker, beat, or celery (call etc.)."""
    for word in argv[1:]:
        if word in ("worker", "beat"):
            return word
    return "celery"


class _Celery(Celery):
    """Celery, making sure the broker runs before its first connection in this process (not at import): without
    REDIS_URL that starts the embedded redis-server, for `celery call` as for the worker and beat."""

    _prepared = False

    def _connection(self, url, *args, **kwargs):
        if not _Celery._prepared:
            _Celery._prepared = True  # once: a later reconnect waits for Redis rather than start another one
            prepare(self.conf.cryptostats_settings)  # a bad DATA_DIR or a Redis that cannot start: one line
        return super()._connection(url, *args, **kwargs)


def make_celery(settings: Settings) -> Celery:
    """The Celery app. Connects nothing and starts nothing: without REDIS_URL the broker is the embedded server's
    socket, started when this process first connects (or when the worker or beat starts)."""
    app = _Celery("cryptostats")
    app.conf.update(celery_config(settings))
    app.conf.cryptostats_settings = settings
    return app


def _start_up(role: str) -> None:
    """What `celery worker` and `celery beat` check as they start (in the main process, once, before they
    connect): the common log format until Celery sets up its own; DATA_DIR and the embedded Redis; for the worker,
    COINS and VS_CURRENCIES against CoinGecko's lists. A failure is one line and an exit, not a traceback."""
    configure_logging(settings, role)
    if not _Celery._prepared:
        _Celery._prepared = True
        prepare(settings)
    if role == "worker":
        check_tracked_coins(settings)


@celeryd_init.connect
def _worker_start_up(**_):
    _start_up("worker")


@beat_init.connect
def _beat_start_up(**_):
    _start_up("beat")


settings = load_settings(read_environment())  # ./.env too; the real environment wins; parsing only, no I/O
celery = make_celery(settings)
# LOG_LEVEL as the default of `celery worker|beat --loglevel` (click reads CELERY_<COMMAND>_LOGLEVEL; the app is
# imported before the subcommand's options are parsed), so their banners say the level in force. tasks/prices.py
# applies LOG_LEVEL to the loggers whatever --loglevel says.
for _command in ("WORKER", "BEAT"):
    os.environ.setdefault(f"CELERY_{_command}_LOGLEVEL", settings.log_level)
