"""What every answer gets: a request id, security headers, a body-size limit, request metrics, and the per-client
rate limit of the public routes (flask-limiter, counters in the platform's Redis so every web process shares them).
"""
from __future__ import annotations

import ipaddress
import itertools
import logging
import math
import re
import os
import time

from flask import Flask, g, request
from flask_limiter import HeaderNames, Limiter
from limits import parse as parse_limit

from app import logs
from app.api.dashboard import CONTENT_SECURITY_POLICY as PAGE_POLICY
from app.api.stats import PROBE
from app.metrics import observe_request

log = logging.getLogger(__name__)

# Admin POST bodies are a few bytes of JSON; nothing else takes a body. 64 KiB leaves room and stops a client
# streaming megabytes into a worker.
MAX_CONTENT_LENGTH = 64 * 1024
# An answer that is not a page loads nothing at all; pages (the dashboard, /docs) get the dashboard's policy.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# A request id we echo and log: short, and only characters that cannot forge a log line or a header.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Never limited: probes and scrapes come often from one address (a load balancer, Prometheus).
UNLIMITED_BLUEPRINTS = ("health", "metrics")
_RETRY_AFTER = "X-Limiter-Retry-After"  # where flask-limiter writes its Retry-After; `finish` decides


class _RequestIds:
    """New request ids: 32 hex digits, a random per-process half and a counter, so unique across the web's
    processes and restarts. Not secrets (clients choose theirs); os.urandom per request was a tenth of the
    Python time of a fast-path /stats under load (py-spy)."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix, self.counter = os.urandom(8).hex(), itertools.count()

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"  # next() on itertools.count is atomic under the GIL


_new_ids = _RequestIds()


def request_id(header: str | None) -> str:
    """The client's X-Request-ID when it is sane (1-64 of A-Z a-z 0-9 . _ : -), else a new unique one."""
    if header and _REQUEST_ID.match(header):
        return header
    return _new_ids.new()


