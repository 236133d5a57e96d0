"""In-memory price store for fast tests of services (not shipped in app/): the same contract as the real stores."""
from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timezone
from typing import Sequence

from app.domain.coins import Catalog
from app.domain.history import OhlcBucket, buckets_of
from app.domain.model import SOURCE_POLL, Observation
from app.storage.registry import _from_ms, _ms


def _as_stored(o: Observation) -> Observation:
    """The record as the real stores give it back: times in UTC, fetched_at to the millisecond (MongoDB's
    resolution, which SQLite keeps too), so services tested on this fake see what production sees."""
    fetched = o.fetched_at.astimezone(timezone.utc)
    return dataclasses.replace(o, observed_at=o.observed_at.astimezone(timezone.utc),
                               fetched_at=fetched.replace(microsecond=fetched.microsecond // 1000 * 1000))


class InMemoryPriceRepository:
    """A dict keyed like the real unique index; not shared between processes."""

    def __init__(self) -> None:
        self._records: dict[tuple, Observation] = {}
        self._lock = threading.Lock()
        self.fail_with: Exception | None = None  # tests set this to simulate an outage

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def ensure_schema(self) -> None:
        self._check()

    def add_batch(self, observations: Sequence[Observation]) -> int:
        self._check()
        # Built aside and applied with one update, so a batch that fails partway (a record that cannot be keyed)
        # leaves nothing; the first record of a key repeated in the batch wins, as in the real stores.
        with self._lock:
            new: dict[tuple, Observation] = {}
            for o in observations:
                if o.key not in self._records:
                    new.setdefault(o.key, _as_stored(o))
            self._records.update(new)
            return len(new)

    def _series(self, coin: str, vs_currency: str) -> list[Observation]:
        self._check()
        with self._lock:
            rows = [o for o in self._records.values() if o.coin == coin and o.vs_currency == vs_currency]
        return sorted(rows, key=lambda o: o.observed_at)

    def _polled(self, coin: str, vs_currency: str) -> list[Observation]:
        return [o for o in self._series(coin, vs_currency) if o.source == SOURCE_POLL]

    def latest(self, coin: str, vs_currency: str) -> Observation | None:
        rows = self._polled(coin, vs_currency)
        return rows[-1] if rows else None

    def last_n(self, coin: str, vs_currency: str, n: int) -> list[Observation]:
        return list(reversed(self._polled(coin, vs_currency)[-n:])) if n > 0 else []

    def latest_many(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Observation]:
        return {pair: rows[0] for pair, rows in self.last_n_many(pairs, 1).items()}

    def last_n_many(self, pairs: Sequence[tuple[str, str]], n: int) -> dict[tuple[str, str], list[Observation]]:
        self._check()
        wanted = set(pairs)
        with self._lock:
            series: dict[tuple[str, str], list[Observation]] = {}
            for o in self._records.values():
                if o.source == SOURCE_POLL and (o.coin, o.vs_currency) in wanted:
                    series.setdefault((o.coin, o.vs_currency), []).append(o)
        return {pair: sorted(rows, key=lambda o: o.observed_at, reverse=True)[:n]
                for pair, rows in series.items()} if n > 0 else {}

    def between(self, coin: str, vs_currency: str, start: datetime, end: datetime) -> list[Observation]:
        return [o for o in self._series(coin, vs_currency) if start <= o.observed_at < end]

    def count(self) -> int:
        self._check()
        return len(self._records)

    def ping(self) -> None:
        self._check()

    def close(self) -> None:
        pass

    def ohlc(self, coin: str, vs_currency: str, start: datetime, end: datetime,
             bucket_seconds: int) -> list[OhlcBucket]:
        return buckets_of(self.between(coin, vs_currency, start, end), bucket_seconds)

    def coin_registry(self) -> "InMemoryCoinRegistry":
        """The coin tables of this store (what make_coin_registry asks a store that is neither SQLite nor Mongo)."""
        return InMemoryCoinRegistry()


class InMemoryCoinRegistry:
    """The same contract in a process's memory, for fast tests; `fail_with` simulates an outage."""

    def __init__(self) -> None:
        self._catalog: Catalog | None = None
        self._tracked: dict[str, None] = {}
        self._lock = threading.Lock()
        self.fail_with: Exception | None = None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def ensure_schema(self) -> None:
        self._check()

    def catalog_fetched_at(self) -> datetime | None:
        self._check()
        return self._catalog.fetched_at if self._catalog else None

    def load_catalog(self) -> Catalog | None:
        self._check()
        return self._catalog

    def save_catalog(self, catalog: Catalog) -> None:
        self._check()
        # As stored: whole milliseconds, like the real stores.
        at = _from_ms(_ms(catalog.fetched_at))
        self._catalog = Catalog(tuple(catalog.entries), frozenset(catalog.vs_currencies), at)

    def tracked_coins(self) -> list[str]:
        self._check()
        return list(self._tracked)

    def seed_tracked(self, coins: Sequence[str]) -> bool:
        self._check()
        with self._lock:
            if self._tracked:
                return False
            self._tracked = dict.fromkeys(coins)
            return True

    def track(self, coin: str) -> bool:
        self._check()
        with self._lock:
            new = coin not in self._tracked
            self._tracked.setdefault(coin)
            return new

    def untrack(self, coin: str) -> bool:
        self._check()
        with self._lock:
            if coin not in self._tracked:
                return False
            del self._tracked[coin]
            return True

    def ping(self) -> None:
        self._check()

    def close(self) -> None:
        pass

