"""Blueprint `coins`: Data API v1, GET /api/v1/coins and /api/v1/coins/{id} (the tracked coins, from memory), the
admin routes POST /api/v1/coins and DELETE /api/v1/coins/{id} (tracking at run time) and, from the store, one coin's
GET /api/v1/coins/{id}/history and .../stats."""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, jsonify, request

from app.domain.errors import InvalidQuery
from app.domain.history import BUCKET_FIELDS
from app.services.history import coin_history, coin_statistics
from app.api import extensions
from app.services.tracking import check_admin, coin_id_from_body, coin_listing, public_id

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


def _currency(view) -> str:
    allowed = view.tracked.vs_currencies
    currency = (_arg("currency") or allowed[0]).strip().lower()
    if currency not in allowed:  # a bad parameter (400), as the other Data API v1 routes say it
        raise InvalidQuery(f"currency {_arg('currency')!r} is not tracked; allowed: {', '.join(allowed)}",
                           details={"parameter": "currency", "value": _arg("currency"), "allowed": list(allowed)})
    return currency


def _admin() -> None:
    check_admin(extensions.services().settings.admin_token, request.headers.get("Authorization"))


@bp.get("")
def list_coins():
    """Every tracked coin's latest figures from the in-memory view (what the dashboard's table shows), with its
    symbol, name, aliases and currencies; a coin without data yet has nulls and `error` saying why."""
    view = extensions.view()
    currency = _currency(view)
    catalog = extensions.catalog().peek()
    return jsonify({"currency": currency,
                    "coins": [coin_listing(view, catalog, c, currency) for c in view.tracked.public_ids]})


@bp.get("/<coin>")
def get_coin(coin: str):
    view = extensions.view()
    currency = _currency(view)
    catalog = extensions.catalog().peek()
    return jsonify(coin_listing(view, catalog, public_id(view.tracked, coin.strip().lower()), currency))


@bp.post("")
def track_coin():
    """Admin: track a coin from now on (ADMIN_TOKEN). 201 when added, 200 when it already was."""
    _admin()
    coin = coin_id_from_body(request.get_json(force=True, silent=True))
    header, added = extensions.tracking().track(coin)
    return jsonify({**header, "tracked": True}), 201 if added else 200


@bp.delete("/<coin>")
def untrack_coin(coin: str):
    """Admin: stop tracking a coin (ADMIN_TOKEN); its stored records stay."""
    _admin()
    extensions.tracking().untrack(coin.strip().lower())
    return jsonify({"id": coin.strip().lower(), "tracked": False})


@bp.get("/<coin>/history")
def get_history(coin: str):
    services = extensions.services()
    as_csv = _wants_csv()
    history = coin_history(services.repo, extensions.view().tracked, coin, now=services.clock(),
                           start=_arg("from"), end=_arg("to"), interval=_arg("interval"), currency=_arg("currency"))
    return _csv(history) if as_csv else jsonify(history.to_dict())


@bp.get("/<coin>/stats")
def get_stats(coin: str):
    services = extensions.services()
    return jsonify(coin_statistics(services.repo, extensions.view().tracked, coin, now=services.clock(),
                                   window=_arg("window"), estimator=_arg("estimator"), on=_arg("on"),
                                   currency=_arg("currency")))
