"""The Flask app factory: routes over the in-memory StatsView, refreshed by a background subscriber thread."""
from __future__ import annotations

import atexit
import os
import threading

from flask import Flask

from app.api import errors, health, stats
from app.api.coins import bp as coins_bp
from app.bootstrap import Services, announce, bootstrap, configure_logging, load_settings
from app.config import Settings
from app.services.reporting import StatsView, keep_fresh


def create_app(settings: Settings | None = None, services: Services | None = None, *,
               background: bool = True) -> Flask:
    """Build the web app. Without arguments it reads the environment (exit 2 naming a bad variable).

    With `background`, a daemon thread subscribes to `crypto-update` and keeps the view fresh; tests that drive
    refreshes themselves pass False. Call this in each process after fork (gunicorn does, without --preload).
    """
    if settings is None:
        settings = services.settings if services else load_settings(os.environ)
    if services is None:
        configure_logging(settings)
        announce(settings, "web")
        services = bootstrap(settings)
    view = StatsView(services.repo, services.tracked, services.clock, stale_after=2 * settings.update_interval)

    app = Flask(__name__)
    app.json.sort_keys = False  # keep the contract's key order: price, marketCap, 24hChange
    app.extensions["services"] = services
    app.extensions["view"] = view
    errors.register(app)
    app.register_blueprint(stats.bp)
    app.register_blueprint(stats.bp, url_prefix="/api/v1", name="stats_v1")
    app.register_blueprint(health.bp)
    app.register_blueprint(coins_bp)

    if background:
        stop = threading.Event()
        thread = threading.Thread(target=keep_fresh, name="crypto-update-listener", daemon=True,
                                  args=(view, services.bus, settings.refresh_interval_seconds, stop))
        thread.start()
        app.extensions["listener_stop"] = stop
        atexit.register(stop.set)
    return app
