"""Polling: one CoinGecko request for all tracked coins, one atomic batch into the store, one `crypto-update` event."""
from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from app.domain.errors import (AppError, BrokerUnavailable, StorageUnavailable, UpstreamBadResponse, UpstreamError,
                               UpstreamRateLimited)
from app.domain.model import TrackedCoins
from app.domain.plausibility import MAX_FUTURE, implausible
from app.domain.schedule import CronSchedule
from app.domain.stats import DEVIATION_WINDOW, population_std
from app.ports import Claims, Metrics, NullMetrics, PriceRepository, PriceSource, UpdateBus

log = logging.getLogger(__name__)

RATE_LIMIT_FALLBACK_SECONDS = 60.0  # coingecko.md §7: without Retry-After, back off at least 60 s
MAX_BACKOFF_SECONDS = 300.0
# A Date header has one-second resolution and the network adds a little; NTP keeps real clocks within milliseconds.
# Ten seconds apart is a clock that is not synchronised, worth a line in the log (and matters for freshness).
CLOCK_SKEW_WARN_SECONDS = 10.0


@dataclass(frozen=True)
class UpdateReport:
    """What one run stored. `rejected` names each coin/currency CoinGecko gave nothing valid for, with the reason."""

    new_records: int
    observations: int
    coins: list[str]
    observed_at: str | None
    stored_at: str
    rejected: dict[str, str] = field(default_factory=dict)
    slot: str | None = None
    clock_skew_seconds: float | None = None  # our clock minus CoinGecko's (its Date header); None = unknown

    def event(self) -> dict[str, Any]:
        return {"event": "stored", "coins": self.coins, "stored_at": self.stored_at,
                "observed_at": self.observed_at, "new_records": self.new_records,
                "rejected": self.rejected, "slot": self.slot, "clock_skew_seconds": self.clock_skew_seconds}


def poll_prices(source: PriceSource, repo: PriceRepository, tracked: TrackedCoins,
                clock: Callable[[], datetime], slot: datetime | None = None,
                metrics: Metrics | None = None) -> UpdateReport:
    """Fetch every tracked coin in every tracked currency with one upstream call and store the plausible ones at
    once (app.domain.plausibility; each coin is checked against its newest stored record).

    Raises the source's UpstreamError or the store's StorageUnavailable unchanged, and UpstreamBadResponse when no
    record is plausible. A worker clock that differs from CoinGecko's is said in one log line. Idempotent: storing
    the same CoinGecko values again adds no record.
    """
    metrics = metrics or NullMetrics()
    try:
        result = source.fetch_prices(tracked.source_ids(), tracked.vs_currencies)
    except UpstreamError as exc:
        metrics.upstream_call(upstream_status(exc))
        _say_clock_skew(exc.clock_skew_seconds)
        raise
    metrics.upstream_call("200")
    skew = result.clock_skew_seconds
    _say_clock_skew(skew)
    rejected = dict(result.rejected)
    observations = []
    # One store read for every pair (3,000 at 1,000 coins x 3 currencies), not one per pair.
    previous = repo.latest_many(sorted({(o.coin, o.vs_currency) for o in result.observations}))
    for obs in result.observations:
        reason = implausible(obs, obs.fetched_at, previous.get((obs.coin, obs.vs_currency)))
        if reason:
            rejected[f"{obs.coin}/{obs.vs_currency}"] = reason
        else:
            observations.append(obs)
    if rejected:
        log.warning("CoinGecko gave no valid price for %s", "; ".join(f"{k} ({v})" for k, v in rejected.items()))
    if not observations:
        error = UpstreamBadResponse("CoinGecko's answer held no plausible price", details={"rejected": rejected})
        error.clock_skew_seconds = skew
        raise error
    new = repo.add_batch(observations)
    observed = max(o.observed_at for o in observations)
    public = {tracked.source_id(coin): coin for coin in tracked.public_ids}  # label as users ask: matic-network
    metrics.records_stored(new, [(public.get(o.coin, o.coin), o.vs_currency, o.observed_at) for o in observations],
                           clock())
    return UpdateReport(
        new_records=new,
        observations=len(observations),
        coins=sorted({o.coin for o in observations}),
        observed_at=observed.isoformat(),
        stored_at=clock().isoformat(),
        rejected=rejected,
        slot=slot.isoformat() if slot else None,
        clock_skew_seconds=skew,
    )


