"""Fault-suite harness: a platform of real processes per test (its own redis-server, Celery workers, gunicorn, beat)
around the fake CoinGecko, direct reads of the SQLite file and of `crypto-update`, and the figures a test reports."""
from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests
from celery import Celery

from app import embedded_redis
from app.bus import redis as bus
from app.config import Settings
from app.queue import QUEUE_NAME, TASK_NAME
from tests.fake_coingecko import FakeCoinGecko
from tests.procs import PY, ROOT, Proc, free_port, wait_until
from tests.procs import web as web_proc
from tests.procs import worker as worker_proc

TASK = TASK_NAME
QUEUE = QUEUE_NAME
# Every variable Settings reads, so nothing from the developer's shell leaks into the platform under test.
PRODUCT_VARS = ("PORT", "HOST", "WEB_CONCURRENCY", "DATA_DIR", "REDIS_URL", "MONGODB_URI", "COINS", "VS_CURRENCIES",
                "UPDATE_CRON", "COINGECKO_BASE_URL", "COINGECKO_API_KEY", "COINGECKO_API_PLAN",
                "UPSTREAM_CONNECT_TIMEOUT_SECONDS", "UPSTREAM_READ_TIMEOUT_SECONDS", "REFRESH_INTERVAL_SECONDS",
                "BROKER_VISIBILITY_TIMEOUT_SECONDS", "RETRY_BASE_SECONDS", "LOG_LEVEL",
                "UPSTREAM_MAX_RESPONSE_BYTES", "METRICS_TOKEN", "RATE_LIMIT", "TRUSTED_PROXIES", "LOG_FORMAT")
TRACKED_SOURCE_IDS = ("bitcoin", "ethereum", "polygon-ecosystem-token")
MAX_CLOCK_SKEW_SECONDS = 300  # an observation may be stamped at most this far after we fetched it


@dataclass
class Figures:
    """What one fault test did and measured; docs/reliability.md is built from these. None = not measured."""

    scenario: str
    faults: int = 0  # faults injected
    requests: int = 0  # API requests whose answers the test checked
    upstream_calls: int | None = None  # requests the fake CoinGecko received
    runs_triggered: int | None = None
    runs_lost: int | None = None  # triggers whose data was never stored
    runs_duplicated: int | None = None  # triggers stored (or sent to CoinGecko) more than once
    invalid_stored: int | None = None  # stored records failing validation
    http_5xx: int | None = None  # 5xx answers (readyz's deliberate 503 while Redis is down excluded)

    def runs(self, expected: int, stored: int) -> None:
        """Account `expected` triggers against `stored` batches."""
        self.runs_triggered = (self.runs_triggered or 0) + expected
        self.runs_lost = (self.runs_lost or 0) + max(0, expected - stored)
        self.runs_duplicated = (self.runs_duplicated or 0) + max(0, stored - expected)

    def answered(self, status: int, *, checked: bool = True, deliberate: bool = False) -> None:
        """Account one HTTP answer; `deliberate` marks a 5xx the product must give (readyz while Redis is down)."""
        self.requests += checked
        self.http_5xx = (self.http_5xx or 0) + (status >= 500 and not deliberate)

    def failures(self) -> dict[str, int]:
        """The measured figures that should be 0 and are not."""
        names = ("runs_lost", "runs_duplicated", "invalid_stored", "http_5xx")
        return {name: getattr(self, name) for name in names if getattr(self, name)}


def product_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PRODUCT_VARS and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return env


def invalid_reason(row: tuple) -> str | None:
    """Why a stored row is invalid, or None. Mirrors what the product promises to store (README, Reliability)."""
    coin, vs, observed, fetched_ms, price, cap, volume, change = row
    if coin not in TRACKED_SOURCE_IDS or vs != "usd":
        return f"untracked {coin}/{vs}"
    if not isinstance(price, float) or not math.isfinite(price) or price <= 0:
        return f"price {price!r}"
    for name, value, low in (("market cap", cap, 0), ("volume", volume, 0), ("24h change", change, -100)):
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < low):
            return f"{name} {value!r}"
    if not isinstance(observed, int) or not 1 <= observed <= fetched_ms / 1000 + MAX_CLOCK_SKEW_SECONDS:
        return f"observed_at {observed!r} (fetched {fetched_ms})"
    return None


