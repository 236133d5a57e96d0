"""Backfill end to end on real processes: the web (granian) + Celery worker + Redis + the fake CoinGecko over HTTP."""
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.procs import free_port, wait_until, web, worker

pytestmark = pytest.mark.slow
TOKEN = "e2e-admin-token-0123456789"
RETRY_AFTER = 3


@pytest.fixture
def env(subprocess_env, redis_url, fake_coingecko, tmp_path):
    return {**subprocess_env, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data"),
            "COINGECKO_BASE_URL": fake_coingecko.base_url, "PORT": str(free_port()), "ADMIN_TOKEN": TOKEN,
            "REFRESH_INTERVAL_SECONDS": "1"}


def _get(env, path):
    return requests.get(f"http://127.0.0.1:{env['PORT']}{path}", timeout=5)


def _backfill(env, days):
    return requests.post(f"http://127.0.0.1:{env['PORT']}/api/v1/coins/bitcoin/backfill", json={"days": days},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)


def _range_calls(fake):
    return [r for r in fake.requests if r["path"].endswith("/market_chart/range")]


def _done(env):
    body = _get(env, "/api/v1/coins/bitcoin/backfill").json()
    return body if body["state"] in ("done", "failed") else None


def test_a_30_day_backfill_through_the_worker(env, fake_coingecko, tmp_path):
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    w, site = worker(env, tmp_path), web(env, tmp_path)
    try:
        wait_until(lambda: _get(env, "/stats?coin=bitcoin").status_code == 200, 60, what="first poll")
        deviation = _get(env, "/deviation?coin=bitcoin").json()
        stats = _get(env, "/stats?coin=bitcoin").json()
        fake_coingecko.enqueue("rate_limit", retry_after=RETRY_AFTER)  # the backfill's first call gets a 429

        queued = _backfill(env, 30)
        assert queued.status_code == 202, queued.text
        progress = wait_until(lambda: _done(env), 60, what="backfill done")

        assert (progress["state"], progress["chunks_done"], progress["chunks_total"]) == ("done", 1, 1)
        assert progress["records_stored"] == 29 * 24
        limited, fetched = _range_calls(fake_coingecko)
        assert fetched["at"] - limited["at"] >= RETRY_AFTER  # no call before Retry-After
        day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        history = _get(env, f"/api/v1/coins/bitcoin/history?interval=1d&from={(day - timedelta(days=29)).isoformat()}"
                            f"&to={day.isoformat()}".replace("+", "%2B")).json()
        assert [b["n"] for b in history["buckets"]] == [24] * 29
        # Backfilled records are history only: /stats and /deviation still answer from the polls.
        assert _get(env, "/deviation?coin=bitcoin").json() == deviation
        assert _get(env, "/stats?coin=bitcoin").json() == stats
        usage = _get(env, "/api/v1/usage").json()
        assert usage["rate_limited_this_month"] == 1 and usage["calls_this_month"] >= 3

        assert _backfill(env, 30).status_code == 202
        again = wait_until(lambda: _done(env), 30, what="second backfill done")
        assert (again["state"], again["chunks_fetched"], again["records_stored"]) == ("done", 0, 0)
        assert len(_range_calls(fake_coingecko)) == 2
        assert "backfill of bitcoin/usd: chunk" in w.output
    finally:
        w.stop(), site.stop()
