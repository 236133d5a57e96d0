"""The one place that maps errors to HTTP: every failure is JSON `{"error": {"code", "message", "details"}}`."""
from __future__ import annotations

import logging
import math

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from app.domain import errors as domain

log = logging.getLogger(__name__)

STATUS: dict[type[domain.AppError], int] = {
    domain.InvalidQuery: 400,
    domain.InvalidBody: 400,
    domain.AdminTokenMissing: 401,
    domain.AdminForbidden: 403,
    domain.TrackingConflict: 409,
    domain.UpstreamError: 503,  # CoinGecko's catalogue could not be had (an admin request, a search)
    domain.UnknownCoin: 404,
    domain.UnknownCurrency: 404,
    domain.NoData: 503,
    domain.StorageUnavailable: 503,
    domain.BrokerUnavailable: 503,
    domain.TooManyStreams: 503,
}


# What a client is told when a backend fails: the adapters' own messages name hosts, paths and driver internals of
# the deployment, which belong to the operator's log, never to an anonymous answer.
PUBLIC_MESSAGES = {
    domain.StorageUnavailable: "the store is unreachable; try again shortly",
    domain.BrokerUnavailable: "Redis is unreachable; try again shortly",
    domain.UpstreamError: "CoinGecko's coin list could not be fetched; try again shortly",
}

DEFAULT_RETRY_AFTER_SECONDS = 30  # a 503 that knows no better time to come back


def error_body(code: str, message: str, details=None) -> dict:
    """The one error shape."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details=None):
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(_retry_after(details))
    return response


def _retry_after(details) -> int:
    """Whole seconds until the next attempt when the error knows it (a failed update's retry), else the default."""
    left = details.get("retry_in_seconds") if isinstance(details, dict) else None
    if isinstance(left, (int, float)) and not isinstance(left, bool):
        return max(1, math.ceil(left))
    return DEFAULT_RETRY_AFTER_SECONDS


def register(app: Flask) -> None:
    @app.errorhandler(domain.AppError)
    def app_error(exc: domain.AppError):
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        if status == 500:
            log.exception("unexpected application error")
            return error_response(500, "internal_error", "internal server error")
        public = next((m for cls, m in PUBLIC_MESSAGES.items() if isinstance(exc, cls)), None)
        if public is not None:
            return error_response(status, exc.code, public)
        response = error_response(status, exc.code, exc.message, exc.details)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="admin"'
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() == "allow":  # 405 says which methods work
                response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
