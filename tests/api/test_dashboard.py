"""The dashboard at `/` (its assets all served by the app) and the list it reads, GET /api/v1/coins."""
import re
from datetime import timedelta

from tests.fakes import T0, obs


def test_dashboard_page_loads_only_assets_of_this_server(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert set(assets) == {"/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/uPlot.min.css",
                           "/static/dashboard.js", "/static/dashboard.css"}
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_vendored_libraries_carry_their_license_and_provenance(client):
    for path in ("/static/vendor/uplot/LICENSE", "/static/vendor/swagger-ui/LICENSE",
                 "/static/vendor/VENDORED.md"):
        assert client.get(path).status_code == 200, path
    note = client.get("/static/vendor/VENDORED.md").get_data(as_text=True)
    assert "1.6.32" in note and "5.35.0" in note and note.count("sha512-") == 2


def test_coins_list_has_every_tracked_coin_with_its_figures_and_freshness(client, repo, view, clock):
    repo.add_batch([obs("bitcoin", p, T0 - timedelta(minutes=15 * (2 - i))) for i, p in enumerate([40000, 45000,
                                                                                                     50000])])
    view.refresh()
    clock.advance(minutes=5)

    response = client.get("/api/v1/coins")

    assert response.status_code == 200
    body = response.get_json()
    assert body["currency"] == "usd"
    assert [c["coin"] for c in body["coins"]] == ["bitcoin", "ethereum", "matic-network"]
    bitcoin = body["coins"][0]
    assert bitcoin == {"coin": "bitcoin", "currency": "usd", "price": 50000.0, "market_cap": 800000000.0,
                       "change_24h": 3.4, "deviation": 4082.48, "observed_at": T0.isoformat(),
                       "fetched_at": T0.isoformat(), "stale": False, "error": None,
                       # Data API v1's coin fields (no catalogue cached in this test: no symbol nor name)
                       "id": "bitcoin", "symbol": None, "name": None, "aliases": [], "currencies": ["usd"],
                       "volume_24h": 1000000.0}
    ethereum = body["coins"][1]
    assert ethereum["price"] is None and ethereum["stale"] is None
    assert ethereum["error"]["code"] == "no_data" and "pending" in ethereum["error"]["message"]


def test_coins_list_marks_stale_data(client, repo, view, clock):
    repo.add_batch([obs("bitcoin", 40000, T0)])
    view.refresh()
    clock.advance(minutes=31)  # more than two 15-minute intervals

    assert client.get("/api/v1/coins").get_json()["coins"][0]["stale"] is True


def test_coins_list_with_an_untracked_currency_is_a_bad_parameter(client):
    response = client.get("/api/v1/coins?currency=eur")

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_query"
    assert error["details"] == {"parameter": "currency", "value": "eur", "allowed": ["usd"]}
