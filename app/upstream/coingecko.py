"""CoinGecko HTTP client: one /simple/price request for all coins, answers validated field by field with marshmallow."""
from __future__ import annotations

import email.utils
import json
import re
from datetime import datetime, timezone
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlencode

import requests
from marshmallow import Schema, ValidationError, fields, validate

from app.domain.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamHistoryLimit,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamUnavailable,
)
from app.domain.model import SOURCE_BACKFILL, Observation
from app.domain.plausibility import MAX_FUTURE
from app.ports import FetchResult

USER_AGENT = "crypto-stats-platform/1.0 (+self-hosted CoinGecko poller)"  # coingecko.md §6: send an explicit UA
KEY_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}  # coingecko.md §1
# A last_updated_at later than our request by more than the plausible clock skew is garbage. Stored, it would be
# "the newest record" until real time caught up (records sort by it), hiding every later update; beyond year 9999
# it does not even fit a datetime. The domain's plausibility rule says how far is too far.
MAX_CLOCK_SKEW_SECONDS = MAX_FUTURE.total_seconds()
# The default cap on a decoded answer: a real /simple/price answer is ~110 bytes per coin and currency, so even the
# 515 ids one call can carry (coingecko.md §7) in six currencies stay well under it.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# Ids per /simple/price call: CoinGecko's Demo page allows 515 (coingecko.md §2); 500 keeps a margin should it shrink.
MAX_IDS_PER_CALL = 500
# The whole request URL: CDNs and proxies commonly refuse more than 8 KB (8,192 bytes: nginx's default
# large_client_header_buffers, Cloudflare's URL limit is larger); 7,000 leaves room for a long base URL's proxy path.
# With the ids' average length (~12 characters, plus 3 for each "%2C"), ~400 ids fit in one call.
MAX_URL_BYTES = 7000
# Of an error answer (4xx/5xx) only the message matters (error_message keeps 160 characters): read this much at most.
ERROR_BODY_BYTES = 64 * 1024
CHUNK_BYTES = 64 * 1024  # urllib3 (>= 2.6) inflates gzip/deflate at most this much per read, so a bomb stays bounded
# Retry-After beyond a day is no rate limit CoinGecko means (it sends ~60-120 s, coingecko.md §4); the policy caps
# the wait at one update interval anyway, this keeps absurd values (1e20 s, year 9999) out of date arithmetic.
MAX_RETRY_AFTER_SECONDS = 86400.0


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
            except OverflowError:  # an integer of hundreds of digits: json parses it, float() cannot
                rejected[label] = "a number too large to be a figure"
                continue
            if quote["last_updated_at"] and quote["last_updated_at"] > fetched_at.timestamp() + MAX_CLOCK_SKEW_SECONDS:
                ahead = quote["last_updated_at"] - fetched_at.timestamp()
                rejected[label] = (f"last_updated_at is {min(ahead, 1e12):.0f} s after we asked "
                                   f"(more than {MAX_CLOCK_SKEW_SECONDS:.0f} s)")
                continue
            observed = (datetime.fromtimestamp(quote["last_updated_at"], timezone.utc)
                        if quote["last_updated_at"] else fetched_at.replace(microsecond=0))
            observations.append(Observation(
                coin=coin, vs_currency=vs, price=quote["price"],
                market_cap=quote["market_cap"] or None, volume_24h=quote["volume_24h"],
                change_24h=quote["change_24h"], observed_at=observed, fetched_at=fetched_at,
            ))
    return FetchResult(observations, rejected)


_POINT = fields.Float(allow_nan=False)


