"""Data API v1 coins over the Flask test client on SQLite: GET /api/v1/coins[/{id}], /api/v1/search, and tracking
at run time with POST/DELETE /api/v1/coins behind ADMIN_TOKEN (the tracked set in the store)."""
from __future__ import annotations

import threading

import pytest

from app.api import create_app, extensions
from app.bootstrap import bootstrap
from app.bus.redis import parse_event
from app.config import Settings
from app.domain.coins import Catalog, CatalogEntry
from app.services.reporting import keep_fresh
from app.storage.registry import SqliteCoinRegistry
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import T0, FakeBus, FakeClock, FakePriceSource, obs
from tests.procs import wait_until

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CATALOG = Catalog((
    CatalogEntry("bitcoin", "btc", "Bitcoin"), CatalogEntry("ethereum", "eth", "Ethereum"),
    CatalogEntry("ethereum-wormhole", "eth", "Ethereum (Wormhole)"), CatalogEntry("solana", "sol", "Solana"),
    CatalogEntry("matic-network", "matic", "Polygon"),
    CatalogEntry("polygon-ecosystem-token", "pol", "POL (ex-MATIC)"),
), frozenset({"usd", "eur"}), T0)


def make_app(tmp_path, bus=None, **env):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path / "data"), "VS_CURRENCIES": "usd,eur", **env})
    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    services = bootstrap(settings, repo=repo, source=FakePriceSource(), bus=bus or FakeBus(), clock=FakeClock())
    services.registry.save_catalog(CATALOG)  # as fetched today: nothing here calls CoinGecko
    app = create_app(services=services, background=False)
    extensions.view(app).refresh()  # what the listener does first at start
    return app


@pytest.fixture
def bus():
    return FakeBus()


@pytest.fixture
def admin_app(tmp_path, bus):
    return make_app(tmp_path, bus, ADMIN_TOKEN=TOKEN)


@pytest.fixture
def admin(admin_app):
    return admin_app.test_client()


def test_every_tracked_coin_is_listed_with_who_it_is_and_its_latest_figures(admin, admin_app):
    extensions.services(admin_app).repo.add_batch([obs("bitcoin", 40000.0), obs("polygon-ecosystem-token", 0.45)])
    extensions.view(admin_app).refresh()

    response = admin.get("/api/v1/coins")

    assert response.status_code == 200
    coins = response.get_json()["coins"]
    assert [c["id"] for c in coins] == ["bitcoin", "ethereum", "matic-network"]
    bitcoin, ethereum, matic = coins
    assert (bitcoin["symbol"], bitcoin["name"], bitcoin["aliases"], bitcoin["currencies"]) == (
        "btc", "Bitcoin", [], ["usd", "eur"])
    assert (bitcoin["price"], bitcoin["market_cap"], bitcoin["volume_24h"], bitcoin["change_24h"]) == (
        40000.0, 800000000.0, 1000000.0, 3.4)
    assert bitcoin["observed_at"] == T0.isoformat() and bitcoin["fetched_at"] == T0.isoformat()
    assert bitcoin["stale"] is False and bitcoin["error"] is None
    # matic-network is POL's former id: described as POL, its old id marked deprecated, POL's figures.
    assert (matic["symbol"], matic["name"], matic["price"]) == ("pol", "POL (ex-MATIC)", 0.45)
    assert matic["aliases"] == [{"id": "matic-network", "fetched_as": "polygon-ecosystem-token", "deprecated": True}]
    assert ethereum["price"] is None and ethereum["error"]["code"] == "no_data"


def test_one_coin_has_the_same_fields_in_the_currency_asked(admin, admin_app):
    extensions.services(admin_app).repo.add_batch([obs("bitcoin", 36800.0, vs="eur")])
    extensions.view(admin_app).refresh()

    response = admin.get("/api/v1/coins/bitcoin?currency=eur")

    assert response.status_code == 200
    body = response.get_json()
    listed = next(c for c in admin.get("/api/v1/coins?currency=eur").get_json()["coins"] if c["id"] == "bitcoin")
    assert body == listed
    assert (body["currency"], body["price"]) == ("eur", 36800.0)


def test_one_coin_by_its_fetched_id_answers_as_the_tracked_one(admin):
    body = admin.get("/api/v1/coins/polygon-ecosystem-token").get_json()

    assert body["id"] == "matic-network" and body["symbol"] == "pol"


