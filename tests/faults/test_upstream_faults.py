"""CoinGecko misbehaving (timeouts, 5xx, Cloudflare HTML, malformed JSON, dropped connections, 429 with and without
Retry-After) against a real worker and web: every run is stored exactly once, the web keeps answering.

The tests share one platform (starting processes is the slow part) and run in file order; the last one leaves a
60 s cooldown behind, so it stays last.
"""
import json
import time
from datetime import datetime

import pytest

from tests.fake_coingecko import FakeCoinGecko
from tests.faults.harness import Figures, Platform
from tests.procs import wait_until

pytestmark = pytest.mark.slow

BTC = {"price": 41000, "marketCap": 820000000000, "24hChange": 2.5}
COOLDOWN = "cryptostats:upstream-cooldown"


@pytest.fixture(scope="module")
def shared(tmp_path_factory, short_tmp):
    with FakeCoinGecko(port=0, seed=7) as fake:
        fake.set_price("bitcoin", 41000, market_cap=820000000000, change_24h=2.5)
        with Platform(tmp_path_factory.mktemp("upstream"), short_tmp / "ru", fake, Figures("start-up"),
                      UPSTREAM_READ_TIMEOUT_SECONDS="1") as platform:
            platform.worker(), platform.web()
            platform.wait_stored(1, 40)  # the worker's start-up update on an empty store
            wait_until(lambda: platform.shows("/stats?coin=bitcoin", BTC), 30, what="web serving")
            yield platform


@pytest.fixture
def platform(shared, figures):
    shared.figures = figures
    shared.fake.reset()
    shared.fake.set_price("bitcoin", 41000, market_cap=820000000000, change_24h=2.5)
    wait_until(shared.queue_idle, 30, what="no run left over from the previous test")
    return shared