def client_address(peer: str | None, forwarded_for: str | None, trusted: int | tuple[str, ...]) -> str:
    """The client's address: the socket's peer, or, when TRUSTED_PROXIES says the peer is a proxy, the address that
    proxy chain reports in X-Forwarded-For. `trusted` is a hop count (the n-th address from the right, as
    werkzeug's ProxyFix takes it) or proxy addresses/CIDRs (the rightmost address that is not one of them)."""
    peer = peer or "unknown"
    hops = [part.strip() for part in (forwarded_for or "").split(",") if part.strip()]
    if not trusted or not hops:
        return peer
    if isinstance(trusted, int):
        return hops[-trusted] if len(hops) >= trusted else peer
    networks = [ipaddress.ip_network(item, strict=False) for item in trusted]

    def is_proxy(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    candidate = peer
    while is_proxy(candidate) and hops:
        candidate = hops.pop()
    return candidate


def enable(app: Flask, settings, storage: tuple[str, dict]) -> Limiter | None:
    """Install request ids, security headers, the size limit and request metrics on `app`, then the rate limit
    (RATE_LIMIT; none when 0) with its counters in `storage` (bootstrap.rate_limit_storage: URI and options)."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH

    @app.before_request
    def start():
        g.started = time.perf_counter()
        g.request_id = request_id(request.headers.get("X-Request-ID"))
        g.request_id_token = logs.request_id.set(g.request_id)
        if request.content_length is not None and request.content_length > MAX_CONTENT_LENGTH:
            from werkzeug.exceptions import RequestEntityTooLarge
            raise RequestEntityTooLarge(f"a request body may hold at most {MAX_CONTENT_LENGTH} bytes")

    # Registered before the limiter, so it runs after the limiter added its headers (Flask runs them in reverse).
    @app.after_request
    def finish(response):
        headers = response.headers
        headers["X-Request-ID"] = g.get("request_id") or request_id(None)
        headers["X-Content-Type-Options"] = "nosniff"
        headers.setdefault("Referrer-Policy", "no-referrer")
        is_page = response.mimetype == "text/html"
        headers.setdefault("Content-Security-Policy", PAGE_POLICY if is_page else API_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
        # flask-limiter puts a Retry-After on every answer (and lengthens a 503's to its window): only a 429 of its
        # own gets it.
        limiter_retry_after = headers.pop(_RETRY_AFTER, None)
        if response.status_code == 429 and limiter_retry_after is not None and "Retry-After" not in headers:
            headers["Retry-After"] = str(max(1, int(limiter_retry_after)))
        reset = headers.get("RateLimit-Reset")
        if reset and reset.isdigit() and int(reset) > 10 ** 9:  # flask-limiter sends a time; the draft, seconds
            headers["RateLimit-Reset"] = str(max(0, int(reset) - int(time.time())))
        if request.environ.get(PROBE):
            return response
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        observe_request(rule, request.method if request.method in _METHODS else "other", response.status_code,
                        time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    @app.teardown_request
    def forget(_exc=None):
        token = g.pop("request_id_token", None)
        if token is not None:
            logs.request_id.reset(token)

    if settings.rate_limit is None:
        return None
    storage_uri, options = storage
    trusted = settings.trusted_proxies
    limiter = Limiter(
        lambda: client_address(request.remote_addr, request.headers.get("X-Forwarded-For"), trusted),
        # One budget per client for all routes together (default_limits would count each route apart).
        app=app, application_limits=[settings.rate_limit], storage_uri=storage_uri, storage_options=options,
        strategy="fixed-window", key_prefix=KEY_PREFIX, headers_enabled=True, retry_after="delta-seconds",
        header_name_mapping={HeaderNames.LIMIT: "RateLimit-Limit", HeaderNames.REMAINING: "RateLimit-Remaining",
                             HeaderNames.RESET: "RateLimit-Reset", HeaderNames.RETRY_AFTER: _RETRY_AFTER},
        # Redis down: count in this process's memory instead (flask-limiter logs that once, and once when Redis is
        # back), and never fail a request because of the limiter.
        swallow_errors=True, in_memory_fallback_enabled=True, in_memory_fallback=[settings.rate_limit],
    )
    # A request filter, not default_limits_exempt_when: it holds for the in-memory fallback limits too.
    limiter.request_filter(lambda: request.blueprint in UNLIMITED_BLUEPRINTS or bool(request.environ.get(PROBE)))
    return limiter


KEY_PREFIX = "ratelimit"


class FastPathGuard:
    """For stats.FastPath, which answers plain /stats and /deviation without Flask: what `enable`'s hooks do per
    request there (request id, rate limit on the same counter as flask-limiter's, request metrics)."""

    def __init__(self, limiter: Limiter | None, settings) -> None:
        self.limiter = limiter
        self.trusted = settings.trusted_proxies
        self.item = parse_limit(settings.rate_limit) if limiter is not None and settings.rate_limit else None

    def admit(self, environ) -> list[tuple[str, str]] | None:
        """The per-request headers of an answer the fast path may give, or None: then Flask answers (over the
        limit: its 429; the limiter's Redis failing or just back: its fallback and recovery logic)."""
        headers = [("X-Request-ID", request_id(environ.get("HTTP_X_REQUEST_ID")))]
        if self.limiter is None or self.item is None:
            return headers
        if getattr(self.limiter, "_storage_dead", False):
            return None
        client = client_address(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), self.trusted)
        # flask-limiter's key of an application limit: prefix, client, the shared scope "global".
        args = (KEY_PREFIX, client, "global")
        try:
            strategy = self.limiter.limiter
            if not strategy.hit(self.item, *args):
                return None
            stats = strategy.get_window_stats(self.item, *args)
        except Exception:  # noqa: BLE001  the storage failed: Flask's limiter handles (and logs) it
            return None
        return headers + [("RateLimit-Limit", str(self.item.amount)), ("RateLimit-Remaining", str(stats.remaining)),
                          ("RateLimit-Reset", str(max(0, math.ceil(stats.reset_time - time.time()))))]

    def served(self, route: str, seconds: float) -> None:
        observe_request(route, "GET", 200, seconds)


_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
