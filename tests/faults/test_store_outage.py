"""The SQLite store locked by another process for longer than the product's busy timeout (10 s): the run fails,
retries and stores once the lock is gone; meanwhile the web serves what it holds."""
import sqlite3
import time

import pytest

from tests.procs import wait_until

pytestmark = pytest.mark.slow

BUSY_TIMEOUT_SECONDS = 10  # SqlitePriceRepository's default
OLD = {"price": 40000, "marketCap": 800000000000, "24hChange": 3.4}
NEW = {"price": 42000, "marketCap": 840000000000, "24hChange": 5.0}


def test_a_locked_store_delays_the_run_until_the_lock_is_released(make_platform, figures):
    """SQLite locked beyond the busy timeout: run retried, stored once after release; web serves meanwhile"""
    platform = make_platform()
    fake = platform.fake
    fake.set_price("bitcoin", 40000, market_cap=800000000000, change_24h=3.4)
    platform.worker(), platform.web()
    platform.wait_stored(1, 40)
    wait_until(lambda: platform.shows("/stats?coin=bitcoin", OLD), 30, what="web serving")
    calls, rows = fake.request_count(), platform.count()
    fake.set_price("bitcoin", 42000, market_cap=840000000000, change_24h=5.0)

    lock = sqlite3.connect(platform.db_path, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        figures.faults += 1
        platform.trigger()
        for _ in range(BUSY_TIMEOUT_SECONDS + 2):  # past the busy timeout and into the first retry
            response = platform.get("/stats?coin=bitcoin")
            assert response.status_code == 200 and response.json() == OLD
            assert platform.get("/deviation?coin=bitcoin").json() == {"deviation": 0}
            time.sleep(1)
        failures = platform.failed_events()
        assert [f["error"]["code"] for f in failures] == ["storage_unavailable"]
        assert platform.stored_events()[1:] == []
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    released = time.monotonic()

    wait_until(lambda: platform.shows("/stats?coin=bitcoin", NEW), 15, what="stored and shown after the release")
    shown_after = time.monotonic() - released
    wait_until(platform.queue_idle, 10, what="the run acknowledged")
    figures.upstream_calls = fake.request_count() - calls
    figures.runs(1, len(platform.stored_events()) - 1)
    assert platform.count() - rows == 1
    assert figures.upstream_calls == 2  # the attempt that met the lock, and its retry
    assert shown_after < 5, shown_after
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []
