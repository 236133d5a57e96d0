"""Blueprint `stats`: the inherited contract, GET /stats and GET /deviation (also mounted under /api/v1)."""
from __future__ import annotations

from email.utils import format_datetime

from flask import Blueprint, jsonify, request

from app.api.schemas import CoinQuerySchema, load_query
from app.services.reporting import Freshness
from app.api import extensions

bp = Blueprint("stats", __name__)
_QUERY = CoinQuerySchema()


def _number(value: float | None):
    """A float that holds a whole number is sent as an integer, as CoinGecko and the contract write it (40000)."""
    if value is not None and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _with_freshness(response, freshness: Freshness):
    # The contract fixes the bodies, so freshness travels in headers.
    response.headers["Last-Modified"] = format_datetime(freshness.observed_at, usegmt=True)
    response.headers["X-Data-Observed-At"] = freshness.observed_at.isoformat()
    response.headers["X-Data-Fetched-At"] = freshness.fetched_at.isoformat()
    response.headers["X-Data-Stale"] = "true" if freshness.stale else "false"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/stats")
def get_stats():
    query = load_query(_QUERY, request.args)
    summary, freshness = extensions.view().summary(query["coin"], query["currency"])
    latest = summary.latest
    body = {"price": _number(latest.price), "marketCap": _number(latest.market_cap),
            "24hChange": _number(latest.change_24h)}
    return _with_freshness(jsonify(body), freshness)


@bp.get("/deviation")
def get_deviation():
    query = load_query(_QUERY, request.args)
    summary, freshness = extensions.view().summary(query["coin"], query["currency"])
    return _with_freshness(jsonify({"deviation": _number(summary.deviation)}), freshness)