class Platform:
    """The product's processes for one test, all stopped by close(), whatever happened.

    The redis-server is this platform's own (under `redis_dir`), so a test may stop and restart it. The defaults
    keep runs deterministic: a daily UPDATE_CRON (no tick, hence no retry deadline, falls inside a test), a web
    that re-reads the store only on `crypto-update` (REFRESH_INTERVAL_SECONDS=3600) and short retry backoff.
    """

    def __init__(self, root: Path, redis_dir: Path, fake: FakeCoinGecko, figures: Figures, **overrides: str) -> None:
        self.root = root
        self.redis_dir = redis_dir
        self.fake = fake
        self.figures = figures
        self.procs: list[Proc] = []
        self._client: Celery | None = None
        self._pubsub = None
        self.events: list[dict[str, Any]] = []
        root.mkdir(parents=True, exist_ok=True)
        self.redis_url = f"unix://{embedded_redis.embedded_socket(redis_dir)}"
        self.env = product_env(**{
            "REDIS_URL": self.redis_url, "DATA_DIR": str(root / "data"), "COINGECKO_BASE_URL": fake.base_url,
            "PORT": str(free_port()), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1", "UPDATE_CRON": "0 0 * * *",
            "REFRESH_INTERVAL_SECONDS": "3600", "RETRY_BASE_SECONDS": "0.3", "LOG_LEVEL": "INFO",
            # Fault tests poll the web many times a second; tests/faults/test_operations.py turns the limit on.
            "RATE_LIMIT": "0", **overrides})
        self.settings = Settings.from_env(self.env)
        self.db_path = self.settings.sqlite_path

    def __enter__(self) -> "Platform":
        try:
            self.start_redis()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- processes -------------------------------------------------------------------------------------------
    def _track(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "worker") -> Proc:
        return self._track(worker_proc(self.env, self.root, name=name))

    def web(self) -> Proc:
        return self._track(web_proc(self.env, self.root))

    def beat(self, name: str = "beat") -> Proc:
        return self._track(Proc(name, [PY, "-m", "celery", "-A", "tasks", "beat", "--loglevel=INFO", "--pidfile=",
                                       f"--schedule={self.root / name}-schedule"], self.env, self.root))

    def celery_call(self) -> subprocess.CompletedProcess:
        """`celery -A tasks call tasks.store_crypto_stats`, as a user types it."""
        return subprocess.run([PY, "-m", "celery", "-A", "tasks", "call", TASK], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    @staticmethod
    def kill(proc: Proc, signum: int = signal.SIGKILL) -> int:
        """Signal the whole process group (a worker's pool children too) and reap the main process."""
        try:
            os.killpg(proc.popen.pid, signum)
        except ProcessLookupError:
            pass
        return proc.popen.wait(30)

    def tracebacks(self) -> list[str]:
        """The processes whose log shows an unhandled error."""
        return [proc.name for proc in self.procs if "Traceback" in proc.output]

    # ---- redis -----------------------------------------------------------------------------------------------
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def stop_redis(self) -> None:
        embedded_redis.stop_embedded_redis(self.redis_dir)
        wait_until(lambda: not embedded_redis.responds(self.redis_url), 10, what="redis-server stopped")
        self._drop_listener()

    def start_redis(self) -> None:
        assert embedded_redis.ensure_embedded_redis(self.redis_dir) == self.redis_url
        self.listen()

    def listen(self) -> None:
        """Subscribe to `crypto-update` from the test, to know when a run finished and how."""
        self._drop_listener()
        # Keep the client: when a redis-py client is collected it closes its pool, the subscription's socket too.
        self._listener = self.redis()
        self._pubsub = self._listener.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(bus.CHANNEL)

    def _drop_listener(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
                self._listener.close()
            except (redis.RedisError, OSError):
                pass

    def drain(self) -> list[dict[str, Any]]:
        """Every `crypto-update` event so far (stored/failed), oldest first."""
        while self._pubsub is not None:
            message = self._pubsub.get_message(timeout=0.05)
            if message is None:
                break
            self.events.append(json.loads(message["data"]))
        return self.events

    def subscribers(self) -> int:
        """How many processes of the platform are subscribed to `crypto-update` (the test's own listener aside)."""
        client = self.redis()
        try:
            count = dict(client.pubsub_numsub(bus.CHANNEL)).get(bus.CHANNEL.encode(), 0)
        finally:
            client.close()
        return count - (1 if self._pubsub is not None else 0)

    def stored_events(self) -> list[dict[str, Any]]:
        return [e for e in self.drain() if e.get("event") == "stored"]

    def failed_events(self) -> list[dict[str, Any]]:
        return [e for e in self.drain() if e.get("event") == "failed"]

    def wait_stored(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until `count` runs in all have announced a stored batch."""
        return wait_until(lambda: len(self.stored_events()) >= count and self.stored_events(), timeout,
                          interval=0.05, what=f"{count} stored events")

    def trigger(self, kwargs: dict[str, Any] | None = None, **options: Any) -> str:
        """Send one run over the broker, as beat (kwargs scheduled/slot, option expires) or `celery call` does."""
        if self._client is None:
            self._client = Celery("fault-suite", broker=embedded_redis.kombu_url(self.redis_url))
            self._client.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True)
        return self._client.send_task(TASK, kwargs=kwargs or {}, **options).id

    def queue_idle(self) -> bool:
        """No run waiting in the queue and none taken but unacknowledged (so none in flight or held for retry)."""
        client = self.redis()
        try:
            return client.llen(QUEUE) == 0 and client.hlen("unacked") == 0
        finally:
            client.close()

    # ---- web -------------------------------------------------------------------------------------------------
    @property
    def port(self) -> str:
        return self.env["PORT"]

    def get(self, path: str, *, counted: bool = True) -> requests.Response:
        """GET from the web. Every 5xx is recorded, except /readyz's deliberate 503; `counted` requests are the ones
        whose answers the test checks."""
        response = requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)
        self.figures.answered(response.status_code, checked=counted,
                              deliberate=path == "/readyz" and response.status_code == 503)
        return response

    def shows(self, path: str, body: dict) -> bool:
        response = self.get(path, counted=False)
        return response.status_code == 200 and response.json() == body

    # ---- store -----------------------------------------------------------------------------------------------
    def rows(self, coin: str | None = None) -> list[tuple]:
        """Stored rows read straight from the SQLite file, newest first."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            sql = ("SELECT coin, vs_currency, observed_at, fetched_at, price, market_cap, volume_24h, change_24h "
                   "FROM observations")
            args: tuple = ()
            if coin is not None:
                sql, args = sql + " WHERE coin = ?", (coin,)
            return conn.execute(sql + " ORDER BY observed_at DESC", args).fetchall()
        except sqlite3.OperationalError:
            return []  # no table yet
        finally:
            conn.close()

    def count(self, coin: str = "bitcoin") -> int:
        return len(self.rows(coin))

    def check_store(self) -> list[tuple]:
        """Record (and return) every invalid row in the store."""
        bad = [(row, reason) for row in self.rows() if (reason := invalid_reason(row))]
        self.figures.invalid_stored = (self.figures.invalid_stored or 0) + len(bad)
        return bad

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def close(self, timeout: float = 15.0) -> None:
        """Stop every process (SIGTERM to all at once, SIGKILL to the group of any still up after `timeout`), then
        this platform's redis-server."""
        running = [proc for proc in self.procs if proc.popen.poll() is None]
        for proc in running:
            proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)  # what did not stop, and stragglers of its group
            except (ProcessLookupError, PermissionError):
                pass
            proc.stop()  # reaps it and closes its log
        if self._client is not None:
            self._client.close()
        self._drop_listener()
        embedded_redis.stop_embedded_redis(self.redis_dir)
        if embedded_redis.responds(self.redis_url):  # it ignored SHUTDOWN: end it by its own pid, once sure it is ours
            pid = int((self.redis_dir / "redis.pid").read_text().strip())
            if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGKILL)
