"""Settings: the one place that reads configuration, from a mapping (os.environ in production, a dict in tests)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from datetime import timedelta
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from app.cron import parse_cron
from app.domain.budget import TimeBudget
from app.domain.errors import ConfigError
from app.domain.model import TrackedCoins
from app.domain.schedule import CronSchedule

PUBLIC_BASE_URL = "https://api.coingecko.com/api/v3"
PRO_BASE_URL = "https://pro-api.coingecko.com/api/v3"
DEFAULT_COINS = "bitcoin,ethereum,matic-network"

_COIN_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_CURRENCY = re.compile(r"^[a-z]{2,10}$")
ADMIN_TOKEN_MIN_LENGTH = 16  # a guessable token would guard nothing
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """Every setting of the platform, validated. Build it with `Settings.from_env(mapping)`."""

    port: int = 8000  # PORT: TCP port of the web process
    host: str = "0.0.0.0"  # HOST: address the web process binds (0.0.0.0 = all interfaces, as PaaS need)
    web_concurrency: int = 2  # WEB_CONCURRENCY: web worker processes (granian; app/api/server.py)
    data_dir: Path = Path("data")  # DATA_DIR: SQLite database, embedded Redis and beat state live here
    redis_url: str | None = None  # REDIS_URL: external Redis (broker + pub/sub); None = embedded redis-server
    mongodb_uri: str | None = None  # MONGODB_URI: MongoDB store; None = SQLite under DATA_DIR
    coins: tuple[str, ...] = tuple(DEFAULT_COINS.split(","))  # COINS: public coin ids users may ask for
    vs_currencies: tuple[str, ...] = ("usd",)  # VS_CURRENCIES: first one is the default answer currency
    update_cron: str = "*/15 * * * *"  # UPDATE_CRON: five-field cron line, UTC
    coingecko_base_url: str = PUBLIC_BASE_URL  # COINGECKO_BASE_URL: API root, up to and including /api/v3
    coingecko_api_plan: str = "demo"  # COINGECKO_API_PLAN: demo | pro (which header carries the key)
    coingecko_api_key: str | None = field(default=None, repr=False)  # COINGECKO_API_KEY: never logged
    upstream_connect_timeout_seconds: float = 5.0  # UPSTREAM_CONNECT_TIMEOUT_SECONDS
    upstream_read_timeout_seconds: float = 20.0  # UPSTREAM_READ_TIMEOUT_SECONDS
    # UPSTREAM_MAX_RESPONSE_BYTES: bytes of a CoinGecko answer (decoded, gzip inflated) read at most; a larger one
    # is a transient upstream error. 4 MiB: a real answer is ~110 bytes per coin and currency.
    upstream_max_response_bytes: int = 4 * 1024 * 1024
    refresh_interval_seconds: float = 60.0  # REFRESH_INTERVAL_SECONDS: web re-reads the store this often anyway
    # BROKER_VISIBILITY_TIMEOUT_SECONDS: a run taken by a worker that died is redelivered after this long; None =
    # half the update interval (at least 60 s), so it is redelivered before it expires at the next tick.
    broker_visibility_timeout_seconds: float | None = None
    # RETRY_BASE_SECONDS: first wait after a transient failure (CoinGecko 5xx/timeout, store or Redis down); it
    # doubles per attempt, up to 5 minutes, and never runs past the next scheduled run.
    retry_base_seconds: float = 10.0
    log_level: str = "INFO"  # LOG_LEVEL
    # CORS_ORIGINS: browser origins allowed to read the public GET routes cross-origin: ("*",) any, () none, or
    # exact origins such as https://dash.example.com. Admin routes never get CORS (app/api/cors.py).
    cors_origins: tuple[str, ...] = ("*",)
    # METRICS_TOKEN: when set, GET /metrics needs `Authorization: Bearer <token>`; None = open (bind it privately).
    metrics_token: str | None = field(default=None, repr=False)
    # RATE_LIMIT: requests per client on the public routes, as `<n>/<second|minute|hour|day>`; None = off (`0`).
    # 300/minute: the dashboard and a polling script fit many times over; a client in a loop is cut to 5/s.
    rate_limit: str | None = "300/minute"
    # TRUSTED_PROXIES: whose X-Forwarded-For is believed for the client address: () none (the socket's peer is the
    # client), a hop count (1 on Render and Heroku), or addresses/CIDRs of the proxies.
    trusted_proxies: int | tuple[str, ...] = ()
    log_format: str = "text"  # LOG_FORMAT: text (one line per record) | json (one JSON object per line)
    # COINGECKO_MONTHLY_CALLS: CoinGecko calls a month the plan allows (10,000 = Demo); the schedule's projection
    # is checked against it at start (GET /api/v1/usage shows both).
    coingecko_monthly_calls: int = 10_000
    # ADMIN_TOKEN: the bearer token of the admin routes (POST/DELETE /api/v1/coins), at least 16 characters; None =
    # those routes answer 403. Never logged.
    admin_token: str | None = field(default=None, repr=False)
    # STREAM_MAX_CLIENTS: live streams (GET /api/v1/stream) one web process holds; one more is answered 503 with
    # Retry-After. Each holds a thread: keep it below BLOCKING_THREADS in app/api/server.py (1,100) minus ~100.
    stream_max_clients: int = 1000
    # STREAM_HEARTBEAT_SECONDS: a `: heartbeat` comment this often on an idle stream (finds clients that left).
    stream_heartbeat_seconds: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """Parse and validate. Raises ConfigError naming the first bad variable. Unset and empty mean the default,
        except for the lists COINS and VS_CURRENCIES: set to nothing, they are refused (an empty list tracks nothing,
        and silently tracking the default instead hid the mistake)."""

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        for name in ("COINS", "VS_CURRENCIES"):
            if name in env and not env[name].replace(",", "").strip():
                raise ConfigError(name, "is set but lists nothing; list at least one value, or unset it for the "
                                        "default")
        plan = (get("COINGECKO_API_PLAN") or "demo").lower()
        if plan not in ("demo", "pro"):
            raise ConfigError("COINGECKO_API_PLAN", f"must be 'demo' or 'pro', got {plan!r}")
        api_key = get("COINGECKO_API_KEY")
        default_base = PRO_BASE_URL if plan == "pro" and api_key else PUBLIC_BASE_URL

        settings = cls(
            port=_int(get, "PORT", 8000, 1, 65535),
            host=_host(get),
            web_concurrency=_int(get, "WEB_CONCURRENCY", 2, 1, 64),
            data_dir=Path(get("DATA_DIR") or "data"),
            redis_url=_url(get, "REDIS_URL", ("redis", "rediss", "unix")),
            mongodb_uri=_mongodb_uri(get),
            coins=_list(get, "COINS", DEFAULT_COINS, _COIN_ID, "CoinGecko API ids such as bitcoin,ethereum"),
            vs_currencies=_list(get, "VS_CURRENCIES", "usd", _CURRENCY, "currency codes such as usd,eur"),
            update_cron=_cron(get),
            coingecko_base_url=(_url(get, "COINGECKO_BASE_URL", ("http", "https")) or default_base).rstrip("/"),
            coingecko_api_plan=plan,
            coingecko_api_key=api_key,
            upstream_connect_timeout_seconds=_float(get, "UPSTREAM_CONNECT_TIMEOUT_SECONDS", 5.0, 0.1, 120),
            upstream_read_timeout_seconds=_float(get, "UPSTREAM_READ_TIMEOUT_SECONDS", 20.0, 0.1, 600),
            upstream_max_response_bytes=_int(get, "UPSTREAM_MAX_RESPONSE_BYTES", 4 * 1024 * 1024, 1024, 1024 ** 3),
            refresh_interval_seconds=_float(get, "REFRESH_INTERVAL_SECONDS", 60.0, 1, 86400),
            broker_visibility_timeout_seconds=(
                _float(get, "BROKER_VISIBILITY_TIMEOUT_SECONDS", 0, 1, 86400)
                if get("BROKER_VISIBILITY_TIMEOUT_SECONDS") else None),
            retry_base_seconds=_float(get, "RETRY_BASE_SECONDS", 10.0, 0.1, 300),
            log_level=_choice(get, "LOG_LEVEL", "INFO", _LOG_LEVELS),
            cors_origins=_origins(get),
            metrics_token=_token(get, "METRICS_TOKEN"),
            rate_limit=_rate_limit(get),
            trusted_proxies=_trusted_proxies(get),
            log_format=_choice(get, "LOG_FORMAT", "TEXT", ("TEXT", "JSON")).lower(),
            coingecko_monthly_calls=_int(get, "COINGECKO_MONTHLY_CALLS", 10_000, 1, 10 ** 9),
            admin_token=_admin_token(get),
            stream_max_clients=_int(get, "STREAM_MAX_CLIENTS", 1000, 0, 1000),
            stream_heartbeat_seconds=_float(get, "STREAM_HEARTBEAT_SECONDS", 15.0, 0.1, 300),
        )
        return settings

    @cached_property
    def schedule(self) -> CronSchedule:
        return parse_cron(self.update_cron)

    @cached_property
    def update_interval(self) -> timedelta:
        """The shortest gap between two scheduled updates (15 minutes by default)."""
        return self.schedule.shortest_interval()

    @cached_property
    def budget(self) -> TimeBudget:
        """Every duration of a run that must agree with the others (app/domain/budget.py)."""
        return TimeBudget.derive(self.update_interval, self.upstream_connect_timeout_seconds,
                                 self.upstream_read_timeout_seconds, self.broker_visibility_timeout_seconds)

    @property
    def tracked(self) -> TrackedCoins:
        return TrackedCoins(public_ids=self.coins, vs_currencies=self.vs_currencies)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "cryptostats.sqlite3"

    @property
    def bind(self) -> str:
        """host:port for gunicorn; IPv6 addresses go in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def describe(self) -> str:
        """One line naming the chosen store and broker, without credentials."""
        store = f"MongoDB ({_redact(self.mongodb_uri)})" if self.mongodb_uri else f"SQLite ({self.sqlite_path})"
        broker = f"Redis ({_redact(self.redis_url)})" if self.redis_url else f"embedded Redis (under {self.data_dir})"
        return f"store: {store}; broker: {broker}"


