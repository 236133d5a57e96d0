"""A real Celery worker on a real Redis (the embedded redis-server) against the fake CoinGecko and SQLite."""
import json
import time

import pytest
import redis

from app.storage.sqlite import SqlitePriceRepository
from tests.procs import celery_call, wait_until, worker

pytestmark = pytest.mark.slow


@pytest.fixture
def env(subprocess_env, redis_url, fake_coingecko, tmp_path):
    return {**subprocess_env, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data"),
            "COINGECKO_BASE_URL": fake_coingecko.base_url}


@pytest.fixture
def repo(tmp_path):
    return SqlitePriceRepository(tmp_path / "data" / "cryptostats.sqlite3")


@pytest.fixture
def events(redis_url):
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("crypto-update")
    received = []

    def poll():
        # get_message returns None for the (ignored) subscribe confirmation too, so drain for a short while.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.05)
            if message is not None:
                received.append(json.loads(message["data"]))
        return received

    yield poll
    pubsub.close()
    client.close()


def stored_prices(repo, coin):
    try:
        return [o.price for o in repo.last_n(coin, "usd", 1000)]
    except Exception:
        return []


def test_worker_start_updates_an_empty_store_then_manual_calls_work_as_typed(env, repo, fake_coingecko, events,
                                                                             tmp_path):
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    w = worker(env, tmp_path)
    try:
        # No data yet: the worker updates at once instead of waiting for the next quarter hour.
        wait_until(lambda: stored_prices(repo, "bitcoin") == [40000], 30, what="start-up update")
        assert fake_coingecko.request_count("/simple/price") == 1
        assert stored_prices(repo, "polygon-ecosystem-token")  # matic-network fetched as POL
        first = wait_until(lambda: [e for e in events() if e["event"] == "stored"], 10, what="crypto-update")
        assert first[0]["coins"] == ["bitcoin", "ethereum", "polygon-ecosystem-token"]
        assert first[0]["new_records"] == 3

        fake_coingecko.set_price("bitcoin", 45000, market_cap=810000000, change_24h=1.0)
        result = celery_call(env)  # `celery -A tasks call tasks.store_crypto_stats`, as a user types it
        assert result.returncode == 0, result.stderr
        wait_until(lambda: stored_prices(repo, "bitcoin") == [45000, 40000], 30, what="manual run stored")
        assert fake_coingecko.request_count("/simple/price") == 2
        assert "stored 3 new records" in w.output
    finally:
        w.stop()


def test_a_failing_coingecko_is_retried_and_nothing_invalid_is_stored(env, repo, fake_coingecko, events, tmp_path):
    repo.ensure_schema()
    fake_coingecko.enqueue("status", status=500)
    fake_coingecko.enqueue("body", body={"bitcoin": {"usd": -1}, "ethereum": {"usd": None}})
    w = worker(env, tmp_path)
    try:
        wait_until(lambda: stored_prices(repo, "bitcoin"), 60, what="stored after retries")
        assert fake_coingecko.request_count("/simple/price") == 3
        assert all(p > 0 for p in stored_prices(repo, "bitcoin") + stored_prices(repo, "ethereum"))
        assert repo.count() == 3
        failures = [e for e in events() if e["event"] == "failed"]
        assert [f["error"]["code"] for f in failures] == ["upstream_server_error", "upstream_bad_response"]
        assert "retrying in" in w.output and "Traceback" not in w.output
    finally:
        w.stop()
