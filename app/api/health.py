"""Blueprint `health`: /healthz (the process answers) and /readyz (store and Redis reachable, age of the data)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.domain.errors import AppError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    services = current_app.extensions["services"]
    view = current_app.extensions["view"]
    checks = {}
    for name, part in (("store", services.repo), ("redis", services.bus)):
        try:
            part.ping()
            checks[name] = {"ok": True}
        except AppError as exc:
            checks[name] = {"ok": False, "error": exc.message}
    newest = view.newest()
    fresh = view.freshness(newest) if newest else None
    data = {"newest_fetched_at": fresh.fetched_at.isoformat() if fresh else None,
            "age_seconds": fresh.age_seconds if fresh else None,
            "stale": fresh.stale if fresh else None}
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not_ready", "backends": services.settings.describe(),
            "checks": checks, "data": data}
    return jsonify(body), 200 if ready else 503