def test_timeouts_5xx_html_malformed_json_and_resets_are_retried_until_stored(platform, figures):
    """CoinGecko timeouts, 5xx, Cloudflare HTML, malformed JSON and dropped connections"""
    fake = platform.fake
    calls, rows, stored = fake.request_count(), platform.count(), len(platform.stored_events())
    failed = len(platform.failed_events())
    fake.enqueue("delay", seconds=2.5)  # beyond UPSTREAM_READ_TIMEOUT_SECONDS=1
    fake.enqueue("status", status=500)
    fake.enqueue("status", status=502)
    fake.enqueue("html", status=503)  # Cloudflare's error page
    fake.enqueue("html", status=200)  # Cloudflare's page with a 200
    fake.enqueue("malformed")
    fake.enqueue("drop")  # connection closed without an answer
    figures.faults += 7
    for _ in range(3):
        platform.trigger()

    for _ in range(5):  # meanwhile the web answers from memory
        assert platform.get("/stats?coin=bitcoin").json() == BTC
        assert platform.get("/deviation?coin=bitcoin").status_code == 200
    platform.wait_stored(stored + 3, 60)
    wait_until(platform.queue_idle, 10, what="all runs acknowledged")
    time.sleep(1)  # a duplicate would show up now

    figures.upstream_calls = fake.request_count() - calls
    figures.runs(3, len(platform.stored_events()) - stored)
    codes = sorted(e["error"]["code"] for e in platform.failed_events()[failed:])
    assert codes == sorted(["upstream_unreachable", "upstream_server_error", "upstream_server_error",
                            "upstream_server_error", "upstream_bad_response", "upstream_bad_response",
                            "upstream_unreachable"])
    assert figures.upstream_calls == 3 + 7  # each fault cost one retry, no more
    assert platform.count() - rows == 3  # each run stored once
    assert platform.get("/stats?coin=bitcoin").json() == BTC
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_a_run_held_by_a_trickling_answer_is_stopped_by_the_time_limit_and_retried(platform, figures):
    """CoinGecko trickling its answer a byte at a time: the run's time limit stops it, the retry stores"""
    fake = platform.fake
    calls, rows, stored = fake.request_count(), platform.count(), len(platform.stored_events())
    # Every read gets a byte within the 1 s read timeout, so only the task's soft time limit (connect 5 s + read
    # 1 s + 15 s + 10 s = 31 s) can end this attempt.
    fake.enqueue("trickle", seconds=90, interval=0.2)
    figures.faults += 1
    platform.trigger()
    wait_until(lambda: fake.request_count() > calls, 15, what="run in flight")
    assert platform.get("/stats?coin=bitcoin").json() == BTC  # the web answers meanwhile
    platform.wait_stored(stored + 1, 60)
    wait_until(platform.queue_idle, 10, what="the run acknowledged")

    figures.upstream_calls = fake.request_count() - calls
    figures.runs(1, len(platform.stored_events()) - stored)
    assert figures.upstream_calls == 2  # the held attempt and its retry
    assert platform.count() - rows == 1
    assert [e["error"]["code"] for e in platform.failed_events()][-1:] == ["upstream_unreachable"]
    assert "was stopped" in platform.failed_events()[-1]["error"]["message"]
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_429_retry_after_is_honoured_by_every_run(platform, figures):
    """429 with Retry-After: 3 (no request before it, from any run)"""
    fake, client = platform.fake, platform.redis()
    calls, stored = fake.request_count(), len(platform.stored_events())
    fake.enqueue("rate_limit", retry_after=3)
    figures.faults += 1
    platform.trigger()
    wait_until(lambda: client.exists(COOLDOWN), 15, what="cooldown set after the 429")
    assert 1000 < client.pttl(COOLDOWN) <= 3000
    platform.trigger()  # another run during the cooldown must not call CoinGecko either
    assert platform.get("/stats?coin=bitcoin").json() == BTC
    platform.wait_stored(stored + 2, 30)
    wait_until(platform.queue_idle, 10, what="all runs acknowledged")
    client.close()

    requests_seen = fake.requests[-(fake.request_count() - calls):]
    first = requests_seen[0]["at"]
    figures.upstream_calls = len(requests_seen)
    figures.runs(2, len(platform.stored_events()) - stored)
    assert figures.upstream_calls == 3  # the 429, then one request per run
    assert all(r["at"] - first >= 3.0 for r in requests_seen[1:]), [r["at"] - first for r in requests_seen]
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_429_without_retry_after_backs_off_at_least_a_minute(platform, figures):
    """429 without Retry-After (60 s backoff, runs deferred not lost)"""
    fake, client = platform.fake, platform.redis()
    calls = fake.request_count()
    fake.enqueue("rate_limit", retry_after=None)
    figures.faults += 1
    platform.trigger()
    wait_until(lambda: client.exists(COOLDOWN), 15, what="cooldown set after the 429")
    hit = time.time()
    assert client.pttl(COOLDOWN) > 55_000
    platform.trigger()  # a second run arrives during the cooldown
    for _ in range(3):  # the following seconds: the web answers, CoinGecko hears nothing
        time.sleep(1)
        assert platform.get("/stats?coin=bitcoin").json() == BTC
    figures.upstream_calls = fake.request_count() - calls
    assert figures.upstream_calls == 1

    # Neither run is lost: both are held by the worker as retries due a minute or more after the 429.
    held = [json_message(raw) for raw in client.hvals("unacked")]
    client.close()
    etas = sorted(m["headers"]["eta"] for m in held if m["headers"]["task"] == "tasks.store_crypto_stats")
    assert len(etas) == 2, held
    assert all(iso_to_epoch(eta) - hit >= 55 for eta in etas), etas
    figures.runs(2, len(etas))
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []



def json_message(raw: bytes) -> dict:
    """A message as kombu keeps it in the `unacked` hash: [message, exchange, routing key]."""
    message, _exchange, _routing_key = json.loads(raw)
    return message


def iso_to_epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
