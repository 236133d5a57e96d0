"""The backfill planner and its progress: chunks on whole UTC days within the plan's reach, one chunk per step,
only what is not held, the shared cooldown and the minute budget obeyed, 10012 said plainly."""
from datetime import datetime, timedelta, timezone

import pytest

from app.domain.backfill import DONE, FAILED, FREE_PLAN_MAX_DAYS, WAITING, granularity, plan_chunks
from app.domain.errors import InvalidQuery, UpstreamHistoryLimit, UpstreamRateLimited, UpstreamServerError
from app.domain.model import TrackedCoins
from app.services.backfill import backfill_step, run_backfill, start_backfill
from app.services.polling import COOLDOWN_KEY
from tests.memory_store import InMemoryPriceRepository
from tests.backfill_fakes import FakeCounters, FakeHistorySource
from tests.fakes import FakeBus, FakeClock, obs

NOW = datetime(2026, 12, 1, 22, 45, tzinfo=timezone.utc)
TRACKED = TrackedCoins(("bitcoin", "ethereum"))


def test_chunks_cover_whole_days_before_today_in_at_most_90_days():
    chunks = plan_chunks(NOW, 365)

    assert chunks[0].start == datetime(2025, 12, 2, tzinfo=timezone.utc)
    assert chunks[-1].end == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert all(b.start == a.end for a, b in zip(chunks, chunks[1:]))
    assert all(c.end - c.start <= timedelta(days=90) for c in chunks)
    assert {granularity(c.start, c.end, NOW) for c in chunks} == {"hourly"}


def test_365_days_never_reach_past_the_free_plans_limit():
    assert plan_chunks(NOW, FREE_PLAN_MAX_DAYS)[0].start >= NOW - timedelta(days=365)


def test_the_plan_is_the_same_all_day():
    assert plan_chunks(NOW.replace(hour=0, minute=1), 30) == plan_chunks(NOW.replace(hour=23, minute=59), 30)


def test_granularity_follows_coingeckos_rules():
    day_ago = NOW - timedelta(days=1)
    assert granularity(day_ago, NOW, NOW) == "5m"
    assert granularity(day_ago - timedelta(days=3), NOW - timedelta(days=3), NOW) == "hourly"
    assert granularity(NOW - timedelta(days=91), NOW, NOW) == "daily"


def test_more_than_365_days_on_a_free_plan_is_refused_saying_why():
    with pytest.raises(InvalidQuery, match="365"):
        start_backfill(FakeCounters(), TRACKED, "bitcoin", 400, None, NOW, FREE_PLAN_MAX_DAYS)


@pytest.mark.parametrize("days", [0, -3, "30", 2.5, None, True])
def test_days_must_be_a_whole_number_of_at_least_one(days):
    with pytest.raises(InvalidQuery):
        start_backfill(FakeCounters(), TRACKED, "bitcoin", days, None, NOW, FREE_PLAN_MAX_DAYS)


def _run(source, repo, state, bus, days=200, clock=None):
    clock = clock or FakeClock(NOW)
    start_backfill(state, TRACKED, "bitcoin", days, None, clock(), FREE_PLAN_MAX_DAYS)
    return run_backfill(source, repo, state, state, bus, "bitcoin", "usd", days, clock, clock_sleep(clock))


def clock_sleep(clock):
    return lambda seconds: clock.advance(seconds=seconds)


def test_a_backfill_stores_every_chunk_and_reports_done():
    repo, state, source = InMemoryPriceRepository(), FakeCounters(), FakeHistorySource()

    progress = _run(source, repo, state, FakeBus())

    assert progress.state == DONE
    assert progress.chunks_done == progress.chunks_total == len(source.calls) == 3
    assert progress.records_stored == repo.count() == 199 * 24


class ConcurrentStep(FakeHistorySource):
    """While its first chunk is being fetched, another step of the same backfill runs (asked twice: two workers)."""

    def __init__(self, other_step) -> None:
        super().__init__()
        self.other_step, self.other = other_step, []

    def fetch_range(self, coin, vs_currency, start, end):
        if not self.other:
            self.other.append(None)
            self.other[0] = self.other_step()
        return super().fetch_range(coin, vs_currency, start, end)


