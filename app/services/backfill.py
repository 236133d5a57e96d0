"""Backfill: a coin's past from CoinGecko's /market_chart/range, one chunk per step, only what is not held yet,
within the shared 429 cooldown and a per-minute call budget that leaves room for the scheduled updates."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable

from app.domain.backfill import (DONE, FAILED, FREE_PLAN_MAX_DAYS, QUEUED, RUNNING, WAITING, BackfillProgress,
                                 Chunk, plan_chunks)
from app.domain.errors import AppError, BrokerUnavailable, InvalidQuery, UpstreamError, UpstreamRateLimited
from app.domain.model import TrackedCoins
from app.ports import BackfillState, Claims, HistorySource, Metrics, NullMetrics, PriceRepository, UsageCounter
from app.services.polling import COOLDOWN_KEY, _start_cooldown, upstream_status

log = logging.getLogger(__name__)

# A backfill calls CoinGecko only while all processes together made fewer calls than this in the current UTC
# minute. Keyless IPs get as few as 5 calls a minute (coingecko.md §4): four leave the schedule's one call per tick
# its room.
MINUTE_BUDGET = 4
TRANSIENT_RETRY_SECONDS = 30.0  # CoinGecko down or the store busy: the step is tried again after this long
# A chunk being fetched and stored is claimed, so two steps of the same backfill (asked twice, or by the CLI and the
# worker at once) never pay CoinGecko for it twice; a step that dies frees it after this long. Well above one
# chunk's fetch and store (CoinGecko's timeouts, the store's busy timeout): the release is a plain delete, which
# would free another step's newer claim if a step ever outlived its own.
CHUNK_CLAIM_SECONDS = 300


@dataclass(frozen=True)
class Step:
    """What one backfill step did: the progress after it, and when to take the next step (None: finished)."""

    progress: BackfillProgress
    next_in_seconds: float | None


def max_days(plan: str, api_key: str | None) -> int | None:
    """How far back the plan reaches (None: no limit we know of). Demo and keyless: the past 365 days (§4)."""
    return None if plan == "pro" and api_key else FREE_PLAN_MAX_DAYS


def parse_days(value: object, limit: int | None) -> int:
    """`days` of a backfill request, a whole number from 1 to `limit`. Raises InvalidQuery saying the limit."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidQuery(f"days must be a whole number of at least 1, got {value!r}",
                           details={"parameter": "days", "value": value})
    if limit is not None and value > limit:
        raise InvalidQuery(f"days {value} is beyond CoinGecko's reach on the Demo or keyless plan: it serves the past "
                           f"{limit} days only (error_code 10012); ask for at most {limit}",
                           details={"parameter": "days", "value": value, "max": limit})
    return value


def start_backfill(state: BackfillState, tracked: TrackedCoins, coin: str, days: object, currency: str | None,
                   now: datetime, limit: int | None) -> BackfillProgress:
    """Validate a backfill request and save its progress as queued (chunks held already count as done).

    Raises UnknownCoin, UnknownCurrency, InvalidQuery (days), BrokerUnavailable. A new request replaces the progress
    of an earlier one; chunks stored by any earlier backfill stay held and are not fetched again.
    """
    source_id, vs = tracked.resolve(coin), tracked.resolve_currency(currency)
    days = parse_days(days, limit)
    chunks = plan_chunks(now, days)
    held = state.held_chunks(source_id, vs)
    progress = BackfillProgress(coin=source_id, currency=vs, days=days, state=QUEUED, chunks_total=len(chunks),
                                chunks_done=sum(1 for c in chunks if c.key in held), updated_at=now.isoformat())
    state.save_progress(source_id, vs, progress.to_dict())
    return progress


def backfill_progress(state: BackfillState, tracked: TrackedCoins, coin: str,
                      currency: str | None) -> BackfillProgress | None:
    """The saved progress of a coin's newest backfill, or None. Raises UnknownCoin, UnknownCurrency."""
    source_id, vs = tracked.resolve(coin), tracked.resolve_currency(currency)
    data = state.load_progress(source_id, vs)
    return BackfillProgress.from_dict(data) if data else None


