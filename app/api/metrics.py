"""Blueprint `metrics`: GET /metrics, Prometheus' text format (app/metrics.py), behind METRICS_TOKEN when set."""
from __future__ import annotations

import hmac

from flask import Blueprint, Flask, Response, current_app, request

from app.api import extensions
from app.api.errors import error_response
from app.metrics import RedisFiguresCollector, render

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    token = extensions.services().settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        # compare_digest: the time taken says nothing about how much of the token was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            response = error_response(401, "unauthorized", "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    body, content_type = render(current_app.extensions.get(_KEY, ()))
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


_KEY = "cryptostats.metrics_collectors"


def init_app(app: Flask, redis_url: str | None) -> None:
    """Serve /metrics on `app`, adding to the web's own metrics the worker figures kept in Redis at `redis_url`."""
    app.extensions[_KEY] = [RedisFiguresCollector(redis_url)] if redis_url else []
    app.register_blueprint(bp)