def _points(body: dict, name: str) -> dict[int, float]:
    """{unix seconds: value} of one of market_chart's arrays ([[ms, value], ...]); bad points are left out."""
    series = body.get(name)
    if not isinstance(series, list):
        raise UpstreamBadResponse(f"CoinGecko's market_chart answer has no {name!r} array")
    out: dict[int, float] = {}
    for point in series:
        if not (isinstance(point, list) and len(point) == 2 and isinstance(point[0], (int, float))
                and not isinstance(point[0], bool)):
            continue
        try:
            value = _POINT.deserialize(point[1])  # numbers may come as strings (coingecko.md §6)
        except (ValidationError, OverflowError):
            continue
        if value is not None:
            out[int(point[0] // 1000)] = value
    return out


def parse_market_chart(body: Any, coin: str, vs_currency: str, start: datetime, end: datetime,
                       fetched_at: datetime) -> list[Observation]:
    """A /market_chart/range body ({"prices", "market_caps", "total_volumes"}: [[ms, value], ...]) as observations
    with start <= observed_at < end, oldest first, source "backfill". A price that is not positive is left out;
    a market cap of 0 is None ("unknown", §6). The 24 h change is not in this answer: None."""
    if not isinstance(body, dict):
        raise UpstreamBadResponse(f"expected a JSON object from /market_chart/range, got {type(body).__name__}")
    prices, caps, volumes = (_points(body, name) for name in ("prices", "market_caps", "total_volumes"))
    lo, hi = start.timestamp(), end.timestamp()
    return [Observation(coin=coin, vs_currency=vs_currency, price=price, market_cap=caps.get(t) or None,
                        volume_24h=volumes.get(t), change_24h=None,
                        observed_at=datetime.fromtimestamp(t, timezone.utc), fetched_at=fetched_at,
                        source=SOURCE_BACKFILL)
            for t, price in sorted(prices.items()) if lo <= t < hi and price > 0]


def id_batches(ids: Sequence[str], max_ids: int, max_chars: int) -> list[list[str]]:
    """`ids` in order, cut into the fewest consecutive batches of at most `max_ids` ids whose `ids` parameter,
    URL-encoded (a comma is "%2C"), is at most `max_chars` long. An id longer than that on its own is a batch alone
    (CoinGecko or a proxy then refuses it, which says what is wrong better than leaving the coin out)."""
    batches: list[list[str]] = []
    size = 0
    for coin in ids:
        length = len(quote(coin, safe=""))
        if batches and len(batches[-1]) < max_ids and size + 3 + length <= max_chars:
            batches[-1].append(coin)
            size += 3 + length
        else:
            batches.append([coin])
            size = length
    return batches


def error_message(body_text: str) -> str:
    """CoinGecko's error text from any of its three JSON shapes, else a prefix of the raw body (coingecko.md §4).

    Bounded work whatever the body: only its first ERROR_BODY_BYTES characters are looked at, tags are stripped by
    a pattern that cannot backtrack (a body of one million "<" took ~50 s with `<[^>]+>`), and nesting too deep
    for the JSON parser counts as text.
    """
    body_text = body_text[:ERROR_BODY_BYTES]
    try:
        data = json.loads(body_text)
    except (ValueError, RecursionError):
        text = re.sub(r"<[^<>]*>", " ", body_text)
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
    value = value.strip()[:64]
    if value.isascii() and value.isdigit():  # str.isdigit() alone also accepts "²", which float() refuses
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, (when - now).total_seconds()))


def clock_skew_seconds(date_header: str | None, sent: datetime, received: datetime) -> float | None:
    """Our clock minus the upstream's, from its `Date` header (positive: ours is ahead), or None when it sent no
    usable one. The server stamps Date between our send and our receipt, truncated to the second, so the midpoint
    of the two, half a second back, is the best estimate; it is good to about a second."""
    if not date_header:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date_header.strip()[:64])
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=timezone.utc)
    ours = sent + (received - sent) / 2
    try:
        return round((ours - theirs).total_seconds() - 0.5, 1)
    except OverflowError:
        return None


