"""The PriceRepository contract, written once and run against every store (memory, SQLite, mongomock, a real
MongoDB-wire server): what services may rely on whichever store the settings pick."""
from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from app.domain.model import Observation
from tests.contract.backends import HISTORY_END, STEP, history
from tests.fakes import T0, obs

UTC_PLUS_2 = timezone(timedelta(hours=2))


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def test_a_batch_is_stored_and_counted(repo):
    batch = [obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(5)]

    assert repo.add_batch(batch) == 5
    assert repo.count() == 5


def test_an_empty_batch_writes_nothing(repo):
    assert repo.add_batch([]) == 0
    assert repo.count() == 0


def test_a_batch_that_fails_partway_leaves_nothing(backend, repo):
    if backend.no_partial_failure:
        pytest.skip(backend.no_partial_failure)
    backend.break_writes_of_poison()
    before = [obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(50)]
    after = [obs("ethereum", 10.0 + i, T0 + minutes(i)) for i in range(50)]

    with pytest.raises(backend.poison_error):
        repo.add_batch(before + [backend.poison(T0)] + after)

    assert repo.count() == 0
    assert repo.latest("bitcoin", "usd") is None


def test_retry_after_a_partial_write_converges(repo):
    # What a standalone MongoDB leaves when a batch is cut short (no transaction): the first part stored. The task
    # retries the whole batch; the retry adds exactly the rest.
    batch = [obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(10)]
    repo.add_batch(batch[:4])

    assert repo.add_batch(batch) == 6
    assert repo.count() == 10
    assert repo.last_n("bitcoin", "usd", 20) == batch[::-1]


def test_a_replayed_batch_writes_nothing(repo):
    batch = [obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(5)]
    repo.add_batch(batch)

    assert repo.add_batch(batch) == 0
    assert repo.count() == 5


def test_a_replay_keeps_the_first_values_of_a_key(repo):
    repo.add_batch([obs("bitcoin", 100.0, T0)])

    assert repo.add_batch([obs("bitcoin", 999.0, T0), obs("bitcoin", 101.0, T0 + minutes(1))]) == 1
    assert [o.price for o in repo.last_n("bitcoin", "usd", 5)] == [101.0, 100.0]


def test_a_key_repeated_in_one_batch_is_stored_once_as_first_given(repo):
    assert repo.add_batch([obs("bitcoin", 100.0, T0), obs("bitcoin", 999.0, T0)]) == 1
    assert repo.latest("bitcoin", "usd").price == 100.0


def test_latest_is_the_newest_record_of_each_coin(repo):
    # Written out of time order, and interleaved between coins.
    repo.add_batch([obs("bitcoin", 101.0, T0 + minutes(1)), obs("ethereum", 12.0, T0 + minutes(2)),
                    obs("bitcoin", 102.0, T0 + minutes(2)), obs("bitcoin", 100.0, T0),
                    obs("ethereum", 11.0, T0 + minutes(1))])
    repo.add_batch([obs("bitcoin", 99.0, T0 - minutes(5))])

    assert repo.latest("bitcoin", "usd") == obs("bitcoin", 102.0, T0 + minutes(2))
    assert repo.latest("ethereum", "usd") == obs("ethereum", 12.0, T0 + minutes(2))


def test_latest_of_an_unknown_coin_is_none(repo):
    repo.add_batch([obs("bitcoin", 100.0)])

    assert repo.latest("dogecoin", "usd") is None
    assert repo.latest("bitcoin", "eur") is None


def test_last_n_gives_the_newest_records_newest_first(repo):
    series = [obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(10)]
    repo.add_batch(series[5:] + series[:5])
    repo.add_batch([obs("ethereum", 1.0, T0 + minutes(30))])

    assert repo.last_n("bitcoin", "usd", 3) == series[:-4:-1]
    assert repo.last_n("bitcoin", "usd", 50) == series[::-1]
    assert repo.last_n("bitcoin", "usd", 0) == []
    assert repo.last_n("dogecoin", "usd", 3) == []


def test_between_reads_oldest_first_start_inclusive_end_exclusive(repo):
    series = [obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(10)]
    repo.add_batch(series[::-1])

    assert repo.between("bitcoin", "usd", T0 + minutes(2), T0 + minutes(5)) == series[2:5]
    assert repo.between("bitcoin", "usd", T0 - minutes(60), T0 + minutes(60)) == series
    assert repo.between("bitcoin", "usd", T0 + minutes(3), T0 + minutes(3)) == []
    assert repo.between("ethereum", "usd", T0, T0 + minutes(60)) == []


