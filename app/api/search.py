"""Blueprint `search`: GET /api/v1/search?q= finds CoinGecko coins by id, symbol or name in the catalogue cached in
the store; a symbol several coins share answers all of them with `ambiguous: true`."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.api import extensions

from app.domain.errors import InvalidQuery

bp = Blueprint("search", __name__, url_prefix="/api/v1")
MAX_QUERY_LENGTH = 100


@bp.get("/search")
def search():
    query = (request.args.get("q") or "").strip()
    if not query or len(query) > MAX_QUERY_LENGTH:
        raise InvalidQuery(f"q must be an id, symbol or name of 1 to {MAX_QUERY_LENGTH} characters",
                           details={"parameter": "q", "value": request.args.get("q")})
    return jsonify(extensions.catalog().get().search(query))
