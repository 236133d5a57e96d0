"""Blueprint `stats`: the inherited contract, GET /stats and GET /deviation (also mounted under /api/v1), and the
WSGI fast path that answers their plain form from bytes prepared once per refresh."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from email.utils import format_datetime

from flask import Blueprint, current_app, request

from app.api.schemas import CoinQuerySchema, load_query
from app.domain.errors import AppError
from app.services.reporting import CoinSummary, StatsView
from app.api import extensions

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
    prepared, stale = extensions.view().rendered(query["coin"], query["currency"], render)
    return current_app.response_class(prepared.body, content_type="application/json",
                                      headers=prepared.freshness_headers[stale])


@bp.get("/stats")
def get_stats():
    return _answer(render_stats)


@bp.get("/deviation")
def get_deviation():
    return _answer(render_deviation)


PROBE = "cryptostats.fast_path_probe"  # WSGI environ key of FastPath's own request to Flask
_FAST_ROUTES = {"/stats": render_stats, "/deviation": render_deviation,
                "/api/v1/stats": render_stats, "/api/v1/deviation": render_deviation}
# Only the plain form clients send (what CoinQuerySchema accepts, nothing to unquote or strip); any other query
# goes to Flask, which validates it and gives the error.
_PLAIN_QUERY = re.compile(r"coin=([A-Za-z0-9][A-Za-z0-9._-]{0,99})(?:&currency=([A-Za-z]{2,10}))?")


# Headers of a Flask answer that the fast path sets itself, or that differ per request: the rest (CORS for a request
# without Origin, security headers: whatever the app's after_request hooks add) the fast path copies from Flask.
_OWN_OR_PER_REQUEST = frozenset(h.lower() for h in (
    "Content-Type", "Content-Length", "Last-Modified", "X-Data-Observed-At", "X-Data-Fetched-At", "X-Data-Stale",
    "Cache-Control", "Date", "X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
    "RateLimit-Policy", "Retry-After", "Set-Cookie"))


class FastPath:
    """WSGI middleware: a GET of /stats or /deviation with a plain `coin[&currency]` query and data in the view is
    answered from the view's prepared bytes, without Flask's request context, routing and response objects (that
    machinery was most of a /stats request's cost: docs/benchmarks.md). Anything else, errors included, goes to
    Flask, so the answers are the same either way (tests/api run through this too).

    The headers Flask's hooks add to every such answer (CORS, security headers) are learnt once, from one answer of
    the Flask route itself, so no hook has to be written twice. A request with an `Origin` (CORS answers depend on
    it) goes to Flask."""

    def __init__(self, wsgi_app, view: StatsView, guard=None) -> None:
        self.wsgi_app = wsgi_app
        self.view = view
        # app/api/guard.FastPathGuard: the per-request part of Flask's hooks (rate limit, request id, metrics);
        # `admit(environ)` gives the headers to add, or None to leave the request to Flask.
        self.guard = guard
        self._hook_headers: list[tuple[str, str]] | None = None

    def _learn_hook_headers(self, environ) -> list[tuple[str, str]]:
        """The headers Flask adds to a /stats or /deviation answer beyond the fast path's own: asked once."""
        probe = {k: v for k, v in environ.items() if not k.startswith("HTTP_") or k == "HTTP_HOST"}
        probe["QUERY_STRING"] = environ.get("QUERY_STRING", "") + "&"  # not plain: answered by the Flask route
        probe[PROBE] = True  # not a client's request: neither rate-limited nor counted
        seen: list[tuple[str, str]] = []

        def keep(status, headers, exc_info=None):
            seen.extend(headers)
            return lambda data: None

        answer = self.wsgi_app(probe, keep)
        try:
            for _ in answer:
                pass
        finally:
            getattr(answer, "close", lambda: None)()
        return [(k, v) for k, v in seen if k.lower() not in _OWN_OR_PER_REQUEST]

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        render = _FAST_ROUTES.get(environ.get("PATH_INFO"))
        if render is not None and environ.get("REQUEST_METHOD") == "GET" and "HTTP_ORIGIN" not in environ:
            plain = _PLAIN_QUERY.fullmatch(environ.get("QUERY_STRING", ""))
            if plain is not None:
                try:
                    prepared, stale = self.view.rendered(plain[1].lower(), plain[2] and plain[2].lower(), render)
                except AppError:
                    pass  # unknown coin, no data...: Flask answers it in the one error shape
                else:
                    per_request = self.guard.admit(environ) if self.guard is not None else []
                    if per_request is not None:
                        if self._hook_headers is None:
                            self._hook_headers = self._learn_hook_headers(environ)
                        start_response("200 OK", prepared.wsgi_headers[stale] + self._hook_headers + per_request)
                        if self.guard is not None:
                            self.guard.served(environ["PATH_INFO"], time.perf_counter() - started)
                        return [prepared.body]
        return self.wsgi_app(environ, start_response)
