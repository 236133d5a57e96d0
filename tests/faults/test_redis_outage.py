"""Redis (broker and pub/sub) stops and comes back under a running web and worker: the web keeps answering from
memory, /readyz says not ready, then everything reconnects and the next triggers reach the web via crypto-update."""
import time

import pytest

from app.embedded_redis import responds
from tests.procs import wait_until

pytestmark = pytest.mark.slow

BEFORE = {"price": 40000, "marketCap": 800000000000, "24hChange": 3.4}
AFTER = {"price": 45000, "marketCap": 900000000000, "24hChange": -2.5}
AGAIN = {"price": 46000, "marketCap": 910000000000, "24hChange": -1.5}


def test_web_serves_through_a_redis_outage_and_everything_reconnects(make_platform, figures):
    """Redis outage: web serves from memory, /readyz 503, subscriber and worker reconnect"""
    platform = make_platform(WEB_CONCURRENCY="2")  # two gunicorn processes: both subscribers must come back
    fake = platform.fake
    fake.set_price("bitcoin", 40000, market_cap=800000000000, change_24h=3.4)
    platform.worker(), platform.web()
    platform.wait_stored(1, 40)
    wait_until(lambda: platform.shows("/stats?coin=bitcoin", BEFORE), 30, what="web serving")
    wait_until(lambda: platform.subscribers() == 2, 15, what="both web processes subscribed")
    stats = platform.get("/stats?coin=bitcoin")
    deviation = platform.get("/deviation?coin=bitcoin").json()
    assert stats.headers["X-Data-Stale"] == "false"
    assert platform.get("/readyz").status_code == 200

    platform.stop_redis()
    figures.faults += 1
    for _ in range(15):  # about 3 s of outage, every answer checked
        response = platform.get("/stats?coin=bitcoin")
        assert response.status_code == 200 and response.json() == BEFORE
        assert response.headers["X-Data-Observed-At"] == stats.headers["X-Data-Observed-At"]
        assert platform.get("/deviation?coin=bitcoin").json() == deviation
        assert platform.get("/healthz").status_code == 200
        ready = platform.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"]["ok"] is False
        assert ready.json()["checks"]["store"]["ok"] is True
        time.sleep(0.1)
    assert not responds(platform.redis_url)

    restarted = time.monotonic()
    platform.start_redis()
    wait_until(lambda: platform.get("/readyz", counted=False).status_code == 200, 10, what="/readyz 200 again")
    wait_until(lambda: platform.subscribers() == 2, 20, what="both web subscribers back")
    resubscribed = time.monotonic() - restarted

    # The first trigger after Redis returns: the worker has to reconnect to receive it.
    fake.set_price("bitcoin", 45000, market_cap=900000000000, change_24h=-2.5)
    calls = fake.request_count()
    platform.trigger()
    sent = time.monotonic()
    wait_until(lambda: platform.shows("/stats?coin=bitcoin", AFTER), 30, what="first run after the outage shown")
    first_shown = time.monotonic() - sent
    # And the next: only crypto-update can bring it to the web this fast (REFRESH_INTERVAL_SECONDS=3600).
    fake.set_price("bitcoin", 46000, market_cap=910000000000, change_24h=-1.5)
    platform.trigger()
    sent = time.monotonic()
    wait_until(lambda: platform.shows("/stats?coin=bitcoin", AGAIN), 10, what="second run shown via crypto-update")
    second_shown = time.monotonic() - sent
    for path in ("/stats?coin=bitcoin", "/stats?coin=bitcoin", "/deviation?coin=bitcoin", "/readyz"):
        assert platform.get(path).status_code == 200  # both gunicorn processes, most likely
    wait_until(platform.queue_idle, 10, what="all runs acknowledged")

    figures.upstream_calls = fake.request_count() - calls
    figures.runs(2, platform.count() - 1)
    assert figures.upstream_calls == 2
    assert resubscribed < 10, resubscribed
    assert first_shown < 10, first_shown
    assert second_shown < 3, second_shown
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []
