"""Composition root: the only module that picks adapters. Each process calls it after fork; tests pass fakes."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from app import embedded_redis, logs
from app.bus.redis import RedisClaims, RedisUpdateBus
from app.config import Settings
from app.redaction import install_log_redaction
from app.domain.errors import AppError, ConfigError
from app.domain.model import TrackedCoins
from app.metrics import RedisMetrics, prepare_web_metrics
from app.counters import RedisCounters
from app.ports import (Claims, CoinRegistry, Counters, HistorySource, Metrics, NullMetrics, PriceRepository,
                       PriceSource, UpdateBus, UsageCounter)
from app.queue import QUEUE_NAME
from app.storage import make_coin_registry, make_repository
from app.services.catalog import StoredCatalog, check_tracked
from app.services.polling import FinishedRuns, UpdateContext
from app.services.tracking import current_tracked
from app.upstream.catalog import CoinGeckoCatalog
from app.upstream.coingecko import CoinGeckoClient

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Services:
    """The adapters one process works with."""

    settings: Settings
    repo: PriceRepository
    source: PriceSource
    bus: UpdateBus
    claims: Claims
    clock: Callable[[], datetime]
    coins: CoinRegistry | None = None  # the store's coin tables (catalogue, tracked set); bootstrap sets it
    counters: Counters = field(default=None, repr=False)  # type: ignore[assignment]  # usage counts, backfill progress
    jobs: "JobQueue" = field(default=None, repr=False)  # type: ignore[assignment]  # queues Celery tasks by name
    history: HistorySource = field(default=None, repr=False)  # type: ignore[assignment]  # CoinGecko's past
    metrics: Metrics = field(default_factory=NullMetrics)  # what runs report for GET /metrics (app/metrics.py)
    redis_url: str | None = None  # the real Redis this process uses (rate-limit counters, metrics); None in tests
    finished_runs: FinishedRuns = field(default_factory=FinishedRuns, repr=False)  # this process's stored runs

    @property
    def tracked(self) -> TrackedCoins:
        """The coins of the configuration (COINS): the initial tracked set."""
        return self.settings.tracked

    def update_context(self) -> UpdateContext:
        """What `run_update` needs: the tracked set as the store holds it now (one small read, so coins
        tracked at run time are fetched at once), the claim lengths of this deployment's time budget."""
        budget = self.settings.budget
        return UpdateContext(self.source, self.repo, self.bus, self.claims, self.tracked_now(), self.clock,
                             slot_done_ttl=budget.slot_done_ttl,
                             fetch_claim_ttl=timedelta(seconds=budget.fetch_claim_seconds),
                             max_cooldown=budget.max_cooldown, metrics=self.metrics, finished=self.finished_runs,
                             # past any redelivery: that comes after the visibility timeout
                             run_done_ttl=max(budget.slot_done_ttl,
                                              timedelta(seconds=2 * budget.visibility_timeout_seconds)))

    @property
    def registry(self) -> CoinRegistry:
        assert self.coins is not None, "built by bootstrap()"
        return self.coins

    def tracked_now(self) -> TrackedCoins:
        """The tracked set as the store holds it now (seeded from COINS when empty). Raises StorageUnavailable."""
        return current_tracked(self.registry, self.tracked)

    def catalog(self) -> StoredCatalog:
        """CoinGecko's catalogue, cached in the store (fetched through this process's CoinGecko client)."""
        return StoredCatalog(_catalog_fetcher(self.settings, self.counters), self.registry, self.clock)

    def close(self) -> None:
        for part in (self.repo, self.bus, self.claims, self.source, self.counters, self.history, self.metrics):
            close = getattr(part, "close", None)
            if close:
                close()


