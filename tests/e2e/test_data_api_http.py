"""Data API v1 over real HTTP: the Procfile's web on a store filled beforehand (SQLite, and MongoDB with
MONGODB_TEST_URI), real Redis."""
from datetime import datetime, timedelta, timezone

import pytest
import requests

from app.domain.model import Observation
from tests.e2e.test_split_mode import store  # noqa: F401  (fixture: each store, SQLite and MongoDB)
from tests.procs import free_port, wait_until, web

pytestmark = pytest.mark.slow

DAY = datetime(2026, 11, 25, tzinfo=timezone.utc)


@pytest.fixture
def site(subprocess_env, redis_url, tmp_path, store):  # noqa: F811
    extra, repo, _ = store
    env = {**subprocess_env, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data"), "PORT": str(free_port()),
           "WEB_CONCURRENCY": "1", **extra}
    repo.ensure_schema()
    # Six hours of 15-minute records, with hour 3 missing (a polling outage).
    repo.add_batch([Observation("bitcoin", "usd", 40_000 + 10 * i, 8e11, 2e10, None,
                                DAY + timedelta(minutes=15 * i), DAY + timedelta(minutes=15 * i, seconds=2))
                    for i in range(24) if not 12 <= i < 16])
    repo.close()
    proc = web(env, tmp_path)
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        wait_until(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 30, what="web up")
        yield base
    finally:
        proc.stop()


def test_history_stats_and_errors_over_http(site):
    url = f"{site}/api/v1/coins/bitcoin/history"
    query = {"from": "2026-11-25T00:00:00Z", "to": "2026-11-25T06:00:00Z", "interval": "1h"}

    response = requests.get(url, params=query, timeout=10)
    assert response.status_code == 200
    buckets = response.json()["buckets"]
    assert [(b["open"], b["close"], b["n"]) for b in buckets] == [
        (40_000, 40_030, 4), (40_040, 40_070, 4), (40_080, 40_110, 4), (None, None, 0), (40_160, 40_190, 4),
        (40_200, 40_230, 4)]

    as_csv = requests.get(url, params=query, headers={"Accept": "text/csv"}, timeout=10)
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    lines = as_csv.text.splitlines()
    assert lines[0] == "t,open,high,low,close,n,market_cap,volume" and lines[4] == "2026-11-25T03:00:00+00:00,,,,,0,,"

    stats = requests.get(f"{site}/api/v1/coins/bitcoin/stats", params={"window": "10"}, timeout=10).json()
    # The newest 10 records: i = 10, 11 and 16..23 (hour 3 is missing).
    assert (stats["n"], stats["min"], stats["max"]) == (10, 40_100, 40_230)

    bad = requests.get(url, params={**query, "interval": "2h"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["parameter"] == "interval"
    unknown = requests.get(f"{site}/api/v1/coins/dogecoin/stats", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_coin"