def test_between_bounds_inside_a_second(repo):
    series = [obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(3)]
    repo.add_batch(series)
    half = timedelta(milliseconds=500)

    # start just after a record excludes it; end just after a record includes it.
    assert repo.between("bitcoin", "usd", T0 + half, T0 + minutes(2) + half) == series[1:]


def test_vs_currencies_are_kept_side_by_side(repo):
    usd = [obs("bitcoin", 100.0 + i, T0 + minutes(i), vs="usd") for i in range(3)]
    eur = [obs("bitcoin", 90.0 + i, T0 + minutes(i), vs="eur") for i in range(3)]
    gbp = [obs("bitcoin", 80.0, T0 + minutes(1), vs="gbp")]

    assert repo.add_batch(usd + eur + gbp) == 7

    assert repo.last_n("bitcoin", "usd", 10) == usd[::-1]
    assert repo.last_n("bitcoin", "eur", 10) == eur[::-1]
    assert repo.latest("bitcoin", "gbp") == gbp[0]
    assert repo.between("bitcoin", "eur", T0, T0 + minutes(2)) == eur[:2]
    assert repo.count() == 7


def test_optional_fields_round_trip_as_none(repo):
    record = Observation("bitcoin", "usd", 100.0, None, None, None, T0, T0)
    repo.add_batch([record])

    stored = repo.latest("bitcoin", "usd")

    assert stored == record
    assert (stored.market_cap, stored.volume_24h, stored.change_24h) == (None, None, None)


def test_figures_round_trip_exactly(repo):
    record = Observation("bitcoin", "usd", 98_765.4321, 1.9e12, 3.5e-7, -0.000123, T0, T0)
    repo.add_batch([record])

    assert repo.latest("bitcoin", "usd") == record


def test_datetimes_come_back_aware_in_utc_and_equal_to_what_was_written(repo):
    # Written in another zone; fetched_at with milliseconds (its resolution by design, as MongoDB stores it).
    observed = T0.astimezone(UTC_PLUS_2)
    fetched = (T0 + timedelta(seconds=2, milliseconds=345)).astimezone(UTC_PLUS_2)
    repo.add_batch([Observation("bitcoin", "usd", 100.0, None, None, None, observed, fetched)])

    stored = repo.latest("bitcoin", "usd")
    read_back = [stored, *repo.last_n("bitcoin", "usd", 1), *repo.between("bitcoin", "usd", T0, T0 + minutes(1))]

    for o in read_back:
        assert o.observed_at == observed and o.fetched_at == fetched
        for at in (o.observed_at, o.fetched_at):
            assert at.tzinfo is timezone.utc, at  # the stdlib's UTC: formatting HTTP dates requires it


def test_count_covers_every_coin_and_currency(repo):
    repo.add_batch([obs("bitcoin", 1.0), obs("ethereum", 2.0), obs("bitcoin", 3.0, vs="eur")])
    repo.add_batch([obs("bitcoin", 4.0, T0 + minutes(1))])

    assert repo.count() == 4


def test_ping_answers_when_the_store_is_up(repo):
    assert repo.ping() is None


def test_ensure_schema_twice_changes_nothing(backend, repo):
    repo.add_batch([obs("bitcoin", 100.0)])
    schema = backend.schema()

    repo.ensure_schema()

    assert backend.schema() == schema
    assert repo.count() == 1


def test_a_closed_store_reconnects_when_used_again(repo):
    repo.add_batch([obs("bitcoin", 100.0)])
    repo.close()

    assert repo.latest("bitcoin", "usd") == obs("bitcoin", 100.0)
    assert repo.add_batch([obs("bitcoin", 101.0, T0 + minutes(1))]) == 1
    repo.close()
    repo.close()  # closing twice is harmless
    assert repo.count() == 2


