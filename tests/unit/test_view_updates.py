"""The web's view applies each update instead of re-reading every pair: one store read an update, the same answers
as a full reload (the last 100 polled records), and full reloads at start and after missed events."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from app.domain.model import TrackedCoins
from app.services.reporting import StatsView, build_summaries
from tests.fakes import T0, obs
from tests.memory_store import InMemoryPriceRepository

COINS = tuple(f"coin-{i:02d}" for i in range(20))
TRACKED = TrackedCoins(COINS, vs_currencies=("usd", "eur"))


class CountingRepository(InMemoryPriceRepository):
    """Counts the store reads the view makes, whichever method it uses."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def latest(self, coin, vs_currency):
        self.reads.append("latest")
        return super().latest(coin, vs_currency)

    def last_n(self, coin, vs_currency, n):
        self.reads.append("last_n")
        return super().last_n(coin, vs_currency, n)

    def latest_many(self, pairs):
        self.reads.append("latest_many")
        return super().latest_many(pairs)

    def last_n_many(self, pairs, n):
        self.reads.append(f"last_n_many({len(pairs)}, {n})")
        return super().last_n_many(pairs, n)


def poll(repo, k: int, *, coins=COINS) -> None:
    """One update: a record for every coin in both currencies, the k-th of the series."""
    repo.add_batch([obs(c, 100.0 + (k * 7 + i) % 13 + k / 3, T0 + timedelta(minutes=k), vs=vs)
                    for i, c in enumerate(coins) for vs in ("usd", "eur")])


def answers(view: StatsView) -> dict:
    return {pair: (s.latest, s.prices, s.deviation) for pair, s in view._summaries.items()}


def reloaded(repo) -> dict:
    return {pair: (s.latest, s.prices, s.deviation) for pair, s in build_summaries(repo, TRACKED).items()}


@pytest.fixture
def repo():
    return CountingRepository()


@pytest.fixture
def view(repo, clock):
    return StatsView(repo, TRACKED, clock, stale_after=timedelta(minutes=30))


def test_an_update_is_applied_with_one_store_read_and_gives_what_a_full_reload_gives(repo, view):
    for k in range(105):  # more than the deviation's window, so records also leave it
        poll(repo, k)
    view.refresh()
    for k in range(105, 110):
        poll(repo, k)
        repo.reads.clear()
        view.refresh()
        assert repo.reads == [f"last_n_many({len(COINS) * 2}, 2)"]  # not one read per coin and currency
        assert answers(view) == reloaded(repo)


def test_the_start_is_one_read_of_every_pair(repo, view):
    for k in range(3):
        poll(repo, k)

    view.refresh()

    assert repo.reads == [f"last_n_many({len(COINS) * 2}, 100)"]
    assert answers(view) == reloaded(repo)


def test_a_pair_more_than_one_record_behind_is_read_again_whole(repo, view):
    for k in range(3):
        poll(repo, k)
    view.refresh()
    poll(repo, 3, coins=COINS[:5])  # an update the view did not apply (its event came late)
    poll(repo, 4, coins=COINS[:10])
    repo.reads.clear()

    view.refresh()

    assert repo.reads == [f"last_n_many({len(COINS) * 2}, 2)", "last_n_many(10, 100)"]
    assert answers(view) == reloaded(repo)


def test_an_unchanged_pair_keeps_its_prepared_summary_and_a_backfill_changes_nothing(repo, view):
    poll(repo, 0)
    view.refresh()
    before = dict(view._summaries)
    repo.add_batch([dataclasses.replace(obs(COINS[0], 5.0, T0 + timedelta(hours=1)), source="backfill")])

    view.refresh()

    assert all(view._summaries[pair] is summary for pair, summary in before.items())


def test_a_resubscription_reloads_every_pair(repo, view):
    poll(repo, 0)
    view.refresh()
    repo.reads.clear()

    view.note_event({"event": "resubscribed"})
    view.refresh()

    assert repo.reads == [f"last_n_many({len(COINS) * 2}, 100)"]


def test_a_failed_read_is_followed_by_a_full_reload(repo, view):
    poll(repo, 0)
    view.refresh()
    repo.fail_with = Exception("down")
    assert not view.try_refresh()
    repo.fail_with = None
    poll(repo, 1)
    repo.reads.clear()

    assert view.try_refresh()

    assert repo.reads == [f"last_n_many({len(COINS) * 2}, 100)"]
    assert answers(view) == reloaded(repo)


def test_an_update_checks_every_coin_against_the_store_in_one_read(repo, clock):
    from app.ports import FetchResult
    from app.services.polling import poll_prices
    from tests.fakes import FakePriceSource

    poll(repo, 0)
    fresh = [obs(c, 101.0, clock() - timedelta(minutes=1), vs=vs) for c in COINS for vs in ("usd", "eur")]
    repo.reads.clear()

    report = poll_prices(FakePriceSource(FetchResult(fresh)), repo, TRACKED, clock)

    assert report.new_records == len(COINS) * 2
    # One read, not one per coin and currency (3,000 at 1,000 coins x 3); the memory store's latest_many is its
    # last_n_many(pairs, 1).
    assert repo.reads == ["latest_many", f"last_n_many({len(COINS) * 2}, 1)"]