def bootstrap(settings: Settings, *, repo: PriceRepository | None = None, source: PriceSource | None = None,
              bus: UpdateBus | None = None, claims: Claims | None = None,
              clock: Callable[[], datetime] = utcnow, coins: CoinRegistry | None = None,
              counters: Counters | None = None, metrics: Metrics | None = None) -> Services:
    """Build the services for this process; anything passed in replaces the real adapter. Connects lazily (the
    embedded redis-server is started here when no REDIS_URL is set and a Redis adapter is needed). A `bus` given
    alone brings its claims: its own Redis, or itself when it implements Claims too (tests' in-process Redis).
    With the real bus, metrics are counted in its Redis (app/metrics.py) unless `metrics` is given; else nowhere."""
    counters_url = _counters_url(settings)
    if counters is None:
        counters = RedisCounters(counters_url)  # connects when first used
    if repo is None:
        repo = make_repository(settings)
    client = coingecko_client(settings, counters, clock=clock)
    if source is None:
        source = client
    if claims is None and isinstance(bus, Claims):
        claims = bus
    elif claims is None and isinstance(bus, RedisUpdateBus):
        claims = RedisClaims(bus.url)  # the same Redis
    redis_url = None
    if bus is None or claims is None:
        url = embedded_redis.redis_url(settings.redis_url, settings.data_dir)
        redis_url = url if bus is None else None
        bus = bus if bus is not None else RedisUpdateBus(url)
        claims = claims if claims is not None else RedisClaims(url)
    if metrics is None:
        metrics = RedisMetrics(redis_url) if redis_url else NullMetrics()
    if coins is None:
        coins = make_coin_registry(repo)
    history = source if hasattr(source, "fetch_range") else client  # a fake price source: the real history
    return Services(settings, repo, source, bus, claims, clock, coins, counters, JobQueue(counters_url),
                    history, metrics=metrics, redis_url=redis_url)  # type: ignore[arg-type]


def broker_url(settings: Settings) -> str:
    """Celery's broker URL for this deployment, without connecting or starting anything: REDIS_URL, or the embedded
    server's socket (which `prepare` starts when a worker or beat starts)."""
    return embedded_redis.kombu_url(settings.redis_url or embedded_redis.embedded_url(settings.data_dir))


def coingecko_client(settings: Settings, counters: UsageCounter | None, clock: Callable[[], datetime] = utcnow,
                     **timeouts: float) -> CoinGeckoClient:
    """The CoinGecko client of this process, every request of it counted in `counters` (GET /api/v1/usage)."""
    on_call = (lambda status: counters.count_call(status, clock())) if counters is not None else None
    return CoinGeckoClient(
        settings.coingecko_base_url, api_key=settings.coingecko_api_key, plan=settings.coingecko_api_plan,
        connect_timeout=timeouts.get("connect_timeout", settings.upstream_connect_timeout_seconds),
        read_timeout=timeouts.get("read_timeout", settings.upstream_read_timeout_seconds), clock=clock,
        max_response_bytes=settings.upstream_max_response_bytes, on_call=on_call,
    )


class JobQueue:
    """Sends a task to the worker by its name over the broker, so the web queues work without importing tasks/
    (the import-linter contract keeps them apart). Raises BrokerUnavailable when Redis cannot take it."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._celery: Any = None

    def send(self, name: str, kwargs: dict) -> None:
        from celery import Celery
        from kombu.exceptions import OperationalError

        from app.domain.errors import BrokerUnavailable

        if self._celery is None:
            self._celery = Celery("cryptostats", broker=embedded_redis.kombu_url(self.redis_url),
                                  broker_connection_retry_on_startup=False, broker_connection_max_retries=1,
                                  task_default_queue=QUEUE_NAME)
        try:
            self._celery.send_task(name, kwargs=kwargs, queue=QUEUE_NAME, retry=False)
        except OperationalError as exc:
            raise BrokerUnavailable(f"cannot queue {name}: {exc.__class__.__name__}") from exc


def read_environment() -> Mapping[str, str]:
    """The environment of this process after reading `./.env` when there is one, for every entry point (`make run`,
    gunicorn, `celery -A tasks ...`, `python -m app.cli ...`). A variable set in the real environment wins over the
    file (override=False), as on platforms that set them in a dashboard."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)
    return os.environ


