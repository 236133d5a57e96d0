"""CoinGecko HTTP client: one /simple/price request for all coins, answers validated field by field with marshmallow."""
from __future__ import annotations

import email.utils
import json
import re
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import requests
from marshmallow import Schema, ValidationError, fields, validate

from app.domain.errors import (
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamUnavailable,
)
from app.domain.model import Observation
from app.ports import FetchResult

USER_AGENT = "crypto-stats-platform/1.0 (+self-hosted CoinGecko poller)"  # coingecko.md §6: send an explicit UA
KEY_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}  # coingecko.md §1
# A last_updated_at later than our request by more than ordinary clock skew (Kerberos tolerates 5 min) is garbage.
# Stored, it would be "the newest record" until real time caught up (records sort by it), hiding every later update;
# beyond year 9999 it does not even fit a datetime.
MAX_CLOCK_SKEW_SECONDS = 300


class QuoteSchema(Schema):
    """One coin in one currency. Numbers may come as JSON numbers, in exponent form or as numeric strings
    (coingecko.md §6); NaN, infinities, booleans and other text are rejected. A price must be positive: CoinGecko
    sends null or 0 for coins it no longer prices (§5, §6)."""

    price = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0, min_inclusive=False))
    market_cap = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=0))
    volume_24h = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=0))
    change_24h = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=-100))
    last_updated_at = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))


_QUOTE = QuoteSchema()


def parse_simple_price(body: Any, coins: Sequence[str], vs_currencies: Sequence[str], fetched_at: datetime) -> FetchResult:
    """Turn a /simple/price body into observations; every requested coin/currency that is absent or invalid is
    reported in `rejected` with the reason, and nothing invalid becomes an observation.

    CoinGecko drops unknown ids silently and answers an unsupported currency with an empty object (coingecko.md §3).
    A market cap of 0 means "unknown" (§6) and is stored as None. A missing last_updated_at falls back to our fetch
    time, to the second; one more than MAX_CLOCK_SKEW_SECONDS after it is rejected.
    """
    if not isinstance(body, dict):
        raise UpstreamBadResponse(f"expected a JSON object from /simple/price, got {type(body).__name__}")
    observations: list[Observation] = []
    rejected: dict[str, str] = {}
    for coin in coins:
        entry = body.get(coin)
        for vs in vs_currencies:
            label = f"{coin}/{vs}"
            if entry is None:
                rejected[label] = "missing from CoinGecko's answer (unknown or deprecated id)"
                continue
            if not isinstance(entry, dict):
                rejected[label] = f"expected an object, got {type(entry).__name__}"
                continue
            if vs not in entry:
                rejected[label] = "no price in this currency"
                continue
            raw = {"price": entry.get(vs), "market_cap": entry.get(f"{vs}_market_cap"),
                   "volume_24h": entry.get(f"{vs}_24h_vol"), "change_24h": entry.get(f"{vs}_24h_change"),
                   "last_updated_at": entry.get("last_updated_at")}
            try:
                quote = _QUOTE.load(raw)
            except ValidationError as exc:
                rejected[label] = "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(exc.messages.items()))
                continue
            if quote["last_updated_at"] and quote["last_updated_at"] > fetched_at.timestamp() + MAX_CLOCK_SKEW_SECONDS:
                rejected[label] = f"last_updated_at: {quote['last_updated_at']} is after the time we asked"
                continue
            observed = (datetime.fromtimestamp(quote["last_updated_at"], timezone.utc)
                        if quote["last_updated_at"] else fetched_at.replace(microsecond=0))
            observations.append(Observation(
                coin=coin, vs_currency=vs, price=quote["price"],
                market_cap=quote["market_cap"] or None, volume_24h=quote["volume_24h"],
                change_24h=quote["change_24h"], observed_at=observed, fetched_at=fetched_at,
            ))
    return FetchResult(observations, rejected)


