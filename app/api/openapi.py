"""Blueprint `openapi`: GET /openapi.json (OpenAPI 3.1, generated from the marshmallow schemas with apispec) and
GET /docs (Swagger UI, served from app/api/static/vendor/)."""
from __future__ import annotations

import copy

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify, render_template

from app.api import schemas
from app.api import extensions

bp = Blueprint("openapi", __name__)

ERROR_STATUSES = {
    400: "Bad parameter (`invalid_query`; the message and `details` name it and the allowed values)",
    404: "Untracked coin or currency (`unknown_coin`, `unknown_currency`; the message lists the tracked ones)",
    503: "No data yet (`no_data`, saying why) or the store unreachable; `Retry-After` says when to come back",
    401: "Admin route without `Authorization: Bearer <ADMIN_TOKEN>` (`admin_token_missing`)",
    403: "Wrong admin token, or ADMIN_TOKEN not configured (`admin_forbidden`)",
    409: "The change would leave no coin tracked (`tracking_conflict`)",
}
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminToken": []}]
FRESHNESS_HEADERS = {
    "X-Data-Stale": ("`true` once the data is older than two update intervals", "string"),
    "X-Data-Fetched-At": ("when the platform fetched the record (ISO-8601)", "string"),
    "X-Data-Observed-At": ("CoinGecko's last_updated_at of the record (ISO-8601)", "string"),
    "Last-Modified": ("the same instant as an HTTP date", "string"),
}
COIN_PATH = {"in": "path", "name": "coin", "required": True, "description": "a tracked CoinGecko id",
             "schema": {"type": "string", "example": "bitcoin"}}


def _json(schema, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = {name: {"description": text, "schema": {"type": kind}}
                               for name, (text, kind) in headers.items()}
    return response


def _errors(*statuses: int) -> dict:
    out = {}
    for status in statuses:
        out[str(status)] = _json("Error", ERROR_STATUSES[status])
        if status == 503:
            out["503"]["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}}
    return out


def _contract(schema: str, summary: str) -> dict:
    return {"get": {"tags": ["contract"], "summary": summary,
                    "parameters": [{"in": "query", "schema": schemas.CoinQuerySchema}],
                    "responses": {"200": _json(schema, "The answer, with its freshness in headers", FRESHNESS_HEADERS),
                                  **_errors(400, 404, 503)}}}


def _html(summary: str) -> dict:
    return {"get": {"tags": ["pages"], "summary": summary,
                    "responses": {"200": {"description": "An HTML page",
                                          "content": {"text/html": {"schema": {"type": "string"}}}}}}}


BACKFILL_PROGRESS = {"type": "object", "properties": {
    "coin": {"type": "string"}, "currency": {"type": "string"}, "days": {"type": "integer"},
    "state": {"type": "string", "enum": ["none", "queued", "running", "waiting", "done", "failed"]},
    "chunks_total": {"type": "integer"}, "chunks_done": {"type": "integer"}, "chunks_fetched": {"type": "integer"},
    "records_stored": {"type": "integer"}, "last_error": {"type": ["object", "null"]},
    "wait_until": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]}}}