def upstream_status(error: UpstreamError) -> str:
    """The metrics label of a failed CoinGecko call: its HTTP status when it answered, else the error's code."""
    status = error.details.get("status") if isinstance(error.details, dict) else None
    return str(status) if isinstance(status, int) else error.code


def _say_clock_skew(skew: float | None) -> None:
    if skew is not None and abs(skew) >= CLOCK_SKEW_WARN_SECONDS:
        log.warning("this machine's clock is %.0f s %s CoinGecko's (its Date header): time stamps it sends look %s; "
                    "synchronise the clock (NTP)", abs(skew), "ahead of" if skew > 0 else "behind",
                    "old, and ages of the data too large" if skew > 0 else
                    f"like the future, rejected beyond {MAX_FUTURE.total_seconds():.0f} s")


def slot_key(slot: datetime) -> str:
    return f"slot-done:{slot.isoformat()}"


def slot_fetch_key(slot: datetime) -> str:
    return f"slot-fetching:{slot.isoformat()}"


def run_done_key(run_id: str) -> str:
    return f"run-done:{run_id}"


class FinishedRuns:
    """The ids of the runs this process stored lately (bounded): a second delivery of one of them is known to be a
    duplicate even when Redis, where every worker marks its stored runs, was down as the run ended."""

    def __init__(self, size: int = 1000) -> None:
        self._ids: deque[str] = deque(maxlen=size)

    def add(self, run_id: str) -> None:
        self._ids.append(run_id)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._ids


@dataclass(frozen=True)
class UpdateContext:
    """What a run works with: the adapters, the coins, the clock and the budget's lengths of its claims.
    `slot_done_ttl`: how long "this slot is stored" is remembered; `fetch_claim_ttl`: how long a run keeps its slot
    to itself while it fetches; `max_cooldown`: the longest Retry-After obeyed (app/domain/budget.py)."""

    source: PriceSource
    repo: PriceRepository
    bus: UpdateBus
    claims: Claims
    tracked: TrackedCoins
    clock: Callable[[], datetime]
    slot_done_ttl: timedelta = timedelta(hours=1)
    fetch_claim_ttl: timedelta = timedelta(minutes=1)
    max_cooldown: timedelta = timedelta(hours=1)
    metrics: Metrics = field(default_factory=NullMetrics)  # hears of runs, CoinGecko calls and records stored
    finished: FinishedRuns = field(default_factory=FinishedRuns)  # this process's stored runs (kept by Services)
    run_done_ttl: timedelta = timedelta(hours=1)  # how long "this run stored" is remembered in Redis


def run_update(ctx: UpdateContext, slot: datetime | None = None, run_id: str | None = None) -> UpdateReport | None:
    """One update run: poll, store, then announce on `crypto-update`.

    `slot` is the scheduled tick a beat-triggered run belongs to: a slot already stored, or being fetched by
    another run at this moment, is skipped (returns None), so a second beat firing the same tick costs no CoinGecko
    credit even when two workers pick both triggers up at once. The "being fetched" claim lasts `ctx.fetch_claim_ttl`
    and belongs to `run_id` (the task id): a retry or redelivery of the run that took it goes ahead, so a run whose
    worker died mid-fetch is not mistaken for its own duplicate. Manual runs pass no slot and always run.
    Every run that stored is marked done by its `run_id` (in Redis for `ctx.run_done_ttl`, and in
    `ctx.finished`): the broker delivering the same run again after it stored (a message restored to the queue
    when a worker's connection to Redis broke while it ran, or published twice) is skipped, scheduled or manual.
    A 429 starts a cooldown of its Retry-After, at most `ctx.max_cooldown`, during which no run calls CoinGecko.
    Raises what poll_prices raises. A Redis failure after the batch is stored is logged, not raised: the data is
    safe, and the web re-reads the store periodically. `ctx.metrics` hears of stored and skipped runs, of each
    CoinGecko call and of the records stored (failures are counted by report_failure).
    """
    metrics = ctx.metrics
    claims = ctx.claims
    if run_id is not None and _stored_before(ctx, run_id):
        log.info("run %s already stored its batch; skipping this second delivery of it", run_id)
        metrics.run_finished("skipped")
        return None
    if slot is not None:
        try:
            if claims.is_claimed(slot_key(slot)):
                log.info("slot %s already stored; skipping this duplicate trigger", slot.isoformat())
                metrics.run_finished("skipped")
                return None
            # Checking "stored" alone leaves a window: twins started together both see nothing stored yet.
            if not claims.claim(slot_fetch_key(slot), int(ctx.fetch_claim_ttl.total_seconds()), owner=run_id):
                log.info("slot %s is already being fetched by another run; skipping this duplicate trigger",
                         slot.isoformat())
                metrics.run_finished("skipped")
                return None
        except BrokerUnavailable as exc:
            log.warning("cannot check slot %s (%s); running anyway, the store ignores duplicates", slot, exc)
    _respect_cooldown(claims)
    try:
        report = poll_prices(ctx.source, ctx.repo, ctx.tracked, ctx.clock, slot, metrics)
    except UpstreamRateLimited as exc:
        _start_cooldown(claims, exc, ctx.max_cooldown)
        raise
    if run_id is not None:
        ctx.finished.add(run_id)
    try:
        if run_id is not None:
            claims.claim(run_done_key(run_id), int(ctx.run_done_ttl.total_seconds()))
        if slot is not None:
            claims.claim(slot_key(slot), int(ctx.slot_done_ttl.total_seconds()))
        ctx.bus.publish({**report.event(), "prices": latest_prices(ctx.repo, ctx.tracked, report.coins)})
    except BrokerUnavailable as exc:
        log.warning("stored %d new records but could not announce them: %s", report.new_records, exc)
    metrics.run_finished("stored")
    return report


