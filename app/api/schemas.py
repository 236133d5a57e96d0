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