# Every route of the app, by OpenAPI path. Only those the app really has are published (the test checks both ways).
OPERATIONS: dict[str, dict] = {
    "/stats": _contract("Stats", "Newest price, market cap and 24 h change of a coin"),
    "/deviation": _contract("Deviation", "Standard deviation of the last 100 stored prices"),
    "/api/v1/stats": _contract("Stats", "The same as /stats (versioned path)"),
    "/api/v1/deviation": _contract("Deviation", "The same as /deviation (versioned path)"),
    "/api/v1/coins": {"get": {
        "tags": ["data"], "summary": "Every tracked coin: id, symbol, name, aliases, latest figures (from memory)",
        "parameters": [{"in": "query", "schema": schemas.CoinsQuerySchema}],
        "responses": {"200": _json("CoinList", "One entry per tracked coin, in the order they were tracked"),
                      **_errors(400)}},
        "post": {
        "tags": ["admin"], "summary": "Track a coin from the next update on (admin token)",
        "security": ADMIN_SECURITY,
        "requestBody": {"required": True, "content": {"application/json": {"schema": "TrackBody"}}},
        "responses": {"201": _json("Tracked", "Tracked now"), "200": _json("Tracked", "Already tracked"),
                      **_errors(400, 401, 403), "404": _json("Error", "Not a CoinGecko id (`unknown_coin`; "
                                                                      "`details.candidates` the closest ids)"),
                      "503": _json("Error", "The store, or CoinGecko's coin list, unreachable")}}},
    "/api/v1/coins/{coin}": {"get": {
        "tags": ["data"], "summary": "One tracked coin, the same fields as in /api/v1/coins",
        "parameters": [COIN_PATH, {"in": "query", "schema": schemas.CoinsQuerySchema}],
        "responses": {"200": _json("Coin", "The coin"), **_errors(400, 404)}},
        "delete": {
        "tags": ["admin"], "summary": "Stop tracking a coin (admin token); its stored records stay",
        "security": ADMIN_SECURITY, "parameters": [COIN_PATH],
        "responses": {"200": _json("Tracked", "No longer tracked"), **_errors(401, 403, 404, 409, 503)}}},
    "/api/v1/search": {"get": {
        "tags": ["data"], "summary": "CoinGecko coins by id, symbol or name (its /coins/list, cached a day)",
        "parameters": [{"in": "query", "name": "q", "required": True, "schema": {"type": "string"},
                        "description": "an id, symbol or name (or their start)"}],
        "responses": {"200": _json("Search", "Exact id first; `ambiguous` when a symbol names several coins"),
                      **_errors(400, 503)}}},
    "/api/v1/coins/{coin}/history": {"get": {
        "tags": ["data"], "summary": "OHLC buckets of a coin from the stored records (empty buckets: n 0, nulls)",
        "parameters": [COIN_PATH, {"in": "query", "schema": schemas.HistoryQuerySchema}],
        "responses": {"200": {"description": "The buckets, oldest first",
                              "content": {"application/json": {"schema": "History"},
                                          "text/csv": {"schema": {"type": "string"}}}},
                      **_errors(400, 404, 503)}}},
    "/api/v1/coins/{coin}/stats": {"get": {
        "tags": ["data"], "summary": "Rolling statistics of a coin's stored records",
        "parameters": [COIN_PATH, {"in": "query", "schema": schemas.CoinStatsQuerySchema}],
        "responses": {"200": _json("CoinStats", "Statistics (n 0 and nulls for an empty window)"),
                      **_errors(400, 404, 503)}}},
    "/api/v1/stream": {"get": {
        "tags": ["data"], "summary": "Server-Sent Events: a `snapshot` per coin on connect, then `price` events",
        "parameters": [{"in": "query", "name": "coins", "schema": {"type": "string"},
                        "description": "comma-separated tracked ids (default: all)"},
                       {"in": "query", "name": "currency", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "text/event-stream; each event's data is a CoinSummary",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      **_errors(400, 404, 503)}}},
    "/api/v1/coins/{coin}/backfill": {
        "post": {"tags": ["admin"], "summary": "Queue a backfill of the coin's past from CoinGecko (ADMIN_TOKEN)",
                 "parameters": [COIN_PATH],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["days"],
                     "properties": {"days": {"type": "integer", "minimum": 1,
                                             "description": "at most 365 on the Demo plan or without a key"},
                                    "currency": {"type": "string"}}}}}},
                 "responses": {"202": _json(BACKFILL_PROGRESS, "Queued: the progress as it starts"),
                               **_errors(400, 401, 403, 404, 503)}},
        "get": {"tags": ["data"], "summary": "Progress of the coin's newest backfill",
                "parameters": [COIN_PATH, {"in": "query", "name": "currency", "schema": {"type": "string"}}],
                "responses": {"200": _json(BACKFILL_PROGRESS, "State, chunks done of total, records stored, last "
                                                              "error"),
                              **_errors(404, 503)}}},
    "/api/v1/usage": {"get": {
        "tags": ["operations"], "summary": "CoinGecko calls this minute and month, 429s, cooldown, projection",
        "responses": {"200": _json({"type": "object"}, "Counted in Redis across every process"),
                      **_errors(503)}}},
    "/healthz": {"get": {"tags": ["operations"], "summary": "The process answers",
                         "responses": {"200": _json("Health", "Always while the process runs")}}},
    "/readyz": {"get": {"tags": ["operations"], "summary": "Store and Redis reachable; age of the newest data",
                        "responses": {"200": _json("Readiness", "Ready"),
                                      "503": _json("Readiness", "Not ready: the failing check's code")}}},
    "/metrics": {"get": {"tags": ["operations"], "summary": "Prometheus metrics (Bearer METRICS_TOKEN when set)",
                         "responses": {"200": {"description": "Prometheus text exposition format",
                                               "content": {"text/plain": {"schema": {"type": "string"}}}},
                                       "401": _json("Error", "METRICS_TOKEN is set and was not given")}}},
    "/": _html("The dashboard"),
    "/docs": _html("This document, rendered (Swagger UI)"),
    "/openapi.json": {"get": {"tags": ["pages"], "summary": "This document",
                              "responses": {"200": {"description": "OpenAPI 3.1",
                                                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
}
SCHEMAS = {"Error": schemas.ErrorSchema, "Stats": schemas.StatsSchema, "Deviation": schemas.DeviationSchema,
           "CoinSummary": schemas.CoinSummarySchema, "Coin": schemas.CoinSchema, "CoinList": schemas.CoinListSchema,
           "TrackBody": schemas.TrackBodySchema, "Tracked": schemas.TrackedSchema,
           "Search": schemas.SearchSchema,
           "Bucket": schemas.BucketSchema, "History": schemas.HistorySchema, "CoinStats": schemas.CoinStatsSchema,
           "Health": schemas.HealthSchema, "Readiness": schemas.ReadinessSchema}
DESCRIPTION = ("Cryptocurrency statistics kept fresh from CoinGecko. Every failure is JSON in one shape: "
               "`{\"error\": {\"code\", \"message\", \"details\"}}`.")


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: /api/v1/coins/<coin>/history -> /api/v1/coins/{coin}/history."""
    return rule.replace("<", "{").replace(">", "}")


UNLIMITED_PATHS = ("/healthz", "/readyz", "/metrics")  # app/api/guard.py UNLIMITED_BLUEPRINTS


def _document_rate_limit(document: dict) -> None:
    """RATE_LIMIT set: every other operation may answer 429 (app/api/guard.py)."""
    too_many = {"description": "Over RATE_LIMIT (`too_many_requests`); `Retry-After` says when to come back",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                "headers": {name: {"description": text, "schema": {"type": "string"}} for name, text in (
                    ("Retry-After", "seconds"), ("RateLimit-Limit", "requests per window"),
                    ("RateLimit-Remaining", "requests left in this window"),
                    ("RateLimit-Reset", "seconds until the window ends"))}}
    for path, item in document["paths"].items():
        if path not in UNLIMITED_PATHS:
            for operation in item.values():
                operation["responses"].setdefault("429", too_many)


def build_spec(app) -> dict:
    """The OpenAPI 3.1 document of the routes `app` has (static assets aside). No server URL: the document is
    relative to wherever it was fetched from, so it names no host of the deployment."""
    spec = APISpec(title="Crypto Stats Platform", version="1.0.0", openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()], info={"description": DESCRIPTION})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    present = {openapi_path(rule.rule) for rule in app.url_map.iter_rules() if not rule.endpoint.endswith("static")}
    for path, operations in OPERATIONS.items():
        if path in present:
            spec.path(path=path, operations=copy.deepcopy(operations))  # apispec edits them
    spec.components.security_scheme("adminToken", {"type": "http", "scheme": "bearer",
                                                    "description": "ADMIN_TOKEN"})
    document = spec.to_dict()
    if extensions.services(app).settings.rate_limit:
        _document_rate_limit(document)
    tracked = extensions.services(app).tracked
    # The tracked coins and currencies are configuration: say which they are (other values answer 404 or 400).
    enums = {"coin": list(tracked.public_ids), "currency": list(tracked.vs_currencies)}
    for item in document["paths"].values():
        for parameter in [p for op in item.values() if isinstance(op, dict) for p in op.get("parameters", [])]:
            if parameter["name"] in enums:
                parameter["schema"] = {"type": "string", "enum": enums[parameter["name"]]}
    document["servers"] = [{"url": "/"}]
    return document


@bp.get("/openapi.json")
def openapi_json():
    if "openapi" not in current_app.extensions:  # built once per process, on first use (every route is known)
        current_app.extensions["openapi"] = build_spec(current_app)
    return jsonify(current_app.extensions["openapi"])


@bp.get("/docs")
def docs():
    return render_template("docs.html")
