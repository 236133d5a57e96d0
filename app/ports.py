"""The ports (Protocols) that services depend on; adapters in storage/, upstream/ and bus/ implement them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Sequence, runtime_checkable

from app.domain.coins import Catalog
from app.domain.history import OhlcBucket
from app.domain.model import Observation


@dataclass(frozen=True)
class FetchResult:
    """What one CoinGecko call gave: valid observations, and why each requested coin/currency that gave none did not."""

    observations: list[Observation]
    rejected: dict[str, str] = field(default_factory=dict)  # "coin/vs" -> reason
    clock_skew_seconds: float | None = None  # our clock minus the source's (its Date header); None = unknown


class PriceSource(Protocol):
    def fetch_prices(self, coins: Sequence[str], vs_currencies: Sequence[str]) -> FetchResult:
        """All coins in all currencies, in as few upstream requests as the URL limits allow (usually one; every
        record of one call carries the same fetched_at). Raises an UpstreamError subclass when an answer is
        unusable."""


class PriceRepository(Protocol):
    def ensure_schema(self) -> None:
        """Create tables/indexes if missing. Idempotent."""

    def add_batch(self, observations: Sequence[Observation]) -> int:
        """Store all or nothing; records whose key exists are skipped. Returns how many were new. Idempotent."""

    def latest(self, coin: str, vs_currency: str) -> Observation | None:
        """The newest polled record (source "poll") of a coin in a currency, or None; backfilled ones are never it."""

    def last_n(self, coin: str, vs_currency: str, n: int) -> list[Observation]:
        """Up to `n` newest polled records (source "poll"), newest first: a backfill never changes /deviation."""

    def latest_many(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Observation]:
        """{(coin, vs_currency): its newest polled record} for every pair that has one, in one store read (the
        update's plausibility check and the web's view ask for 3,000 pairs at 1,000 coins x 3 currencies)."""

    def last_n_many(self, pairs: Sequence[tuple[str, str]], n: int) -> dict[tuple[str, str], list[Observation]]:
        """{(coin, vs_currency): up to `n` newest polled records, newest first} for every pair that has any, in
        one store read where the store can (the web's full reload at start and after an outage)."""

    def between(self, coin: str, vs_currency: str, start: datetime, end: datetime) -> list[Observation]:
        """Records of every source with start <= observed_at < end, oldest first."""

    def count(self) -> int:
        """How many records are stored in all."""

    def ping(self) -> None:
        """Raise StorageUnavailable if the store cannot be reached."""

    def close(self) -> None:
        """Release connections (the object may be used again afterwards and reconnects)."""

    def ohlc(self, coin: str, vs_currency: str, start: datetime, end: datetime,
             bucket_seconds: int) -> list[OhlcBucket]:
        """Per-bucket aggregates of the records with start <= observed_at < end, oldest first, one OhlcBucket per
        UTC bucket of `bucket_seconds` (aligned to the Unix epoch) that holds at least one record; empty buckets
        are absent. Grouped by the store where it can, so a year of records is not sent to the caller."""


class CatalogSource(Protocol):
    def load(self) -> tuple[set[str], set[str]]:
        """(every CoinGecko coin id, every supported vs-currency). Raises an UpstreamError subclass."""


class CatalogFetcher(Protocol):
    def fetch_catalog(self, fetched_at: datetime) -> Catalog:
        """CoinGecko's whole coin list and supported vs-currencies, now. Raises an UpstreamError subclass."""


class CoinRegistry(Protocol):
    """The store's coin tables: CoinGecko's catalogue as last fetched, and the set of coins tracked at run time.
    Every method raises StorageUnavailable when the store cannot be reached."""

    def ensure_schema(self) -> None:
        """Create the tables/collections if missing. Idempotent."""

    def catalog_fetched_at(self) -> datetime | None:
        """When the stored catalogue was fetched, or None when none is stored. One small read."""

    def load_catalog(self) -> Catalog | None:
        """The stored catalogue, or None."""

    def save_catalog(self, catalog: Catalog) -> None:
        """Replace the stored catalogue with `catalog`. Readers see the old one or the new one. Idempotent."""

    def tracked_coins(self) -> list[str]:
        """The tracked public ids in the order they were added (empty: never seeded)."""

    def seed_tracked(self, coins: Sequence[str]) -> bool:
        """Store `coins` as the tracked set only if none is stored. True when this call seeded it."""

    def track(self, coin: str) -> bool:
        """Add a coin to the tracked set. True when it was not tracked. Idempotent."""

    def untrack(self, coin: str) -> bool:
        """Remove a coin from the tracked set. True when it was tracked. Idempotent."""

    def ping(self) -> None:
        """Raise StorageUnavailable if the store cannot be reached."""

    def close(self) -> None:
        """Release connections (usable again afterwards)."""


class UpdateBus(Protocol):
    """Publish/subscribe between the worker and the web (Redis's `crypto-update` channel)."""

    def publish(self, event: dict[str, Any]) -> None:
        """Send an event on the `crypto-update` channel; a run's outcome (`stored`, `failed`) is also remembered as
        the last event. Raises BrokerUnavailable."""

    def last_event(self) -> dict[str, Any] | None:
        """The last run outcome published (`stored` or `failed`), if Redis still holds it: what a web starting
        now shows for "no data yet" and /readyz."""

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """Wait up to `timeout` s for an event. Returns {"event": "resubscribed"} after (re)subscribing, since events
        may have been missed. Raises BrokerUnavailable when Redis is down (the next call tries again)."""

    def ping(self) -> None:
        """Raise BrokerUnavailable if Redis cannot be reached."""

    def close(self) -> None:
        """Close connections."""


@runtime_checkable
class Claims(Protocol):
    """Small shared state with a time to live, between every worker and run: claims (a slot being fetched or
    stored), locks and cooldowns (a 429's Retry-After). Every method raises BrokerUnavailable when Redis is down."""

    def claim(self, key: str, ttl_seconds: int, owner: str | None = None) -> bool:
        """Set a marker unless it exists (SET NX EX). True when this call set it, or when `owner` is given and
        the marker is already held by that same owner (a retried or redelivered run keeps its claim)."""

    def is_claimed(self, key: str) -> bool:
        """Whether a marker is set."""

    def remaining(self, key: str) -> float | None:
        """Seconds until a marker expires, or None when it is not set."""

    def release(self, key: str) -> None:
        """Remove a marker, whoever set it (no-op when it is not set)."""


class Metrics(Protocol):
    """What the services report for the operator's metrics (GET /metrics). Implementations never raise: a metric
    that cannot be recorded must not fail a run."""

    def run_finished(self, outcome: str) -> None:
        """One update run ended: "stored", "skipped" (a duplicate trigger), "failed" (given up) or "retried"."""

    def upstream_call(self, status: str) -> None:
        """One CoinGecko request ended: its HTTP status ("200", "429", ...) or, without one, the error code."""

    def records_stored(self, count: int, observed: Sequence[tuple[str, str, datetime]], at: datetime) -> None:
        """A run stored `count` new records at `at`; `observed` holds (coin, vs_currency, observed_at) of each
        price the store now has as its newest (the data age is measured from these)."""

    def backfill_chunk(self, outcome: str) -> None:
        """One chunk of a history backfill ended: "stored", "retried" (transient failure, 429) or "failed"."""

    def sse_clients(self, delta: int) -> None:
        """A Server-Sent Events client connected (+1) or left (-1)."""


class NullMetrics:
    """Metrics that go nowhere: the default of every service and test."""

    def run_finished(self, outcome: str) -> None:
        pass

    def upstream_call(self, status: str) -> None:
        pass

    def records_stored(self, count: int, observed: Sequence[tuple[str, str, datetime]], at: datetime) -> None:
        pass

    def backfill_chunk(self, outcome: str) -> None:
        pass

    def sse_clients(self, delta: int) -> None:
        pass


class HistorySource(Protocol):
    def fetch_range(self, coin: str, vs_currency: str, start: datetime, end: datetime) -> list[Observation]:
        """One upstream request for a coin's history in [start, end), as backfilled observations, oldest first.
        Raises an UpstreamError subclass (UpstreamHistoryLimit when the plan cannot reach that far back)."""


class BackfillState(Protocol):
    """Per coin and currency: the progress of the newest backfill, and which chunks are held for good."""

    def load_progress(self, coin: str, vs_currency: str) -> dict[str, Any] | None:
        """The progress last saved (BackfillProgress.to_dict), or None."""

    def save_progress(self, coin: str, vs_currency: str, progress: dict[str, Any]) -> None:
        """Replace the progress. Raises BrokerUnavailable."""

    def held_chunks(self, coin: str, vs_currency: str) -> set[str]:
        """Keys of the chunks stored by any backfill so far (app.domain.backfill.Chunk.key)."""

    def mark_held(self, coin: str, vs_currency: str, chunk_key: str) -> None:
        """Remember a chunk as stored, after its records are. Idempotent."""


class UsageCounter(Protocol):
    """CoinGecko calls counted across every process (each process's client reports each request)."""

    def count_call(self, status: int | None, now: datetime) -> None:
        """One request sent, with its HTTP status (None: no answer). Never raises."""

    def usage(self, now: datetime) -> dict[str, int]:
        """{"minute": calls this UTC minute, "month": calls this UTC month, "rate_limited_month": 429s this month}.
        Raises BrokerUnavailable."""


class Counters(UsageCounter, BackfillState, Protocol):
    """Both, from one Redis adapter (app.counters.RedisCounters)."""

    def close(self) -> None:
        """Close connections."""
