"""Real-HTTP tests of the CoinGecko fake (tests/fake_coingecko.py) that other tests and demos rely on."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
try:
    from tests.fake_coingecko import FakeCoinGecko
except ImportError:  # tests/ not importable from the current sys.path yet
    sys.path.insert(0, str(ROOT))
    from tests.fake_coingecko import FakeCoinGecko

ALL_FLAGS = {"include_market_cap": "true", "include_24hr_vol": "true", "include_24hr_change": "true",
             "include_last_updated_at": "true"}


@pytest.fixture
def fake():
    with FakeCoinGecko() as server:
        yield server


def price(fake, ids="bitcoin", vs="usd", headers=None, timeout=5.0, **params):
    params = {"ids": ids, "vs_currencies": vs, **params}
    return requests.get(f"{fake.base_url}/simple/price", params=params, headers=headers, timeout=timeout)


def test_ping_and_base_url(fake):
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/api/v3" and fake.port > 0
    r = requests.get(f"{fake.base_url}/ping", timeout=5)
    assert r.status_code == 200 and r.json() == {"gecko_says": "(V3) To the Moon!"}


def test_simple_price_shape_and_include_flags(fake):
    body = price(fake, ids="bitcoin,ethereum", vs="usd,eur", precision="full", **ALL_FLAGS).json()
    assert set(body) == {"bitcoin", "ethereum"}
    assert set(body["bitcoin"]) == {"usd", "usd_market_cap", "usd_24h_vol", "usd_24h_change", "eur", "eur_market_cap",
                                    "eur_24h_vol", "eur_24h_change", "last_updated_at"}
    assert 30000 < body["bitcoin"]["usd"] < 50000 and 1500 < body["ethereum"]["usd"] < 3000
    assert isinstance(body["bitcoin"]["last_updated_at"], int)
    assert abs(body["bitcoin"]["last_updated_at"] - time.time()) < 60
    # Without include flags only the bare currency keys come back.
    assert set(price(fake, vs="usd,eur").json()["bitcoin"]) == {"usd", "eur"}


def test_unknown_ids_dropped_and_unsupported_currency(fake):
    assert set(price(fake, ids="bitcoin,not-a-coin").json()) == {"bitcoin"}
    r = price(fake, ids="xrp")  # symbol, not an id: CoinGecko answers 200 {}
    assert r.status_code == 200 and r.json() == {}
    assert price(fake, vs="usdt").json() == {"bitcoin": {}}
    assert set(price(fake, vs="usd,usdt").json()["bitcoin"]) == {"usd"}
    r = requests.get(f"{fake.base_url}/simple/price", params={"ids": "bitcoin"}, timeout=5)
    assert r.status_code == 400 and r.json() == {"error": "Missing parameter vs_currencies"}
    assert requests.get(f"{fake.base_url}/simple/supported_vs_currencies", timeout=5).json()[0] == "usd"


def test_matic_network_is_known_but_unpriced(fake):
    body = price(fake, ids="matic-network,polygon-ecosystem-token", **ALL_FLAGS).json()
    assert body["matic-network"] == {}
    assert 0.3 < body["polygon-ecosystem-token"]["usd"] < 0.6


def test_polls_move_and_are_deterministic_per_seed(fake):
    first, second = (price(fake, **ALL_FLAGS).json()["bitcoin"] for _ in range(2))
    assert first["usd"] != second["usd"]
    assert second["last_updated_at"] >= first["last_updated_at"] + 1
    with FakeCoinGecko(seed=1) as twin, FakeCoinGecko(seed=2) as other:
        assert price(twin).json() == {"bitcoin": {"usd": first["usd"]}}
        assert price(other).json() != {"bitcoin": {"usd": first["usd"]}}
    fake.reset()  # back to the seeded start
    assert price(fake).json() == {"bitcoin": {"usd": first["usd"]}}


def test_pinned_price_is_returned_exactly(fake):
    fake.set_price("bitcoin", 40000, market_cap=800000000, change_24h=-3.4, volume_24h=123.5,
                   last_updated_at=1700000000)
    for _ in range(2):  # pinned: the random walk stops for this coin
        r = price(fake, vs="usd,eur", **ALL_FLAGS)
        assert '"usd":40000,"usd_market_cap":800000000,"usd_24h_vol":123.5,"usd_24h_change":-3.4' in r.text
        b = r.json()["bitcoin"]
        assert b["eur"] == pytest.approx(40000 * 0.92) and b["last_updated_at"] == 1700000000
    fake.set_price("ethereum", None)  # nulls are served verbatim too
    assert price(fake, ids="ethereum", include_market_cap="true").json() == {"ethereum": {"usd": None,
                                                                                          "usd_market_cap": None}}


def test_rate_limit_carries_retry_after(fake):
    fake.enqueue("rate_limit", retry_after=119)
    fake.enqueue("rate_limit", retry_after=None)
    r = price(fake)
    assert r.status_code == 429 and r.headers["retry-after"] == "119"
    assert r.headers["content-type"] == "application/json"
    assert r.json()["status"]["error_code"] == 429
    r = price(fake)
    assert r.status_code == 429 and "retry-after" not in r.headers


def test_html_and_malformed_faults_break_json(fake):
    fake.enqueue("html", status=403)
    fake.enqueue("malformed")
    r = price(fake)
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "used Cloudflare to restrict access" in r.text
    r = price(fake)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        r.json()


def test_faults_are_fifo_then_normal_answers_resume(fake):
    fake.enqueue("status", status=500)
    fake.enqueue("body", count=2, body={"bitcoin": {"usd": "40000"}})
    fake.enqueue("raw", raw='{"bitcoin":{"usd":4.0e4}}')
    r = price(fake)
    assert r.status_code == 500 and r.json() == {"error": "Internal Server Error"}
    assert requests.get(f"{fake.base_url}/ping", timeout=5).status_code == 200  # /ping does not consume faults
    assert [price(fake).json() for _ in range(2)] == [{"bitcoin": {"usd": "40000"}}] * 2
    assert price(fake).text == '{"bitcoin":{"usd":4.0e4}}'
    r = price(fake)
    assert r.status_code == 200 and isinstance(r.json()["bitcoin"]["usd"], float)


def test_delay_and_drop_faults(fake):
    fake.enqueue("delay", seconds=1.0)
    fake.enqueue("drop")
    with pytest.raises(requests.Timeout):
        price(fake, timeout=0.2)
    with pytest.raises(requests.ConnectionError):
        price(fake)
    assert price(fake).status_code == 200


def test_set_down_serves_503_html(fake):
    fake.set_down(True)
    r = requests.get(f"{fake.base_url}/ping", timeout=5)
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    fake.set_down(False)
    assert price(fake).status_code == 200


def test_pro_and_demo_key_mismatch(fake):
    r = price(fake, headers={"x-cg-pro-api-key": "CG-pro"})
    assert r.status_code == 400 and r.json()["error_code"] == 10010
    assert "pro-api.coingecko.com" in r.json()["status"]["error_message"]
    assert price(fake, headers={"x-cg-demo-api-key": "CG-demo"}).status_code == 200
    with FakeCoinGecko(pro=True) as pro:
        assert price(pro, headers={"x-cg-pro-api-key": "CG-pro"}).status_code == 200
        r = price(pro, headers={"x-cg-demo-api-key": "CG-demo"})
        assert r.status_code == 400 and r.json()["error_code"] == 10011


def test_coins_markets(fake):
    fake.set_price("ethereum", 2000, change_24h=-1.5)
    r = requests.get(f"{fake.base_url}/coins/markets", params={"vs_currency": "usd", "ids": "ethereum,bitcoin,nope"},
                     timeout=5)
    rows = r.json()
    assert [row["id"] for row in rows] == ["bitcoin", "ethereum"]  # market_cap_desc
    eth = rows[1]
    assert eth["symbol"] == "eth" and eth["name"] == "Ethereum" and eth["current_price"] == 2000
    assert eth["price_change_percentage_24h"] == -1.5 and eth["market_cap"] > 0 and eth["total_volume"] > 0
    assert eth["last_updated"].endswith("Z")
    r = requests.get(f"{fake.base_url}/coins/markets", params={"vs_currency": "usdt"}, timeout=5)
    assert r.status_code == 400 and r.json() == {"error": "invalid vs_currency"}


def test_request_log_and_404(fake):
    price(fake, headers={"User-Agent": "poller/1.0", "X-CG-Demo-API-Key": "k"})
    r = requests.get(f"{fake.base_url}/coins/bitcoin/nothing", timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    log = fake.requests
    assert [e["path"] for e in log] == ["/api/v3/simple/price", "/api/v3/coins/bitcoin/nothing"]
    assert log[0]["query"] == {"ids": "bitcoin", "vs_currencies": "usd"}
    assert log[0]["headers"]["user-agent"] == "poller/1.0" and log[0]["headers"]["x-cg-demo-api-key"] == "k"
    assert fake.request_count() == 1 and fake.request_count("/nothing") == 1


def test_http_control_endpoints(fake):
    root = f"http://127.0.0.1:{fake.port}/_fake"
    r = requests.post(f"{root}/set_price", json={"coin": "bitcoin", "usd": 12345.5}, timeout=5)
    assert r.json() == {"ok": True}
    assert requests.post(f"{root}/enqueue", json={"fault": "rate_limit", "retry_after": None}, timeout=5).ok
    r = price(fake)
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert price(fake).json() == {"bitcoin": {"usd": 12345.5}}
    assert len(requests.get(f"{root}/requests", timeout=5).json()) == 2  # control calls are not logged
    assert requests.post(f"{root}/set_down", json={"down": True}, timeout=5).ok
    assert price(fake).status_code == 503
    assert requests.post(f"{root}/reset", timeout=5).ok
    assert requests.get(f"{root}/requests", timeout=5).json() == [] and price(fake).status_code == 200
    assert requests.post(f"{root}/enqueue", json={"fault": "nope"}, timeout=5).status_code == 400
    assert requests.post(f"{root}/enqueue", data="not json", timeout=5).status_code == 400
    assert requests.post(f"{root}/frobnicate", json={}, timeout=5).status_code == 404


def test_runs_as_module_from_the_command_line():
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_coingecko", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        base_url = line.strip().rsplit("=", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/api/v3")
        assert requests.get(f"{base_url}/ping", timeout=5).json() == {"gecko_says": "(V3) To the Moon!"}
    finally:
        proc.terminate()  # SIGTERM: the fake exits cleanly
        assert proc.wait(timeout=10) == 0


def test_coins_list_has_coingeckos_shape_and_every_coin_but_the_deprecated_one_is_priced(fake):
    listed = requests.get(f"{fake.base_url}/coins/list", timeout=5).json()

    assert all(set(c) == {"id", "symbol", "name"} for c in listed)  # platforms only with include_platform (ref §2)
    assert [c["id"] for c in listed] == sorted(c["id"] for c in listed)
    assert [c["id"] for c in listed if c["symbol"] == "eth"] == ["ethereum", "ethereum-wormhole"]  # not unique
    ids = ",".join(c["id"] for c in listed)
    prices = requests.get(f"{fake.base_url}/simple/price", params={"ids": ids, "vs_currencies": "usd"},
                          timeout=5).json()
    assert {cid for cid, quote in prices.items() if "usd" in quote} == {c["id"] for c in listed} - {"matic-network"}
