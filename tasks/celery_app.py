"""Builds the Celery app from Settings: Redis broker (external or embedded), reliable delivery, the beat schedule."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery
from celery.worker.consumer import Consumer

from app import broker
from app.bootstrap import check_tracked_coins, configure_logging, load_settings, log_format, prepare, read_environment
from app.config import Settings
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


def celery_config(settings: Settings, redis_url: str) -> dict:
    return dict(
        broker_url=broker.kombu_url(redis_url),
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
        broker_transport_options={"visibility_timeout": int(settings.visibility_timeout),
                                  "unacked_restore_interval": max(1, min(10, int(settings.visibility_timeout / 5))),
                                  "unacked_restore_throttle": 1},
        # One attempt is one CoinGecko call and one batch: past its timeouts something hangs (a server trickling
        # bytes resets the read timeout on every byte). The soft limit turns that into a retried failure; the hard
        # one ends the pool process if even that does not return.
        task_soft_time_limit=int(settings.attempt_seconds) + 10,
        task_time_limit=int(settings.attempt_seconds) + 30,
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
        task_default_queue="cryptostats",
    )


def process_role(argv: list[str]) -> str:
    """Which process this `celery -A tasks ...` command is, for its log lines: worker, beat, or celery (call etc.)."""
    for word in argv[1:]:
        if word in ("worker", "beat"):
            return word
    return "celery"


def _celery_command(argv: list[str]) -> bool:
    """Whether this process is `celery ...` or `python -m celery ...`."""
    program = Path(argv[0]) if argv else Path()
    return program.name == "celery" or program.parent.name == "celery"


def make_celery(settings: Settings) -> Celery:
    app = Celery("cryptostats")
    app.conf.update(celery_config(settings, broker.redis_url(settings.redis_url, settings.data_dir)))
    app.conf.cryptostats_settings = settings
    return app


settings = load_settings(read_environment())  # ./.env too; the real environment wins
if _celery_command(sys.argv):  # not when imported by tests or tools, whose logging is their own
    configure_logging(settings, process_role(sys.argv))  # until Celery sets up its own logging, in the same format
prepare(settings)  # a bad DATA_DIR or an embedded Redis that cannot start: one line, not a traceback
if process_role(sys.argv) == "worker":
    check_tracked_coins(settings)  # COINS and VS_CURRENCIES against CoinGecko's lists: one line, not a traceback
celery = make_celery(settings)
# LOG_LEVEL as the default of `celery worker|beat --loglevel` (click reads CELERY_<COMMAND>_LOGLEVEL; the app is
# imported before the subcommand's options are parsed), so their banners say the level in force. tasks/prices.py
# applies LOG_LEVEL to the loggers whatever --loglevel says.
for _command in ("WORKER", "BEAT"):
    os.environ.setdefault(f"CELERY_{_command}_LOGLEVEL", settings.log_level)
