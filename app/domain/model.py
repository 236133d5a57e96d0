"""Domain model: one price observation, and the set of coins the platform tracks (with CoinGecko id aliases)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from app.domain.errors import UnknownCoin, UnknownCurrency

# CoinGecko deprecated `matic-network` when MATIC migrated to POL; it returns no price for it any more, while POL's id
# is `polygon-ecosystem-token` (shared/reference/coingecko.md §5). A public id on the left is fetched and stored as
# the CoinGecko id on the right, and answered from that id's records.
COIN_ALIASES: dict[str, str] = {"matic-network": "polygon-ecosystem-token"}

# Where a record came from: our own schedule, or CoinGecko's history fetched afterwards (app.services.backfill).
# /stats and /deviation read polled records only, so a backfill never changes what they answer.
SOURCE_POLL = "poll"
SOURCE_BACKFILL = "backfill"
SOURCES = (SOURCE_POLL, SOURCE_BACKFILL)


@dataclass(frozen=True, slots=True)
class Observation:
    """One price of one coin in one vs-currency, as CoinGecko last updated it.

    `observed_at` is CoinGecko's `last_updated_at` (UTC); with (coin, vs_currency) it is the record's unique key, so
    fetching the same CoinGecko value twice stores it once. `fetched_at` is when we asked. Optional figures are None
    when CoinGecko gave none (or gave 0 for a market cap, which it uses for "unknown"). `source` is SOURCE_POLL
    (our schedule) or SOURCE_BACKFILL (CoinGecko's history).
    """

    coin: str
    vs_currency: str
    price: float
    market_cap: float | None
    volume_24h: float | None
    change_24h: float | None
    observed_at: datetime
    fetched_at: datetime
    source: str = SOURCE_POLL

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.coin, self.vs_currency, self.observed_at)


@dataclass(frozen=True)
class TrackedCoins:
    """The coins users may ask for (public ids) and the CoinGecko ids they are fetched and stored as."""

    public_ids: tuple[str, ...]
    vs_currencies: tuple[str, ...] = ("usd",)
    aliases: dict[str, str] = field(default_factory=lambda: dict(COIN_ALIASES))

    def source_id(self, public_id: str) -> str:
        return self.aliases.get(public_id, public_id)

    def source_ids(self) -> tuple[str, ...]:
        """CoinGecko ids to fetch, deduplicated, in configuration order."""
        return tuple(dict.fromkeys(self.source_id(c) for c in self.public_ids))

    def aliased(self) -> dict[str, str]:
        """The configured public ids that are fetched under another id."""
        return {c: self.source_id(c) for c in self.public_ids if self.source_id(c) != c}

    def resolve(self, coin: str) -> str:
        """Map a coin asked for to the CoinGecko id its records are stored under.

        Accepts a tracked public id or the id it is an alias of. Raises UnknownCoin naming the tracked coins.
        """
        if coin in self.public_ids:
            return self.source_id(coin)
        if coin in self.source_ids():
            return coin
        raise UnknownCoin(
            f"coin {coin!r} is not tracked; tracked coins: {', '.join(self.public_ids)}",
            details={"coin": coin, "tracked": list(self.public_ids)},
        )

    def resolve_currency(self, vs_currency: str | None) -> str:
        """The vs-currency asked for, or the default (the first configured). Raises UnknownCurrency."""
        if vs_currency is None:
            return self.vs_currencies[0]
        if vs_currency not in self.vs_currencies:
            raise UnknownCurrency(
                f"currency {vs_currency!r} is not tracked; tracked currencies: {', '.join(self.vs_currencies)}",
                details={"currency": vs_currency, "tracked": list(self.vs_currencies)},
            )
        return vs_currency

    def with_coins(self, public_ids: Iterable[str]) -> "TrackedCoins":
        """The same currencies and aliases over another set of public ids (the tracked set changed at run time)."""
        return TrackedCoins(tuple(dict.fromkeys(public_ids)), self.vs_currencies, dict(self.aliases))

    def aliases_of(self, public_id: str) -> list[dict[str, object]]:
        """The other ids a tracked coin answers to, each marked deprecated when it is the old id of a coin that
        CoinGecko renamed (every entry of COIN_ALIASES is: matic-network is POL's former id)."""
        source = self.source_id(public_id)
        found = [{"id": old, "fetched_as": new, "deprecated": True} for old, new in self.aliases.items()
                 if new == source and old != public_id]
        if source != public_id:
            found.insert(0, {"id": public_id, "fetched_as": source, "deprecated": True})
        return found

    def pairs(self) -> Iterable[tuple[str, str]]:
        for coin in self.source_ids():
            for vs in self.vs_currencies:
                yield coin, vs
