"""Hand-written fakes of the ports (no mocks): a price source, an update bus with claims and a settable clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from app.domain.errors import BrokerUnavailable
from app.domain.model import Observation
from app.ports import FetchResult

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


def obs(coin: str, price: float, at: datetime = T0, *, vs: str = "usd", market_cap: float | None = 800_000_000,
        change: float | None = 3.4, fetched: datetime | None = None) -> Observation:
    return Observation(coin, vs, price, market_cap, 1_000_000.0, change, at, fetched or at)


class FakePriceSource:
    """Returns queued results or raises queued errors, one per call; records the ids asked for."""

    def __init__(self, *results: FetchResult | Exception) -> None:
        self.queue = list(results)
        self.calls: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

    def fetch_prices(self, coins: Sequence[str], vs_currencies: Sequence[str]) -> FetchResult:
        self.calls.append((tuple(coins), tuple(vs_currencies)))
        item = self.queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class FakeBus:
    """An in-process Redis, for both ports: the UpdateBus (published events are kept in order) and the Claims;
    `down` makes every call fail like Redis would."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.claims: dict[str, str] = {}
        self.ttls: dict[str, float] = {}
        self.down = False
        self.subscribed = False

    def _check(self) -> None:
        if self.down:
            raise BrokerUnavailable("Redis publish failed: ConnectionError: fake outage")

    def publish(self, event: dict[str, Any]) -> None:
        self._check()
        self.events.append(event)
        self.pending.append(event)

    def last_event(self) -> dict[str, Any] | None:
        self._check()  # like RedisUpdateBus: the last run outcome, not a tracked-set change
        outcomes = [e for e in self.events if e.get("event") in ("stored", "failed")]
        return outcomes[-1] if outcomes else None

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        if self.down:
            self.subscribed = False
        self._check()
        if not self.subscribed:  # like Redis: (re)subscribing is reported, since events may have been missed
            self.subscribed = True
            return {"event": "resubscribed"}
        return self.pending.pop(0) if self.pending else None

    def claim(self, key: str, ttl_seconds: int, owner: str | None = None) -> bool:
        self._check()
        if key in self.claims:
            return owner is not None and self.claims[key] == owner
        self.claims[key] = owner or "-"
        self.ttls[key] = ttl_seconds
        return True

    def is_claimed(self, key: str) -> bool:
        self._check()
        return key in self.claims

    def remaining(self, key: str) -> float | None:
        self._check()
        return self.ttls.get(key) if key in self.claims else None

    def release(self, key: str) -> None:
        self._check()
        self.claims.pop(key, None)
        self.ttls.pop(key, None)

    def ping(self) -> None:
        self._check()

    def close(self) -> None:
        pass


def run_update_with(source, repo, bus: FakeBus, tracked, clock, *, slot=None, run_id=None, **budget):
    """`run_update` over fakes: FakeBus is both the bus and the claims (one in-process Redis); `budget` sets the
    UpdateContext's claim lengths (slot_done_ttl, fetch_claim_ttl, max_cooldown)."""
    from app.services.polling import UpdateContext, run_update

    return run_update(UpdateContext(source, repo, bus, bus, tracked, clock, **budget), slot=slot, run_id=run_id)
