"""The PriceRepository.ohlc contract, run against every store (memory, SQLite, mongomock, a real MongoDB-wire server):
per-bucket aggregates grouped by the store, aligned to UTC, with the same bounds as between()."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.domain.history import OhlcBucket, buckets_of
from app.domain.model import Observation
from app.storage import sqlite as sqlite_store
from tests.contract.backends import sqlite_plan
from tests.contract.conftest import open_backend

DAY = datetime(2026, 11, 25, tzinfo=timezone.utc)
HOUR = 3600


def record(price: float, at: datetime, *, coin: str = "bitcoin", vs: str = "usd", market_cap: float | None = 8e11,
           volume: float | None = 2.5e10) -> Observation:
    return Observation(coin, vs, price, market_cap, volume, None, at, at + timedelta(seconds=1))


def at(hours: float = 0, minutes: float = 0) -> datetime:
    return DAY + timedelta(hours=hours, minutes=minutes)


def test_records_are_grouped_into_utc_aligned_buckets(repo):
    # Hour 0: four records written out of time order; hour 1: none; hour 2: one.
    hour0 = [record(101.0, at(0, 5), market_cap=1.0, volume=10.0), record(99.0, at(0, 20), market_cap=2.0),
             record(104.0, at(0, 35), market_cap=3.0), record(102.0, at(0, 50), market_cap=4.0, volume=40.0)]
    later = record(110.0, at(2, 0))
    repo.add_batch([hour0[2], later, hour0[0], hour0[3], hour0[1]])

    buckets = repo.ohlc("bitcoin", "usd", at(0), at(3), HOUR)

    assert buckets == [OhlcBucket(at(0), 101.0, 104.0, 99.0, 102.0, 4, 4.0, 40.0),
                       OhlcBucket(at(2), 110.0, 110.0, 110.0, 110.0, 1, 8e11, 2.5e10)]
    for b in buckets:
        assert b.start.tzinfo is timezone.utc


def test_buckets_align_to_the_epoch_not_to_the_start_asked(repo):
    repo.add_batch([record(1.0, at(5, 10)), record(2.0, at(7, 59)), record(3.0, at(8, 0))])

    buckets = repo.ohlc("bitcoin", "usd", at(5), at(12), 4 * HOUR)

    # 4-hour buckets start at 04:00 and 08:00 UTC, whatever the range's start.
    assert [(b.start, b.open, b.close, b.n) for b in buckets] == [(at(4), 1.0, 2.0, 2), (at(8), 3.0, 3.0, 1)]


def test_start_is_inclusive_and_end_exclusive_like_between(repo):
    series = [record(100.0 + i, at(0, 15 * i)) for i in range(8)]
    repo.add_batch(series)
    half = timedelta(milliseconds=500)

    assert [b.n for b in repo.ohlc("bitcoin", "usd", at(0, 15), at(1, 30), HOUR)] == [3, 2]
    # A start just after a record excludes it; an end just after a record includes it.
    buckets = repo.ohlc("bitcoin", "usd", at(0) + half, at(1, 30) + half, HOUR)
    assert [(b.open, b.close, b.n) for b in buckets] == [(101.0, 103.0, 3), (104.0, 106.0, 3)]
    assert repo.ohlc("bitcoin", "usd", at(1), at(1), HOUR) == []


def test_the_last_records_missing_market_cap_is_not_replaced_by_an_earlier_one(repo):
    repo.add_batch([record(1.0, at(0, 0), market_cap=5.0, volume=6.0),
                    record(2.0, at(0, 30), market_cap=None, volume=None)])

    [bucket] = repo.ohlc("bitcoin", "usd", at(0), at(1), HOUR)

    assert (bucket.market_cap, bucket.volume) == (None, None)


def test_other_coins_and_currencies_are_left_out(repo):
    repo.add_batch([record(100.0, at(0, 10)), record(5.0, at(0, 20), coin="ethereum"),
                    record(90.0, at(0, 30), vs="eur"), record(1e6, at(0, 40), coin="bitcoin-cash")])

    assert repo.ohlc("bitcoin", "usd", at(0), at(1), HOUR) == [
        OhlcBucket(at(0), 100.0, 100.0, 100.0, 100.0, 1, 8e11, 2.5e10)]
    assert [b.open for b in repo.ohlc("bitcoin", "eur", at(0), at(1), HOUR)] == [90.0]
    assert repo.ohlc("dogecoin", "usd", at(0), at(1), HOUR) == []


def test_a_long_history_groups_like_the_reference(backend, repo):
    # 15-minute records with a price path that makes every bucket's open/high/low/close differ; as many as the
    # backend stores in reasonable time (a year, except on mongomock: see MongomockBackend).
    size = min(backend.history_size, 365 * 96)
    start = DAY - timedelta(minutes=15 * size)
    records = [record(50_000 + (i * 7919) % 1000 + i / 1000, start + timedelta(minutes=15 * i),
                      market_cap=None if i % 5 == 0 else 9e11 + i, volume=2e10 + i) for i in range(size)]
    for i in range(0, size, backend.history_batch):
        repo.add_batch(records[i:i + backend.history_batch])

    for width in (900, HOUR, 4 * HOUR, 86_400):
        assert repo.ohlc("bitcoin", "usd", start, DAY, width) == buckets_of(records, width), width


def test_sqlite_serves_ohlc_from_the_primary_key(tmp_path):
    store = next(open_backend("sqlite", tmp_path))
    plan = sqlite_plan(store.repo, sqlite_store._OHLC, store.repo._ohlc_args("bitcoin", "usd", at(0), at(24), HOUR))

    # The range is a SEARCH of the primary key (not a SCAN of the table), and so are both per-bucket look-ups.
    assert sum(1 for step in plan if step.startswith("SEARCH") and "PRIMARY KEY" in step) == 3, plan
    assert not any(step.startswith("SCAN observations") for step in plan), plan


def test_mongodb_groups_on_the_server_unless_it_lacks_the_operators(mongo_backend):
    repo = mongo_backend.repo
    repo.add_batch([record(1.0, at(0, 5)), record(2.0, at(0, 50))])

    assert [b.n for b in repo.ohlc("bitcoin", "usd", at(0), at(1), HOUR)] == [2]

    # mongomock and MongoDB run the aggregation; FerretDB 1.x refuses its $subtract/$mod (error 238) and the store
    # groups client-side instead (README, "MongoDB").
    ferretdb = mongo_backend.name == "mongodb" and mongo_backend.ferretdb_version()
    assert repo._server_groups_ohlc is (not ferretdb)
