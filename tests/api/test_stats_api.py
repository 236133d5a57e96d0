"""The inherited HTTP contract: /stats and /deviation (and /api/v1/...), errors in one JSON shape."""
import logging
from datetime import timedelta

import pytest

from app.domain.errors import StorageUnavailable, UpstreamUnavailable
from app.services.polling import report_failure
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
    store(repo, view, "ethereum", [2200])
    for query in ("%20Bitcoin%20", "BITCOIN", "bitcoin&currency=USD"):
        response = client.get(f"/stats?coin={query}")
        assert response.status_code == 200, query
        assert response.get_json() == {"price": 40000, "marketCap": 800000000, "24hChange": 3.4}, query


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


def test_no_data_after_a_failed_update_says_why_and_when_it_retries(client, view, bus, clock):
    view.refresh()
    report_failure(bus, UpstreamUnavailable("CoinGecko unreachable: connect timeout"), clock, 20.0)
    view.note_event(bus.pending.pop())
    response = client.get("/deviation?coin=ethereum")
    error = response.get_json()["error"]
    assert response.status_code == 503
    assert "last update failed (CoinGecko unreachable)" in error["message"]
    assert error["details"]["retry_in_seconds"] == 20 and response.headers["Retry-After"] == "20"
    clock.advance(seconds=16)  # the time left shrinks as it passes, in the body and in Retry-After
    response = client.get("/deviation?coin=ethereum")
    assert response.get_json()["error"]["details"]["retry_in_seconds"] == 4
    assert response.headers["Retry-After"] == "4"


def test_an_event_from_an_older_worker_without_retry_at_still_counts_down(client, view, clock):
    view.refresh()
    view.note_event({"event": "failed", "at": clock.now.isoformat(), "error": {"code": "upstream_server_error"},
                     "retry_in_seconds": 30.0})
    clock.advance(seconds=12)
    response = client.get("/stats?coin=bitcoin")
    assert response.get_json()["error"]["details"]["retry_in_seconds"] == 18
    assert response.headers["Retry-After"] == "18"


def test_store_down_keeps_serving_what_is_in_memory(client, repo, view, tmp_path):
    store(repo, view, "bitcoin", [40000])
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file: no database can be created beneath it")
    repo.path = blocker / "gone.sqlite3"
    repo.close()  # the next connection must open the new path, and cannot
    with pytest.raises(StorageUnavailable):
        view.refresh()  # the view did try, and failed
    response = client.get("/stats?coin=bitcoin")
    assert response.status_code == 200 and response.get_json()["price"] == 40000


def test_an_unexpected_exception_is_a_json_500_with_its_traceback_logged(app, caplog):
    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("secret internals: /srv/app/data")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "internal server error",
                                             "details": None}}
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" in caplog.text and "ZeroDivisionError: secret internals" in caplog.text


@pytest.mark.parametrize("path", ["/api/v1//stats?coin=bitcoin", "//stats?coin=bitcoin", "/api/v1//deviation"])
def test_double_slashes_never_redirect_to_the_requests_host(client, path):
    response = client.get(path, headers={"Host": "attacker.example"})
    assert "Location" not in response.headers
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_options_is_204_with_allow_and_no_html(client):
    response = client.options("/stats")
    assert response.status_code == 204 and response.get_data() == b""
    assert "text/html" not in response.headers.get("Content-Type", "")
    assert "GET" in response.headers["Allow"]


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


def test_a_store_failure_reaching_a_route_names_no_host_or_path(app):
    """Any route that reads the store and fails gets the fixed text: the adapter's message names the deployment."""
    from flask import Blueprint

    probe = Blueprint("probe", __name__)

    @probe.get("/probe")
    def failing():
        raise StorageUnavailable("MongoDB read failed: db-7.internal.example:27017 /srv/secret/path")

    app.register_blueprint(probe)
    response = app.test_client().get("/probe")
    assert response.status_code == 503
    assert response.get_json() == {"error": {"code": "storage_unavailable",
                                             "message": "the store is unreachable; try again shortly",
                                             "details": None}}
