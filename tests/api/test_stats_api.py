"""The inherited HTTP contract: /stats and /deviation (and /api/v1/...), errors in one JSON shape."""
from datetime import timedelta

import pytest

from tests.fakes import T0, obs


def store(repo, view, coin, prices, **kwargs):
    repo.add_batch([obs(coin, p, T0 + timedelta(minutes=15 * i), **kwargs) for i, p in enumerate(prices)])
    view.refresh()


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
def test_stats_is_the_newest_record(client, repo, view, prefix):
    store(repo, view, "bitcoin", [39000, 40000])
    response = client.get(f"{prefix}/stats?coin=bitcoin")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == '{"price":40000,"marketCap":800000000,"24hChange":3.4}\n'


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
def test_deviation_is_the_contract_example(client, repo, view, prefix):
    store(repo, view, "bitcoin", [40000, 45000, 50000])
    response = client.get(f"{prefix}/deviation?coin=bitcoin")
    assert response.status_code == 200
    assert response.get_json() == {"deviation": 4082.48}


def test_freshness_travels_in_headers(client, repo, view, clock):
    store(repo, view, "bitcoin", [40000])
    response = client.get("/stats?coin=bitcoin")
    assert response.headers["X-Data-Observed-At"] == T0.isoformat()
    assert response.headers["Last-Modified"] == "Wed, 25 Nov 2026 12:00:00 GMT"
    assert response.headers["X-Data-Stale"] == "false"
    clock.advance(minutes=31)  # more than two 15-minute intervals
    assert client.get("/stats?coin=bitcoin").headers["X-Data-Stale"] == "true"


def test_matic_network_is_answered_with_pol(client, repo, view):
    store(repo, view, "polygon-ecosystem-token", [0.45], market_cap=4_600_000_000, change=-1.25)
    response = client.get("/stats?coin=matic-network")
    assert response.status_code == 200
    assert response.get_json() == {"price": 0.45, "marketCap": 4600000000, "24hChange": -1.25}


def test_unknown_market_cap_is_null(client, repo, view):
    store(repo, view, "ethereum", [2200.5], market_cap=None, change=None)
    assert client.get("/stats?coin=ethereum").get_json() == {"price": 2200.5, "marketCap": None, "24hChange": None}


def test_coin_is_case_and_space_insensitive(client, repo, view):
    store(repo, view, "bitcoin", [40000])
    assert client.get("/stats?coin=%20Bitcoin%20").status_code == 200


@pytest.mark.parametrize("query", ["", "?coin=", "?coin=%20%20", "?other=1"])
def test_missing_coin_is_400(client, query):
    response = client.get(f"/stats{query}")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_query"
    assert "coin" in error["message"]


@pytest.mark.parametrize("coin", ["bit coin", "<script>", "a" * 101, "💥"])
def test_malformed_coin_is_400(client, coin):
    response = client.get("/deviation", query_string={"coin": coin})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"]["coin"]


def test_untracked_coin_is_404_naming_the_tracked_coins(client):
    response = client.get("/stats?coin=dogecoin")
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["code"] == "unknown_coin"
    assert "bitcoin, ethereum, matic-network" in error["message"]


def test_untracked_currency_is_404(client, repo, view):
    store(repo, view, "bitcoin", [40000])
    response = client.get("/stats?coin=bitcoin&currency=eur")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "unknown_currency"


def test_no_data_yet_is_503_saying_the_first_update_is_pending(client, view):
    view.refresh()
    response = client.get("/stats?coin=bitcoin")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "first update is pending" in response.get_json()["error"]["message"]


def test_no_data_after_a_failed_update_says_why(client, view):
    view.refresh()
    view.note_event({"event": "failed", "error": {"code": "upstream_unreachable",
                                                  "message": "CoinGecko unreachable"}, "retry_in_seconds": 20})
    error = client.get("/deviation?coin=ethereum").get_json()["error"]
    assert "last update failed (CoinGecko unreachable)" in error["message"]
    assert error["details"]["retry_in_seconds"] == 20


def test_store_down_keeps_serving_what_is_in_memory(client, repo, view, tmp_path):
    store(repo, view, "bitcoin", [40000])
    repo.path = tmp_path / "missing-dir" / "x" / "gone.sqlite3"  # next connection cannot open
    repo.close()
    assert client.get("/stats?coin=bitcoin").get_json()["price"] == 40000


@pytest.mark.parametrize("path,status", [("/nope", 404), ("/stats/bitcoin", 404)])
def test_unknown_paths_are_json(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.is_json and response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405(client):
    response = client.post("/stats?coin=bitcoin")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
