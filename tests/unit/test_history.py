"""History buckets (pure): intervals, UTC alignment, the bucket limit, honest gaps, and the query's times."""
from datetime import datetime, timedelta, timezone

import pytest

from app.domain.errors import InvalidQuery
from app.domain.history import (MAX_BUCKETS, OhlcBucket, align, bucket_range, buckets_of, fill_buckets,
                                parse_instant, parse_interval)
from tests.fakes import obs

UTC = timezone.utc
DAY = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("1h", 3600), ("4h", 14400), ("1d", 86400),
                                           (None, 900), (" 1H ", 3600)])
def test_intervals_parse_to_seconds(text, seconds):
    assert parse_interval(text)[1] == seconds


@pytest.mark.parametrize("text", ["5m", "1w", "", "900", "1 h"])
def test_an_unknown_interval_names_the_allowed_ones(text):
    with pytest.raises(InvalidQuery) as caught:
        parse_interval(text)
    assert caught.value.details["parameter"] == "interval"
    assert "15m, 1h, 4h, 1d" in caught.value.message


@pytest.mark.parametrize("seconds, expected", [(900, DAY + timedelta(hours=13, minutes=45)),
                                               (3600, DAY + timedelta(hours=13)),
                                               (14400, DAY + timedelta(hours=12)), (86400, DAY)])
def test_buckets_align_to_utc(seconds, expected):
    assert align(DAY + timedelta(hours=13, minutes=59, seconds=59), seconds) == expected


def test_alignment_is_in_utc_whatever_the_zone_of_the_time():
    in_tokyo = datetime(2026, 11, 25, 3, 0, tzinfo=timezone(timedelta(hours=9)))  # 2026-11-24 18:00 UTC
    assert align(in_tokyo, 86400) == datetime(2026, 11, 24, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-25T12:00:00Z", DAY + timedelta(hours=12)),
    ("2026-11-25T14:00:00+02:00", DAY + timedelta(hours=12)),
    ("2026-11-25T12:00:00", DAY + timedelta(hours=12)),  # no offset: UTC
    ("2026-11-25", DAY),
    ("1795608000", DAY + timedelta(hours=12)),
    ("1795608000.5", DAY + timedelta(hours=12, milliseconds=500)),
])
def test_times_are_iso_8601_or_unix_seconds(text, expected):
    parsed = parse_instant(text, "from")
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "1e9", "nan", "99999999999999999", "--1", "12:00",
                                  "0001-01-01", "9999-12-31T23:59:59"])
def test_a_bad_time_names_the_parameter_and_the_forms(text):
    with pytest.raises(InvalidQuery) as caught:
        parse_instant(text, "to")
    assert caught.value.details["parameter"] == "to"
    assert "ISO-8601" in caught.value.message and "Unix seconds" in caught.value.message


def test_a_range_widens_to_whole_buckets_with_an_exclusive_end():
    span = bucket_range(DAY + timedelta(minutes=10), DAY + timedelta(hours=2), 3600)
    assert (span.start, span.end, span.count) == (DAY, DAY + timedelta(hours=2), 2)
    span = bucket_range(DAY + timedelta(minutes=10), DAY + timedelta(hours=2, seconds=1), 3600)
    assert span.count == 3


def test_the_default_day_at_15_minutes_is_97_buckets_including_the_current_one():
    now = DAY + timedelta(hours=12, minutes=7)
    assert bucket_range(now - timedelta(hours=24), now, 900).count == 97


def test_from_after_to_is_refused():
    with pytest.raises(InvalidQuery) as caught:
        bucket_range(DAY + timedelta(hours=1), DAY, 900)
    assert caught.value.details["parameter"] == "from" and "after" in caught.value.message


def test_more_than_2000_buckets_is_refused_naming_the_limit():
    bucket_range(DAY, DAY + timedelta(minutes=15 * MAX_BUCKETS), 900)  # exactly the limit is fine
    with pytest.raises(InvalidQuery) as caught:
        bucket_range(DAY, DAY + timedelta(minutes=15 * MAX_BUCKETS + 1), 900)
    assert caught.value.details["limit"] == 2000 and "2000" in caught.value.message


def test_an_empty_bucket_is_present_with_nulls_never_a_neighbours_value():
    span = bucket_range(DAY, DAY + timedelta(hours=3), 3600)
    found = [OhlcBucket(DAY, 1.0, 3.0, 0.5, 2.0, 4, 9.0, 8.0),
             OhlcBucket(DAY + timedelta(hours=2), 5.0, 5.0, 5.0, 5.0, 1, None, 7.0)]

    rows = fill_buckets(span, found)

    assert rows == [
        {"t": "2026-11-25T00:00:00+00:00", "open": 1.0, "high": 3.0, "low": 0.5, "close": 2.0, "n": 4,
         "market_cap": 9.0, "volume": 8.0},
        {"t": "2026-11-25T01:00:00+00:00", "open": None, "high": None, "low": None, "close": None, "n": 0,
         "market_cap": None, "volume": None},
        {"t": "2026-11-25T02:00:00+00:00", "open": 5.0, "high": 5.0, "low": 5.0, "close": 5.0, "n": 1,
         "market_cap": None, "volume": 7.0},
    ]


def test_reference_buckets_take_open_and_close_by_time_not_by_input_order():
    records = [obs("bitcoin", 3.0, DAY + timedelta(minutes=30), market_cap=30.0),
               obs("bitcoin", 1.0, DAY + timedelta(minutes=1), market_cap=10.0),
               obs("bitcoin", 9.0, DAY + timedelta(minutes=10)),
               obs("bitcoin", 4.0, DAY + timedelta(hours=1))]

    assert buckets_of(records, 3600) == [OhlcBucket(DAY, 1.0, 9.0, 1.0, 3.0, 3, 30.0, 1_000_000.0),
                                         OhlcBucket(DAY + timedelta(hours=1), 4.0, 4.0, 4.0, 4.0, 1, 800_000_000,
                                                    1_000_000.0)]