def test_two_steps_at_once_never_fetch_the_same_chunk():
    repo, state, bus, clock = InMemoryPriceRepository(), FakeCounters(), FakeBus(), FakeClock(NOW)
    start_backfill(state, TRACKED, "bitcoin", 200, None, clock(), FREE_PLAN_MAX_DAYS)
    source = ConcurrentStep(lambda: backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 200, clock))

    backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 200, clock)
    assert len(source.calls) == len(set(source.calls)) == 2  # the other step took the next chunk
    assert bus.claims == {}  # both claims given back
    final = run_backfill(source, repo, state, state, bus, "bitcoin", "usd", 200, clock, clock_sleep(clock))
    assert final.state == DONE
    assert len(source.calls) == len(set(source.calls)) == final.chunks_total == 3


class StoredMeanwhile(FakeCounters):
    """Another step stores `chunk` (marks it held, gives its claim back) just after this step read the held chunks."""

    def __init__(self, chunk) -> None:
        super().__init__()
        self.chunk, self.armed = chunk, False

    def held_chunks(self, coin, vs_currency):
        held = set(super().held_chunks(coin, vs_currency))
        if self.armed:  # the step's own read of the plan: the other step finishes right after it
            self.armed = False
            self.mark_held(coin, vs_currency, self.chunk.key)
        return held


def test_a_chunk_another_step_stored_since_the_plan_was_read_is_not_fetched_again():
    clock, bus = FakeClock(NOW), FakeBus()
    first = plan_chunks(clock(), 200)[0]
    state, source = StoredMeanwhile(first), FakeHistorySource()
    start_backfill(state, TRACKED, "bitcoin", 200, None, clock(), FREE_PLAN_MAX_DAYS)
    state.armed = True

    backfill_step(source, InMemoryPriceRepository(), state, state, bus, "bitcoin", "usd", 200, clock)
    assert source.calls and (first.start, first.end) not in source.calls  # it took the next chunk instead
    assert bus.claims == {}


def test_a_step_waits_while_every_chunk_left_is_being_fetched_elsewhere():
    repo, state, bus, clock = InMemoryPriceRepository(), FakeCounters(), FakeBus(), FakeClock(NOW)
    start_backfill(state, TRACKED, "bitcoin", 30, None, clock(), FREE_PLAN_MAX_DAYS)  # one chunk
    only = plan_chunks(clock(), 30)[0]
    assert bus.claim(f"backfill-chunk:bitcoin:usd:{only.key}", 300, owner="task-1")
    source = FakeHistorySource()

    step = backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 30, clock)
    assert (source.calls, step.next_in_seconds) == ([], 30.0)
    # The step that claimed it, redelivered after its worker died, takes its own claim back and fetches it.
    step = backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 30, clock, owner="task-1")
    assert len(source.calls) == 1 and step.progress.state == DONE


def test_a_second_run_fetches_nothing_already_held():
    repo, state, bus = InMemoryPriceRepository(), FakeCounters(), FakeBus()
    _run(FakeHistorySource(), repo, state, bus)
    again = FakeHistorySource()

    progress = _run(again, repo, state, bus)

    assert again.calls == []
    assert (progress.state, progress.chunks_done, progress.chunks_fetched) == (DONE, 3, 0)


def test_a_longer_backfill_later_fetches_only_the_missing_chunks():
    repo, state, bus = InMemoryPriceRepository(), FakeCounters(), FakeBus()
    _run(FakeHistorySource(), repo, state, bus, days=90)
    more = FakeHistorySource()

    _run(more, repo, state, bus, days=180)

    assert len(more.calls) == 1  # the 89 newest whole days are the same chunk as the first run's
    assert repo.count() == 179 * 24


