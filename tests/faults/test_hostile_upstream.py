"""A hostile upstream in place of CoinGecko (issue 8) against a real worker and web: a redirect to another host,
bodies of 64 MB, 300 MB and without end, a 1 MB gzip answer inflating to 1 GB, JSON nested 100,000 deep, a
megabyte of "<", absurd Retry-After values, absurd prices and time stamps, a clock 10 minutes off. The key never
leaves home, the worker stays small, every such answer is a retried upstream error, nothing absurd is stored.

The tests share one platform (starting processes is the slow part) and run in file order; the Retry-After test
leaves a cooldown behind, so it is the last one on the shared platform.
"""
import json
import os
import re
import time
from pathlib import Path

import pytest
import requests

from tests.fake_coingecko import FakeCoinGecko, _gzip_bomb
from tests.faults.harness import Figures, Platform
from tests.procs import free_port, wait_until

pytestmark = pytest.mark.slow

KEY = "CG-hostile-suite-demo-key"
BTC = {"price": 41000, "marketCap": 820000000000, "24hChange": 2.5}
COOLDOWN = "cryptostats:upstream-cooldown"
MB = 1024 * 1024
LIMIT = 4 * MB  # UPSTREAM_MAX_RESPONSE_BYTES's default, which the platform runs with
# The worker's peak resident memory may grow by a few copies of the limit while it reads, not by the body.
RSS_GROWTH_BOUND = 48 * MB


@pytest.fixture(scope="module")
def shared(tmp_path_factory, short_tmp):
    with FakeCoinGecko(port=0, seed=8) as fake:
        fake.set_price("bitcoin", 41000, market_cap=820000000000, change_24h=2.5)
        with Platform(tmp_path_factory.mktemp("hostile"), short_tmp / "rh", fake, Figures("start-up"),
                      COINGECKO_API_KEY=KEY, UPSTREAM_READ_TIMEOUT_SECONDS="2") as platform:
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


def run_each(platform, faults: list[tuple[str, dict]], timeout: float = 60) -> list[dict]:
    """One run per fault, each waited for: the fault hits its first attempt, the retry gets a normal answer.
    Returns the failed events of these runs."""
    fake, figures = platform.fake, platform.figures
    calls, stored, failed = fake.request_count(), len(platform.stored_events()), len(platform.failed_events())
    for i, (kind, opts) in enumerate(faults, 1):
        fake.enqueue(kind, **opts)
        platform.trigger()
        platform.wait_stored(stored + i, timeout)
    wait_until(platform.queue_idle, 10, what="all runs acknowledged")
    time.sleep(0.5)  # a duplicate would show up now
    figures.faults += len(faults)
    figures.upstream_calls = (figures.upstream_calls or 0) + fake.request_count() - calls
    figures.runs(len(faults), len(platform.stored_events()) - stored)
    assert fake.request_count() - calls == 2 * len(faults)  # each fault cost one retry, no more
    return platform.failed_events()[failed:]


