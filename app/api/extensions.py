"""What the web app holds per process, behind typed accessors: the services, the in-memory StatsView, the readiness
checks, and the `crypto-update` listener (a Flask extension with `init_app`, as cookiecutter-flask's are)."""
from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from app.bootstrap import Services
from app.services.catalog import StoredCatalog
from app.services.live import LiveHub, NoUpdateLog
from app.services.reporting import Readiness, StatsView, keep_fresh
from app.services.tracking import CoinTracking

_KEY = "cryptostats"
_AT_SHUTDOWN: list = []  # what shutting_down() runs: each app's LiveHub.close (UpdateListener.init_app)


def shutting_down() -> None:
    """The web server's worker got SIGTERM (app/api/server.py): end every open stream now, so the graceful stop
    waits only for ordinary requests; clients reconnect to another process with Last-Event-ID."""
    for close in list(_AT_SHUTDOWN):
        close()


@dataclass(frozen=True)
class WebState:
    """The per-process objects every route reads."""

    services: Services
    view: StatsView
    readiness: Readiness
    catalog: StoredCatalog  # CoinGecko's coin list, cached in the store
    tracking: CoinTracking  # adds and removes tracked coins
    live: LiveHub


def init_state(app: Flask, services: Services) -> WebState:
    """Build and attach the web's state: the view over the store and the readiness checks of store and Redis."""
    # The tracked set is the store's (changed at run time): re-read at every refresh, and so on each `tracked` event.
    view = StatsView(services.repo, services.tracked, services.clock,
                     stale_after=services.settings.budget.stale_after, tracked_source=services.tracked_now)
    catalog = services.catalog()
    tracking = CoinTracking(services.registry, catalog, services.bus, services.tracked, services.clock,
                            changed=view.try_refresh)
    settings = services.settings
    updates: Any = services.bus if hasattr(services.bus, "updates_after") else NoUpdateLog()  # tests' FakeBus keeps none
    live = LiveHub(view, updates, settings.stream_max_clients, settings.stream_heartbeat_seconds,
                   metrics=services.metrics)
    state = WebState(services, view, Readiness({"store": services.repo.ping, "redis": services.bus.ping}),
                     catalog, tracking, live)
    app.extensions[_KEY] = state
    return state


def state(app: Flask | None = None) -> WebState:
    """This app's state (the current app's inside a request)."""
    return (app or current_app).extensions[_KEY]


def services(app: Flask | None = None) -> Services:
    return state(app).services


def view(app: Flask | None = None) -> StatsView:
    return state(app).view


def readiness(app: Flask | None = None) -> Readiness:
    return state(app).readiness


def catalog(app: Flask | None = None) -> StoredCatalog:
    return state(app).catalog


def tracking(app: Flask | None = None) -> CoinTracking:
    return state(app).tracking


def live(app: Flask | None = None) -> LiveHub:
    return state(app).live


class UpdateListener:
    """A daemon thread subscribed to `crypto-update` that keeps the app's view fresh (keep_fresh). Stopped at exit,
    or by `stop()`."""

    def __init__(self, app: Flask | None = None) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        web = state(app)
        self._thread = threading.Thread(
            target=keep_fresh, name="crypto-update-listener", daemon=True,
            args=(web.view, web.services.bus, web.services.settings.refresh_interval_seconds, self._stop),
            kwargs={"on_event": web.live.on_update,
                    "on_redis_back": lambda: web.readiness.forget_failure("redis")})
        self._thread.start()
        atexit.register(self._stop.set)
        atexit.register(web.live.close)
        _AT_SHUTDOWN.append(web.live.close)
        app.extensions[_KEY + ".listener"] = self

    def stop(self) -> None:
        self._stop.set()
