"""CoinGecko's catalogue, cached in the store (refreshed at most daily, one copy for every process), and the start-up
check of COINS and VS_CURRENCIES against it: an unknown value would make every update fail with "no valid price"
and name nothing."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Callable

from app.domain.coins import Catalog
from app.domain.errors import ConfigError, StorageUnavailable, UpstreamError
from app.domain.model import TrackedCoins
from app.ports import CatalogFetcher, CatalogSource, CoinRegistry

log = logging.getLogger(__name__)

# /coins/list is cached 5 min by CoinGecko, but ids come and go over months (coingecko.md §4, §5).
MAX_AGE = timedelta(days=1)


class StoredCatalog:
    """CoinGecko's catalogue from `registry` (the store) while under MAX_AGE old, else fetched by `fetcher` and
    saved there for every process. Thread-safe; keeps the last catalogue read in memory and re-reads it only when
    the store's copy changed (one small read per call).

    `get()` returns the Catalog, or raises the fetcher's UpstreamError when none is stored and CoinGecko gives none
    (a stale stored copy is used instead, with a warning), or the store's StorageUnavailable. `load()` is the
    (ids, vs-currencies) pair of CatalogSource. Idempotent.
    """

    def __init__(self, fetcher: CatalogFetcher, registry: CoinRegistry, clock: Callable[[], datetime]) -> None:
        self.fetcher = fetcher
        self.registry = registry
        self.clock = clock
        self._held: Catalog | None = None
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        with self._lock:
            stored_at = self.registry.catalog_fetched_at()
            if stored_at is not None and (self._held is None or self._held.fetched_at != stored_at):
                self._held = self.registry.load_catalog()
            held = self._held
            if held is not None and timedelta(0) <= self.clock() - held.fetched_at < MAX_AGE:
                return held
            try:
                fresh = self.fetcher.fetch_catalog(self.clock())
            except UpstreamError as exc:
                if held is None:
                    raise
                log.warning("could not refresh CoinGecko's coin list (%s); using the copy of %s", exc.message,
                            held.fetched_at.isoformat())
                return held
            self.registry.save_catalog(fresh)
            self._held = self.registry.load_catalog() or fresh  # as stored (times to the millisecond)
            return self._held

    def peek(self) -> Catalog | None:
        """The stored catalogue however old, without calling CoinGecko (None when none is stored). For answers
        that only decorate (a coin's symbol and name) and must not wait on CoinGecko."""
        with self._lock:
            try:
                stored_at = self.registry.catalog_fetched_at()
                if stored_at is not None and (self._held is None or self._held.fetched_at != stored_at):
                    self._held = self.registry.load_catalog()
            except StorageUnavailable:
                pass  # the copy in memory, if any: decorations must not fail an answer served from memory
            return self._held

    def load(self) -> tuple[set[str], set[str]]:
        catalog = self.get()
        return catalog.ids(), set(catalog.vs_currencies)


def check_tracked(tracked: TrackedCoins, catalog: CatalogSource) -> None:
    """Raise ConfigError naming the variable and its first unknown values when CoinGecko knows them not.

    Coins are checked under the id they are fetched as (matic-network as polygon-ecosystem-token). When the
    catalogue cannot be had (CoinGecko unreachable, rate-limited, answering garbage) it logs one warning and
    returns: the platform must start offline, and the updates then say what is wrong.
    """
    try:
        ids, currencies = catalog.load()
    except UpstreamError as exc:
        log.warning("could not check COINS and VS_CURRENCIES against CoinGecko's lists: %s", exc.message)
        return
    except StorageUnavailable:  # its message may name hosts and paths: the store's own log lines say why
        log.warning("could not check COINS and VS_CURRENCIES against CoinGecko's lists: the store is unreachable")
        return
    unknown_coins = [c if tracked.source_id(c) == c else f"{c} (fetched as {tracked.source_id(c)})"
                     for c in tracked.public_ids if tracked.source_id(c) not in ids]
    if unknown_coins:
        raise ConfigError("COINS", f"{', '.join(unknown_coins)}: not a CoinGecko coin id (see GET /coins/list; "
                                   f"ids look like bitcoin, ethereum)")
    unknown_currencies = [c for c in tracked.vs_currencies if c not in currencies]
    if unknown_currencies:
        raise ConfigError("VS_CURRENCIES", f"{', '.join(unknown_currencies)}: not a currency CoinGecko supports "
                                           f"(see GET /simple/supported_vs_currencies; e.g. usd, eur)")