def backfill_step(source: HistorySource, repo: PriceRepository, state: BackfillState, usage: UsageCounter,
                  claims: Claims, coin: str, vs_currency: str, days: int, clock: Callable[[], datetime], *,
                  minute_budget: int = MINUTE_BUDGET, max_cooldown: timedelta = timedelta(hours=1),
                  metrics: Metrics | None = None, owner: str | None = None) -> Step:
    """Fetch and store the oldest chunk not held yet, or say how long to wait before trying (a 429's cooldown,
    whoever received it; the minute's call budget spent; a transient failure). Idempotent: a chunk is marked held
    only after its records are stored, so a step that dies half-way is simply taken again, and the store skips
    records it has. A permanent refusal (10012: beyond the plan's 365 days) ends the backfill as failed, saying
    so. Raises BrokerUnavailable when the progress cannot be read or saved. `metrics` hears of each chunk
    ("stored", "retried" or "failed") and of its CoinGecko call.

    The chunk is claimed first (CHUNK_CLAIM_SECONDS): a step running at the same time takes the next chunk, or waits
    when every chunk left is claimed. `owner` (the task's id) lets a redelivered step take back its own claim."""
    metrics = metrics or NullMetrics()
    now = clock()
    saved = state.load_progress(coin, vs_currency)
    progress = BackfillProgress.from_dict(saved) if saved else BackfillProgress(coin, vs_currency, days)
    if progress.days != days:  # a newer request replaced the one this step belongs to
        return Step(progress, None)
    chunks = plan_chunks(now, days)
    held = state.held_chunks(coin, vs_currency)
    pending = [c for c in chunks if c.key not in held]
    progress = replace(progress, chunks_total=len(chunks), chunks_done=len(chunks) - len(pending))
    if not pending:
        progress = replace(progress, state=DONE, wait_until=None, updated_at=now.isoformat())
        state.save_progress(coin, vs_currency, progress.to_dict())
        log.info("backfill of %s/%s done: %d chunks held, %d fetched by this run, %d records stored",
                 coin, vs_currency, progress.chunks_total, progress.chunks_fetched, progress.records_stored)
        return Step(progress, None)
    wait = _wait_seconds(claims, usage, now, minute_budget)
    if wait:
        return _waiting(state, progress, now, wait, None)
    chunk = _claim_next(claims, state, coin, vs_currency, pending, owner)
    if chunk is None:  # another step is fetching every chunk left: look again when it should be done
        log.info("backfill of %s/%s: the %d chunks left are being fetched by another step", coin, vs_currency,
                 len(pending))
        return Step(progress, TRANSIENT_RETRY_SECONDS)
    try:
        return _fetch_chunk(source, repo, state, usage, claims, progress, pending, chunk, now, clock, minute_budget,
                            max_cooldown, metrics)
    finally:
        try:
            claims.release(_claim_key(coin, vs_currency, chunk.key))
        except BrokerUnavailable:
            pass  # it expires


def _claim_key(coin: str, vs_currency: str, chunk_key: str) -> str:
    return f"backfill-chunk:{coin}:{vs_currency}:{chunk_key}"


def _claim_next(claims: Claims, state: BackfillState, coin: str, vs_currency: str, pending: list[Chunk],
                owner: str | None) -> Chunk | None:
    """The first pending chunk this step claims and no other step stored since `pending` was read. A step marks its
    chunk held before it gives the claim back, so looking at the held chunks after claiming closes that window."""
    for chunk in pending:
        key = _claim_key(coin, vs_currency, chunk.key)
        if not claims.claim(key, CHUNK_CLAIM_SECONDS, owner):
            continue
        if chunk.key in state.held_chunks(coin, vs_currency):
            claims.release(key)
            continue
        return chunk
    return None


