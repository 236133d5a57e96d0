"""Store faults nobody would notice otherwise: a MongoDB that is down before the web loaded anything, and SQLite
files deleted, overwritten, read-only or on a full disk under a running worker and web. Each is reported with its
real cause, the web answers at once, and no batch is announced (nor its slot marked) unless it reads back."""
import time

import pytest
import requests

from tests.procs import free_port, wait_until

pytestmark = pytest.mark.slow


def test_mongodb_down_with_nothing_loaded_answers_503_at_once(make_platform, figures):
    """MongoDB down before the web loaded anything: /stats answers 503 no_data within 1 s"""
    closed = free_port()  # nothing listens there: every connection is refused
    platform = make_platform(MONGODB_URI=f"mongodb://127.0.0.1:{closed}/cryptostats")
    web = platform.web()
    figures.faults += 1
    wait_until(lambda: "cannot refresh stats from the store" in web.output, 30, what="the web's first refresh failed")
    for _ in range(5):
        started = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{platform.port}/stats?coin=bitcoin", timeout=15)
        took = time.monotonic() - started
        figures.answered(response.status_code, deliberate=response.status_code == 503)  # the promised no_data
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "no_data"
        assert str(closed) not in response.text
        assert took < 1.0, took
        time.sleep(1)  # past the web's 5 s on-demand refresh window, so at least one request tries the store
    assert figures.failures() == {}
