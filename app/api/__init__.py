"""The Flask app factory: routes over the in-memory StatsView, refreshed by a background subscriber thread."""
from __future__ import annotations

import os

from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect

from app.api import (backfill, cors, dashboard, errors, guard, health, limits, metrics, openapi, search, stats,
                     stream)
from app.api.coins import bp as coins_bp
from app.api.extensions import UpdateListener, init_state
from app.bootstrap import Services, bootstrap, load_settings, rate_limit_storage
from app.config import Settings


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
    """Build the web app: wiring only (logging and the start-up lines are the entry point's: wsgi.py,
    app/api/server.py). Without arguments it reads the environment (exit 2 naming a bad variable).

    With `background`, the UpdateListener extension subscribes to `crypto-update` and keeps the view fresh; tests
    that drive refreshes themselves pass False. Call this in each process (each granian worker imports wsgi.py).
    """
    if settings is None:
        settings = services.settings if services else load_settings(os.environ)
    if services is None:
        services = bootstrap(settings)

    app = _Flask(__name__, static_folder=None)  # no static files; nor a route that could redirect
    app.json.sort_keys = False  # keep the contract's key order: price, marketCap, 24hChange
    # `//stats` would be redirected to a Location built from the request's Host header, which a client (or a
    # proxy) chooses: no path of ours is spelled with "//", so it is simply not found.
    app.url_map.merge_slashes = False
    state = init_state(app, services)
    errors.register(app)
    # Request ids, security headers, body size, request metrics, the rate limit.
    limiter = guard.enable(app, settings, rate_limit_storage(services))
    metrics.init_app(app, services.redis_url)
    app.register_blueprint(stats.bp)
    app.register_blueprint(stats.bp, url_prefix="/api/v1", name="stats_v1")
    app.register_blueprint(health.bp)
    app.register_blueprint(coins_bp)
    app.register_blueprint(search.bp)
    app.register_blueprint(backfill.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(stream.bp)
    cors.enable(app, settings.cors_origins)
    # Outermost first: a plain /stats or /deviation from prepared bytes (its request line is short by its pattern;
    # its headers granian caps at 400 KB), then the size limits for every request Flask handles
    # (wrapping wsgi_app is Flask's documented way to add middleware).
    # The fast path checks the rate limit, counts the request and sets its id too (guard.FastPathGuard).
    app.wsgi_app = stats.FastPath(limits.limit_request_size(app.wsgi_app), state.view,  # type: ignore[method-assign]
                                  guard=guard.FastPathGuard(limiter, settings))

    if background:
        UpdateListener(app)
    return app
