"""CoinGecko's catalogue of coins (id, symbol, name) and how a query is matched against it: never a guess."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime

SEARCH_LIMIT = 25  # candidates per answer: enough to choose from, small enough to read
CLOSEST_LIMIT = 5  # candidates offered for an unknown id


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One coin of CoinGecko's /coins/list. Symbols are not unique (coingecko.md §2): the id is the key."""

    id: str
    symbol: str
    name: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "symbol": self.symbol, "name": self.name}


@dataclass(frozen=True)
class Catalog:
    """The whole catalogue as fetched at `fetched_at`, with the vs-currencies CoinGecko supported then."""

    entries: tuple[CatalogEntry, ...]
    vs_currencies: frozenset[str]
    fetched_at: datetime

    def ids(self) -> set[str]:
        return {e.id for e in self.entries}

    def get(self, coin_id: str) -> CatalogEntry | None:
        return self._by_id().get(coin_id)

    def _by_id(self) -> dict[str, CatalogEntry]:
        index = self.__dict__.get("_index")
        if index is None:
            index = {e.id: e for e in self.entries}
            object.__setattr__(self, "_index", index)  # frozen: a cache, not state
        return index

    def search(self, query: str, limit: int = SEARCH_LIMIT) -> dict:
        """Candidates for `query` (case-insensitive): the exact id first, then coins whose symbol is the query,
        then whose name is, then ids, symbols and names that start with it. `ambiguous` is True when the query is
        a symbol (or name) of several coins and no id: the caller must pick an id, we never guess.
        Returns {"query", "ambiguous", "candidates": [{"id", "symbol", "name", "match"}], "truncated"}."""
        q = query.strip().lower()
        ranked: dict[str, tuple[CatalogEntry, str]] = {}

        def add(entry: CatalogEntry, match: str) -> None:
            ranked.setdefault(entry.id, (entry, match))

        exact = self.get(q)
        if exact is not None:
            add(exact, "id")
        by_symbol = [e for e in self.entries if e.symbol.lower() == q]
        by_name = [e for e in self.entries if e.name.lower() == q]
        for e in by_symbol:
            add(e, "symbol")
        for e in by_name:
            add(e, "name")
        for e in self.entries:
            if e.id.startswith(q) or e.symbol.lower().startswith(q) or e.name.lower().startswith(q):
                add(e, "prefix")
        ambiguous = exact is None and (len(by_symbol) > 1 or len(by_name) > 1)
        candidates = [{**entry.to_dict(), "match": match} for entry, match in ranked.values()]
        return {"query": query, "ambiguous": ambiguous, "candidates": candidates[:limit],
                "truncated": len(candidates) > limit}

    def closest(self, coin_id: str, limit: int = CLOSEST_LIMIT) -> list[dict[str, str]]:
        """The ids nearest to an unknown one (difflib's ratio), as entries, best first."""
        ids = difflib.get_close_matches(coin_id.lower(), list(self._by_id()), n=limit, cutoff=0.6)
        return [self._by_id()[i].to_dict() for i in ids]
