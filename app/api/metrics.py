"""Blueprint `metrics`: GET /metrics, Prometheus' text format (app/metrics.py), behind METRICS_TOKEN when set."""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from app.api.errors import error_response
from app.metrics import RedisFiguresCollector, render

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    token = current_app.extensions["services"].settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        # compare_digest: the time taken says nothing about how much of the token was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            response = error_response(401, "unauthorized", "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    body, content_type = render(current_app.extensions.get("metrics_collectors", ()))
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def collectors(redis_url: str | None) -> list:
    """What a scrape adds to the web's own metrics: the worker figures kept in Redis."""
    return [RedisFiguresCollector(redis_url)] if redis_url else []
