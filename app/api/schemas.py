"""Request and response schemas of the HTTP API."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from app.domain.errors import InvalidQuery


class CoinQuerySchema(Schema):
    """`?coin=bitcoin[&currency=usd]`: unknown parameters are ignored, as the original service did."""

    class Meta:
        unknown = EXCLUDE

    coin = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", error="must be a CoinGecko coin id such as bitcoin"))
    currency = fields.String(load_default=None, validate=validate.Regexp(
        r"^[A-Za-z]{2,10}$", error="must be a currency code such as usd"))


def load_query(schema: Schema, args) -> dict:
    """Validate query args; raise InvalidQuery with marshmallow's messages in details."""
    data = {k: v.strip() for k, v in args.items()}
    data = {k: v for k, v in data.items() if v != ""}
    try:
        loaded = schema.load(data)
    except ValidationError as exc:
        fields_ = ", ".join(sorted(exc.messages))
        missing = "coin" in exc.messages and "coin" not in data
        message = "query parameter 'coin' is required, e.g. ?coin=bitcoin" if missing else f"invalid query: {fields_}"
        raise InvalidQuery(message, details=exc.messages) from None
    return {k: (v.lower() if isinstance(v, str) else v) for k, v in loaded.items()}


# Output schemas and documentation-only query schemas: /openapi.json is generated from them (app/api/openapi.py).
# The routes build their bodies directly; tests/api/test_openapi.py holds the real answers to these schemas.


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "stable snake_case code, e.g. invalid_query",
                                                  "example": "unknown_coin"})
    message = fields.String(required=True, metadata={"description": "what went wrong and what to do, in English"})
    details = fields.Raw(required=True, allow_none=True,
                         metadata={"description": "machine-readable particulars (the parameter, allowed values, "
                                                  "marshmallow's messages), or null"})


class ErrorSchema(Schema):
    """The one error shape of every failure."""

    error = fields.Nested(ErrorDetailSchema, required=True)


class StatsSchema(Schema):
    """GET /stats: the newest record, as the original service answered it."""

    price = fields.Float(required=True, metadata={"example": 40000})
    marketCap = fields.Float(required=True, allow_none=True, metadata={"example": 800000000})
    change_24h = fields.Float(required=True, allow_none=True, data_key="24hChange",
                              metadata={"description": "price change over 24 h in percent", "example": 3.4})


class DeviationSchema(Schema):
    deviation = fields.Float(required=True, metadata={
        "description": "population standard deviation of the last 100 stored prices, 2 decimals", "example": 4082.48})


class CoinsQuerySchema(Schema):
    currency = fields.String(metadata={"description": "one of VS_CURRENCIES (default: the first)", "example": "usd"})


class NoDataSchema(Schema):
    code = fields.String(required=True, metadata={"example": "no_data"})
    message = fields.String(required=True)


class CoinSummarySchema(Schema):
    """One tracked coin as the in-memory view holds it (the fields of the stream's events)."""

    coin = fields.String(required=True, metadata={"example": "bitcoin"})
    currency = fields.String(required=True, metadata={"example": "usd"})
    price = fields.Float(required=True, allow_none=True)
    market_cap = fields.Float(required=True, allow_none=True)
    change_24h = fields.Float(required=True, allow_none=True, metadata={"description": "percent over 24 h"})
    deviation = fields.Float(required=True, allow_none=True,
                             metadata={"description": "population SD of the last 100 prices (as /deviation)"})
    observed_at = fields.DateTime(required=True, allow_none=True,
                                  metadata={"description": "CoinGecko's last_updated_at"})
    fetched_at = fields.DateTime(required=True, allow_none=True, metadata={"description": "when we fetched it"})
    stale = fields.Boolean(required=True, allow_none=True,
                           metadata={"description": "older than two update intervals; null without data"})
    error = fields.Nested(NoDataSchema, required=True, allow_none=True,
                          metadata={"description": "why there is no data yet (no_data), else null"})


class AliasSchema(Schema):
    id = fields.String(required=True, metadata={"example": "matic-network"})
    fetched_as = fields.String(required=True, metadata={"example": "polygon-ecosystem-token"})
    deprecated = fields.Boolean(required=True, metadata={"description": "CoinGecko no longer prices this id"})