def _fetch_chunk(source: HistorySource, repo: PriceRepository, state: BackfillState, usage: UsageCounter,
                 claims: Claims, progress: BackfillProgress, pending: list[Chunk], chunk: Chunk, now: datetime,
                 clock: Callable[[], datetime], minute_budget: int, max_cooldown: timedelta, metrics: Metrics) -> Step:
    coin, vs_currency = progress.coin, progress.currency
    try:
        try:
            observations = source.fetch_range(coin, vs_currency, chunk.start, chunk.end)
        except UpstreamError as exc:
            metrics.upstream_call(upstream_status(exc))
            raise
        metrics.upstream_call("200")
        stored = repo.add_batch(observations)
    except UpstreamRateLimited as exc:
        metrics.backfill_chunk("retried")
        _start_cooldown(claims, exc, max_cooldown)
        wait = _wait_seconds(claims, usage, clock(), minute_budget) or exc.retry_after or TRANSIENT_RETRY_SECONDS
        log.warning("backfill of %s/%s: chunk %s rate limited; next call in %.0f s", coin, vs_currency, chunk.key,
                    wait)
        return _waiting(state, progress, now, wait, exc)
    except AppError as exc:
        metrics.backfill_chunk("retried" if exc.transient else "failed")
        if not exc.transient:
            progress = replace(progress, state=FAILED, last_error=exc.to_dict(), wait_until=None,
                               updated_at=now.isoformat())
            state.save_progress(coin, vs_currency, progress.to_dict())
            log.error("backfill of %s/%s stopped at chunk %s: %s", coin, vs_currency, chunk.key, exc.message)
            return Step(progress, None)
        log.warning("backfill of %s/%s: chunk %s failed (%s); trying again in %.0f s", coin, vs_currency,
                    chunk.key, exc.message, TRANSIENT_RETRY_SECONDS)
        return _waiting(state, progress, now, TRANSIENT_RETRY_SECONDS, exc)
    state.mark_held(coin, vs_currency, chunk.key)
    metrics.backfill_chunk("stored")
    progress = progress.chunk_stored(stored, fetched=True, at=clock())
    left = len(pending) - 1
    progress = replace(progress, state=RUNNING if left else DONE)
    state.save_progress(coin, vs_currency, progress.to_dict())
    log.info("backfill of %s/%s: chunk %s (%d of %d) stored %d new of %d records", coin, vs_currency, chunk.key,
             progress.chunks_done, progress.chunks_total, stored, len(observations))
    if not left:
        log.info("backfill of %s/%s done: %d chunks, %d fetched by this run, %d records stored", coin, vs_currency,
                 progress.chunks_total, progress.chunks_fetched, progress.records_stored)
    return Step(progress, 0.0 if left else None)


def _wait_seconds(claims: Claims, usage: UsageCounter, now: datetime, minute_budget: int) -> float:
    """Seconds before a backfill may call CoinGecko: a 429's cooldown left, else the rest of a minute whose budget
    is spent, else 0. Redis down: no wait (the cooldown cannot be read by the polls either; CoinGecko's 429 says)."""
    try:
        cooldown = claims.remaining(COOLDOWN_KEY)
        if cooldown:
            return cooldown
        if usage.usage(now)["minute"] >= minute_budget:
            return 60.0 - now.second - now.microsecond / 1e6 + 0.5
    except BrokerUnavailable:
        return 0.0
    return 0.0


def _waiting(state: BackfillState, progress: BackfillProgress, now: datetime, wait: float,
             error: AppError | None) -> Step:
    progress = replace(progress, state=WAITING, wait_until=(now + timedelta(seconds=wait)).isoformat(),
                       last_error=error.to_dict() if error else progress.last_error, updated_at=now.isoformat())
    state.save_progress(progress.coin, progress.currency, progress.to_dict())
    return Step(progress, wait)


def run_backfill(source: HistorySource, repo: PriceRepository, state: BackfillState, usage: UsageCounter,
                 claims: Claims, coin: str, vs_currency: str, days: int, clock: Callable[[], datetime],
                 sleep: Callable[[float], None], **step_options) -> BackfillProgress:
    """Every step of a backfill in this process, waiting as told in between (the CLI's loop; the worker takes one
    step per task instead). Returns the final progress."""
    while True:
        step = backfill_step(source, repo, state, usage, claims, coin, vs_currency, days, clock, **step_options)
        if step.next_in_seconds is None:
            return step.progress
        if step.next_in_seconds > 0:
            sleep(step.next_in_seconds)
