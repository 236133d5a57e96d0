"""Data API v1 over the Flask test client on SQLite: /api/v1/coins/{id}/history and /api/v1/coins/{id}/stats."""
import csv
import io
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.api import create_app
from app.bootstrap import bootstrap
from app.config import Settings
from app.domain.errors import StorageUnavailable
from tests.memory_store import InMemoryPriceRepository
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import T0, FakeBus, FakeClock, FakePriceSource, obs

DAY = T0.replace(hour=0)  # the clock stands at T0, 2026-11-25 12:00 UTC


def store(repo, coin, prices, start, step=timedelta(minutes=15), **kwargs):
    records = [obs(coin, p, start + i * step, **kwargs) for i, p in enumerate(prices)]
    repo.add_batch(records)
    return records


def test_default_history_is_the_last_24_hours_at_15_minutes(client, repo):
    store(repo, "bitcoin", [100.0, 102.0], T0 - timedelta(minutes=20), step=timedelta(minutes=10))

    response = client.get("/api/v1/coins/bitcoin/history")

    assert response.status_code == 200
    body = response.get_json()
    assert (body["coin"], body["currency"], body["interval"]) == ("bitcoin", "usd", "15m")
    assert body["from"] == (T0 - timedelta(hours=24)).isoformat()
    assert body["to"] == (T0 + timedelta(minutes=15)).isoformat()
    buckets = body["buckets"]
    assert len(buckets) == 97
    # 11:40 falls in the 11:30 bucket, 11:50 in the 11:45 one; every other bucket is an honest gap.
    assert buckets[-3] == {"t": (T0 - timedelta(minutes=30)).isoformat(), "open": 100.0, "high": 100.0,
                           "low": 100.0, "close": 100.0, "n": 1, "market_cap": 800000000.0, "volume": 1000000.0}
    assert buckets[-2]["open"] == 102.0 and buckets[-2]["n"] == 1
    assert all(b["n"] == 0 and b["open"] is None and b["close"] is None for b in buckets[:-3] + buckets[-1:])


def test_history_over_a_chosen_range_and_interval(client, repo):
    store(repo, "bitcoin", [100.0, 104.0, 98.0, 101.0, 110.0], DAY, step=timedelta(minutes=30))

    response = client.get("/api/v1/coins/bitcoin/history?from=2026-11-25T00:00:00Z&to=1795582800&interval=1h")

    assert response.status_code == 200
    buckets = response.get_json()["buckets"]  # to = 2026-11-25T05:00Z as Unix seconds
    assert [(b["open"], b["high"], b["low"], b["close"], b["n"]) for b in buckets] == [
        (100.0, 104.0, 100.0, 104.0, 2), (98.0, 101.0, 98.0, 101.0, 2), (110.0, 110.0, 110.0, 110.0, 1),
        (None, None, None, None, 0), (None, None, None, None, 0)]


@pytest.mark.parametrize("suffix, headers", [("&format=csv", {}), ("", {"Accept": "text/csv"})])
def test_history_as_csv_has_the_same_buckets(client, repo, suffix, headers):
    store(repo, "bitcoin", [100.0, 104.0, 98.0], DAY, step=timedelta(minutes=30), market_cap=None)
    url = "/api/v1/coins/bitcoin/history?from=2026-11-25&to=2026-11-25T03:00:00Z&interval=1h"
    as_json = client.get(url).get_json()["buckets"]

    response = client.get(url + suffix, headers=headers)

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == ["t", "open", "high", "low", "close", "n", "market_cap", "volume"]
    assert rows == [{k: "" if v is None else str(v) for k, v in bucket.items()} for bucket in as_json]
    assert rows[2]["n"] == "0" and rows[2]["open"] == ""


