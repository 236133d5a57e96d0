"""gunicorn settings, read automatically by `gunicorn wsgi:app`: configuration is checked once in the master,
before any worker forks, so a bad variable stops the web with one line naming it."""
from app import logs, metrics
from app.api import server
from app.bootstrap import (announce, check_tracked_coins, configure_logging, load_settings, log_format, prepare,
                           prepare_web, read_environment)

_settings = load_settings(read_environment())  # ./.env too; the real environment wins
configure_logging(_settings, "web")  # until gunicorn applies logconfig_dict below, in the same format
prepare(_settings)  # DATA_DIR and the embedded Redis, checked once here rather than failing in every worker
check_tracked_coins(_settings)  # COINS and VS_CURRENCIES against CoinGecko's lists
prepare_web(_settings)  # a fresh PROMETHEUS_MULTIPROC_DIR for this instance, inherited by every worker
server.install()  # gunicorn's own 400/414/431 answers in the API's JSON shape (workers inherit it by fork)

bind = _settings.bind
workers = _settings.web_concurrency
worker_class = "gthread"  # threads: many slow clients per process; the view is shared in memory
threads = 8
timeout = 30
graceful_timeout = 20  # SIGTERM: finish in-flight requests, then exit
keepalive = 5
preload_app = False  # create_app (and its store clients) runs in each worker, after fork
# gunicorn's runtime control socket is one shared path per user: several web processes on one machine (tests,
# side-by-side deployments) would fight over it, and the platform does not use it.
control_socket_disable = True

# LOG_LEVEL and the platform's one line format for gunicorn's own loggers and ours alike (the root logger, which
# create_app then leaves as it is).
loglevel = _settings.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"platform": logs.formatter_config(_settings.log_format, "web", log_format("web"))},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "platform", "stream": "ext://sys.stderr"}},
    "root": {"level": _settings.log_level, "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level, "handlers": ["stderr"], "propagate": False},
        # One line per request only with LOG_LEVEL=DEBUG (gunicorn logs none by default; a logconfig_dict turns
        # them on at INFO).
        "gunicorn.access": {"level": "INFO" if _settings.log_level == "DEBUG" else "WARNING",
                            "handlers": ["stderr"], "propagate": False},
    },
}


def when_ready(server):
    """Announced once by the master: the workers it forks inherit that it was done."""
    announce(_settings, "web")


def child_exit(server, worker):
    """A worker ended: its share of the live gauges (SSE clients) is dropped from /metrics."""
    metrics.web_process_exited(worker.pid)