class CoinSchema(CoinSummarySchema):
    """One tracked coin: who it is (CoinGecko's catalogue), and its latest figures from the in-memory view."""

    id = fields.String(required=True, metadata={"example": "bitcoin"})
    symbol = fields.String(required=True, allow_none=True,
                           metadata={"description": "of the id it is fetched as; null until the catalogue is cached",
                                     "example": "btc"})
    name = fields.String(required=True, allow_none=True, metadata={"example": "Bitcoin"})
    aliases = fields.List(fields.Nested(AliasSchema), required=True)
    currencies = fields.List(fields.String(), required=True, metadata={"example": ["usd"]})
    volume_24h = fields.Float(required=True, allow_none=True)


class CoinListSchema(Schema):
    currency = fields.String(required=True)
    coins = fields.List(fields.Nested(CoinSchema), required=True)


class TrackBodySchema(Schema):
    id = fields.String(required=True, metadata={"description": "a CoinGecko coin id (see /api/v1/search)",
                                                "example": "solana"})


class TrackedSchema(Schema):
    id = fields.String(required=True, metadata={"example": "solana"})
    tracked = fields.Boolean(required=True)


class CandidateSchema(Schema):
    id = fields.String(required=True, metadata={"example": "ethereum"})
    symbol = fields.String(required=True, metadata={"example": "eth"})
    name = fields.String(required=True, metadata={"example": "Ethereum"})
    match = fields.String(required=True, metadata={"description": "id, symbol, name or prefix"})


class SearchSchema(Schema):
    query = fields.String(required=True)
    ambiguous = fields.Boolean(required=True, metadata={
        "description": "true when the query is the symbol or name of several coins and no id: pick an id"})
    candidates = fields.List(fields.Nested(CandidateSchema), required=True)
    truncated = fields.Boolean(required=True)


class HistoryQuerySchema(Schema):
    from_ = fields.String(data_key="from", metadata={
        "description": "ISO-8601 or Unix seconds; default 24 h before `to`", "example": "2026-11-24T00:00:00Z"})
    to = fields.String(metadata={"description": "ISO-8601 or Unix seconds, exclusive; default now (inclusive)"})
    interval = fields.String(validate=validate.OneOf(["15m", "1h", "4h", "1d"]),
                             metadata={"description": "bucket width (default 15m); at most 2,000 buckets"})
    currency = fields.String(metadata={"description": "one of VS_CURRENCIES (default: the first)"})
    format = fields.String(validate=validate.OneOf(["json", "csv"]),
                           metadata={"description": "csv (or Accept: text/csv) answers the buckets as CSV"})


class BucketSchema(Schema):
    t = fields.DateTime(required=True, metadata={"description": "the bucket's start"})
    open = fields.Float(required=True, allow_none=True)
    high = fields.Float(required=True, allow_none=True)
    low = fields.Float(required=True, allow_none=True)
    close = fields.Float(required=True, allow_none=True)
    n = fields.Integer(required=True, metadata={"description": "records in the bucket; 0 is a gap (nulls)"})
    market_cap = fields.Float(required=True, allow_none=True)
    volume = fields.Float(required=True, allow_none=True)


class HistorySchema(Schema):
    coin = fields.String(required=True)
    currency = fields.String(required=True)
    interval = fields.String(required=True)
    from_ = fields.DateTime(required=True, data_key="from")
    to = fields.DateTime(required=True)
    buckets = fields.List(fields.Nested(BucketSchema), required=True)


class CoinStatsQuerySchema(Schema):
    window = fields.String(metadata={"description": "a record count 2..10000 (default 100) or 24h, 7d, 30d"})
    estimator = fields.String(validate=validate.OneOf(["population", "sample"]))
    on = fields.String(validate=validate.OneOf(["price", "log_return"]))
    currency = fields.String(metadata={"description": "one of VS_CURRENCIES (default: the first)"})


class CoinStatsSchema(Schema):
    n = fields.Integer(required=True)
    from_ = fields.DateTime(required=True, allow_none=True, data_key="from")
    to = fields.DateTime(required=True, allow_none=True)
    mean = fields.Float(required=True, allow_none=True)
    sd = fields.Float(required=True, allow_none=True)
    min = fields.Float(required=True, allow_none=True)
    max = fields.Float(required=True, allow_none=True)
    change_pct = fields.Float(required=True, allow_none=True)
    volatility_annualized = fields.Float(required=True, allow_none=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class CheckSchema(Schema):
    ok = fields.Boolean(required=True)
    code = fields.String(metadata={"description": "why it is down, e.g. timeout"})


class ReadinessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not_ready"]))
    backends = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema), required=True)
    data = fields.Dict(required=True, metadata={"description": "newest_fetched_at, age_seconds, stale"})
    clock = fields.Dict(metadata={"description": "the worker's clock skew, once it reported it"})