def test_a_browser_gets_json(client, repo):
    response = client.get("/api/v1/coins/bitcoin/history",
                          headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 200 and response.is_json


def test_matic_network_history_is_pols(client, repo):
    store(repo, "polygon-ecosystem-token", [0.45], T0 - timedelta(minutes=5))

    buckets = client.get("/api/v1/coins/matic-network/history").get_json()["buckets"]

    assert buckets[-2]["close"] == 0.45


def test_stats_by_default_equal_deviation_exactly(client, repo, view):
    prices = [40000 + (i * 7919) % 5000 + i / 7 for i in range(130)]
    store(repo, "bitcoin", prices, T0 - timedelta(minutes=15 * 130))
    view.refresh()

    stats = client.get("/api/v1/coins/bitcoin/stats").get_json()
    explicit = client.get("/api/v1/coins/bitcoin/stats?window=100&estimator=population&on=price").get_json()

    assert stats == explicit
    assert stats["n"] == 100
    assert stats["sd"] == client.get("/deviation?coin=bitcoin").get_json()["deviation"]
    assert stats["to"] == (T0 - timedelta(minutes=15)).isoformat()


def test_a_time_window_covers_the_records_inside_it(client, repo):
    store(repo, "bitcoin", [1.0] * 10, T0 - timedelta(days=3), step=timedelta(hours=1))  # outside 24h
    inside = store(repo, "bitcoin", [100.0, 110.0, 121.0], T0 - timedelta(hours=2), step=timedelta(hours=1))

    body = client.get("/api/v1/coins/bitcoin/stats?window=24h&on=log_return&estimator=sample").get_json()

    assert body["n"] == 2  # two returns between three records
    assert body["from"] == inside[0].observed_at.isoformat() and body["to"] == inside[-1].observed_at.isoformat()
    assert body["mean"] == pytest.approx(0.0953101798, rel=1e-9)  # ln(1.1) both times
    assert body["sd"] == pytest.approx(0.0, abs=1e-12)
    assert body["change_pct"] == pytest.approx(21.0)
    assert body["volatility_annualized"] == pytest.approx(0.0, abs=1e-9)


def test_stats_of_a_coin_without_records_are_empty(client):
    body = client.get("/api/v1/coins/ethereum/stats?window=7d").get_json()
    assert body["n"] == 0 and body["sd"] is None


@pytest.mark.parametrize("path, parameter", [
    ("history?interval=5m", "interval"),
    ("history?interval=1w", "interval"),
    ("history?currency=eur", "currency"),
    ("history?from=yesterday", "from"),
    ("history?to=2026-02-30", "to"),
    ("history?from=2026-11-25T12:00:00Z&to=2026-11-25T00:00:00Z", "from"),
    ("history?from=2026-01-01&to=2026-11-25&interval=1h", "interval"),
    ("history?format=xml", "format"),
    ("history?from=%00", "from"),
    ("history?to=9999-12-31T23:59:59Z&from=9999-12-31T00:00:00Z", "to"),
    ("stats?window=1", "window"),
    ("stats?window=1y", "window"),
    ("stats?estimator=median", "estimator"),
    ("stats?on=volume", "on"),
    ("stats?currency=eur", "currency"),
    ("stats?currency=%F0%9F%92%A5", "currency"),
])
def test_bad_parameters_are_400_naming_the_parameter(client, path, parameter):
    response = client.get(f"/api/v1/coins/bitcoin/{path}")

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_query"
    assert error["details"]["parameter"] == parameter
    assert parameter in error["message"]


def test_a_bad_choice_lists_the_allowed_values(client):
    error = client.get("/api/v1/coins/bitcoin/history?interval=5m").get_json()["error"]
    assert error["details"]["allowed"] == ["15m", "1h", "4h", "1d"] and "15m, 1h, 4h, 1d" in error["message"]


def test_over_the_bucket_limit_names_it(client):
    error = client.get("/api/v1/coins/bitcoin/history?from=2026-01-01&to=2026-11-25&interval=1h").get_json()["error"]
    assert error["details"]["limit"] == 2000 and "2000" in error["message"]


@pytest.mark.parametrize("route", ["history", "stats"])
def test_an_untracked_coin_is_404_naming_the_tracked_ones(client, route):
    response = client.get(f"/api/v1/coins/dogecoin/{route}")
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["code"] == "unknown_coin" and "bitcoin, ethereum, matic-network" in error["message"]


def test_coin_ids_are_case_insensitive(client, repo):
    store(repo, "bitcoin", [100.0], T0 - timedelta(minutes=5))
    assert client.get("/api/v1/coins/Bitcoin/stats").get_json()["n"] == 1


@pytest.mark.parametrize("route", ["history", "stats"])
def test_a_store_that_is_down_is_503_without_its_details(settings, bus, clock, route, caplog):
    repo = InMemoryPriceRepository()
    repo.fail_with = StorageUnavailable("SQLite read failed: database is locked at /srv/secret/prices.db")
    app = create_app(services=bootstrap(settings, repo=repo, source=FakePriceSource(), bus=bus, clock=clock),
                     background=False)

    response = app.test_client().get(f"/api/v1/coins/bitcoin/{route}")

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "storage_unavailable"
    assert "/srv/secret" not in response.get_data(as_text=True)
    assert "storage_unavailable" in caplog.text and "/srv/secret" not in caplog.text


PARAMETER_VALUES = st.one_of(
    st.sampled_from(["15m", "1d", "100", "24h", "sample", "log_return", "csv", "usd", "1795608000", "-1",
                     "2026-11-25", "0001-01-01", "9999-12-31T23:59:59-23:59", "-62135596801", "1e308", "nan"]),
    st.text(max_size=30), st.integers().map(str), st.floats().map(str))
QUERIES = st.dictionaries(st.sampled_from(["from", "to", "interval", "currency", "format", "window", "estimator",
                                           "on"]), PARAMETER_VALUES, max_size=5)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path_factory.mktemp("coins-fuzz"))})
    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    store(repo, "bitcoin", [40000.0 + i for i in range(200)], T0 - timedelta(days=2))
    return create_app(services=bootstrap(settings, repo=repo, source=FakePriceSource(), bus=FakeBus(),
                                         clock=FakeClock()), background=False).test_client()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(route=st.sampled_from(["history", "stats"]), query=QUERIES)
def test_no_parameter_value_gives_a_500(fuzz_client, route, query):
    response = fuzz_client.get(f"/api/v1/coins/bitcoin/{route}", query_string=query)

    assert response.status_code in (200, 400), (query, response.get_data(as_text=True))
    if response.status_code == 400:
        error = response.get_json()["error"]
        # Each error names a parameter that was sent, or the bucket limit that the default interval broke.
        assert error["code"] == "invalid_query"
        assert error["details"]["parameter"] in query or error["details"].get("limit") == 2000
