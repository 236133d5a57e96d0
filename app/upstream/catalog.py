"""CoinGecko's catalogue (every coin id, every vs-currency), fetched at most daily and cached in a file under
DATA_DIR, so processes can check COINS and VS_CURRENCIES against it at start. Implements CatalogSource."""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from app.domain.errors import UpstreamBadResponse
from app.upstream.coingecko import CoinGeckoClient

# /coins/list is cached 5 min by CoinGecko, but ids come and go over months (coingecko.md §4, §5).
MAX_AGE = timedelta(days=1)


class CachedCoinGeckoCatalog:
    """The id and currency lists of `client`'s CoinGecko, from `cache_file` when it is under a day old.

    `load()` returns (coin ids, vs-currencies) as sets, or raises the UpstreamError of the client (unreachable,
    429, 5xx, HTML) or UpstreamBadResponse for a body that is not the lists CoinGecko documents. Two requests per
    refresh: GET /coins/list (~17k ids, one response, coingecko.md §2) and GET /simple/supported_vs_currencies.
    """

    def __init__(self, client: CoinGeckoClient, cache_file: Path,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.client = client
        self.cache_file = cache_file
        self.clock = clock

    def load(self) -> tuple[set[str], set[str]]:
        cached = self._read_cache()
        if cached is not None:
            return cached
        coins = self.client.get_json("/coins/list")
        currencies = self.client.get_json("/simple/supported_vs_currencies")
        if not isinstance(coins, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in coins):
            raise UpstreamBadResponse("CoinGecko's /coins/list is not a list of coins")
        if not isinstance(currencies, list) or not all(isinstance(c, str) for c in currencies):
            raise UpstreamBadResponse("CoinGecko's /simple/supported_vs_currencies is not a list of codes")
        ids, codes = {c["id"] for c in coins}, {c.lower() for c in currencies}
        self._write_cache(ids, codes)
        return ids, codes

    def _read_cache(self) -> tuple[set[str], set[str]] | None:
        try:
            data: dict[str, Any] = json.loads(self.cache_file.read_text())
            fetched = datetime.fromisoformat(data["fetched_at"])
            if not timedelta(0) <= self.clock() - fetched < MAX_AGE:
                return None
            return set(data["coins"]), set(data["vs_currencies"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, unreadable or stale: fetch again

    def _write_cache(self, ids: set[str], codes: set[str]) -> None:
        tmp = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"fetched_at": self.clock().isoformat(), "coins": sorted(ids),
                                       "vs_currencies": sorted(codes)}))
            os.replace(tmp, self.cache_file)  # atomic: processes starting together read a whole file or none
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only DATA_DIR only costs a fetch next time

    def close(self) -> None:
        self.client.close()
