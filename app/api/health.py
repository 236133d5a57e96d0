"""Blueprint `health`: /healthz (the process answers) and /readyz (store and Redis reachable, age of the data)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from app.api import extensions

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    # Anyone may call this: it answers codes and states only; the reasons (hosts, paths, driver messages) are in
    # the log. The checks are cached and time-bounded (services.reporting.Readiness).
    services = extensions.services()
    view = extensions.view()
    checks = {name: ({"ok": True} if result.ok else {"ok": False, "code": result.code})
              for name, result in extensions.readiness().check().items()}
    newest = view.newest()
    fresh = view.freshness(newest) if newest else None
    data = {"newest_fetched_at": fresh.fetched_at.isoformat() if fresh else None,
            "age_seconds": fresh.age_seconds if fresh else None,
            "stale": fresh.stale if fresh else None}
    settings = services.settings
    backends = {"store": "mongodb" if settings.mongodb_uri else "sqlite",
                "broker": "redis" if settings.redis_url else "embedded_redis"}
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not_ready", "backends": backends, "checks": checks, "data": data}
    clock = view.clock_state()
    if clock is not None:
        body["clock"] = clock
    return jsonify(body), 200 if ready else 503
