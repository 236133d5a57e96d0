"""Reporting: the web's in-memory view of the latest stats and deviations, and the loop that keeps it fresh."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from app.domain.errors import AppError, BrokerUnavailable, NoData
from app.domain.model import Observation, TrackedCoins
from app.domain.stats import DEVIATION_WINDOW, population_std
from app.ports import PriceRepository, UpdateBus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoinSummary:
    """What the web serves for one coin in one currency."""

    latest: Observation
    deviation: float
    window: int  # how many records the deviation covers (≤ DEVIATION_WINDOW)


@dataclass(frozen=True)
class Freshness:
    observed_at: datetime
    fetched_at: datetime
    age_seconds: float  # since we fetched it
    stale: bool


def build_summaries(repo: PriceRepository, tracked: TrackedCoins) -> dict[tuple[str, str], CoinSummary]:
    """Read the last DEVIATION_WINDOW records of every tracked coin/currency. Raises StorageUnavailable."""
    summaries = {}
    for coin, vs in tracked.pairs():
        rows = repo.last_n(coin, vs, DEVIATION_WINDOW)
        if rows:
            summaries[(coin, vs)] = CoinSummary(rows[0], population_std([r.price for r in rows]), len(rows))
    return summaries


class StatsView:
    """The latest stats of every tracked coin, held in memory so a request does not wait on the store.

    `refresh()` rebuilds it from the store and swaps it in whole (readers never see half an update). Thread-safe.
    """

    def __init__(self, repo: PriceRepository, tracked: TrackedCoins, clock: Callable[[], datetime],
                 stale_after: timedelta) -> None:
        self.repo = repo
        self.tracked = tracked
        self.clock = clock
        self.stale_after = stale_after
        self._summaries: dict[tuple[str, str], CoinSummary] = {}
        self._loaded = False
        self._last_event: dict[str, Any] | None = None
        self._refresh_lock = threading.Lock()
        self._last_demand_refresh = float("-inf")

    @property
    def loaded(self) -> bool:
        return self._loaded

    def refresh(self) -> None:
        """Re-read the store. Raises StorageUnavailable and keeps serving the previous view when it fails."""
        with self._refresh_lock:
            self._summaries = build_summaries(self.repo, self.tracked)
            self._loaded = True

    def note_event(self, event: dict[str, Any] | None) -> None:
        """Remember the last update event (a failure explains why there is no data yet)."""
        if event and event.get("event") in ("stored", "failed"):
            self._last_event = event

    def summary(self, coin: str, vs_currency: str | None) -> tuple[CoinSummary, Freshness]:
        """The summary for a coin as asked (public id or CoinGecko id) and a currency (None = default).

        Raises UnknownCoin / UnknownCurrency, or NoData saying why nothing is there.
        """
        source_id = self.tracked.resolve(coin)
        vs = self.tracked.resolve_currency(vs_currency)
        found = self._summaries.get((source_id, vs))
        if found is None and not self._loaded and time.monotonic() - self._last_demand_refresh >= 5.0:
            # Nothing loaded yet (just started, or the store was down): one request in five seconds may wait on
            # the store, the others answer at once.
            self._last_demand_refresh = time.monotonic()
            try:
                self.refresh()
            except Exception:  # noqa: BLE001  a request must get the 503 below, not a 500
                pass
            found = self._summaries.get((source_id, vs))
        if found is None:
            raise self._no_data(coin, vs)
        return found, self.freshness(found.latest)

    def freshness(self, observation: Observation) -> Freshness:
        """How old a record is, and whether that is stale (older than two update intervals)."""
        age = self.clock() - observation.fetched_at
        return Freshness(observation.observed_at, observation.fetched_at, round(age.total_seconds(), 1),
                         age > self.stale_after)

    def _no_data(self, coin: str, vs: str) -> NoData:
        event = self._last_event
        reason = (event or {}).get("rejected", {}).get(f"{self.tracked.resolve(coin)}/{vs}")
        if reason:
            return NoData(f"no data for {coin}: CoinGecko gave no valid price for it in the last update ({reason})",
                          details={"coin": coin, "currency": vs, "reason": reason})
        if event and event.get("event") == "failed":
            error = event.get("error") or {}
            # Upstream messages are about CoinGecko (public); store and Redis messages name internal hosts and
            # paths, which anonymous clients need not see: they get the code, the operator has the log.
            message = error.get("message") if str(error.get("code", "")).startswith("upstream") else None
            message = message or f"{error.get('code', 'unknown_error')}; see the worker's log"
            return NoData(f"no data for {coin} yet: the last update failed ({message})",
                          details={"coin": coin, "currency": vs,
                                   "last_error": {"code": error.get("code"), "message": message},
                                   "retry_in_seconds": event.get("retry_in_seconds")})
        if not self._loaded:
            return NoData(f"no data for {coin}: the store is unreachable", details={"coin": coin, "currency": vs})
        return NoData(f"no data for {coin} yet: the first update is pending", details={"coin": coin, "currency": vs})

    def newest(self) -> Observation | None:
        """The most recently fetched record across all coins, for readiness reports."""
        return max((s.latest for s in self._summaries.values()), key=lambda o: o.fetched_at, default=None)


def keep_fresh(view: StatsView, bus: UpdateBus, every_seconds: float, stop: threading.Event,
               poll_timeout: float = 1.0) -> None:
    """Refresh `view` on every `crypto-update` event, after every (re)subscription (events may have been missed
    while disconnected) and every `every_seconds` anyway. Runs until `stop` is set; survives Redis and store
    outages (logs once per outage, retries with backoff).
    """
    last = float("-inf")  # refresh at once on start
    backoff = 1.0
    redis_down = store_down = False
    while not stop.is_set():
        try:
            event = bus.next_event(timeout=poll_timeout)
            if redis_down:
                log.info("crypto-update subscription restored")
                redis_down = False
            backoff = 1.0
        except BrokerUnavailable as exc:
            if not redis_down:
                log.warning("crypto-update subscription lost (%s); serving what is in memory and reconnecting", exc)
                redis_down = True
            stop.wait(backoff)
            backoff = min(backoff * 2, 15.0)
            event = None
        if event is not None and event.get("event") == "resubscribed":
            # Events published while we were not listening are lost; the last one is kept in Redis (so a web
            # started after a failed update can still say why it has no data).
            try:
                view.note_event(bus.last_event())
            except Exception:  # noqa: BLE001  Redis gone again, or a garbled key: not worth the listener's life
                pass
        view.note_event(event)
        if event is not None or time.monotonic() - last >= every_seconds:
            try:
                view.refresh()
                last = time.monotonic()
                if store_down:
                    log.info("store reachable again; stats refreshed")
                    store_down = False
            except Exception as exc:  # noqa: BLE001  this thread must outlive any store failure, known or not
                if not store_down:
                    log.warning("cannot refresh stats from the store (%s); serving what is in memory, retrying "
                                "every few seconds", getattr(exc, "message", repr(exc)))
                    store_down = True
                last = time.monotonic() - every_seconds + min(every_seconds, 5.0)  # try again in a few seconds
