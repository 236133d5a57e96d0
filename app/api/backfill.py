"""Blueprint `backfill`: POST/GET /api/v1/coins/{id}/backfill (admin: queue a backfill; its progress) and
GET /api/v1/usage (CoinGecko calls counted and projected)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.api import extensions
from app.domain.backfill import BackfillProgress
from app.domain.errors import InvalidQuery
from app.queue import BACKFILL_TASK_NAME
from app.services.backfill import backfill_progress, max_days, start_backfill
from app.services.tracking import check_admin
from app.services.usage import usage_report

bp = Blueprint("backfill", __name__, url_prefix="/api/v1")


def _services():
    return extensions.services()


@bp.post("/coins/<coin>/backfill")
def queue_backfill(coin: str):
    services = _services()
    settings = services.settings
    check_admin(settings.admin_token, request.headers.get("Authorization"))
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidQuery('the body must be a JSON object such as {"days": 365}', details={"parameter": "body"})
    progress = start_backfill(services.counters, services.tracked_now(), coin, body.get("days"), body.get("currency"),
                              services.clock(), max_days(settings.coingecko_api_plan, settings.coingecko_api_key))
    services.jobs.send(BACKFILL_TASK_NAME, {"coin": progress.coin, "currency": progress.currency, "days": progress.days})
    return jsonify(progress.to_dict()), 202


@bp.get("/coins/<coin>/backfill")
def get_backfill(coin: str):
    services = _services()
    progress = backfill_progress(services.counters, services.tracked_now(), coin, request.args.get("currency") or None)
    if progress is None:  # never asked for: nothing to report, which is no fault
        progress = BackfillProgress(services.tracked_now().resolve(coin),
                                    services.tracked_now().resolve_currency(request.args.get("currency") or None), 0,
                                    state="none")
    return jsonify(progress.to_dict())


@bp.get("/usage")
def get_usage():
    services = _services()
    settings = services.settings
    return jsonify(usage_report(services.counters, services.claims, settings.schedule, len(services.tracked_now().source_ids()),
                                settings.coingecko_monthly_calls, services.clock()))
