"""Composition root: the only module that picks adapters. Each process calls it after fork; tests pass fakes."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from app import broker
from app.config import Settings
from app.redaction import install_log_redaction
from app.domain.errors import AppError, ConfigError
from app.domain.model import TrackedCoins
from app.counters import RedisCounters
from app.ports import Counters, HistorySource, PriceRepository, PriceSource, UpdateBus, UsageCounter
from app.storage import make_repository
from app.services.catalog import check_tracked
from app.upstream.catalog import CachedCoinGeckoCatalog
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
    clock: Callable[[], datetime]
    counters: Counters = field(default=None, repr=False)  # type: ignore[assignment]  # usage counts, backfill progress
    jobs: "JobQueue" = field(default=None, repr=False)  # type: ignore[assignment]  # queues Celery tasks by name
    history: HistorySource = field(default=None, repr=False)  # type: ignore[assignment]  # CoinGecko's past

    @property
    def tracked(self) -> TrackedCoins:
        return self.settings.tracked

    def close(self) -> None:
        for part in (self.repo, self.bus, self.source, self.counters, self.history):
            close = getattr(part, "close", None)
            if close:
                close()


def bootstrap(settings: Settings, *, repo: PriceRepository | None = None, source: PriceSource | None = None,
              bus: UpdateBus | None = None, clock: Callable[[], datetime] = utcnow) -> Services:
    """Build the services for this process; anything passed in replaces the real adapter. Connects lazily."""
    url = broker.redis_url(settings.redis_url, settings.data_dir)
    counters = RedisCounters(url)
    if repo is None:
        repo = make_repository(settings)
    client = coingecko_client(settings, counters, clock=clock)
    if source is None:
        source = client
    if bus is None:
        bus = broker.RedisUpdateBus(url)
    history = source if hasattr(source, "fetch_range") else client  # a fake price source: the real history
    return Services(settings, repo, source, bus, clock, counters, JobQueue(url), history)  # type: ignore[arg-type]


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

    QUEUE = "cryptostats"  # tasks/celery_app.py's task_default_queue

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._celery: Any = None

    def send(self, name: str, kwargs: dict) -> None:
        from celery import Celery
        from kombu.exceptions import OperationalError

        from app.domain.errors import BrokerUnavailable

        if self._celery is None:
            self._celery = Celery("cryptostats", broker=broker.kombu_url(self.redis_url),
                                  broker_connection_retry_on_startup=False, broker_connection_max_retries=1,
                                  task_default_queue=self.QUEUE)
        try:
            self._celery.send_task(name, kwargs=kwargs, queue=self.QUEUE, retry=False)
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
            broker.ensure_embedded_redis(settings.data_dir)
    except OSError as exc:
        print(f"configuration error: DATA_DIR: cannot use {settings.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except AppError as exc:
        print(f"cannot start: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None


def log_format(role: str) -> str:
    """The one line format of every process (web, worker, beat, supervisor, cli): logging's default timestamp, the
    level, which process wrote it, the logger. Celery's worker adds `%(task)s` to its role (the task id)."""
    return f"%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s"


def check_tracked_coins(settings: Settings) -> None:
    """COINS and VS_CURRENCIES against CoinGecko's lists (cached a day in DATA_DIR): an unknown value stops the
    process with one line naming the variable (exit 2). CoinGecko unreachable: one warning, and it starts."""
    counters = RedisCounters(broker.redis_url(settings.redis_url, settings.data_dir))
    client = coingecko_client(settings, counters, connect_timeout=min(3.0, settings.upstream_connect_timeout_seconds),
                              read_timeout=min(10.0, settings.upstream_read_timeout_seconds))
    catalog = CachedCoinGeckoCatalog(client, settings.data_dir / "coingecko-catalog.json")
    try:
        check_tracked(settings.tracked, catalog)
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        catalog.close()
        counters.close()


def configure_logging(settings: Settings, role: str = "web") -> None:
    """LOG_LEVEL and the common format for a process without its own logging set-up (the web under gunicorn has
    its handlers from gunicorn.conf.py already: then only the level is set). Every record is redacted: no secret,
    host or path of the deployment in a log line."""
    install_log_redaction(settings)
    root = logging.getLogger()
    if root.handlers:
        root.setLevel(settings.log_level)
        return
    logging.basicConfig(level=settings.log_level, format=log_format(role))


_announced: set[str] = set()


def announce(settings: Settings, role: str) -> None:
    """The start-up lines: chosen store and broker, and the coin aliases in effect. Once per process and role: the
    gunicorn master announces the web, and the workers it forks inherit that they need not."""
    if role in _announced:
        return
    _announced.add(role)
    log.info("%s starting; %s", role, settings.describe())
    for public, source in settings.tracked.aliased().items():
        log.info("coin %s is fetched as CoinGecko id %s (CoinGecko deprecated %s when MATIC became POL)",
                 public, source, public)
