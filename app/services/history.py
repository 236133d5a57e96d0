"""History and rolling statistics of one coin, read from the store per request (not from the web's in-memory view)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, TypeVar

from app.domain.errors import InvalidQuery, StorageUnavailable
from app.domain.history import DEFAULT_SPAN, bucket_range, fill_buckets, parse_instant, parse_interval
from app.domain.model import TrackedCoins
from app.domain.stats import ESTIMATORS, SERIES, parse_choice, parse_window, rolling_stats
from app.ports import PriceRepository

log = logging.getLogger(__name__)
T = TypeVar("T")


def _read(what: str, fn: Callable[[], T]) -> T:
    """Run a store read. A failure is told by code and driver error class only, to the client and in the log: store
    messages name hosts and file paths, which neither anonymous clients nor shared logs should carry."""
    try:
        return fn()
    except StorageUnavailable as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "-"
        log.warning("cannot read %s from the store (%s, %s)", what, exc.code, cause)
        raise StorageUnavailable(f"the store is unreachable, so {what} cannot be read now; retry later") from None


@dataclass(frozen=True)
class History:
    """OHLC buckets of one coin in one currency; `start`/`end` are the range widened to whole buckets."""

    coin: str
    currency: str
    interval: str
    start: datetime
    end: datetime
    buckets: list[dict]

    def to_dict(self) -> dict:
        return {"coin": self.coin, "currency": self.currency, "interval": self.interval,
                "from": self.start.isoformat(), "to": self.end.isoformat(), "buckets": self.buckets}


def _currency(tracked: TrackedCoins, value: str | None) -> str:
    """The currency asked for (None = the first configured); an untracked one is a bad parameter (400) here."""
    if value is None:
        return tracked.vs_currencies[0]
    text = value.strip().lower()
    if text not in tracked.vs_currencies:
        raise InvalidQuery(f"currency {value!r} is not tracked; allowed: {', '.join(tracked.vs_currencies)}",
                           details={"parameter": "currency", "value": value, "allowed": list(tracked.vs_currencies)})
    return text


def coin_history(repo: PriceRepository, tracked: TrackedCoins, coin: str, *, now: datetime,
                 start: str | None = None, end: str | None = None, interval: str | None = None,
                 currency: str | None = None) -> History:
    """OHLC history of a tracked coin (public id or alias target) from the records stored for it.

    `start`/`end` are ISO-8601 or Unix seconds as the client sent them (end exclusive); without `end` the range
    runs to `now` inclusive, without `start`
    24 h before the end. Every bucket of the range is present (empty ones with nulls, n 0). Read-only.
    Raises InvalidQuery (bad interval, currency, from/to, from > to, more than MAX_BUCKETS buckets), UnknownCoin,
    StorageUnavailable.
    """
    name, seconds = parse_interval(interval)
    vs = _currency(tracked, currency)
    stop = parse_instant(end, "to") if end is not None else now
    begin = parse_instant(start, "from") if start is not None else stop - DEFAULT_SPAN
    # `to` is exclusive; without one the range runs up to now inclusive (observed_at has whole seconds), so the
    # current bucket and a record stamped this second are in it.
    span = bucket_range(begin, stop if end is not None else now + timedelta(seconds=1), seconds)
    source_id = tracked.resolve(coin.strip().lower())
    found = _read("history", lambda: repo.ohlc(source_id, vs, span.start, span.end, seconds))
    return History(coin.strip().lower(), vs, name, span.start, span.end, fill_buckets(span, found))


def coin_statistics(repo: PriceRepository, tracked: TrackedCoins, coin: str, *, now: datetime,
                    window: str | None = None, estimator: str | None = None, on: str | None = None,
                    currency: str | None = None) -> dict:
    """Rolling statistics of a tracked coin over a count window (the newest N records) or a time window (the
    records of the last 24h/7d/30d before `now`); see app.domain.stats.rolling_stats for the fields. Defaults
    (window 100, population, price) give /deviation's figure as `sd`. Read-only.
    Raises InvalidQuery (bad window, estimator, on, currency), UnknownCoin, StorageUnavailable.
    """
    span = parse_window(window)
    how = parse_choice(estimator, "estimator", ESTIMATORS)
    series = parse_choice(on, "on", SERIES)
    vs = _currency(tracked, currency)
    source_id = tracked.resolve(coin.strip().lower())
    count, seconds = span.count, span.seconds
    if count is not None:
        records = _read("statistics", lambda: repo.last_n(source_id, vs, count))[::-1]
    else:
        # observed_at has whole seconds: the end takes in a record stamped within the current second.
        records = _read("statistics", lambda: repo.between(source_id, vs, now - timedelta(seconds=seconds or 0),
                                                           now + timedelta(seconds=1)))
    return rolling_stats(records, how, series)
