"""Reporting: the web's in-memory view of the latest stats and deviations, and the loop that keeps it fresh."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence, TypeVar

from app.domain import errors as domain_errors
from app.domain.errors import AppError, BrokerUnavailable, NoData
from app.domain.model import Observation, TrackedCoins
from app.domain.stats import DEVIATION_WINDOW, population_std
from app.ports import PriceRepository, UpdateBus

log = logging.getLogger(__name__)
T = TypeVar("T")


# What a client may read about a failed update: fixed text per known code. Event text is never repeated (anyone who
# can publish to Redis could write it), nor store or Redis messages (they name internal hosts and paths).
_PUBLIC_FAILURE = {
    "upstream_unreachable": "CoinGecko unreachable",
    "upstream_server_error": "CoinGecko answered with a server error",
    "upstream_rate_limited": "CoinGecko is rate-limiting us",
    "upstream_bad_response": "CoinGecko's answer was not usable",
    "upstream_rejected": "CoinGecko refused the request; the operator must check the API key and plan",
}
# The fields CoinGecko's values are validated by (a rejection reason names them as "field: ...").
_QUOTE_FIELDS = ("price", "market_cap", "volume_24h", "change_24h", "last_updated_at")
CLOCK_SKEW_OK_SECONDS = 60.0  # the slot arithmetic tolerates at most a minute (polling.scheduled_slot)
# With nothing loaded, one request this often (seconds) may have the store read for it, and wait for that read at
# most DEMAND_WAIT_SECONDS: a 503 well within a second, although a read may take the store's whole server-selection
# timeout (MongoDB's 5 s) and one may already be in flight (the listener's first).
DEMAND_REFRESH_EVERY_SECONDS = 5.0
DEMAND_WAIT_SECONDS = 0.5


def _known_codes() -> frozenset[str]:
    """Every `code` of the error tree, so a code from an event is shown only when it is one of ours."""
    found, todo = set(), [AppError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return frozenset(found)


def _public_failure(code: Any) -> tuple[str, str]:
    """(code, message) safe to show to anyone for the error code an event carries."""
    if not isinstance(code, str) or code not in _known_codes():
        return "unknown_error", "unknown_error; see the worker's log"
    if code in _PUBLIC_FAILURE:
        return code, _PUBLIC_FAILURE[code]
    if code.startswith("upstream"):
        return code, f"CoinGecko gave no usable answer ({code})"
    return code, f"{code}; see the worker's log"


def _public_rejection(reason: str) -> str:
    """A rejection reason as fixed text: which of the known fields were invalid, never the reason's own text."""
    if reason.startswith("missing from"):
        return "missing from CoinGecko's answer"
    if reason.startswith("no price"):
        return "no price in this currency"
    named = [name for name in _QUOTE_FIELDS if reason.startswith(f"{name}:") or f"; {name}:" in reason]
    return f"invalid {', '.join(named)}" if named else "invalid values"


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


def _as_number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class CoinSummary:
    """What the web serves for one coin in one currency: the newest polled record and the prices of the last
    DEVIATION_WINDOW polled ones (newest first). The deviation is computed when first asked for, once: exact
    (statistics.pstdev) costs ~0.4 ms a pair, 1.1 s for 3,000 pairs, too long to hold every update back."""

    latest: Observation
    prices: tuple[float, ...]

    @classmethod
    def of(cls, rows: Sequence[Observation]) -> "CoinSummary":
        """From a pair's newest polled records, newest first (at least one)."""
        return cls(rows[0], tuple(r.price for r in rows[:DEVIATION_WINDOW]))

    @property
    def window(self) -> int:
        """How many records the deviation covers (≤ DEVIATION_WINDOW)."""
        return len(self.prices)

    @cached_property
    def deviation(self) -> float:
        return population_std(self.prices)


@dataclass(frozen=True)
class Freshness:
    observed_at: datetime
    fetched_at: datetime
    age_seconds: float  # since we fetched it
    stale: bool


def build_summaries(repo: PriceRepository, tracked: TrackedCoins) -> dict[tuple[str, str], CoinSummary]:
    """Read the last DEVIATION_WINDOW polled records of every tracked coin/currency, in one store read
    (last_n_many). Raises StorageUnavailable."""
    return {pair: CoinSummary.of(rows)
            for pair, rows in repo.last_n_many(list(tracked.pairs()), DEVIATION_WINDOW).items() if rows}


