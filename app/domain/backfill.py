"""Backfill planning: which /market_chart/range windows to ask CoinGecko for, and the progress of one backfill."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

DAY = timedelta(days=1)
# CoinGecko's automatic granularity of /market_chart/range (coingecko.md §2): a window of one day ending now gives
# 5-minute points, any other window up to 90 days hourly points, a longer one daily points. Chunks of at most 90
# days therefore get hourly points, the finest a Demo/keyless plan is given for the past.
HOURLY_MAX_DAYS = 90
# Demo and keyless plans see the past 365 days only; older windows are refused with error_code 10012 (§2, §4).
FREE_PLAN_MAX_DAYS = 365
PAID_PLAN_MAX_DAYS = 366 * 20

QUEUED, RUNNING, WAITING, DONE, FAILED = "queued", "running", "waiting", "done", "failed"


def granularity(start: datetime, end: datetime, now: datetime) -> str:
    """The points CoinGecko gives for the window [start, end) asked at `now`: "5m", "hourly" or "daily"."""
    span = end - start
    if span <= DAY and now - end < timedelta(minutes=5):
        return "5m"
    return "hourly" if span <= timedelta(days=HOURLY_MAX_DAYS) else "daily"


@dataclass(frozen=True)
class Chunk:
    """One /market_chart/range call: [start, end), whole UTC days, so the same backfill plans the same chunks all
    day long and a chunk already stored is recognised by its `key`."""

    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return f"{self.start.date().isoformat()}/{self.end.date().isoformat()}"


def utc_day(at: datetime) -> datetime:
    at = at.astimezone(timezone.utc)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def plan_chunks(now: datetime, days: int, max_chunk_days: int = HOURLY_MAX_DAYS) -> list[Chunk]:
    """The whole UTC days within the last `days` days before today, oldest first, in chunks of at most
    `max_chunk_days` (each then gets hourly points). Today is left to the schedule's own polls. The first day is
    the first whole one after `now - days`, so 365 days never reach past CoinGecko's 365-day limit of free plans,
    and the plan stays the same all day long. Raises ValueError for days < 1 or a chunk size < 1."""
    if days < 1 or max_chunk_days < 1:
        raise ValueError("days and max_chunk_days must be at least 1")
    end = utc_day(now)
    earliest = now - days * DAY
    start = utc_day(earliest) + (DAY if earliest > utc_day(earliest) else timedelta(0))
    chunks = []
    while start < end:
        stop = min(end, start + max_chunk_days * DAY)
        chunks.append(Chunk(start, stop))
        start = stop
    return chunks


@dataclass(frozen=True)
class BackfillProgress:
    """What GET /api/v1/coins/{id}/backfill answers: the state of the newest backfill of a coin in a currency."""

    coin: str
    currency: str
    days: int
    state: str = QUEUED
    chunks_total: int = 0
    chunks_done: int = 0
    chunks_fetched: int = 0  # of chunks_done, how many this run had to fetch (the rest were already held)
    records_stored: int = 0
    last_error: dict[str, Any] | None = None
    wait_until: str | None = None  # ISO 8601: no call before this (a 429's cooldown or the minute budget)
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BackfillProgress":
        """The progress as to_dict gave it; keys it does not know (a newer version's) are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def chunk_stored(self, records: int, fetched: bool, at: datetime) -> "BackfillProgress":
        return replace(self, state=RUNNING, chunks_done=self.chunks_done + 1,
                       chunks_fetched=self.chunks_fetched + (1 if fetched else 0),
                       records_stored=self.records_stored + records, wait_until=None, last_error=None,
                       updated_at=at.isoformat())

    def finished(self) -> bool:
        return self.state in (DONE, FAILED)