def redactor(base_url: str, api_key: str | None) -> Callable[[str], str]:
    """A function that removes the API key and the user info of `base_url` (a proxy's user and password) from text:
    both could reach a message through an exception's text or an upstream echoing them back."""
    secrets = [api_key or ""]
    userinfo = base_url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[0]
    if userinfo:
        secrets += [userinfo, *userinfo.split(":", 1)]
    secrets = sorted({x for x in secrets if len(x) >= 3}, key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact


class CoinGeckoClient:
    """Real HTTP to `base_url` (…/api/v3). Implements PriceSource.

    Each call makes exactly one request, with connect and read timeouts, and either returns a FetchResult or raises:
    UpstreamUnavailable (network), UpstreamRateLimited (429, with Retry-After), UpstreamServerError (5xx, 408),
    UpstreamRejected (other 4xx: key, plan or parameter problems; not worth retrying), UpstreamBadResponse (200 that
    is HTML, malformed JSON, larger than `max_response_bytes` once decoded, or holds no valid price; or a redirect).
    It never retries: the task owns the retry policy. Redirects are not followed: the key header would go with
    them (requests strips only Authorization on a cross-host redirect) and another host's prices would be stored.
    The API key and any credentials in `base_url` appear in no message. Every result and error carries the
    measured clock skew (`clock_skew_seconds`: ours minus CoinGecko's Date, or None).
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, plan: str = "demo",
                 connect_timeout: float = 5.0, read_timeout: float = 20.0,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 clock: Callable[[], datetime] | None = None, session: requests.Session | None = None,
                 on_call: Callable[[int | None], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # Told of every request sent, with its HTTP status (None: no answer): the shared usage counters
        # (GET /api/v1/usage). It must not raise; a counter that cannot count only loses the count.
        self.on_call = on_call
        self.timeout = (connect_timeout, read_timeout)
        self.max_response_bytes = max_response_bytes
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.redact = redactor(self.base_url, api_key)
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if api_key:
            self.session.headers[KEY_HEADERS[plan]] = api_key

    def _get(self, path: str, params: dict[str, str]) -> tuple[Any, float | None]:
        """(decoded JSON body, clock skew) of one GET. Raises the UpstreamErrors listed on the class, each
        carrying the skew when an answer arrived."""
        try:
            sent = self.clock()
            response = self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout,
                                        allow_redirects=False, stream=True)
            skew = clock_skew_seconds(response.headers.get("Date"), sent, self.clock())
        except requests.Timeout as exc:
            self._count(None)
            raise UpstreamUnavailable(f"CoinGecko timed out: {exc.__class__.__name__}") from exc
        except requests.RequestException as exc:
            self._count(None)
            raise UpstreamUnavailable(f"CoinGecko unreachable: {self.redact(_short(exc))}") from exc
        self._count(response.status_code)
        try:
            try:
                return self._decode(response), skew
            finally:
                response.close()
        except UpstreamError as exc:
            exc.message = self.redact(exc.message)
            exc.args = (exc.message,)
            exc.clock_skew_seconds = skew
            raise

    def _count(self, status: int | None) -> None:
        if self.on_call is not None:
            self.on_call(status)

    def _decode(self, response: requests.Response) -> Any:
        status = response.status_code
        if status == 429:
            text = self._error_text(response)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), self.clock())
            raise UpstreamRateLimited(f"CoinGecko rate limit (429): {error_message(text)}", retry_after=retry_after,
                                      details={"status": status, "retry_after": retry_after})
        if status >= 500 or status == 408:
            raise UpstreamServerError(f"CoinGecko answered {status}: {error_message(self._error_text(response))}",
                                      details={"status": status})
        if status >= 400:
            text = self._error_text(response)
            if "10012" in error_message(text):  # Demo/keyless asked for more than the past 365 days (§4)
                raise UpstreamHistoryLimit(
                    "CoinGecko's plan of this key (Demo or keyless) reaches only the past 365 days (error_code "
                    "10012): backfill at most 365 days, or use a paid plan (COINGECKO_API_PLAN=pro)",
                    details={"status": status, "error_code": 10012})
            raise UpstreamRejected(f"CoinGecko refused the request ({status}): {error_message(text)}",
                                   details={"status": status})
        if 300 <= status < 400:
            # Transient: a misbehaving edge or proxy may redirect for a while; each attempt costs no credit.
            raise UpstreamBadResponse(
                f"CoinGecko answered {status}, a redirect; redirects are not followed, so the API key never "
                f"leaves COINGECKO_BASE_URL's host (if that address moved, set COINGECKO_BASE_URL to the new one)",
                details={"status": status})
        if status != 200:
            raise UpstreamBadResponse(f"CoinGecko answered {status}, expected 200", details={"status": status})
        body = self._read(response, self.max_response_bytes, strict=True)
        try:
            return json.loads(body)
        except RecursionError:
            raise UpstreamBadResponse("CoinGecko answered 200 with JSON nested too deeply to be a price list",
                                      details={"status": status}) from None
        except ValueError:
            text = body[:ERROR_BODY_BYTES].decode("utf-8", "replace")
            kind = "HTML" if "<html" in text[:500].lower() else "malformed JSON"
            raise UpstreamBadResponse(f"CoinGecko answered 200 with {kind}: {error_message(text)}",
                                      details={"status": status}) from None

    def _error_text(self, response: requests.Response) -> str:
        return self._read(response, ERROR_BODY_BYTES, strict=False).decode("utf-8", "replace")

    def _read(self, response: requests.Response, limit: int, *, strict: bool) -> bytes:
        """The decoded body, read in chunks and never more than `limit` bytes of it: past that, stop reading and
        raise UpstreamBadResponse (`strict`) or return what was read. A read that stalls raises UpstreamUnavailable."""
        declared = response.headers.get("Content-Length", "")
        if strict and declared.isascii() and declared.isdigit() and not response.headers.get("Content-Encoding") \
                and int(declared) > limit:
            raise self._too_large(response.status_code)
        body = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                body += chunk
                if len(body) > limit:
                    if strict:
                        raise self._too_large(response.status_code)
                    return bytes(body[:limit])
        except requests.exceptions.ContentDecodingError:
            raise UpstreamBadResponse("CoinGecko's answer does not decode (bad gzip or deflate data)",
                                      details={"status": response.status_code}) from None
        except requests.RequestException as exc:
            if isinstance(exc, requests.ConnectionError) and "timed out" in str(exc).lower():
                raise UpstreamUnavailable(f"CoinGecko timed out: {exc.__class__.__name__}") from exc
            raise UpstreamUnavailable(f"CoinGecko's answer broke off: {_short(exc)}") from exc
        return bytes(body)

    def _too_large(self, status: int) -> UpstreamBadResponse:
        return UpstreamBadResponse(
            f"CoinGecko's answer is larger than UPSTREAM_MAX_RESPONSE_BYTES ({self.max_response_bytes} bytes once "
            f"decoded); stopped reading it", details={"status": status, "limit_bytes": self.max_response_bytes})

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """The decoded JSON body of one GET of `path` under the base URL, with every bound and error mapping of
        the client (size cap, no redirects, typed UpstreamErrors). For CoinGecko's list endpoints."""
        return self._get(path, params or {})[0]

    def fetch_prices(self, coins: Sequence[str], vs_currencies: Sequence[str]) -> FetchResult:
        """GET /simple/price for all coins and currencies, in as few requests as the limits allow: at most
        MAX_IDS_PER_CALL ids and MAX_URL_BYTES of URL each (id_batches), so 1,000 coins take 2-3 calls. Every
        record carries the same fetched_at (the web tells one update's records by it). All or nothing: the first
        request that fails raises (its UpstreamError), and nothing of the earlier answers is returned; the task's
        retry asks again and the store skips what it already holds."""
        fetched_at = self.clock().astimezone(timezone.utc)
        fetched_at = fetched_at.replace(microsecond=fetched_at.microsecond // 1000 * 1000)
        params = {
            "vs_currencies": ",".join(vs_currencies),
            "include_market_cap": "true",
            "include_24hr_vol": "true",
            "include_24hr_change": "true",
            "include_last_updated_at": "true",
            "precision": "full",
        }
        overhead = len(f"{self.base_url}/simple/price?ids=&{urlencode(params)}")
        observations: list[Observation] = []
        rejected: dict[str, str] = {}
        skew: float | None = None
        for batch in id_batches(coins, MAX_IDS_PER_CALL, MAX_URL_BYTES - overhead):
            body, skew = self._get("/simple/price", {"ids": ",".join(batch), **params})
            try:
                result = parse_simple_price(body, batch, vs_currencies, fetched_at)
            except UpstreamError as exc:
                exc.clock_skew_seconds = skew
                raise
            observations += result.observations
            rejected.update(result.rejected)
        if not observations:
            error = UpstreamBadResponse("CoinGecko's answer held no valid price", details={"rejected": rejected})
            error.clock_skew_seconds = skew
            raise error
        return FetchResult(observations, rejected, clock_skew_seconds=skew)

    def fetch_range(self, coin: str, vs_currency: str, start: datetime, end: datetime) -> list[Observation]:
        """GET /coins/{id}/market_chart/range for [start, end) (UNIX seconds, coingecko.md §2), as backfilled
        observations (source "backfill"), oldest first. No `interval`: free plans refuse it (§6), and the window's
        span picks the granularity. Raises the UpstreamErrors of the class; UpstreamHistoryLimit for 10012."""
        fetched_at = self.clock().astimezone(timezone.utc)
        fetched_at = fetched_at.replace(microsecond=fetched_at.microsecond // 1000 * 1000)
        body, _ = self._get(f"/coins/{coin}/market_chart/range", {
            "vs_currency": vs_currency, "from": str(int(start.timestamp())), "to": str(int(end.timestamp())),
            "precision": "full"})
        return parse_market_chart(body, coin, vs_currency, start, end, fetched_at)

    def close(self) -> None:
        self.session.close()


def _short(exc: Exception) -> str:
    """The innermost reason of a requests error, e.g. 'Connection refused' or 'Name or service not known'."""
    text = str(exc)[:2000]
    match = re.search(r"\[Errno [-\d]+\] ([^')\]]+)|(Name or service not known|Temporary failure in name resolution)",
                      text)
    if match:
        return match.group(1) or match.group(2)
    return exc.__class__.__name__  # its text names hosts and URLs (with a proxy's credentials): keep them out
