"""The web server: `python -m app.api.server` runs granian (a Rust HTTP server; WSGI on a pool of Python threads)
on `wsgi:app`, configured from Settings. Not imported by the app itself: it is the web's entry point."""
from __future__ import annotations

import functools
import signal
import sys

HEADER_READ_TIMEOUT_MS = 10_000  # a client gets this long to send a request's head (slow clients), then is cut
GRACEFUL_TIMEOUT_SECONDS = 20  # SIGTERM: in-flight requests get this long to finish, then the worker is killed
# Python threads per process, started on demand and idle after 30 s. A request holds one while the app runs, a
# streaming answer for as long as it streams: room for the SSE clients (docs/benchmarks.md, "For the SSE endpoint").
BLOCKING_THREADS = 1100
# Connections a process serves at once (slow, idle keep-alive and streaming ones included) and the accept queue.
BACKPRESSURE = 4096
BACKLOG = 2048


def _log_config(settings) -> dict:
    """granian's own loggers in the platform's one line format and LOG_LEVEL, like every other line of the web."""
    from app import logs
    from app.bootstrap import log_format

    handler = {"class": "logging.StreamHandler", "formatter": "platform", "stream": "ext://sys.stderr"}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"platform": logs.formatter_config(settings.log_format, "web", log_format("web"))},
            "handlers": {"stderr": handler},
            "root": {"level": settings.log_level, "handlers": ["stderr"]},
            # One line per request only with LOG_LEVEL=DEBUG.
            "loggers": {"_granian": {"level": settings.log_level, "handlers": ["stderr"], "propagate": False},
                        "granian.access": {"level": "INFO" if settings.log_level == "DEBUG" else "WARNING",
                                           "handlers": ["stderr"], "propagate": False}}}


def _end_streams_on_shutdown() -> None:
    """granian's WSGI worker installs its own SIGTERM/SIGINT handler (granian._signals.set_sync_signals, called in
    the worker after the app is imported), so neither atexit nor a handler of the app runs before granian has
    waited for every in-flight request, open SSE streams included (GRACEFUL_TIMEOUT_SECONDS). granian 2.8 has no
    worker shutdown hook (on_shutdown runs in the main process; WorkerSignal.add_cb keeps one callback, granian's),
    so its handler is wrapped: first app.api.extensions.shutting_down(), which ends the streams, then granian's.
    Patched here, before the workers are forked; the worker looks set_sync_signals up in the module at call time."""
    import granian._signals as signals

    original = signals.set_sync_signals
    if getattr(original, "ends_streams", False):
        return

    def set_sync_signals():
        event = original()
        for signum in (signal.SIGTERM, signal.SIGINT):
            granians = signal.getsignal(signum)
            if callable(granians):
                signal.signal(signum, functools.partial(_shutting_down, granians))
        return event

    set_sync_signals.ends_streams = True  # type: ignore[attr-defined]
    signals.set_sync_signals = set_sync_signals


def _shutting_down(granians, signum, frame) -> None:
    extensions = sys.modules.get("app.api.extensions")  # imported with the app, in this worker
    if extensions is not None:
        extensions.shutting_down()
    granians(signum, frame)


def serve(settings, target: str = "wsgi:app") -> None:
    """Serve the WSGI callable `target` ("module:attribute", imported in each worker process) as the Procfile's web
    does, until SIGTERM/SIGINT, which ends the open streams at once and lets in-flight requests finish
    (GRACEFUL_TIMEOUT_SECONDS at most)."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    _end_streams_on_shutdown()
    Granian(
        target, address=settings.host, port=settings.port, interface=Interfaces.WSGI,
        workers=settings.web_concurrency, blocking_threads=BLOCKING_THREADS, backlog=BACKLOG,
        backpressure=BACKPRESSURE, http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        log_level=LogLevels(settings.log_level.lower()), log_dictconfig=_log_config(settings),
        log_access=settings.log_level == "DEBUG", workers_kill_timeout=GRACEFUL_TIMEOUT_SECONDS,
        respawn_failed_workers=True,
    ).serve()


def main() -> int:
    """The Procfile's web: check the configuration once, before any worker starts (a bad variable: one line
    naming it, exit 2), then serve `wsgi:app`."""
    from app.bootstrap import (announce, check_tracked_coins, configure_logging, load_settings, prepare, prepare_web,
                               read_environment)

    settings = load_settings(read_environment())  # ./.env too; the real environment wins
    configure_logging(settings, "web")
    prepare(settings)  # DATA_DIR and the embedded Redis, checked once here rather than failing in every worker
    check_tracked_coins(settings)  # COINS and VS_CURRENCIES against CoinGecko's lists
    prepare_web(settings)  # a fresh PROMETHEUS_MULTIPROC_DIR for this instance, inherited by every worker
    announce(settings, "web")
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