def _admin_token(get) -> str | None:
    token = get("ADMIN_TOKEN")
    if token is not None and len(token) < ADMIN_TOKEN_MIN_LENGTH:
        raise ConfigError("ADMIN_TOKEN", f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters (e.g. the output "
                                         "of: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def _redact(url: str | None) -> str:
    """A URL without its password, for logs."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _redact_safe(url: str) -> str:
    """_redact for a URL that may not even parse: drop everything up to the credentials' "@"."""
    try:
        return _redact(url)
    except ValueError:
        return url.split("@")[-1] if "@" in url else url


def _int(get, name: str, default: int, low: int, high: int) -> int:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value}")
    return value


def _float(get, name: str, default: float, low: float, high: float) -> float:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {raw}")
    return value


def _host(get) -> str:
    host = get("HOST") or "0.0.0.0"
    if any(c in host for c in "/ []@"):
        raise ConfigError("HOST", f"must be an address or host name such as 0.0.0.0, 127.0.0.1 or ::, got {host!r}")
    return host


def _choice(get, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (get(name) or default).upper()
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _url(get, name: str, schemes: tuple[str, ...]) -> str | None:
    raw = get(name)
    if raw is None:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in 0-65535)
    except ValueError as exc:
        raise ConfigError(name, f"is not a valid URL ({exc}): {_redact_safe(raw)!r}") from None
    if parts.scheme not in schemes:
        raise ConfigError(name, f"must start with {' or '.join(s + '://' for s in schemes)}, got {_redact(raw)!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(name, f"has no host: {_redact(raw)!r}")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(name, f"has no socket path: {raw!r}")
    return raw


def _mongodb_uri(get) -> str | None:
    """MONGODB_URI as PyMongo judges it (replica-set host lists, mongodb+srv://, options), without the DNS lookup
    that pymongo.uri_parser.parse_uri makes for mongodb+srv:// (a start-up check must not need the network)."""
    raw = get("MONGODB_URI")
    if raw is None:
        return None
    from pymongo.errors import ConfigurationError, InvalidURI
    from pymongo.uri_parser_shared import _validate_uri  # parse_uri minus the SRV lookup; pymongo is pinned

    try:
        _validate_uri(raw)
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        reason = str(exc).replace(raw, "…")  # PyMongo may quote the URI, password included
        raise ConfigError("MONGODB_URI", f"is not a valid MongoDB URI ({reason}): {_redact_safe(raw)!r}") from None
    return raw


def _list(get, name: str, default: str, pattern: re.Pattern[str], example: str) -> tuple[str, ...]:
    raw = get(name) or default
    items = [item.strip().lower() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(name, f"must list at least one value ({example})")
    bad = [item for item in items if not pattern.match(item)]
    if bad:
        raise ConfigError(name, f"{', '.join(map(repr, bad))} are not valid ({example})")
    return tuple(dict.fromkeys(items))


def _cron(get) -> str:
    raw = get("UPDATE_CRON") or "*/15 * * * *"
    try:
        schedule = parse_cron(raw)  # Celery's crontab judges it: what is accepted here is what beat runs
    except ValueError as exc:
        raise ConfigError("UPDATE_CRON", f"{exc} (got {raw!r}; example: '*/15 * * * *')") from None
    return schedule.expression


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def _origins(get) -> tuple[str, ...]:
    """CORS_ORIGINS: `*` (default), `none`, or a comma-separated list of origins (scheme://host[:port], no path)."""
    raw = get("CORS_ORIGINS") or "*"
    if raw == "*":
        return ("*",)
    if raw.lower() == "none":
        return ()
    items = [item.strip().rstrip("/") for item in raw.split(",") if item.strip()]
    bad = [item for item in items if not _ORIGIN.match(item)]
    if bad or not items:
        raise ConfigError("CORS_ORIGINS", f"must be *, none, or origins such as https://dash.example.com "
                                          f"(scheme://host[:port], no path), got {', '.join(map(repr, bad or [raw]))}")
    return tuple(dict.fromkeys(item.lower() for item in items))


def _token(get, name: str) -> str | None:
    """A bearer token: at least 16 characters of the RFC 6750 token alphabet (a short one is guessable)."""
    raw = get(name)
    if raw is None:
        return None
    if len(raw) < 16 or not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", raw):
        raise ConfigError(name, "must be at least 16 characters of letters, digits and -._~+/= (e.g. the output of "
                                "`openssl rand -hex 32`)")
    return raw


_RATE = re.compile(r"^([1-9][0-9]{0,8})\s*(?:/|per)\s*(second|minute|hour|day)$")


def _rate_limit(get) -> str | None:
    """RATE_LIMIT: `0` (off) or `<n>/<second|minute|hour|day>`, e.g. 120/minute."""
    raw = get("RATE_LIMIT")
    if raw is None:
        return "300/minute"
    if raw == "0":
        return None
    match = _RATE.match(raw.lower())
    if not match:
        raise ConfigError("RATE_LIMIT", f"must be 0 (off) or requests per period such as 120/minute, got {raw!r}")
    return f"{match.group(1)}/{match.group(2)}"


def _trusted_proxies(get) -> int | tuple[str, ...]:
    """TRUSTED_PROXIES: empty (none), a hop count (1-10), or comma-separated addresses/CIDRs."""
    import ipaddress

    raw = get("TRUSTED_PROXIES")
    if raw is None:
        return ()
    if raw.isdigit():
        hops = int(raw)
        if not 0 <= hops <= 10:
            raise ConfigError("TRUSTED_PROXIES", f"a hop count must be between 0 and 10, got {hops}")
        return hops or ()
    items = [item.strip() for item in raw.split(",") if item.strip()]
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError("TRUSTED_PROXIES", f"must be a hop count or addresses/CIDRs such as 10.0.0.0/8, "
                                                 f"got {item!r}") from None
    return tuple(items)