def _stored_before(ctx: UpdateContext, run_id: str) -> bool:
    if run_id in ctx.finished:
        return True
    try:
        return ctx.claims.is_claimed(run_done_key(run_id))
    except BrokerUnavailable:
        return False  # not known as stored: it runs


def latest_prices(repo: PriceRepository, tracked: TrackedCoins, coins: list[str]) -> list[dict[str, Any]]:
    """What the web's live stream pushes for the coins (CoinGecko ids) just stored: per coin and tracked currency,
    the newest record and the deviation of the last DEVIATION_WINDOW, as GET /api/v1/coins shows them (public ids).
    Read after the batch is stored; a store that fails now costs the push only (an empty list), not the run."""
    public = {tracked.source_id(p): p for p in tracked.public_ids}
    out = []
    try:
        # One store read for every pair (3,000 at 1,000 coins x 3 currencies), not one per pair.
        windows = repo.last_n_many([(coin, vs) for coin in coins for vs in tracked.vs_currencies], DEVIATION_WINDOW)
        for coin in coins:
            for vs in tracked.vs_currencies:
                rows = windows.get((coin, vs))
                if rows and coin in public:
                    latest = rows[0]
                    out.append({"coin": public[coin], "currency": vs, "price": latest.price,
                                "market_cap": latest.market_cap, "change_24h": latest.change_24h,
                                "deviation": population_std([r.price for r in rows]),
                                "observed_at": latest.observed_at.isoformat(),
                                "fetched_at": latest.fetched_at.isoformat()})
    except StorageUnavailable as exc:
        log.warning("stored the batch but cannot read it back for the live stream: %s", exc)
        return []
    return out


COOLDOWN_KEY = "upstream-cooldown"


def _respect_cooldown(claims: Claims) -> None:
    """Raise UpstreamRateLimited without calling CoinGecko while an earlier 429's Retry-After runs, whichever
    worker or run received it: coingecko.md §7, never send again before Retry-After."""
    try:
        remaining = claims.remaining(COOLDOWN_KEY)
    except BrokerUnavailable:
        return
    if remaining:
        raise UpstreamRateLimited(f"CoinGecko asked us to wait; {remaining:.0f} s of its Retry-After left",
                                  retry_after=remaining)


def _start_cooldown(claims: Claims, exc: UpstreamRateLimited, max_cooldown: timedelta) -> None:
    # Capped: a bogus Retry-After (a day, a year) must not stop updates for that long.
    seconds = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_FALLBACK_SECONDS
    seconds = min(seconds, max_cooldown.total_seconds()) if math.isfinite(seconds) else max_cooldown.total_seconds()
    try:
        claims.claim(COOLDOWN_KEY, max(1, round(seconds)))
    except BrokerUnavailable:
        pass


