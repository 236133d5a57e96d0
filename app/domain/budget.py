"""The run's time budget: every duration that must agree with the others (one attempt, the task's time limits, the
broker's visibility timeout, retry and claim lengths, beat's expiry), derived in one place from the settings."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# What one attempt spends besides CoinGecko's connect and read timeouts: the store's write (SQLite waits up to its
# 10 s busy timeout for a lock) and the few Redis round trips of a run, with a margin.
STORE_AND_BUS_SECONDS = 15.0
# The soft time limit gives one attempt this much more before it is stopped as a (retried) failure, and the hard
# limit this much more again before the pool process is killed, should the soft limit's exception not return.
SOFT_LIMIT_MARGIN_SECONDS = 10
HARD_LIMIT_MARGIN_SECONDS = 30
# Without BROKER_VISIBILITY_TIMEOUT_SECONDS: half the update interval, so a redelivered run is still before its
# expiry at the next tick; never under a minute.
MIN_VISIBILITY_TIMEOUT_SECONDS = 60.0
# kombu sweeps for overdue unacknowledged runs about this many times per visibility timeout (one ZRANGE each), at
# most every MAX_RESTORE_INTERVAL_SECONDS.
RESTORE_SWEEPS_PER_TIMEOUT = 5
MAX_RESTORE_INTERVAL_SECONDS = 10
# How long a worker's "update at start" claim holds the other workers starting with it back.
STARTUP_CLAIM_SECONDS = 60
# Beat's `expires`: the interval less a tenth of it (at most a minute), never under 30 s.
MIN_BEAT_EXPIRY_SECONDS = 30.0
MAX_BEAT_EXPIRY_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class TimeBudget:
    """Durations in seconds (timedelta where the services take one). Build it with `TimeBudget.derive`."""

    interval: timedelta  # the shortest gap between two scheduled runs
    attempt_seconds: float  # the longest one attempt takes: connect + read timeouts + store and Redis
    soft_limit_seconds: int  # Celery task_soft_time_limit: the attempt becomes a retried failure
    hard_limit_seconds: int  # Celery task_time_limit: the pool process is ended
    visibility_timeout_seconds: float  # a dead worker's unacknowledged run is redelivered after this long
    restore_interval_seconds: int  # kombu's sweep for overdue unacknowledged runs
    max_retry_delay_seconds: float  # the longest retry countdown (held unacknowledged by a worker meanwhile)
    fetch_claim_seconds: float  # a scheduled run keeps its slot to itself while it fetches
    slot_done_ttl: timedelta  # "this slot is stored" outlives the slot's tick by one interval
    max_cooldown: timedelta  # a 429's Retry-After is obeyed up to this long
    startup_claim_seconds: int  # one "update at start" however many workers start together
    beat_expiry_seconds: float  # a beat run not started by then is dropped (the next tick takes over)
    stale_after: timedelta  # the web calls its data stale past this age

    @classmethod
    def derive(cls, interval: timedelta, connect_timeout_seconds: float, read_timeout_seconds: float,
               visibility_timeout_seconds: float | None = None) -> "TimeBudget":
        """The budget for a schedule whose shortest gap is `interval`, CoinGecko timeouts, and the configured
        visibility timeout (None = derived from the interval)."""
        every = interval.total_seconds()
        attempt = connect_timeout_seconds + read_timeout_seconds + STORE_AND_BUS_SECONDS
        soft = int(attempt) + SOFT_LIMIT_MARGIN_SECONDS
        visibility = (visibility_timeout_seconds if visibility_timeout_seconds is not None
                      else max(MIN_VISIBILITY_TIMEOUT_SECONDS, every / 2))
        return cls(
            interval=interval,
            attempt_seconds=attempt,
            soft_limit_seconds=soft,
            hard_limit_seconds=int(attempt) + HARD_LIMIT_MARGIN_SECONDS,
            visibility_timeout_seconds=visibility,
            restore_interval_seconds=max(1, min(MAX_RESTORE_INTERVAL_SECONDS,
                                                int(visibility / RESTORE_SWEEPS_PER_TIMEOUT))),
            # A countdown plus the attempt after it should fit in the visibility timeout, or Redis hands the message
            # to another worker too (one extra, idempotent run). With a very short timeout, half of it still allows
            # retries rather than none.
            max_retry_delay_seconds=max(visibility / 2, visibility - (attempt + SOFT_LIMIT_MARGIN_SECONDS)),
            # One attempt, capped at half the visibility timeout. The claim belongs to the run's task id, so its own
            # retry or redelivery goes ahead; a twin trigger is skipped while it lasts.
            fetch_claim_seconds=max(1.0, min(attempt, visibility / 2)),
            slot_done_ttl=2 * interval,
            max_cooldown=interval,
            startup_claim_seconds=STARTUP_CLAIM_SECONDS,
            beat_expiry_seconds=max(MIN_BEAT_EXPIRY_SECONDS, every - min(MAX_BEAT_EXPIRY_MARGIN_SECONDS, every / 10)),
            stale_after=2 * interval,
        )
