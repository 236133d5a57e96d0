"""Shared counters and small state in Redis: CoinGecko calls per minute and per month (every process counts its
own), and backfill progress. Implements UsageCounter and BackfillState."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import redis

from app.domain.errors import BrokerUnavailable

log = logging.getLogger(__name__)
KEY_PREFIX = "cryptostats:"  # as app.broker's markers
MINUTE_TTL_SECONDS = 120  # a minute's counter outlives its minute a little, so "this minute" is never cut short
MONTH_TTL_SECONDS = 32 * 86400 + 3600
SOCKET_TIMEOUT_SECONDS = 2.0  # a count must never hold up a CoinGecko call for long


def minute_key(now: datetime) -> str:
    return f"{KEY_PREFIX}usage:minute:{now.astimezone(timezone.utc):%Y-%m-%dT%H:%M}"


def month_key(now: datetime, kind: str = "calls") -> str:
    return f"{KEY_PREFIX}usage:{kind}:{now.astimezone(timezone.utc):%Y-%m}"


class RedisCounters:
    """INCR with expiry, keyed by UTC minute and by UTC month (atomic across processes); backfill progress as
    JSON and the held chunks as a set, per coin and currency (kept until deleted: a backfill run again a year
    later still knows what it stored)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT_SECONDS,
                                                socket_connect_timeout=SOCKET_TIMEOUT_SECONDS)
        return self._client

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis {what} failed: {exc.__class__.__name__}") from exc

    def count_call(self, status: int | None, now: datetime) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, ttl in ((minute_key(now), MINUTE_TTL_SECONDS), (month_key(now), MONTH_TTL_SECONDS)):
                pipe.incr(key)
                pipe.expire(key, ttl)
            if status == 429:
                pipe.incr(month_key(now, "rate-limited"))
                pipe.expire(month_key(now, "rate-limited"), MONTH_TTL_SECONDS)
            pipe.execute()
        except redis.RedisError as exc:  # the call itself matters more than its count
            log.debug("could not count a CoinGecko call: %s", exc)

    def usage(self, now: datetime) -> dict[str, int]:
        with self._errors("read"):
            minute, month, limited = self.client.mget(minute_key(now), month_key(now),
                                                      month_key(now, "rate-limited"))
        return {"minute": int(minute or 0), "month": int(month or 0), "rate_limited_month": int(limited or 0)}

    def _progress_key(self, coin: str, vs_currency: str) -> str:
        return f"{KEY_PREFIX}backfill:progress:{coin}/{vs_currency}"

    def _chunks_key(self, coin: str, vs_currency: str) -> str:
        return f"{KEY_PREFIX}backfill:chunks:{coin}/{vs_currency}"

    def load_progress(self, coin: str, vs_currency: str) -> dict[str, Any] | None:
        with self._errors("read"):
            raw = self.client.get(self._progress_key(coin, vs_currency))
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def save_progress(self, coin: str, vs_currency: str, progress: dict[str, Any]) -> None:
        with self._errors("write"):
            self.client.set(self._progress_key(coin, vs_currency), json.dumps(progress))

    def held_chunks(self, coin: str, vs_currency: str) -> set[str]:
        with self._errors("read"):
            members = self.client.smembers(self._chunks_key(coin, vs_currency))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    def mark_held(self, coin: str, vs_currency: str, chunk_key: str) -> None:
        with self._errors("write"):
            self.client.sadd(self._chunks_key(coin, vs_currency), chunk_key)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