def apply_newest(repo: PriceRepository, tracked: TrackedCoins,
                 held: dict[tuple[str, str], CoinSummary]) -> dict[tuple[str, str], CoinSummary]:
    """`held` brought up to the store in one read of every pair's two newest polled records (then one more for
    the pairs that need a full window): a pair whose newest record is the one held is kept as it is (the same
    object, so its prepared answer is reused); one whose second newest is the one held gains the new record (its
    window shifts by one, exactly as a re-read would give it, since no polled record can lie between the two);
    any other pair (new, or more than one record behind) is re-read whole. Pairs no longer tracked or without a
    record are left out. Raises StorageUnavailable."""
    pairs = list(tracked.pairs())
    newest = repo.last_n_many(pairs, 2)
    out: dict[tuple[str, str], CoinSummary] = {}
    behind = []
    for pair in pairs:
        rows, have = newest.get(pair), held.get(pair)
        if not rows:
            continue
        if have is not None and rows[0] == have.latest:
            out[pair] = have
        elif have is not None and len(rows) > 1 and rows[1] == have.latest:
            out[pair] = CoinSummary(rows[0], (rows[0].price, *have.prices[:DEVIATION_WINDOW - 1]))
        else:
            behind.append(pair)
    if behind:
        out.update((pair, CoinSummary.of(rows))
                   for pair, rows in repo.last_n_many(behind, DEVIATION_WINDOW).items() if rows)
    return out


