"""Search over CoinGecko's catalogue (exact id first, every coin of a shared symbol, never a guess), the closest
ids to an unknown one, the aliases a tracked coin answers to, and the admin token check."""
from __future__ import annotations

import pytest

from app.config import Settings
from app.domain.coins import Catalog, CatalogEntry
from app.domain.errors import AdminForbidden, AdminTokenMissing, InvalidBody
from app.services.tracking import check_admin, coin_id_from_body
from tests.fakes import T0

CATALOG = Catalog((
    CatalogEntry("bitcoin", "btc", "Bitcoin"), CatalogEntry("ethereum", "eth", "Ethereum"),
    CatalogEntry("ethereum-wormhole", "eth", "Ethereum (Wormhole)"), CatalogEntry("eth", "eth", "Eth Token"),
    CatalogEntry("ethereum-classic", "etc", "Ethereum Classic"), CatalogEntry("solana", "sol", "Solana"),
    CatalogEntry("polygon-ecosystem-token", "pol", "POL (ex-MATIC)"),
), frozenset({"usd"}), T0)
TOKEN = "s3cret-admin-token-0123"


def ids(result):
    return [c["id"] for c in result["candidates"]]


def test_an_exact_id_comes_first_and_is_not_ambiguous():
    result = CATALOG.search("eth")

    assert ids(result)[0] == "eth" and result["candidates"][0]["match"] == "id"
    assert result["ambiguous"] is False


def test_a_symbol_shared_by_several_coins_returns_all_of_them_as_ambiguous():
    catalog = Catalog(tuple(e for e in CATALOG.entries if e.id != "eth"), CATALOG.vs_currencies, T0)

    result = catalog.search("ETH")

    assert ids(result)[:2] == ["ethereum", "ethereum-wormhole"]
    assert {c["match"] for c in result["candidates"][:2]} == {"symbol"}
    assert result["ambiguous"] is True


def test_a_unique_symbol_or_name_finds_its_coin():
    assert ids(CATALOG.search("sol")) == ["solana"] and CATALOG.search("sol")["ambiguous"] is False
    assert ids(CATALOG.search("pol (ex-matic)")) == ["polygon-ecosystem-token"]


def test_prefixes_come_after_exact_matches_and_nothing_matches_nothing():
    assert ids(CATALOG.search("ethereum"))[0] == "ethereum"
    assert "ethereum-classic" in ids(CATALOG.search("ethereum"))
    assert CATALOG.search("zzzz") == {"query": "zzzz", "ambiguous": False, "candidates": [], "truncated": False}


def test_the_answer_is_capped_and_says_so():
    big = Catalog(tuple(CatalogEntry(f"coin-{i}", "x", f"Coin {i}") for i in range(60)), frozenset(), T0)

    result = big.search("x")

    assert len(result["candidates"]) == 25 and result["truncated"] is True and result["ambiguous"] is True


def test_the_closest_ids_to_an_unknown_one_are_offered():
    assert [c["id"] for c in CATALOG.closest("solanna")] == ["solana"]
    assert CATALOG.closest("qqqqqqq") == []


def test_matic_network_is_marked_as_the_deprecated_id_it_is():
    tracked = Settings.from_env({}).tracked

    assert tracked.aliases_of("matic-network") == [
        {"id": "matic-network", "fetched_as": "polygon-ecosystem-token", "deprecated": True}]
    assert tracked.aliases_of("bitcoin") == []
    assert tracked.with_coins(["polygon-ecosystem-token"]).aliases_of("polygon-ecosystem-token") == [
        {"id": "matic-network", "fetched_as": "polygon-ecosystem-token", "deprecated": True}]


@pytest.mark.parametrize("header, error", [(None, AdminTokenMissing), ("", AdminTokenMissing),
                                           ("Basic abc", AdminTokenMissing), ("Bearer ", AdminTokenMissing),
                                           ("Bearer wrong-token", AdminForbidden),
                                           (f"Bearer {TOKEN}x", AdminForbidden)])
def test_admin_requests_without_the_right_token_are_refused(header, error):
    with pytest.raises(error):
        check_admin(TOKEN, header)


def test_the_right_token_passes_and_no_configured_token_lets_no_one_in():
    check_admin(TOKEN, f"Bearer {TOKEN}")
    check_admin(TOKEN, f"bearer {TOKEN}")
    with pytest.raises(AdminForbidden, match="ADMIN_TOKEN is not configured"):
        check_admin(None, f"Bearer {TOKEN}")


@pytest.mark.parametrize("body", [None, [], "solana", {"coin": "solana"}, {"id": 3}, {"id": ""},
                                  {"id": "so lana"}, {"id": ["solana"]}, {"id": "x" * 200}])
def test_a_body_that_is_not_an_id_object_is_refused(body):
    with pytest.raises(InvalidBody):
        coin_id_from_body(body)


def test_the_id_of_a_body_is_lower_cased():
    assert coin_id_from_body({"id": " Solana "}) == "solana"


def test_admin_token_shorter_than_16_characters_stops_the_start():
    from app.domain.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Settings.from_env({"ADMIN_TOKEN": "short"})
    assert err.value.variable == "ADMIN_TOKEN"
    assert "short" not in err.value.message  # a secret is never repeated
    assert Settings.from_env({"ADMIN_TOKEN": TOKEN}).admin_token == TOKEN
    assert TOKEN not in repr(Settings.from_env({"ADMIN_TOKEN": TOKEN}))