def test_a_429_starts_the_shared_cooldown_and_no_call_is_made_before_it_ends():
    repo, state, bus = InMemoryPriceRepository(), FakeCounters(), FakeBus()
    clock = FakeClock(NOW)
    start_backfill(state, TRACKED, "bitcoin", 30, None, clock(), FREE_PLAN_MAX_DAYS)
    source = FakeHistorySource(UpstreamRateLimited("429", retry_after=120))

    first = backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 30, clock)
    assert first.progress.state == WAITING and first.next_in_seconds >= 120
    assert first.progress.last_error["code"] == "upstream_rate_limited"
    assert bus.remaining(COOLDOWN_KEY)
    second = backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 30, clock)

    assert len(source.calls) == 1 and second.progress.state == WAITING


def test_a_spent_minute_budget_makes_the_backfill_wait_for_the_next_minute():
    repo, state, bus = InMemoryPriceRepository(), FakeCounters(), FakeBus()
    clock = FakeClock(NOW + timedelta(seconds=20))
    for _ in range(4):
        state.count_call(200, clock())
    start_backfill(state, TRACKED, "bitcoin", 30, None, clock(), FREE_PLAN_MAX_DAYS)
    source = FakeHistorySource()

    step = backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 30, clock, minute_budget=4)

    assert source.calls == [] and 40 <= step.next_in_seconds <= 41


def test_10012_fails_the_backfill_saying_the_365_day_limit():
    repo, state, bus = InMemoryPriceRepository(), FakeCounters(), FakeBus()
    clock = FakeClock(NOW)
    start_backfill(state, TRACKED, "bitcoin", 30, None, clock(), None)
    source = FakeHistorySource(UpstreamHistoryLimit("only the past 365 days (error_code 10012)"))

    step = backfill_step(source, repo, state, state, bus, "bitcoin", "usd", 30, clock)

    assert step.next_in_seconds is None and step.progress.state == FAILED
    assert step.progress.last_error["code"] == "upstream_history_limit"
    assert len(source.calls) == 1


def test_a_transient_failure_is_tried_again_later_and_then_stored():
    repo, state, bus = InMemoryPriceRepository(), FakeCounters(), FakeBus()
    source = FakeHistorySource(UpstreamServerError("503"))

    progress = _run(source, repo, state, bus, days=30)

    assert progress.state == DONE and len(source.calls) == 2 and repo.count() == 29 * 24


def test_backfilled_records_never_change_the_latest_or_the_last_100_polled():
    repo, state, bus = InMemoryPriceRepository(), FakeCounters(), FakeBus()
    # Polled before the backfilled stretch, so the backfill's records are the newest stored.
    polled = [obs("bitcoin", 40000.0 + i, NOW - timedelta(days=40, minutes=15 * i)) for i in range(5)]
    repo.add_batch(polled)
    before = (repo.latest("bitcoin", "usd"), repo.last_n("bitcoin", "usd", 100))

    _run(FakeHistorySource(), repo, state, bus, days=30)

    assert (repo.latest("bitcoin", "usd"), repo.last_n("bitcoin", "usd", 100)) == before


def test_the_fake_serves_coingeckos_range_shape_and_refuses_beyond_365_days_with_10012():
    from app.upstream.coingecko import CoinGeckoClient
    from tests.fake_coingecko import FakeCoinGecko

    now = datetime.now(timezone.utc)
    with FakeCoinGecko() as fake:
        client = CoinGeckoClient(fake.base_url)
        hourly = client.fetch_range("bitcoin", "usd", now - timedelta(days=10), now - timedelta(days=9))
        body = requests_get(f"{fake.base_url}/coins/bitcoin/market_chart/range?vs_currency=usd"
                            f"&from={int((now - timedelta(days=200)).timestamp())}&to={int(now.timestamp())}")
        with pytest.raises(UpstreamHistoryLimit, match="365"):
            client.fetch_range("bitcoin", "usd", now - timedelta(days=400), now - timedelta(days=300))

    assert {o.observed_at.minute for o in hourly} == {0} and 23 <= len(hourly) <= 24
    assert set(body) == {"prices", "market_caps", "total_volumes"}
    assert {p[0] % 86_400_000 for p in body["prices"]} == {0}  # over 90 days: daily points at 00:00 UTC


def requests_get(url):
    import requests

    return requests.get(url, timeout=5).json()
