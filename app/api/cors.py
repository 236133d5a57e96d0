"""CORS for browser clients (flask-cors): the public read-only routes answer any origin in CORS_ORIGINS; others none.

An explicit allow-list of paths rather than `/*`, so a route added later (an admin route, say) gets no CORS headers
unless someone adds it here on purpose: browsers then refuse cross-origin reads of it.
"""
from __future__ import annotations

from flask import Flask, request
from flask_cors import CORS

# The public read-only routes, anchored at both ends (flask-cors matches from the start only).
PUBLIC_READ_PATHS = (
    r"^/(api/v1/)?(stats|deviation)$",
    r"^/api/v1/coins(/[^/]+(/(history|stats))?)?$",  # POST/DELETE here are admin: see _no_cors_for_admin
    r"^/api/v1/search$",
    r"^/api/v1/stream$",  # the Server-Sent Events stream (EventSource works cross-origin with these headers)
    r"^/(healthz|readyz|openapi\.json)$",
    r"^/api/v1/usage$",
)
# Response headers a cross-origin script may read: the freshness of /stats and /deviation, and when to retry.
EXPOSED_HEADERS = ["Last-Modified", "X-Data-Observed-At", "X-Data-Fetched-At", "X-Data-Stale", "Retry-After",
                   "Content-Disposition", "X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
PREFLIGHT_MAX_AGE_SECONDS = 600  # browsers cache a preflight answer this long (Chromium caps it at 2 h)


READ_METHODS = ("GET", "HEAD")


def _no_cors_for_admin(response):
    """Strip CORS headers from anything but a read, preflights of writes included: the admin routes share paths
    with public reads (POST /api/v1/coins, DELETE /api/v1/coins/{id}), and a browser must not call them
    cross-origin."""
    method = request.method
    if method == "OPTIONS":
        method = (request.headers.get("Access-Control-Request-Method") or "GET").upper()
    if method not in READ_METHODS:
        for name in [h for h in response.headers.keys() if h.lower().startswith("access-control-")]:
            del response.headers[name]
    return response


def enable(app: Flask, origins: tuple[str, ...]) -> None:
    """Answer CORS, preflight (OPTIONS with Access-Control-Request-Method) included, on PUBLIC_READ_PATHS for
    `origins` (("*",) any, () none: then nothing is added and browsers keep the same-origin rule)."""
    if not origins:
        return
    # Registered before flask-cors's own hook, so it runs after it (Flask runs after_request hooks in reverse).
    app.after_request(_no_cors_for_admin)
    anyone = origins == ("*",)
    options = {"origins": "*" if anyone else list(origins), "send_wildcard": anyone,  # "*" caches for all
               "methods": ["GET", "HEAD", "OPTIONS"],
               "allow_headers": ["Accept", "Last-Event-ID", "Cache-Control", "If-Modified-Since"],
               "expose_headers": EXPOSED_HEADERS, "max_age": PREFLIGHT_MAX_AGE_SECONDS,
               "supports_credentials": False}  # nothing here is per user: no cookies, so "*" stays safe
    CORS(app, resources={path: options for path in PUBLIC_READ_PATHS})