class StatsView:
    """The latest stats of every tracked coin, held in memory so a request does not wait on the store.

    `refresh()` brings it up to the store and swaps it in whole (readers never see half an update): a full reload
    (every pair's last DEVIATION_WINDOW records, one store read) at start, after a failed read and after the
    update channel was resubscribed (events may have been missed); otherwise only what changed (apply_newest:
    one read of two records a pair). Thread-safe.
    A request never waits on the store longer than `demand_wait_seconds`, whatever the store or other threads do.
    """

    def __init__(self, repo: PriceRepository, tracked: TrackedCoins, clock: Callable[[], datetime],
                 stale_after: timedelta, demand_wait_seconds: float = DEMAND_WAIT_SECONDS,
                 tracked_source: Callable[[], TrackedCoins] | None = None) -> None:
        self.repo = repo
        self.tracked = tracked
        # Where the tracked set is re-read on every refresh (the store's, changed at run time); None: fixed.
        self.tracked_source = tracked_source
        self.clock = clock
        self.stale_after = stale_after
        self.demand_wait_seconds = demand_wait_seconds
        self._summaries: dict[tuple[str, str], CoinSummary] = {}
        self._loaded = False
        self._reload_due = True  # the next refresh reloads every pair whole (start, recovery, resubscription)
        self._last_event: dict[str, Any] | None = None
        self._clock_skew: tuple[float | None] | None = None  # None: no event said; (None,): the worker cannot tell
        self._refresh_lock = threading.Lock()
        self._last_demand_refresh = float("-inf")
        self._refreshed = threading.Condition()  # notified when a store read ends, well or not
        self._reads_done = 0
        self._failing: str | None = None  # the kind of refresh failure already logged in this outage
        # (render, coin, vs) -> (the summary it was rendered from, the rendering): see rendered()
        self._rendered: dict[tuple[Any, str, str], tuple[CoinSummary, Any]] = {}

    @property
    def loaded(self) -> bool:
        return self._loaded

    def refresh(self) -> None:
        """Re-read the store. Raises StorageUnavailable and keeps serving the previous view when it fails."""
        with self._refresh_lock:
            try:
                tracked = self.tracked_source() if self.tracked_source is not None else self.tracked
                full, self._reload_due = self._reload_due or not self._loaded, True  # True until this read works
                self._summaries = (build_summaries(self.repo, tracked) if full
                                   else apply_newest(self.repo, tracked, self._summaries))
                self.tracked = tracked
                self._loaded = True
                self._reload_due = False
            finally:
                with self._refreshed:
                    self._reads_done += 1
                    self._refreshed.notify_all()

    def try_refresh(self) -> bool:
        """refresh(), for callers that must go on whatever happens. True when it worked. Logs once per outage:
        a known failure (AppError) as one line, anything else (a bug) with its traceback; and the recovery."""
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001  callers (the listener, a request) must outlive any failure
            kind = exc.code if isinstance(exc, AppError) else type(exc).__name__
            with self._refresh_lock:
                first, self._failing = self._failing != kind, kind
            if first and isinstance(exc, AppError):
                log.warning("cannot refresh stats from the store (%s); serving what is in memory, retrying every "
                            "few seconds", exc.message)
            elif first:
                log.exception("unexpected error refreshing stats from the store; serving what is in memory, "
                              "retrying every few seconds")
            return False
        with self._refresh_lock:
            recovered, self._failing = self._failing is not None, None
        if recovered:
            log.info("store reachable again; stats refreshed")
        return True

    def note_event(self, event: dict[str, Any] | None) -> None:
        """Remember the last update event (a failure explains why there is no data yet) and the worker's clock
        skew when the event reports it. Events are validated by the bus; nothing of their text is shown."""
        if isinstance(event, dict) and event.get("event") == "resubscribed":
            self._reload_due = True  # events may have been missed: the next refresh reloads every pair
        if isinstance(event, dict) and event.get("event") in ("stored", "failed"):
            self._last_event = event
            if "clock_skew_seconds" in event:
                self._clock_skew = (_as_number(event["clock_skew_seconds"]),)

    def clock_state(self) -> dict[str, Any] | None:
        """The worker's clock as its last event reported it: {"skew_seconds", "ok"}, or None when not reported."""
        if self._clock_skew is None:
            return None
        skew = self._clock_skew[0]
        return {"skew_seconds": skew, "ok": None if skew is None else abs(skew) <= CLOCK_SKEW_OK_SECONDS}

    def summary(self, coin: str, vs_currency: str | None) -> tuple[CoinSummary, Freshness]:
        """The summary for a coin as asked (public id or CoinGecko id) and a currency (None = default).

        Raises UnknownCoin / UnknownCurrency, or NoData saying why nothing is there.
        """
        found = self._find(coin, vs_currency)
        return found, self.freshness(found.latest)

    def _find(self, coin: str, vs_currency: str | None) -> CoinSummary:
        source_id = self.tracked.resolve(coin)
        vs = self.tracked.resolve_currency(vs_currency)
        found = self._summaries.get((source_id, vs))
        if found is None and not self._loaded:
            self._read_on_demand()
            found = self._summaries.get((source_id, vs))
        if found is None:
            raise self._no_data(coin, vs)
        return found

    def rendered(self, coin: str, vs_currency: str | None, render: Callable[[CoinSummary], T]) -> tuple[T, bool]:
        """(`render`(the summary), whether it is stale), rendering once per refresh rather than once per request
        (the web keeps each answer's bytes ready). Raises as summary() does. Thread-safe: a rendering is reused
        only while it was made from the very summary now served, so a refresh racing a request never serves old
        bytes."""
        summary = self._find(coin, vs_currency)
        latest = summary.latest
        key = (render, latest.coin, latest.vs_currency)
        hit = self._rendered.get(key)
        if hit is None or hit[0] is not summary:
            hit = self._rendered[key] = (summary, render(summary))
        return hit[1], self.clock() - latest.fetched_at > self.stale_after  # as freshness() tells it

    def _read_on_demand(self) -> None:
        """Nothing loaded yet (just started, or the store was down): one request every DEMAND_REFRESH_EVERY_SECONDS
        waits, at most `demand_wait_seconds`, for a store read to end; the others answer at once. The read runs in
        a thread of its own, started only when none is in flight (else that one is waited for), so a request waits
        neither on the store nor on the refresh lock, and a hanging store holds one thread, not every request."""
        with self._refreshed:
            now = time.monotonic()
            if now - self._last_demand_refresh < DEMAND_REFRESH_EVERY_SECONDS:
                return
            self._last_demand_refresh = now
            seen = self._reads_done
            if not self._refresh_lock.locked():
                # try_refresh: it logs the failure once per outage, and a request gets the 503, not a 500.
                threading.Thread(target=self.try_refresh, name="stats-read-on-demand", daemon=True).start()
            self._refreshed.wait_for(lambda: self._reads_done != seen, self.demand_wait_seconds)

    def freshness(self, observation: Observation) -> Freshness:
        """How old a record is, and whether that is stale (older than two update intervals)."""
        age = self.clock() - observation.fetched_at
        return Freshness(observation.observed_at, observation.fetched_at, round(age.total_seconds(), 1),
                         age > self.stale_after)

    def _no_data(self, coin: str, vs: str) -> NoData:
        event = self._last_event or {}
        rejected = event.get("rejected")
        reason = rejected.get(f"{self.tracked.resolve(coin)}/{vs}") if isinstance(rejected, dict) else None
        if isinstance(reason, str):
            reason = _public_rejection(reason)
            return NoData(f"no data for {coin}: CoinGecko gave no valid price for it in the last update ({reason})",
                          details={"coin": coin, "currency": vs, "reason": reason})
        if event.get("event") == "failed":
            error = event.get("error")
            code, message = _public_failure(error.get("code") if isinstance(error, dict) else None)
            retry_in = self._retry_in(event)
            return NoData(f"no data for {coin} yet: the last update failed ({message})",
                          details={"coin": coin, "currency": vs, "last_error": {"code": code, "message": message},
                                   "retry_in_seconds": retry_in})
        if not self._loaded:
            return NoData(f"no data for {coin}: the store is unreachable", details={"coin": coin, "currency": vs})
        return NoData(f"no data for {coin} yet: the first update is pending", details={"coin": coin, "currency": vs})

    def _retry_in(self, event: dict[str, Any]) -> float | None:
        """Seconds from now to the retry a failed event announced (0 once due), or None when none is planned.
        From `retry_at`, else from `at` + `retry_in_seconds` (older workers); never the number frozen at failure."""
        retry_at = _as_datetime(event.get("retry_at"))
        if retry_at is None:
            at, wait = _as_datetime(event.get("at")), _as_number(event.get("retry_in_seconds"))
            if at is None or wait is None:
                return None
            retry_at = at + timedelta(seconds=wait)
        # No retry waits past the next scheduled run (one interval, half of stale_after): a later time is not real.
        left = min((retry_at - self.clock()).total_seconds(), self.stale_after.total_seconds() / 2)
        return max(0.0, round(left, 1))

    def newest(self) -> Observation | None:
        """The most recently fetched record across all coins, for readiness reports."""
        return max((s.latest for s in self._summaries.values()), key=lambda o: o.fetched_at, default=None)