@pytest.mark.parametrize("path, status, code", [
    ("/api/v1/coins/dogecoin", 404, "unknown_coin"),
    ("/api/v1/coins/bitcoin?currency=xyz", 400, "invalid_query"),
    ("/api/v1/search", 400, "invalid_query"),
    ("/api/v1/search?q=" + "x" * 101, 400, "invalid_query"),
])
def test_bad_reads_answer_the_one_error_shape(admin, path, status, code):
    response = admin.get(path)

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_search_puts_the_exact_id_first(admin):
    response = admin.get("/api/v1/search?q=solana")

    assert response.status_code == 200
    body = response.get_json()
    assert body["candidates"][0] == {"id": "solana", "symbol": "sol", "name": "Solana", "match": "id"}
    assert body["ambiguous"] is False


def test_search_for_a_shared_symbol_returns_every_coin_and_says_it_is_ambiguous(admin):
    body = admin.get("/api/v1/search?q=eth").get_json()

    assert [c["id"] for c in body["candidates"]] == ["ethereum", "ethereum-wormhole"]
    assert body["ambiguous"] is True


def test_tracking_a_coin_lists_it_and_announces_it(admin, bus):
    response = admin.post("/api/v1/coins", json={"id": "solana"}, headers=AUTH)

    assert response.status_code == 201
    assert response.get_json() == {"id": "solana", "symbol": "sol", "name": "Solana", "aliases": [],
                                   "currencies": ["usd", "eur"], "tracked": True}
    listed = admin.get("/api/v1/coins").get_json()["coins"]
    assert [c["id"] for c in listed] == ["bitcoin", "ethereum", "matic-network", "solana"]
    assert listed[-1]["error"]["code"] == "no_data"  # until the next update fetches it
    event = bus.events[-1]
    assert (event["event"], event["action"], event["coin"]) == ("tracked", "added", "solana")
    assert parse_event(__import__("json").dumps(event)) is not None  # the bus's own schema accepts it


def test_tracking_a_coin_twice_changes_nothing(admin, bus):
    admin.post("/api/v1/coins", json={"id": "solana"}, headers=AUTH)
    published = len(bus.events)

    response = admin.post("/api/v1/coins", json={"id": "solana"}, headers=AUTH)

    assert response.status_code == 200 and response.get_json()["tracked"] is True
    assert len(bus.events) == published
    assert [c["id"] for c in admin.get("/api/v1/coins").get_json()["coins"]].count("solana") == 1


def test_an_unknown_id_is_refused_with_the_closest_candidates(admin):
    response = admin.post("/api/v1/coins", json={"id": "solanna"}, headers=AUTH)

    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["code"] == "unknown_coin"
    assert error["details"]["candidates"][0] == {"id": "solana", "symbol": "sol", "name": "Solana"}


@pytest.mark.parametrize("kwargs", [
    {"data": "not json", "content_type": "application/json"},
    {"data": "{\"id\": ", "content_type": "application/json"},
    {"data": "id=solana", "content_type": "application/x-www-form-urlencoded"},
    {"json": ["solana"]}, {"json": "solana"}, {"json": {"id": 42}}, {"json": {"id": None}}, {"json": {}},
    {"json": {"id": "../etc/passwd"}}, {"data": b"\xff\xfe", "content_type": "application/json"},
])
def test_a_body_that_is_not_an_id_object_is_400_in_the_one_shape(admin, kwargs):
    response = admin.post("/api/v1/coins", headers=AUTH, **kwargs)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_body"


def test_untracking_a_coin_removes_it_and_announces_it(admin, bus):
    response = admin.delete("/api/v1/coins/ethereum", headers=AUTH)

    assert response.status_code == 200 and response.get_json() == {"id": "ethereum", "tracked": False}
    assert [c["id"] for c in admin.get("/api/v1/coins").get_json()["coins"]] == ["bitcoin", "matic-network"]
    assert admin.get("/api/v1/coins/ethereum").status_code == 404
    assert admin.get("/stats?coin=ethereum").status_code == 404
    assert (bus.events[-1]["event"], bus.events[-1]["action"]) == ("tracked", "removed")


