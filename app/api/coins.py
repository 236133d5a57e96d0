"""Blueprint `coins`: Data API v1 reads of one coin from the store, GET /api/v1/coins/{id}/history and .../stats."""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, current_app, jsonify, request

from app.domain.errors import InvalidQuery
from app.domain.history import BUCKET_FIELDS
from app.services.history import coin_history, coin_statistics

bp = Blueprint("coins", __name__, url_prefix="/api/v1/coins")
FORMATS = ("json", "csv")


def _arg(name: str) -> str | None:
    """A query parameter as sent, or None when absent or blank (as the /stats schema treats it)."""
    value = request.args.get(name)
    return value if value is not None and value.strip() else None


def _wants_csv() -> bool:
    value = _arg("format")
    if value is not None:
        if value.strip().lower() not in FORMATS:
            raise InvalidQuery(f"format {value!r} is not valid; allowed: {', '.join(FORMATS)}",
                               details={"parameter": "format", "value": value, "allowed": list(FORMATS)})
        return value.strip().lower() == "csv"
    # JSON first: a browser's */* gets JSON, only an explicit text/csv preference gets CSV.
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def _csv(history) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BUCKET_FIELDS)
    for bucket in history.buckets:
        writer.writerow(["" if bucket[f] is None else bucket[f] for f in BUCKET_FIELDS])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = \
        f'inline; filename="{history.coin}-{history.currency}-{history.interval}.csv"'
    return response


@bp.get("/<coin>/history")
def get_history(coin: str):
    services = current_app.extensions["services"]
    as_csv = _wants_csv()
    history = coin_history(services.repo, services.tracked, coin, now=services.clock(), start=_arg("from"),
                           end=_arg("to"), interval=_arg("interval"), currency=_arg("currency"))
    return _csv(history) if as_csv else jsonify(history.to_dict())


@bp.get("/<coin>/stats")
def get_stats(coin: str):
    services = current_app.extensions["services"]
    return jsonify(coin_statistics(services.repo, services.tracked, coin, now=services.clock(),
                                   window=_arg("window"), estimator=_arg("estimator"), on=_arg("on"),
                                   currency=_arg("currency")))
