"""COINS and VS_CURRENCIES checked against CoinGecko's catalogue: what is unknown is named with its variable."""
from __future__ import annotations

import logging

import pytest

from app.config import Settings
from app.domain.errors import ConfigError, UpstreamUnavailable
from app.services.catalog import check_tracked
from app.services.catalog import StoredCatalog
from app.storage.registry import SqliteCoinRegistry
from app.storage.sqlite import SqlitePriceRepository
from app.upstream.catalog import CoinGeckoCatalog
from app.upstream.coingecko import CoinGeckoClient
from tests.fakes import FakeClock


class FakeCatalog:
    def __init__(self, ids=("bitcoin", "ethereum", "polygon-ecosystem-token"), currencies=("usd", "eur"),
                 error: Exception | None = None) -> None:
        self.ids, self.currencies, self.error = set(ids), set(currencies), error

    def load(self):
        if self.error:
            raise self.error
        return self.ids, self.currencies


def tracked(**env):
    return Settings.from_env(env).tracked


def test_known_values_pass():
    check_tracked(tracked(VS_CURRENCIES="usd,eur"), FakeCatalog())


def test_an_unknown_coin_is_named_with_its_variable():
    with pytest.raises(ConfigError) as err:
        check_tracked(tracked(COINS="bitcoin,notacoin"), FakeCatalog())
    assert err.value.variable == "COINS"
    assert err.value.message.startswith("COINS: notacoin: not a CoinGecko coin id")


def test_an_alias_is_checked_under_the_id_it_is_fetched_as():
    with pytest.raises(ConfigError) as err:
        check_tracked(tracked(), FakeCatalog(ids={"bitcoin", "ethereum", "matic-network"}))
    assert "matic-network (fetched as polygon-ecosystem-token)" in err.value.message


def test_an_unknown_currency_is_named_with_its_variable():
    with pytest.raises(ConfigError) as err:
        check_tracked(tracked(VS_CURRENCIES="usd,xyz"), FakeCatalog())
    assert err.value.variable == "VS_CURRENCIES"
    assert err.value.message.startswith("VS_CURRENCIES: xyz: not a currency CoinGecko supports")


def test_coingecko_unreachable_starts_anyway_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        check_tracked(tracked(COINS="notacoin"), FakeCatalog(error=UpstreamUnavailable("CoinGecko unreachable")))
    assert [r.message for r in caplog.records] == [
        "could not check COINS and VS_CURRENCIES against CoinGecko's lists: CoinGecko unreachable"]


def stored_catalog(fake_coingecko, tmp_path, clock):
    repo = SqlitePriceRepository(tmp_path / "store.sqlite3")
    return StoredCatalog(CoinGeckoCatalog(CoinGeckoClient(fake_coingecko.base_url)), SqliteCoinRegistry(repo), clock)


def test_the_catalogue_is_fetched_once_a_day_and_read_from_the_store_meanwhile(fake_coingecko, tmp_path):
    clock = FakeClock()
    catalog = stored_catalog(fake_coingecko, tmp_path, clock)
    ids, currencies = catalog.load()
    assert {"bitcoin", "polygon-ecosystem-token"} <= ids and "usd" in currencies
    clock.advance(hours=23)
    # Another process (a new StoredCatalog on the same store) reads the stored copy rather than CoinGecko.
    assert stored_catalog(fake_coingecko, tmp_path, clock).load() == (ids, currencies)
    assert fake_coingecko.request_count("/coins/list") == 1
    assert fake_coingecko.request_count("/simple/supported_vs_currencies") == 1
    clock.advance(hours=2)
    catalog.load()
    assert fake_coingecko.request_count("/coins/list") == 2


def test_a_coin_added_upstream_is_known_once_the_cache_expires(fake_coingecko, tmp_path):
    clock = FakeClock()
    catalog = stored_catalog(fake_coingecko, tmp_path, clock)
    assert "newcoin" not in catalog.load()[0]
    fake_coingecko.set_price("newcoin", 1.0)
    clock.advance(days=1, seconds=1)
    assert "newcoin" in catalog.load()[0]


def test_coingecko_down_serves_the_stale_copy_rather_than_failing(fake_coingecko, tmp_path):
    clock = FakeClock()
    catalog = stored_catalog(fake_coingecko, tmp_path, clock)
    ids, _ = catalog.load()
    fake_coingecko.set_down()
    clock.advance(days=2)
    assert catalog.load()[0] == ids