def test_untracking_an_untracked_coin_is_404_and_the_last_coin_stays(admin):
    assert admin.delete("/api/v1/coins/solana", headers=AUTH).status_code == 404
    admin.delete("/api/v1/coins/ethereum", headers=AUTH)
    admin.delete("/api/v1/coins/matic-network", headers=AUTH)

    response = admin.delete("/api/v1/coins/bitcoin", headers=AUTH)

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "tracking_conflict"
    assert [c["id"] for c in admin.get("/api/v1/coins").get_json()["coins"]] == ["bitcoin"]


def test_the_tracked_set_survives_a_restart(tmp_path, admin):
    admin.post("/api/v1/coins", json={"id": "solana"}, headers=AUTH)
    admin.delete("/api/v1/coins/ethereum", headers=AUTH)

    restarted = make_app(tmp_path, ADMIN_TOKEN=TOKEN).test_client()

    assert [c["id"] for c in restarted.get("/api/v1/coins").get_json()["coins"]] == [
        "bitcoin", "matic-network", "solana"]


def test_coins_stays_only_the_initial_set(tmp_path):
    make_app(tmp_path, ADMIN_TOKEN=TOKEN).test_client().post("/api/v1/coins", json={"id": "solana"}, headers=AUTH)

    restarted = make_app(tmp_path, COINS="bitcoin").test_client()  # the store's set wins over a changed COINS

    assert [c["id"] for c in restarted.get("/api/v1/coins").get_json()["coins"]] == [
        "bitcoin", "ethereum", "matic-network", "solana"]


def test_another_web_process_learns_of_a_change_from_the_event(tmp_path, bus):
    app = make_app(tmp_path, bus, ADMIN_TOKEN=TOKEN)
    view = extensions.view(app)
    stop = threading.Event()
    thread = threading.Thread(target=keep_fresh, args=(view, bus, 3600, stop), kwargs={"poll_timeout": 0.01})
    thread.start()
    try:
        wait_until(lambda: view.loaded, 5, what="first refresh")
        # Another web process tracks solana: the store changes, then its event arrives here.
        other = SqliteCoinRegistry(SqlitePriceRepository(tmp_path / "data" / "cryptostats.sqlite3"))
        other.track("solana")
        bus.publish({"event": "tracked", "action": "added", "coin": "solana",
                     "coins": other.tracked_coins(), "at": T0.isoformat()})
        wait_until(lambda: "solana" in view.tracked.public_ids, 5, what="reload on the tracked event")
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.parametrize("method, path, kwargs", [("post", "/api/v1/coins", {"json": {"id": "solana"}}),
                                                  ("delete", "/api/v1/coins/ethereum", {})])
def test_without_admin_token_configured_the_admin_routes_answer_403_saying_so(tmp_path, method, path, kwargs):
    client = make_app(tmp_path).test_client()

    response = getattr(client, method)(path, headers=AUTH, **kwargs)

    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "admin_forbidden" and "ADMIN_TOKEN is not configured" in error["message"]


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "admin_token_missing"), ({"Authorization": TOKEN}, 401, "admin_token_missing"),
    ({"Authorization": "Bearer not-the-token"}, 403, "admin_forbidden"),
])
@pytest.mark.parametrize("method, path", [("post", "/api/v1/coins"), ("delete", "/api/v1/coins/ethereum")])
def test_a_missing_or_wrong_token_changes_nothing(admin, headers, status, code, method, path):
    response = getattr(admin, method)(path, json={"id": "solana"}, headers=headers)

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert TOKEN not in response.get_data(as_text=True)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert [c["id"] for c in admin.get("/api/v1/coins").get_json()["coins"]] == [
        "bitcoin", "ethereum", "matic-network"]


def test_the_admin_routes_get_no_cors_while_the_reads_beside_them_do(admin):
    origin = {"Origin": "https://dash.example.com"}

    assert admin.get("/api/v1/coins/bitcoin", headers=origin).headers.get("Access-Control-Allow-Origin") == "*"
    assert admin.get("/api/v1/search?q=btc", headers=origin).headers.get("Access-Control-Allow-Origin") == "*"
    posted = admin.post("/api/v1/coins", json={"id": "solana"}, headers={**AUTH, **origin})
    deleted = admin.delete("/api/v1/coins/solana", headers={**AUTH, **origin})
    preflight = admin.options("/api/v1/coins", headers={**origin, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "authorization"})
    for response in (posted, deleted, preflight):
        assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]