def coin_figures(view: StatsView, coin: str, currency: str) -> dict[str, Any]:
    """One coin's latest figures from the view, as GET /api/v1/coins and the stream's snapshots give them: nulls and
    `error` (code, message) when there is no data yet. Raises UnknownCoin / UnknownCurrency."""
    item: dict[str, Any] = {"coin": coin, "currency": currency, "price": None, "market_cap": None,
                            "volume_24h": None, "change_24h": None, "deviation": None, "observed_at": None,
                            "fetched_at": None, "stale": None, "error": None}
    try:
        summary, freshness = view.summary(coin, currency)
    except NoData as exc:
        item["error"] = {"code": exc.code, "message": exc.message}
        return item
    latest = summary.latest
    item.update(price=latest.price, market_cap=latest.market_cap, volume_24h=latest.volume_24h,
                change_24h=latest.change_24h, deviation=summary.deviation,
                observed_at=freshness.observed_at.isoformat(), fetched_at=freshness.fetched_at.isoformat(),
                stale=freshness.stale)
    return item


def keep_fresh(view: StatsView, bus: UpdateBus, every_seconds: float, stop: threading.Event,
               poll_timeout: float = 1.0, on_event: Callable[[], None] | None = None,
               on_redis_back: Callable[[], None] | None = None) -> None:
    """Refresh `view` on every `crypto-update` event, after every (re)subscription (events may have been missed
    while disconnected) and every `every_seconds` anyway; then call `on_event` (the live streams' fan-out). When the
    subscription comes back after an outage, call `on_redis_back` (readiness need not wait out a cached failure).
    Runs until `stop` is set; survives Redis and store outages (logs once per outage, retries with backoff). The bus
    drops invalid messages (they refresh nothing).
    """
    last = float("-inf")  # refresh at once on start
    backoff = 1.0
    redis_down = False
    while not stop.is_set():
        try:
            event = bus.next_event(timeout=poll_timeout)
            if redis_down:
                log.info("crypto-update subscription restored")
                redis_down = False
                if on_redis_back is not None:
                    on_redis_back()
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
            except BrokerUnavailable:
                pass  # Redis gone again: the next next_event says so
            except Exception:  # noqa: BLE001  a bug must not cost the listener its life, nor go unseen
                log.exception("unexpected error reading the last crypto-update event")
        view.note_event(event)
        if event is not None or time.monotonic() - last >= every_seconds:
            if view.try_refresh():
                last = time.monotonic()
            else:
                last = time.monotonic() - every_seconds + min(every_seconds, 5.0)  # try again in a few seconds
        if event is not None and on_event is not None:
            try:
                on_event()
            except Exception:  # noqa: BLE001  a bug must not cost the listener its life, nor go unseen
                log.exception("unexpected error fanning an update out to the live streams")


