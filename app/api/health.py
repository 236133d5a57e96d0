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
    now = services.clock()
    data = {"newest_fetched_at": newest.fetched_at.isoformat() if newest else None,
            "age_seconds": round((now - newest.fetched_at).total_seconds(), 1) if newest else None,
            "stale": (now - newest.fetched_at > view.stale_after) if newest else None}
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not_ready", "backends": services.settings.describe(),
            "checks": checks, "data": data}
    return jsonify(body), 200 if ready else 503