def test_a_large_history_reads_back_through_the_key_index(backend, repo):
    size = backend.history_size  # 100,000 except where a stand-in is too slow (see the backend's comment)
    records = history("bitcoin", size)
    for i in range(0, size, backend.history_batch):
        assert repo.add_batch(records[i:i + backend.history_batch]) == len(records[i:i + backend.history_batch])
    assert repo.add_batch(records[-backend.history_batch:]) == 0  # a large replay too
    repo.add_batch(history("ethereum", 100) + history("bitcoin", 100, vs="eur"))  # neighbours in the index

    assert repo.count() == size + 200
    assert repo.last_n("bitcoin", "usd", 100) == records[:-101:-1]
    day_start = HISTORY_END - timedelta(days=1) if size >= 1440 else records[0].observed_at
    in_day = [o for o in records if day_start <= o.observed_at < day_start + timedelta(days=1)]
    assert repo.between("bitcoin", "usd", day_start, day_start + timedelta(days=1)) == in_day
    assert len(in_day) == min(size, 1440) and in_day[-1].observed_at == HISTORY_END - STEP
    # Speed is measured by `python -m tests.contract.bench_store`, not asserted here; what a test can state is
    # that the plan walks the key index rather than the table.
    backend.last_n_plan_uses_key_index("bitcoin", "usd")


def _backfilled(price: float, at):
    import dataclasses

    return dataclasses.replace(obs("bitcoin", price, at), source="backfill")


def test_a_records_source_is_kept(repo):
    repo.add_batch([obs("bitcoin", 100.0, T0), _backfilled(90.0, T0 - minutes(60))])

    rows = repo.between("bitcoin", "usd", T0 - minutes(120), T0 + minutes(1))

    assert [(r.price, r.source) for r in rows] == [(90.0, "backfill"), (100.0, "poll")]


def test_latest_and_last_n_are_the_polled_records_only(repo):
    repo.add_batch([obs("bitcoin", 100.0 + i, T0 + minutes(i)) for i in range(3)])
    repo.add_batch([_backfilled(50.0 + i, T0 + minutes(10 + i)) for i in range(3)])

    assert repo.latest("bitcoin", "usd").price == 102.0
    assert [r.price for r in repo.last_n("bitcoin", "usd", 100)] == [102.0, 101.0, 100.0]


def test_ohlc_includes_backfilled_records(repo):
    repo.add_batch([_backfilled(50.0, T0), obs("bitcoin", 100.0, T0 + minutes(1))])

    [bucket] = repo.ohlc("bitcoin", "usd", T0, T0 + minutes(60), 3600)

    assert (bucket.open, bucket.close, bucket.n) == (50.0, 100.0, 2)


def test_latest_many_gives_the_newest_polled_record_of_each_pair_asked(repo):
    repo.add_batch([obs("bitcoin", 100.0, T0), obs("bitcoin", 101.0, T0 + minutes(1)),
                    obs("bitcoin", 90.0, T0 + minutes(1), vs="eur"), obs("ethereum", 10.0, T0),
                    _backfilled(999.0, T0 + minutes(5)), obs("solana", 5.0, T0)])

    found = repo.latest_many([("bitcoin", "usd"), ("bitcoin", "eur"), ("ethereum", "usd"), ("dogecoin", "usd")])

    assert found == {("bitcoin", "usd"): repo.latest("bitcoin", "usd"),
                     ("bitcoin", "eur"): repo.latest("bitcoin", "eur"),
                     ("ethereum", "usd"): repo.latest("ethereum", "usd")}
    assert found[("bitcoin", "usd")].price == 101.0  # not the newer backfilled one, and solana was not asked


def test_last_n_many_equals_last_n_of_each_pair(repo):
    batch = [obs(coin, 100.0 + i, T0 + minutes(i), vs=vs) for coin in ("bitcoin", "ethereum", "tether")
             for vs in ("usd", "eur") for i in range(7 if coin == "bitcoin" else 3)]
    repo.add_batch(batch + [_backfilled(999.0, T0 + minutes(30)), _backfilled(998.0, T0 - minutes(30))])
    pairs = [(c, v) for c in ("bitcoin", "ethereum", "dogecoin") for v in ("usd", "eur")]

    found = repo.last_n_many(pairs, 5)

    assert found == {pair: repo.last_n(*pair, 5) for pair in pairs if pair[0] != "dogecoin"}
    assert [len(found[p]) for p in pairs[:4]] == [5, 5, 3, 3]
    assert repo.last_n_many(pairs, 0) == {} and repo.last_n_many([], 5) == {}
