"""Price history as OHLC buckets (pure): intervals, UTC bucket alignment, the bucket limit, and the query's times."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from app.domain.errors import InvalidQuery

# Bucket widths in seconds. Buckets are aligned to the Unix epoch, so in UTC a day starts at 00:00, a 4-hour bucket
# at 00, 04, 08..., the way exchanges and CoinGecko's own OHLC align them.
INTERVALS: dict[str, int] = {"15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}
DEFAULT_INTERVAL = "15m"
DEFAULT_SPAN = timedelta(hours=24)
# More buckets than a chart can show (2,000 x 15 min is about 3 weeks, x 1 d about 5.5 years), and a bound on the
# work and the size of one answer.
MAX_BUCKETS = 2000
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNIX_SECONDS = re.compile(r"^-?[0-9]{1,12}(\.[0-9]+)?$")
BUCKET_FIELDS = ("t", "open", "high", "low", "close", "n", "market_cap", "volume")


@dataclass(frozen=True, slots=True)
class OhlcBucket:
    """The records of one coin/currency whose observed_at falls in [start, start + interval).

    open/close are the prices of the first/last record by observed_at, high/low the extremes, n how many records;
    market_cap and volume are the last record's (None when it had none).
    """

    start: datetime
    open: float
    high: float
    low: float
    close: float
    n: int
    market_cap: float | None
    volume: float | None


def parse_interval(value: str | None) -> tuple[str, int]:
    """`15m|1h|4h|1d` (None = 15m) to (name, seconds). Raises InvalidQuery naming the allowed values."""
    name = DEFAULT_INTERVAL if value is None else value.strip().lower()
    if name not in INTERVALS:
        raise _invalid("interval", value, list(INTERVALS))
    return name, INTERVALS[name]


def parse_instant(value: str, parameter: str) -> datetime:
    """ISO-8601 (`2026-11-25`, `2026-11-25T12:00:00Z`, with any offset; no offset means UTC) or Unix seconds, to an
    aware UTC datetime. Raises InvalidQuery naming the parameter and both accepted forms."""
    text = value.strip()
    try:
        if _UNIX_SECONDS.match(text):
            at = EPOCH + timedelta(seconds=float(text))
        else:
            at = datetime.fromisoformat(text)
            at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
        # Far from any price history, and near datetime's ends the default span (to - 24 h) and the bucket
        # arithmetic would overflow: refuse such instants as bad input rather than answer 500.
        if not EPOCH <= at < LATEST_INSTANT:
            raise ValueError(f"{parameter} is outside 1970..9000")
        return at
    except (ValueError, OverflowError):
        raise _invalid(parameter, value, ["ISO-8601 such as 2026-11-25T12:00:00Z",
                                          "Unix seconds such as 1795608000"]) from None


def align(at: datetime, seconds: int) -> datetime:
    """The start of the UTC bucket of width `seconds` that holds `at`."""
    offset = (at - EPOCH) // timedelta(seconds=1)  # whole seconds, rounded down (also before 1970)
    return EPOCH + timedelta(seconds=offset - offset % seconds)


@dataclass(frozen=True)
class BucketRange:
    """The buckets a history query covers: `count` buckets of `seconds` from `start`; records in [start, end)."""

    start: datetime
    end: datetime
    seconds: int

    @property
    def count(self) -> int:
        return int((self.end - self.start).total_seconds()) // self.seconds

    def starts(self) -> list[datetime]:
        return [self.start + timedelta(seconds=i * self.seconds) for i in range(self.count)]


def bucket_range(start: datetime, end: datetime, seconds: int) -> BucketRange:
    """Widen [start, end) to whole buckets: start rounds down, end rounds up (an end on a boundary stays: it is
    exclusive). Raises InvalidQuery when start > end or when more than MAX_BUCKETS buckets would result."""
    if start > end:
        raise InvalidQuery(f"from ({start.isoformat()}) is after to ({end.isoformat()})",
                           details={"parameter": "from", "from": start.isoformat(), "to": end.isoformat()})
    first = align(start, seconds)
    last = align(end, seconds)
    if last < end:
        try:
            last += timedelta(seconds=seconds)
        except OverflowError:  # an end in the last bucket before year 10000
            raise InvalidQuery(f"to ({end.isoformat()}) is out of range", details={"parameter": "to"}) from None
    span = BucketRange(first, last, seconds)
    if span.count > MAX_BUCKETS:
        raise InvalidQuery(
            f"from..to at this interval gives {span.count} buckets, more than the limit of {MAX_BUCKETS}: "
            f"narrow from/to or choose a wider interval (one of {', '.join(INTERVALS)})",
            details={"parameter": "interval", "buckets": span.count, "limit": MAX_BUCKETS,
                     "allowed": list(INTERVALS)})
    return span


def fill_buckets(span: BucketRange, found: Iterable[OhlcBucket]) -> list[dict]:
    """Every bucket of `span`, oldest first, as {"t", "open", "high", "low", "close", "n", "market_cap", "volume"}.

    A bucket without a record is present with nulls and n 0: an honest gap, never a neighbour's value carried
    forward. Buckets in `found` outside the span are ignored.
    """
    by_start = {b.start: b for b in found}
    rows: list[dict[str, object]] = []
    for start in span.starts():
        b = by_start.get(start)
        if b is None:
            rows.append({"t": start.isoformat(), "open": None, "high": None, "low": None, "close": None, "n": 0,
                         "market_cap": None, "volume": None})
        else:
            rows.append({"t": start.isoformat(), "open": b.open, "high": b.high, "low": b.low, "close": b.close,
                         "n": b.n, "market_cap": b.market_cap, "volume": b.volume})
    return rows


def buckets_of(records: Iterable, seconds: int) -> list[OhlcBucket]:
    """OHLC buckets from records (objects with observed_at, price, market_cap, volume_24h), oldest first.

    The reference the stores are held to, and what a store without server-side grouping uses.
    """
    rows = sorted(records, key=lambda o: o.observed_at)
    out: list[OhlcBucket] = []
    for o in rows:
        start = align(o.observed_at, seconds)
        if out and out[-1].start == start:
            b = out[-1]
            out[-1] = OhlcBucket(start, b.open, max(b.high, o.price), min(b.low, o.price), o.price, b.n + 1,
                                 o.market_cap, o.volume_24h)
        else:
            out.append(OhlcBucket(start, o.price, o.price, o.price, o.price, 1, o.market_cap, o.volume_24h))
    return out


def _invalid(parameter: str, value, allowed: list[str]) -> InvalidQuery:
    return InvalidQuery(f"{parameter} {value!r} is not valid; allowed: {', '.join(allowed)}",
                        details={"parameter": parameter, "value": value, "allowed": allowed})