def peak_rss(worker) -> int:
    """The largest peak resident set (VmHWM) among the worker's processes (main process and pool children)."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != worker.popen.pid:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)
    return peak


def test_a_redirect_to_another_host_is_not_followed_and_the_key_stays_home(platform, figures):
    """A redirect to another host (which would collect the API key and serve its own prices)"""
    with FakeCoinGecko(port=0, seed=9) as elsewhere:
        elsewhere.set_price("bitcoin", 1.0, market_cap=1.0, change_24h=0.0)
        failed = run_each(platform, [("redirect", {"location": f"{elsewhere.base_url}/simple/price?ids=bitcoin"}),
                                     ("redirect", {"location": elsewhere.base_url + "/simple/price", "status": 307})])
        assert elsewhere.requests == []  # neither the key nor the request reached the other host
    assert [e["error"]["code"] for e in failed] == ["upstream_bad_response"] * 2
    assert all("redirect" in e["error"]["message"] for e in failed)
    assert all(r["headers"].get("x-cg-demo-api-key") == KEY for r in platform.fake.requests)
    assert not [row for row in platform.rows() if row[4] == 1.0]  # the other host's price was never stored
    assert platform.get("/stats?coin=bitcoin").json() == BTC
    assert KEY not in "".join(proc.output for proc in platform.procs)
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_oversized_answers_are_cut_off_and_the_worker_stays_small(platform, figures):
    """Bodies of 64 MB and 300 MB, one without end, a 1 MB gzip answer inflating to 1 GB"""
    worker = next(proc for proc in platform.procs if proc.name == "worker")
    _gzip_bomb(1024 * MB)  # made now (~4 s), not while the worker waits for the answer
    before = peak_rss(worker)
    faults = [("huge", {"size": 64 * MB}), ("huge", {"size": 300 * MB, "declare_length": True}),
              ("endless", {}), ("gzip_bomb", {"inflated": 1024 * MB})]
    failed = run_each(platform, faults, timeout=120)
    growth = peak_rss(worker) - before
    print(f"worker peak RSS: {before / MB:.0f} MB before, grew by {growth / MB:.1f} MB")
    # The bound, not the measured value, goes in the report: the report must not change from run to run.
    figures.scenario += f" (worker peak RSS grew < {RSS_GROWTH_BOUND // MB} MB)"
    assert growth < RSS_GROWTH_BOUND, f"worker peak RSS grew by {growth / MB:.0f} MB"
    assert [e["error"]["code"] for e in failed] == ["upstream_bad_response"] * len(faults)
    assert all("UPSTREAM_MAX_RESPONSE_BYTES" in e["error"]["message"] for e in failed)
    # Logged once per answer: the retry line, nothing else.
    assert worker.output.count("larger than UPSTREAM_MAX_RESPONSE_BYTES") == len(faults)
    assert platform.get("/stats?coin=bitcoin").json() == BTC
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_malformed_answers_become_retried_upstream_errors(platform, figures):
    """JSON nested 100,000 deep, a megabyte of "<" (as 503 and as 200), a 400-digit number"""
    faults = [("nested", {"depth": 100_000}),
              ("raw", {"raw": "<" * MB, "status": 503, "content_type": "text/html"}),
              ("raw", {"raw": "<" * MB, "status": 200, "content_type": "text/html"}),
              ("raw", {"raw": '{"bitcoin":{"usd":1%s}}' % ("0" * 400)})]
    failed = run_each(platform, faults)
    assert [e["error"]["code"] for e in failed] == ["upstream_bad_response", "upstream_server_error",
                                                    "upstream_bad_response", "upstream_bad_response"]
    assert all(len(e["error"]["message"]) < 400 for e in failed)
    assert platform.get("/stats?coin=bitcoin").json() == BTC
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_absurd_prices_and_time_stamps_are_rejected_and_never_served(platform, figures):
    """Prices 1e308 and 5e-324, a time stamp 290 s ahead, last_updated_at=1 (1970)"""
    now = int(time.time())
    pol = '"polygon-ecosystem-token":{"usd":0.5,"usd_market_cap":5e9,"last_updated_at":%d}'
    answers = ['{"bitcoin":{"usd":1e308,"last_updated_at":%d},"ethereum":{"usd":5e-324,"last_updated_at":%d},%s}'
               % (now, now, pol % now),
               '{"bitcoin":{"usd":42000,"last_updated_at":%d},"ethereum":{"usd":2300,"last_updated_at":1},%s}'
               % (now + 290, pol % (now + 1))]
    stored = len(platform.stored_events())
    for i, raw in enumerate(answers, 1):
        platform.fake.enqueue("raw", raw=raw)
        platform.trigger()
        platform.wait_stored(stored + i, 30)
    wait_until(platform.queue_idle, 10, what="all runs acknowledged")
    figures.faults += 4
    figures.upstream_calls = len(answers)
    events = platform.stored_events()[stored:]
    figures.runs(len(answers), len(events))
    assert [e["coins"] for e in events] == [["polygon-ecosystem-token"]] * 2
    assert "price" in events[0]["rejected"]["bitcoin/usd"] and "price" in events[0]["rejected"]["ethereum/usd"]
    assert "after we asked" in events[1]["rejected"]["bitcoin/usd"]
    assert "before we asked" in events[1]["rejected"]["ethereum/usd"]
    rows = platform.rows()
    assert not [r for r in rows if r[4] in (1e308, 5e-324, 42000.0, 2300.0) or r[2] in (1, now + 290)]
    worker = next(proc for proc in platform.procs if proc.name == "worker")
    assert "1e+308 is outside" in worker.output and "s after we asked (more than 120 s)" in worker.output
    assert platform.get("/stats?coin=bitcoin").json() == BTC  # the newest plausible record, not the future one
    deviation = platform.get("/deviation?coin=bitcoin").json()["deviation"]
    assert deviation < 1e6
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_absurd_retry_after_values_are_bounded_and_the_worker_carries_on(platform, figures):
    """429 with Retry-After 99999999999999999999 s and in year 9999"""
    fake, client = platform.fake, platform.redis()
    failed, calls = len(platform.failed_events()), fake.request_count()
    for value in ("99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"):
        fake.enqueue("rate_limit", retry_after=value)
        platform.trigger()
        wait_until(lambda: len(platform.failed_events()) > failed, 30, what="the rate-limited run announced")
        [event] = platform.failed_events()[failed:]
        failed += 1
        # The run gives way to the next scheduled one (the wait is longer than the time left) instead of crashing,
        # and the cooldown that keeps every worker off CoinGecko is capped at one update interval.
        assert event["error"]["code"] == "upstream_rate_limited" and event["retry_in_seconds"] is None
        assert 0 < client.ttl(COOLDOWN) <= platform.settings.update_interval.total_seconds()
        wait_until(platform.queue_idle, 10, what="the run finished")
        client.delete(COOLDOWN)  # as if the capped cooldown had run out
    figures.faults += 2
    stored = len(platform.stored_events())
    platform.trigger()  # the worker is alive and stores the next trigger
    platform.wait_stored(stored + 1, 30)
    figures.runs(1, len(platform.stored_events()) - stored)
    figures.upstream_calls = fake.request_count() - calls
    assert figures.upstream_calls == 3  # no retry of the rate-limited runs reached CoinGecko
    client.close()
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_a_worker_clock_off_by_ten_minutes_is_said_and_published(make_platform, fake, figures):
    """The worker's clock 10 minutes ahead of CoinGecko's, then 10 minutes behind"""
    fake.set_clock_offset(-600)  # CoinGecko 10 minutes behind: the worker's clock is ahead
    platform = make_platform()
    worker = platform.worker()
    [event] = platform.wait_stored(1, 40)  # the start-up update: 10-minute-old stamps are plausible
    assert event["clock_skew_seconds"] == pytest.approx(600, abs=3)
    wait_until(lambda: re.search(r"(599|600|601|602) s ahead of CoinGecko's", worker.output), 10,
               what="the skew logged")

    fake.set_clock_offset(600)  # now the worker is 10 minutes behind: every stamp looks like the future
    platform.trigger()
    wait_until(lambda: platform.failed_events(), 30, what="the run failing")
    failed = platform.failed_events()[0]
    assert failed["clock_skew_seconds"] == pytest.approx(-600, abs=3)
    assert "s after we asked" in str(failed["error"]["details"])
    wait_until(lambda: re.search(r"(598|599|600|601) s behind CoinGecko's", worker.output), 10,
               what="the skew logged")
    fake.set_clock_offset(0)  # the clock fixed: the run's next retry stores
    [_, stored] = platform.wait_stored(2, 60)
    assert stored["clock_skew_seconds"] == pytest.approx(0, abs=3)
    wait_until(platform.queue_idle, 10, what="all runs acknowledged")
    figures.faults += 2
    figures.upstream_calls = fake.request_count()
    figures.runs(2, len(platform.stored_events()))
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_credentials_in_the_base_url_reach_no_log_event_or_answer(make_platform, figures):
    """COINGECKO_BASE_URL with a proxy's user and password, the proxy unreachable"""
    secret, user = "pr0xy-s3cret-pw", "proxyuser"
    platform = make_platform(COINGECKO_BASE_URL=f"http://{user}:{secret}@127.0.0.1:{free_port()}/api/v3",
                             COINGECKO_API_KEY=KEY)
    worker, web = platform.worker(), platform.web()
    wait_until(lambda: len(platform.failed_events()) >= 2, 40, what="the start-up update failing and retrying")
    wait_until(lambda: platform.get("/healthz", counted=False).status_code == 200, 30, what="web up")
    # No data yet: the contract's 503 no_data, saying why (read directly: the 5xx figure counts failures only).
    answer = requests.get(f"http://127.0.0.1:{platform.port}/stats?coin=bitcoin", timeout=10)
    figures.faults += 1
    figures.requests += 1
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "no_data"
    assert "Connection refused" in platform.failed_events()[0]["error"]["message"]
    told = " ".join([worker.output, web.output, json.dumps(platform.failed_events()), answer.text,
                     platform.get("/readyz", counted=False).text])
    for leaked in (secret, f"{user}:", KEY):
        assert leaked not in told
    assert figures.failures() == {}
    assert platform.tracebacks() == []
