"""CoinGecko's catalogue (every coin's id, symbol and name; every vs-currency), fetched on request. Caching it is the
store's job (app.services.catalog), so every process reads the same copy. Implements CatalogFetcher."""
from __future__ import annotations

from datetime import datetime

from app.domain.coins import Catalog, CatalogEntry
from app.domain.errors import UpstreamBadResponse
from app.upstream.coingecko import CoinGeckoClient


class CoinGeckoCatalog:
    """`fetch_catalog()`: two requests, GET /coins/list (~17k coins in one unpaginated answer, coingecko.md §2) and
    GET /simple/supported_vs_currencies. Raises the client's UpstreamError (unreachable, 429, 5xx, HTML) or
    UpstreamBadResponse for a body that is not the lists CoinGecko documents."""

    def __init__(self, client: CoinGeckoClient) -> None:
        self.client = client

    def fetch_catalog(self, fetched_at: datetime) -> Catalog:
        coins = self.client.get_json("/coins/list")
        currencies = self.client.get_json("/simple/supported_vs_currencies")
        if not isinstance(coins, list) or not all(
                isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("id", "symbol", "name"))
                for c in coins):
            raise UpstreamBadResponse("CoinGecko's /coins/list is not a list of coins")
        if not isinstance(currencies, list) or not all(isinstance(c, str) for c in currencies):
            raise UpstreamBadResponse("CoinGecko's /simple/supported_vs_currencies is not a list of codes")
        entries = {c["id"]: CatalogEntry(c["id"], c["symbol"], c["name"]) for c in coins}
        return Catalog(tuple(entries.values()), frozenset(c.lower() for c in currencies), fetched_at)

    def close(self) -> None:
        self.client.close()