def error_message(body_text: str) -> str:
    """CoinGecko's error text from any of its three JSON shapes, else a prefix of the raw body (coingecko.md §4)."""
    try:
        data = json.loads(body_text)
    except ValueError:
        text = re.sub(r"<[^>]+>", " ", body_text)
        return " ".join(text.split())[:160] or "(empty body)"
    if isinstance(data, dict):
        status = data.get("status")
        if isinstance(data.get("error"), dict):
            status = data["error"].get("status", status)
        if isinstance(status, dict) and status.get("error_message"):
            code = status.get("error_code") or data.get("error_code")
            return f"{status['error_message']}" + (f" (error_code {code})" if code else "")
        if isinstance(data.get("error"), str):
            return data["error"]
    return body_text[:160]


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds: CoinGecko sends delta-seconds; an HTTP date is accepted too. None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


class CoinGeckoClient:
    """Real HTTP to `base_url` (…/api/v3). Implements PriceSource.

    Each call makes exactly one request, with connect and read timeouts, and either returns a FetchResult or raises:
    UpstreamUnavailable (network), UpstreamRateLimited (429, with Retry-After), UpstreamServerError (5xx, 408),
    UpstreamRejected (other 4xx: key, plan or parameter problems; not worth retrying), UpstreamBadResponse (200 that
    is HTML, malformed JSON, or holds no valid price). It never retries: the task owns the retry policy.
    The API key travels in the plan's header only and appears in no message.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, plan: str = "demo",
                 connect_timeout: float = 5.0, read_timeout: float = 20.0,
                 clock: Callable[[], datetime] | None = None, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if api_key:
            self.session.headers[KEY_HEADERS[plan]] = api_key

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.Timeout as exc:
            raise UpstreamUnavailable(f"CoinGecko timed out ({url}): {exc.__class__.__name__}") from exc
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"CoinGecko unreachable ({url}): {_short(exc)}") from exc
        status = response.status_code
        text = response.text
        if status == 429:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), self.clock())
            raise UpstreamRateLimited(f"CoinGecko rate limit (429): {error_message(text)}", retry_after=retry_after,
                                      details={"status": status, "retry_after": retry_after})
        if status >= 500 or status == 408:
            raise UpstreamServerError(f"CoinGecko answered {status}: {error_message(text)}", details={"status": status})
        if status >= 400:
            raise UpstreamRejected(f"CoinGecko refused the request ({status}): {error_message(text)}",
                                   details={"status": status})
        if status != 200:
            raise UpstreamBadResponse(f"CoinGecko answered {status}, expected 200", details={"status": status})
        try:
            return json.loads(text)
        except ValueError:
            kind = "HTML" if "<html" in text[:500].lower() else "malformed JSON"
            raise UpstreamBadResponse(f"CoinGecko answered 200 with {kind}: {error_message(text)}",
                                      details={"status": status}) from None

    def fetch_prices(self, coins: Sequence[str], vs_currencies: Sequence[str]) -> FetchResult:
        """GET /simple/price for all coins and currencies at once (coingecko.md §2, §7: one call, ≤515 ids)."""
        fetched_at = self.clock().astimezone(timezone.utc)
        fetched_at = fetched_at.replace(microsecond=fetched_at.microsecond // 1000 * 1000)
        body = self._get("/simple/price", {
            "ids": ",".join(coins),
            "vs_currencies": ",".join(vs_currencies),
            "include_market_cap": "true",
            "include_24hr_vol": "true",
            "include_24hr_change": "true",
            "include_last_updated_at": "true",
            "precision": "full",
        })
        result = parse_simple_price(body, coins, vs_currencies, fetched_at)
        if not result.observations:
            raise UpstreamBadResponse("CoinGecko's answer held no valid price", details={"rejected": result.rejected})
        return result

    def close(self) -> None:
        self.session.close()


def _short(exc: Exception) -> str:
    """The innermost reason of a requests error, e.g. 'Connection refused' or 'Name or service not known'."""
    text = str(exc)
    match = re.search(r"\[Errno [-\d]+\] ([^')\]]+)|(Name or service not known|Temporary failure in name resolution)",
                      text)
    if match:
        return match.group(1) or match.group(2)
    return f"{exc.__class__.__name__}: {text[:160]}"
