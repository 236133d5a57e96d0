"""Tracking at run time over real HTTP on real processes (gunicorn web with two workers, a Celery worker, real
Redis, the fake CoinGecko), on SQLite and, with MONGODB_TEST_URI, on MongoDB: a coin added with the admin token is
fetched by the next run and answered by every web process, and once removed it is gone, with no process restarted."""
import pytest
import requests

from tests.e2e.test_split_mode import env, store  # noqa: F401  (fixtures: the deployed environment, each store)
from tests.procs import celery_call, wait_until, web, worker

pytestmark = pytest.mark.slow

TOKEN = "e2e-admin-token-0123456789"


def every_web_process(port, path, expected, tries=8):
    """The answer of `tries` requests in a row (gunicorn spreads them over its workers) all satisfy `expected`."""
    answers = [requests.get(f"http://127.0.0.1:{port}{path}", timeout=5) for _ in range(tries)]
    return all(expected(a) for a in answers)


def tracked_ids(response):
    return [c["id"] for c in response.json()["coins"]]


def test_a_coin_tracked_at_run_time_is_fetched_and_served_then_gone_once_untracked(env, store, fake_coingecko,  # noqa: F811
                                                                                   tmp_path):
    extra, reader, _ = store
    env = {**env, **extra, "ADMIN_TOKEN": TOKEN, "WEB_CONCURRENCY": "2"}
    port = env["PORT"]
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    fake_coingecko.set_price("solana", 123.45, market_cap=55_000_000_000, change_24h=-1.5)
    w, site = worker(env, tmp_path), web(env, tmp_path)
    try:
        wait_until(lambda: requests.get(f"{base}/stats?coin=bitcoin", timeout=5).status_code == 200, 60,
                   what="the start-up update served")
        assert requests.get(f"{base}/stats?coin=solana", timeout=5).status_code == 404
        assert requests.post(f"{base}/api/v1/coins", json={"id": "solana"}, timeout=5).status_code == 401
        assert requests.post(f"{base}/api/v1/coins", json={"id": "solanna"}, headers=auth,
                             timeout=10).json()["error"]["details"]["candidates"][0]["id"] == "solana"

        added = requests.post(f"{base}/api/v1/coins", json={"id": "solana"}, headers=auth, timeout=10)
        assert added.status_code == 201 and added.json()["symbol"] == "sol"
        wait_until(lambda: every_web_process(port, "/api/v1/coins", lambda r: "solana" in tracked_ids(r)), 15,
                   what="every web process lists solana")

        assert celery_call(env).returncode == 0
        wait_until(lambda: every_web_process(port, "/stats?coin=solana", lambda r: r.status_code == 200 and r.json()
                                             == {"price": 123.45, "marketCap": 55_000_000_000, "24hChange": -1.5}),
                   30, what="/stats?coin=solana from the new record")
        assert reader.latest("solana", "usd").price == 123.45

        removed = requests.delete(f"{base}/api/v1/coins/solana", headers=auth, timeout=10)
        assert removed.status_code == 200
        wait_until(lambda: every_web_process(port, "/api/v1/coins", lambda r: "solana" not in tracked_ids(r)), 15,
                   what="solana gone from every web process")
        assert requests.get(f"{base}/stats?coin=solana", timeout=5).status_code == 404
        assert w.popen.poll() is None and site.popen.poll() is None  # nothing was restarted
        assert "Traceback" not in w.output + site.output
        assert TOKEN not in w.output + site.output
    finally:
        w.stop(), site.stop()
