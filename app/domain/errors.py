"""The one error tree of the platform. Errors carry a stable `code` and a `transient` flag, never an HTTP status."""
from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every error the platform raises on purpose."""

    code = "internal_error"
    transient = False

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(AppError):
    """A configuration variable is missing or has a bad value; the process must not start."""

    code = "config_invalid"

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}", details={"variable": variable})
        self.variable = variable


class InvalidQuery(AppError):
    """A request parameter is missing or malformed."""

    code = "invalid_query"


class InvalidBody(AppError):
    """A request body is not JSON, or not the object the route expects."""

    code = "invalid_body"


class AdminTokenMissing(AppError):
    """An admin route was called without `Authorization: Bearer <ADMIN_TOKEN>`."""

    code = "admin_token_missing"


class AdminForbidden(AppError):
    """An admin route was called with a wrong token, or ADMIN_TOKEN is not configured (then no one may)."""

    code = "admin_forbidden"


class TrackingConflict(AppError):
    """The tracked set cannot change that way (e.g. removing its last coin: an update would fetch nothing)."""

    code = "tracking_conflict"


class UnknownCoin(AppError):
    """The coin asked for is not one the platform tracks."""

    code = "unknown_coin"


class UnknownCurrency(AppError):
    """The vs-currency asked for is not one the platform tracks."""

    code = "unknown_currency"


class NoData(AppError):
    """Nothing is stored yet for what was asked (first update pending, or the last update failed)."""

    code = "no_data"
    transient = True


class TooManyStreams(AppError):
    """This web process holds its maximum of live streams (STREAM_MAX_CLIENTS); another may have room."""

    code = "too_many_streams"
    transient = True


class StorageUnavailable(AppError):
    """The store could not be reached or refused the operation for a transient reason."""

    code = "storage_unavailable"
    transient = True


class BrokerUnavailable(AppError):
    """Redis (broker and pub/sub) could not be reached."""

    code = "broker_unavailable"
    transient = True


class UpstreamError(AppError):
    """CoinGecko did not give a usable answer. `clock_skew_seconds` is our clock minus CoinGecko's, measured on the
    answer that failed (None when none arrived or it had no Date)."""

    code = "upstream_error"
    transient = True
    clock_skew_seconds: float | None = None


class UpstreamUnavailable(UpstreamError):
    """CoinGecko could not be reached: DNS, connect or read timeout, connection reset."""

    code = "upstream_unreachable"


class UpstreamServerError(UpstreamError):
    """CoinGecko answered 5xx or 408."""

    code = "upstream_server_error"


class UpstreamRateLimited(UpstreamError):
    """CoinGecko answered 429; `retry_after` is its Retry-After in seconds, or None when it sent none."""

    code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class UpstreamBadResponse(UpstreamError):
    """CoinGecko answered 200 with something that is not the JSON we asked for (HTML page, malformed JSON, no valid coin)."""

    code = "upstream_bad_response"


class UpstreamRejected(UpstreamError):
    """CoinGecko refused the request itself (bad key, wrong host for the key plan, bad parameter): retrying will not help."""

    code = "upstream_rejected"
    transient = False


class UpstreamHistoryLimit(UpstreamRejected):
    """CoinGecko refused a history window beyond the plan's reach (error_code 10012: Demo and keyless see the past
    365 days only, coingecko.md §4). Permanent: the same request fails the same way until the plan changes."""

    code = "upstream_history_limit"
