"""Blueprint `stats`: the inherited contract, GET /stats and GET /deviation (also mounted under /api/v1), and the
WSGI fast path that answers their plain form from bytes prepared once per refresh."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.utils import format_datetime

from flask import Blueprint, current_app, request

from app.api.schemas import CoinQuerySchema, load_query
from app.domain.errors import AppError
from app.services.reporting import CoinSummary, StatsView

bp = Blueprint("stats", __name__)
_QUERY = CoinQuerySchema()


def _number(value: float | None):
    """A float that holds a whole number is sent as an integer, as CoinGecko and the contract write it (40000)."""
    if value is not None and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@dataclass(frozen=True)
class Prepared:
    """One coin's answer, rendered once per refresh: the JSON body and its headers, fresh or stale."""

    body: bytes
    freshness_headers: tuple[list[tuple[str, str]], list[tuple[str, str]]]  # [stale]: what Flask adds to its own
    wsgi_headers: tuple[list[tuple[str, str]], list[tuple[str, str]]]  # [stale]: every header, for the fast path


def _prepare(body: dict, summary: CoinSummary) -> Prepared:
    # Flask's jsonify output exactly (compact separators, key order kept, one newline), so both paths agree.
    data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
    latest = summary.latest
    # The contract fixes the bodies, so freshness travels in headers.
    fresh, stale = ([("Last-Modified", format_datetime(latest.observed_at, usegmt=True)),
                     ("X-Data-Observed-At", latest.observed_at.isoformat()),
                     ("X-Data-Fetched-At", latest.fetched_at.isoformat()),
                     ("X-Data-Stale", flag), ("Cache-Control", "no-cache")] for flag in ("false", "true"))
    base = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    return Prepared(data, (fresh, stale), (base + fresh, base + stale))


def render_stats(summary: CoinSummary) -> Prepared:
    latest = summary.latest
    return _prepare({"price": _number(latest.price), "marketCap": _number(latest.market_cap),
                     "24hChange": _number(latest.change_24h)}, summary)


def render_deviation(summary: CoinSummary) -> Prepared:
    return _prepare({"deviation": _number(summary.deviation)}, summary)


def _answer(render):
    query = load_query(_QUERY, request.args)
    prepared, stale = current_app.extensions["view"].rendered(query["coin"], query["currency"], render)
    return current_app.response_class(prepared.body, content_type="application/json",
                                      headers=prepared.freshness_headers[stale])


@bp.get("/stats")
def get_stats():
    return _answer(render_stats)


@bp.get("/deviation")
def get_deviation():
    return _answer(render_deviation)


_FAST_ROUTES = {"/stats": render_stats, "/deviation": render_deviation,
                "/api/v1/stats": render_stats, "/api/v1/deviation": render_deviation}
# Only the plain form clients send (what CoinQuerySchema accepts, nothing to unquote or strip); any other query
# goes to Flask, which validates it and gives the error.
_PLAIN_QUERY = re.compile(r"coin=([A-Za-z0-9][A-Za-z0-9._-]{0,99})(?:&currency=([A-Za-z]{2,10}))?")


class FastPath:
    """WSGI middleware: a GET of /stats or /deviation with a plain `coin[&currency]` query and data in the view is
    answered from the view's prepared bytes, without Flask's request context, routing and response objects (that
    machinery was most of a /stats request's cost: docs/benchmarks.md). Anything else, errors included, goes to
    Flask, so the answers are the same either way (tests/api run through this too). A header every answer must
    carry (CORS, say) belongs in `Prepared` as well as in Flask."""

    def __init__(self, wsgi_app, view: StatsView) -> None:
        self.wsgi_app = wsgi_app
        self.view = view

    def __call__(self, environ, start_response):
        render = _FAST_ROUTES.get(environ.get("PATH_INFO"))
        if render is not None and environ.get("REQUEST_METHOD") == "GET":
            plain = _PLAIN_QUERY.fullmatch(environ.get("QUERY_STRING", ""))
            if plain is not None:
                try:
                    prepared, stale = self.view.rendered(plain[1].lower(), plain[2] and plain[2].lower(), render)
                except AppError:
                    pass  # unknown coin, no data...: Flask answers it in the one error shape
                else:
                    start_response("200 OK", prepared.wsgi_headers[stale])
                    return [prepared.body]
        return self.wsgi_app(environ, start_response)
