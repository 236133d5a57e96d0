"""Composition root: the only module that picks adapters. Each process calls it after fork; tests pass fakes."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

from app import broker
from app.config import Settings
from app.domain.errors import AppError, ConfigError
from app.domain.model import TrackedCoins
from app.ports import PriceRepository, PriceSource, UpdateBus
from app.storage import make_repository
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

    @property
    def tracked(self) -> TrackedCoins:
        return self.settings.tracked

    def close(self) -> None:
        for part in (self.repo, self.bus, self.source):
            close = getattr(part, "close", None)
            if close:
                close()


def bootstrap(settings: Settings, *, repo: PriceRepository | None = None, source: PriceSource | None = None,
              bus: UpdateBus | None = None, clock: Callable[[], datetime] = utcnow) -> Services:
    """Build the services for this process; anything passed in replaces the real adapter. Connects lazily."""
    if repo is None:
        repo = make_repository(settings)
    if source is None:
        source = CoinGeckoClient(
            settings.coingecko_base_url, api_key=settings.coingecko_api_key, plan=settings.coingecko_api_plan,
            connect_timeout=settings.upstream_connect_timeout_seconds,
            read_timeout=settings.upstream_read_timeout_seconds, clock=clock,
            max_response_bytes=settings.upstream_max_response_bytes,
        )
    if bus is None:
        bus = broker.RedisUpdateBus(broker.redis_url(settings.redis_url, settings.data_dir))
    return Services(settings, repo, source, bus, clock)


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


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def announce(settings: Settings, role: str) -> None:
    """The start-up lines: chosen store and broker, and the coin aliases in effect."""
    log.info("%s starting; %s", role, settings.describe())
    for public, source in settings.tracked.aliased().items():
        log.info("coin %s is fetched as CoinGecko id %s (CoinGecko deprecated %s when MATIC became POL)",
                 public, source, public)