def load_settings(env: Mapping[str, str]) -> Settings:
    """Settings for a process entry point: on a bad value, print the variable and the problem, and exit(2)."""
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def prepare(settings: Settings) -> None:
    """What a process entry point checks before it starts serving: DATA_DIR is usable and, without REDIS_URL, the
    embedded Redis runs. On failure: one line naming the problem on stderr, and exit (2 for configuration)."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not settings.redis_url:
            embedded_redis.ensure_embedded_redis(settings.data_dir)
    except OSError as exc:
        print(f"configuration error: DATA_DIR: cannot use {settings.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except AppError as exc:
        print(f"cannot start: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None


RATE_LIMIT_REDIS_TIMEOUT_SECONDS = 0.5  # a rate-limit check must not hold a request long when Redis hangs


def rate_limit_storage(services: Services) -> tuple[str, dict]:
    """(flask-limiter storage URI, its options) for the web's rate-limit counters: the platform's Redis (its URL as
    redis-py reads it, unix sockets and passwords included) so every web process shares them; this process's memory
    when the services run without a real Redis (tests)."""
    if not services.redis_url:
        return "memory://", {}
    import redis

    pool = redis.ConnectionPool.from_url(services.redis_url, socket_timeout=RATE_LIMIT_REDIS_TIMEOUT_SECONDS,
                                         socket_connect_timeout=RATE_LIMIT_REDIS_TIMEOUT_SECONDS)
    return "redis://", {"connection_pool": pool}


def prepare_web(settings: Settings) -> None:
    """What the web's entry point does once, before it starts its processes: a fresh per-instance
    PROMETHEUS_MULTIPROC_DIR (app/metrics.py), so /metrics sums all of them. On failure: one line, exit 2."""
    try:
        prepare_web_metrics(settings.data_dir, settings.port)
    except OSError as exc:
        print(f"configuration error: PROMETHEUS_MULTIPROC_DIR: cannot use it: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None


def log_format(role: str) -> str:
    """The one line format of every process (web, worker, beat, supervisor, cli): logging's default timestamp, the
    level, which process wrote it, the logger. Celery's worker adds `%(task)s` to its role (the task id)."""
    return f"%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s"


def _counters_url(settings: Settings) -> str:
    """The Redis of the usage counters, without starting anything: they connect when first used, and count nothing
    (never raising) while no Redis answers."""
    return settings.redis_url or embedded_redis.embedded_url(settings.data_dir)


def _catalog_fetcher(settings: Settings, counters: UsageCounter | None = None) -> CoinGeckoCatalog:
    # Short timeouts: the catalogue is fetched at start and by admin requests, which must not hang on CoinGecko.
    return CoinGeckoCatalog(coingecko_client(settings, counters,
                                             connect_timeout=min(3.0, settings.upstream_connect_timeout_seconds),
                                             read_timeout=min(10.0, settings.upstream_read_timeout_seconds)))


def check_tracked_coins(settings: Settings) -> None:
    """COINS and VS_CURRENCIES against CoinGecko's lists (cached a day in the store, one copy for every process):
    an unknown value stops the process with one line naming the variable (exit 2). CoinGecko or the store
    unreachable: one warning, and it starts."""
    repo = make_repository(settings)
    counters = RedisCounters(_counters_url(settings))
    fetcher = _catalog_fetcher(settings, counters)
    try:
        check_tracked(settings.tracked, StoredCatalog(fetcher, make_coin_registry(repo), utcnow))
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        fetcher.close()
        repo.close()  # before any fork: children open their own connections
        counters.close()


def configure_logging(settings: Settings, role: str = "web") -> None:
    """LOG_LEVEL and the common format for a process without its own logging set-up (where handlers exist already,
    e.g. granian's from app/api/server.py: then only the level is set). Every record is redacted: no secret,
    host or path of the deployment in a log line."""
    install_log_redaction(settings)
    root = logging.getLogger()
    if root.handlers:
        root.setLevel(settings.log_level)
        logs.use(root, settings.log_format, role)
        return
    logging.basicConfig(level=settings.log_level, format=log_format(role))
    logs.use(root, settings.log_format, role)  # LOG_FORMAT=json


_announced: set[str] = set()


def announce(settings: Settings, role: str) -> None:
    """The start-up lines: chosen store and broker, and the coin aliases in effect. Once per process and role: the
    web's server process announces the web, and the workers it forks inherit that they need not."""
    if role in _announced:
        return
    _announced.add(role)
    log.info("%s starting; %s", role, settings.describe())
    for public, source in settings.tracked.aliased().items():
        log.info("coin %s is fetched as CoinGecko id %s (CoinGecko deprecated %s when MATIC became POL)",
                 public, source, public)