@dataclass(frozen=True)
class ProbeResult:
    """One part's readiness: ok, or the code of why not (an AppError code, `timeout` or `internal_error`). Safe to show to anyone: no message, host or path."""

    ok: bool
    code: str | None = None


class _Probe:
    """Single-flight, time-bounded calls of one `ping`: at most one runs at a time (callers meanwhile get the last
    known result), a caller waits at most `timeout_seconds`, and a failure is kept for `cache_seconds` before the
    part is probed again. A success is not kept: a healthy ping is cheap, and an outage must show at once."""

    def __init__(self, name: str, ping: Callable[[], None], cache_seconds: float, timeout_seconds: float) -> None:
        self.name = name
        self.ping = ping
        self.cache_seconds = cache_seconds
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._result: ProbeResult | None = None
        self._at = float("-inf")
        self._running: threading.Event | None = None  # set when the probe in flight finishes
        self._logged: ProbeResult | None = ProbeResult(True)  # the state last logged (a change is logged)

    def forget_failure(self) -> None:
        with self._lock:
            self._at = float("-inf")

    def result(self) -> ProbeResult:
        with self._lock:
            if self._result is not None and not self._result.ok and time.monotonic() - self._at < self.cache_seconds:
                return self._result
            in_flight = self._running
            if in_flight is not None and self._result is not None:
                return self._result  # one probe at a time: the others answer with what is known
            if in_flight is None:
                done = self._running = threading.Event()
        if in_flight is not None:  # nothing known yet (just started): wait for the probe in flight, bounded too
            in_flight.wait(self.timeout_seconds)
            with self._lock:
                return self._result or ProbeResult(False, "timeout")
        threading.Thread(target=self._run, args=(done,), name=f"readiness-{self.name}", daemon=True).start()
        if done.wait(self.timeout_seconds):
            with self._lock:
                return self._result or ProbeResult(False, "timeout")
        timed_out = ProbeResult(False, "timeout")
        with self._lock:
            if self._running is done:  # still in flight: report the timeout until it ends (or the cache ages)
                self._result, self._at = timed_out, time.monotonic()
        self._log(timed_out, f"no answer within {self.timeout_seconds:.1f} s")
        return timed_out

    def _run(self, done: threading.Event) -> None:
        detail = ""
        try:
            self.ping()
            result = ProbeResult(True)
        except AppError as exc:
            result, detail = ProbeResult(False, exc.code), exc.message
        except Exception as exc:  # noqa: BLE001  a bug in a ping must say so, not hang readiness
            result, detail = ProbeResult(False, "internal_error"), f"{type(exc).__name__}: {exc}"
            log.exception("readiness check of the %s failed unexpectedly", self.name)
        self._log(result, detail)
        with self._lock:
            self._result, self._at, self._running = result, time.monotonic(), None
        done.set()

    def _log(self, result: ProbeResult, detail: str) -> None:
        # The details (which host, which path, why) are for the operator: the log, once per change of state.
        with self._lock:
            changed, self._logged = self._logged != result, result
        if changed and result.ok:
            log.info("readiness: %s reachable again", self.name)
        elif changed and result.code != "internal_error":
            log.warning("readiness: %s not ready (%s): %s", self.name, result.code, detail)


class Readiness:
    """Whether the store and Redis answer, without letting readiness checks take the web down: each part is
    probed by one thread at a time, a failure is cached for `cache_seconds`, and a request waits at most
    `timeout_seconds` (a frozen Redis then reads as `timeout`). Thread-safe."""

    def __init__(self, parts: dict[str, Callable[[], None]], *, cache_seconds: float = 3.0,
                 timeout_seconds: float = 1.0) -> None:
        self._probes = [_Probe(name, ping, cache_seconds, timeout_seconds) for name, ping in parts.items()]

    def forget_failure(self, name: str) -> None:
        """The part is known to answer again (this process just reached it): probe it at the next check instead of
        repeating the cached failure until it ages."""
        for probe in self._probes:
            if probe.name == name:
                probe.forget_failure()

    def check(self) -> dict[str, ProbeResult]:
        """{part name: ProbeResult}; takes at most about `timeout_seconds` per part, usually no time at all."""
        return {probe.name: probe.result() for probe in self._probes}
