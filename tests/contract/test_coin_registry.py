"""The CoinRegistry contract (the store's coin tables: CoinGecko's catalogue, the tracked set), written once and run
against every store: memory, SQLite, mongomock and a real MongoDB-wire server when MONGODB_TEST_URI is set."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.coins import Catalog, CatalogEntry
from app.storage import make_coin_registry
from tests.fakes import T0

ENTRIES = (CatalogEntry("bitcoin", "btc", "Bitcoin"), CatalogEntry("ethereum", "eth", "Ethereum"),
           CatalogEntry("ethereum-wormhole", "eth", "Ethereum (Wormhole)"),
           CatalogEntry("polygon-ecosystem-token", "pol", "POL (ex-MATIC)"))


@pytest.fixture
def registry(backend):
    registry = make_coin_registry(backend.repo)
    registry.ensure_schema()
    return registry


def test_no_catalogue_is_stored_at_first(registry):
    assert registry.catalog_fetched_at() is None
    assert registry.load_catalog() is None


def test_a_saved_catalogue_reads_back_whole(registry):
    catalog = Catalog(ENTRIES, frozenset({"usd", "eur"}), T0)

    registry.save_catalog(catalog)

    assert registry.catalog_fetched_at() == T0
    assert registry.load_catalog() == catalog


def test_saving_a_catalogue_replaces_the_previous_one(registry):
    registry.save_catalog(Catalog(ENTRIES, frozenset({"usd"}), T0))
    newer = Catalog(ENTRIES[:1] + (CatalogEntry("solana", "sol", "Solana"),), frozenset({"usd", "jpy"}),
                    T0 + timedelta(days=1))

    registry.save_catalog(newer)

    assert registry.load_catalog() == newer
    assert registry.catalog_fetched_at() == newer.fetched_at


def test_a_catalogue_of_coingeckos_size_round_trips(registry):
    # ~17k coins in the real /coins/list (coingecko.md §2): one value of about 1 MB.
    entries = tuple(CatalogEntry(f"coin-{i}", f"c{i % 500}", f"Coin number {i}") for i in range(17_000))

    registry.save_catalog(Catalog(entries, frozenset({"usd"}), T0))

    assert registry.load_catalog().entries == entries


def test_the_tracked_set_is_empty_until_seeded(registry):
    assert registry.tracked_coins() == []


def test_seeding_stores_the_initial_set_in_its_order_once(registry):
    assert registry.seed_tracked(["bitcoin", "ethereum", "matic-network"]) is True
    assert registry.seed_tracked(["dogecoin"]) is False

    assert registry.tracked_coins() == ["bitcoin", "ethereum", "matic-network"]


def test_a_tracked_coin_is_added_after_the_others_once(registry):
    registry.seed_tracked(["bitcoin", "ethereum"])

    assert registry.track("solana") is True
    assert registry.track("solana") is False
    assert registry.track("tether") is True

    assert registry.tracked_coins() == ["bitcoin", "ethereum", "solana", "tether"]


def test_an_untracked_coin_is_gone_and_untracking_again_changes_nothing(registry):
    registry.seed_tracked(["bitcoin", "ethereum", "solana"])

    assert registry.untrack("ethereum") is True
    assert registry.untrack("ethereum") is False
    assert registry.untrack("never-tracked") is False

    assert registry.tracked_coins() == ["bitcoin", "solana"]


def test_a_coin_tracked_again_comes_last(registry):
    registry.seed_tracked(["bitcoin", "ethereum"])
    registry.untrack("bitcoin")

    registry.track("bitcoin")

    assert registry.tracked_coins() == ["ethereum", "bitcoin"]


def test_the_coin_tables_leave_the_price_records_alone(registry, repo):
    registry.seed_tracked(["bitcoin"])
    registry.save_catalog(Catalog(ENTRIES, frozenset({"usd"}), T0))

    assert repo.count() == 0