def report_failure(bus: UpdateBus, error: AppError, clock: Callable[[], datetime],
                   retry_in: float | None, metrics: Metrics | None = None) -> None:
    """Announce a failed attempt (the web shows it while it has no data) and count it as "retried" (`retry_in`
    given) or "failed" (given up). Never raises.

    `retry_at` (absolute, ISO 8601) lets the web say how long is left at the time it answers; `retry_in_seconds`
    stays for webs that predate it.
    """
    (metrics or NullMetrics()).run_finished("failed" if retry_in is None else "retried")
    now = clock()
    event = {"event": "failed", "at": now.isoformat(), "error": error.to_dict(),
             "retry_in_seconds": round(retry_in, 1) if retry_in is not None else None,
             "retry_at": (now + timedelta(seconds=retry_in)).isoformat() if retry_in is not None else None,
             "clock_skew_seconds": getattr(error, "clock_skew_seconds", None)}
    try:
        bus.publish(event)
    except BrokerUnavailable as exc:
        log.warning("could not announce the failure: %s", exc)


def retry_decision(error: AppError, attempt: int, now: datetime, deadline: datetime,
                   rng: Callable[[], float] = random.random, max_delay: float | None = None,
                   base_seconds: float = 10.0) -> tuple[float | None, str]:
    """(seconds to wait before retrying after `error` on attempt `attempt` (0-based), or None; why not, if None).

    Permanent errors are not retried. A 429 waits for Retry-After (or 60 s when absent) plus jitter, never less.
    Other transient errors back off exponentially from `base_seconds` (10 s, 20 s, 40 s, … up to 5 min) with
    jitter. No retry is scheduled at or past `deadline` (the next scheduled run), so an outage never piles up stale
    runs, nor one longer than `max_delay` (the broker's visibility timeout: a longer countdown would be redelivered
    early).
    """
    if not error.transient:
        return None, "not retryable"
    if isinstance(error, UpstreamRateLimited):
        base = error.retry_after if error.retry_after is not None else RATE_LIMIT_FALLBACK_SECONDS
        delay = base + rng() * min(30.0, max(1.0, base * 0.25))
    else:
        base = min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** attempt)
        delay = base * (0.75 + 0.5 * rng())
    # Compared as seconds, not as now + delay: a Retry-After of 1e20 s or in year 9999 overflows datetime.
    if not delay < (deadline - now).total_seconds():  # also catches NaN
        return None, "no time left before the next scheduled run"
    if max_delay is not None and delay > max_delay:
        return None, f"a {delay:.0f} s wait is longer than a retry may wait"
    return delay, ""


def scheduled_slot(schedule: CronSchedule, now: datetime) -> datetime:
    """The tick a beat-triggered run belongs to, read from the worker's clock. Beat fires at the tick by its own
    clock; a worker whose clock is a little behind would otherwise see the previous tick (already stored) and skip
    this one, so a tenth of the interval (at most a minute) of skew is allowed for."""
    margin = min(timedelta(minutes=1), schedule.shortest_interval() / 10)
    return schedule.previous(now + margin)


def run_deadline(schedule: CronSchedule, now: datetime, slot: datetime | None) -> datetime:
    """When a run must give way: the tick after its slot for scheduled runs, the next tick for manual ones."""
    return schedule.next(slot if slot is not None else now)


STARTUP_CLAIM = "startup-update"


def forget_dead_runs(claims: Claims, schedule: CronSchedule, now: datetime) -> None:
    """Drop what runs of a stopped instance left in Redis that would hold a fresh start back: the start-up claim
    (its workers' "update at start" lasts a minute) and the "being fetched" claims of the current slot (a dead run's
    claim made the fresh start's update skip as "already being fetched by another run" until it expired). Call it
    only when no other instance can be running on this Redis (`make run` holds DATA_DIR's lock). Raises
    BrokerUnavailable."""
    for slot in {schedule.previous(now), scheduled_slot(schedule, now)}:
        claims.release(slot_fetch_key(slot))
    claims.release(STARTUP_CLAIM)


def needs_startup_update(repo: PriceRepository, tracked: TrackedCoins, now: datetime, max_age: timedelta) -> bool:
    """Whether the store lacks fresh data for any tracked coin (so a process starting now should update at once)."""
    pairs = list(tracked.pairs())
    found = repo.latest_many(pairs)
    for pair in pairs:
        latest = found.get(pair)
        if latest is None or now - latest.fetched_at > max_age:
            return True
    return False
