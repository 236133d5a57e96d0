"""The Flask app factory: routes over the in-memory StatsView, refreshed by a background subscriber thread."""
from __future__ import annotations

import atexit
import os
import threading

from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect

from app.api import backfill, cors, dashboard, errors, health, openapi, stats
from app.api.coins import bp as coins_bp
from app.bootstrap import Services, announce, bootstrap, configure_logging, load_settings
from app.config import Settings
from app.services.reporting import Readiness, StatsView, keep_fresh


class _Flask(Flask):
    def make_default_options_response(self):
        """OPTIONS answers 204 with `Allow` and no body (Flask's default is an empty text/html 200)."""
        response = super().make_default_options_response()
        response.status_code = 204
        response.headers.remove("Content-Type")
        return response

    def raise_routing_exception(self, request):
        """Nothing redirects: werkzeug would send an empty path (`GET http://host HTTP/1.1`) to "/" with a Location
        built from the client's Host header; it is simply not found."""
        if isinstance(request.routing_exception, RequestRedirect):
            raise NotFound()
        super().raise_routing_exception(request)


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

    app = _Flask(__name__, static_folder=None)  # no static files; nor a route that could redirect
    app.json.sort_keys = False  # keep the contract's key order: price, marketCap, 24hChange
    # `//stats` would be redirected to a Location built from the request's Host header, which a client (or a
    # proxy) chooses: no path of ours is spelled with "//", so it is simply not found.
    app.url_map.merge_slashes = False
    app.extensions["services"] = services
    app.extensions["view"] = view
    app.extensions["readiness"] = Readiness({"store": services.repo.ping, "redis": services.bus.ping})
    errors.register(app)
    app.register_blueprint(stats.bp)
    app.register_blueprint(stats.bp, url_prefix="/api/v1", name="stats_v1")
    app.register_blueprint(health.bp)
    app.register_blueprint(coins_bp)
    app.register_blueprint(backfill.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(openapi.bp)
    cors.enable(app, settings.cors_origins)

    if background:
        stop = threading.Event()
        thread = threading.Thread(target=keep_fresh, name="crypto-update-listener", daemon=True,
                                  args=(view, services.bus, settings.refresh_interval_seconds, stop))
        thread.start()
        app.extensions["listener_stop"] = stop
        atexit.register(stop.set)
    return app
