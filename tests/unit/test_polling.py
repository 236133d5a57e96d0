"""Update runs over fakes: what is stored, what is announced, what is skipped, when to retry."""
from datetime import timedelta

import pytest

from app.cron import parse_cron
from app.domain.errors import (StorageUnavailable, UpstreamBadResponse, UpstreamRateLimited, UpstreamRejected,
                               UpstreamServerError)
from app.domain.model import TrackedCoins
from app.ports import FetchResult
from app.services.polling import (STARTUP_CLAIM, FinishedRuns, forget_dead_runs, needs_startup_update,
                                  retry_decision, run_deadline, scheduled_slot, slot_fetch_key, slot_key)
from tests.memory_store import InMemoryPriceRepository
from tests.fakes import T0, FakePriceSource, obs, run_update_with

TRACKED = TrackedCoins(("bitcoin", "ethereum", "matic-network"))


def retry_delay(*args, **kwargs):
    """The wait retry_decision chooses (None: no retry)."""
    return retry_decision(*args, **kwargs)[0]


def answer(price=40000, at=T0):
    return FetchResult([obs("bitcoin", price, at), obs("ethereum", 2000, at), obs("polygon-ecosystem-token", 0.5, at)])


def test_one_request_for_all_coins_stores_and_announces(bus, clock):
    repo, source = InMemoryPriceRepository(), FakePriceSource(answer())
    report = run_update_with(source, repo, bus, TRACKED, clock)
    assert source.calls == [(("bitcoin", "ethereum", "polygon-ecosystem-token"), ("usd",))]
    assert report.new_records == 3 and repo.count() == 3
    [event] = bus.events
    assert event["event"] == "stored"
    assert event["coins"] == ["bitcoin", "ethereum", "polygon-ecosystem-token"]
    assert event["stored_at"] == clock().isoformat()


def test_replaying_the_same_answer_stores_nothing_new(bus, clock):
    repo = InMemoryPriceRepository()
    run_update_with(FakePriceSource(answer()), repo, bus, TRACKED, clock)
    report = run_update_with(FakePriceSource(answer()), repo, bus, TRACKED, clock)
    assert report.new_records == 0 and repo.count() == 3


def test_partial_answer_stores_the_valid_coins_and_reports_the_rest(bus, clock):
    repo = InMemoryPriceRepository()
    partial = FetchResult([obs("bitcoin", 40000)], {"ethereum/usd": "price: Not a valid number."})
    report = run_update_with(FakePriceSource(partial), repo, bus, TRACKED, clock)
    assert repo.count() == 1
    assert bus.events[0]["rejected"] == {"ethereum/usd": "price: Not a valid number."}
    assert report.coins == ["bitcoin"]


def test_a_stored_slot_is_not_fetched_again_but_manual_runs_are(bus, clock):
    repo = InMemoryPriceRepository()
    source = FakePriceSource(answer(), answer(41000, T0 + timedelta(minutes=1)))
    assert run_update_with(source, repo, bus, TRACKED, clock, slot=T0) is not None
    assert slot_key(T0) in bus.claims
    assert run_update_with(source, repo, bus, TRACKED, clock, slot=T0) is None  # second beat, same tick
    assert len(source.calls) == 1
    assert run_update_with(source, repo, bus, TRACKED, clock).new_records == 3  # manual run: never blocked


def test_redis_down_after_storing_keeps_the_data(bus, clock):
    repo = InMemoryPriceRepository()
    bus.down = True
    report = run_update_with(FakePriceSource(answer()), repo, bus, TRACKED, clock, slot=T0)
    assert report.new_records == 3 and repo.count() == 3


def test_store_outage_is_raised_for_the_task_to_retry(bus, clock):
    repo = InMemoryPriceRepository()
    repo.fail_with = StorageUnavailable("disk gone")
    with pytest.raises(StorageUnavailable):
        run_update_with(FakePriceSource(answer()), repo, bus, TRACKED, clock)
    assert bus.events == []


DEADLINE = T0 + timedelta(minutes=15)


def test_429_waits_at_least_retry_after():
    error = UpstreamRateLimited("429", retry_after=119)
    assert 119 <= retry_delay(error, 0, T0, DEADLINE, rng=lambda: 0.0) <= retry_delay(error, 0, T0, DEADLINE,
                                                                                      rng=lambda: 0.999) <= 149


def test_429_without_retry_after_waits_at_least_a_minute():
    assert retry_delay(UpstreamRateLimited("429", retry_after=None), 0, T0, DEADLINE, rng=lambda: 0.0) >= 60


def test_429_longer_than_the_interval_gives_way_to_the_next_run():
    assert retry_delay(UpstreamRateLimited("429", retry_after=3600), 0, T0, DEADLINE) is None


def test_transient_errors_back_off_exponentially_with_jitter():
    delays = [retry_delay(UpstreamServerError("500"), n, T0, DEADLINE, rng=lambda: 0.5) for n in range(4)]
    assert delays == [10, 20, 40, 80]
    assert 7.5 <= retry_delay(UpstreamServerError("500"), 0, T0, DEADLINE, rng=lambda: 0.0) < 10


def test_no_retry_past_the_next_scheduled_run():
    assert retry_delay(UpstreamServerError("500"), 7, T0 + timedelta(minutes=12), DEADLINE) is None


def test_permanent_errors_are_not_retried():
    assert retry_delay(UpstreamRejected("bad key"), 0, T0, DEADLINE) is None
    assert retry_delay(UpstreamBadResponse("html"), 0, T0, DEADLINE) is not None


def test_deadline_is_the_tick_after_the_slot():
    schedule = parse_cron("*/15 * * * *")
    assert run_deadline(schedule, T0 + timedelta(minutes=3), T0) == T0 + timedelta(minutes=15)
    assert run_deadline(schedule, T0 + timedelta(minutes=3), None) == T0 + timedelta(minutes=15)


def test_startup_update_needed_when_any_coin_is_missing_or_old(clock):
    repo = InMemoryPriceRepository()
    assert needs_startup_update(repo, TRACKED, clock(), timedelta(minutes=15))
    repo.add_batch(answer().observations)
    assert not needs_startup_update(repo, TRACKED, clock() + timedelta(minutes=5), timedelta(minutes=15))
    assert needs_startup_update(repo, TRACKED, clock() + timedelta(minutes=16), timedelta(minutes=15))


def test_a_429_stops_every_run_from_calling_coingecko_until_retry_after(bus, clock):
    repo = InMemoryPriceRepository()
    source = FakePriceSource(UpstreamRateLimited("429", retry_after=119), answer())
    with pytest.raises(UpstreamRateLimited):
        run_update_with(source, repo, bus, TRACKED, clock)
    with pytest.raises(UpstreamRateLimited) as err:
        run_update_with(source, repo, bus, TRACKED, clock)  # another run, maybe on another worker
    assert len(source.calls) == 1  # the second run did not send
    assert err.value.retry_after == 119


def test_no_countdown_longer_than_the_visibility_timeout():
    error = UpstreamRateLimited("429", retry_after=500)
    assert retry_delay(error, 0, T0, T0 + timedelta(hours=1), max_delay=420) is None
    assert retry_delay(UpstreamServerError("500"), 0, T0, DEADLINE, max_delay=420) is not None


def test_a_redelivered_run_keeps_its_fetch_claim_but_a_twin_trigger_does_not(bus, clock):
    repo = InMemoryPriceRepository()
    source = FakePriceSource(UpstreamServerError("500"), answer(), answer())
    with pytest.raises(UpstreamServerError):
        run_update_with(source, repo, bus, TRACKED, clock, slot=T0, run_id="task-1")
    assert run_update_with(source, repo, bus, TRACKED, clock, slot=T0, run_id="task-2") is None  # twin: skipped
    assert run_update_with(source, repo, bus, TRACKED, clock, slot=T0, run_id="task-1").new_records == 3  # retry
    assert len(source.calls) == 2


def test_a_run_delivered_again_after_it_stored_is_skipped_manual_or_scheduled(bus, clock):
    """The broker hands a run out twice (restored to the queue when the worker's Redis connection broke mid-run):
    its second delivery, on any worker, stores nothing and calls nobody."""
    repo = InMemoryPriceRepository()
    source = FakePriceSource(answer(40000), answer(40100, T0 + timedelta(minutes=1)))
    assert run_update_with(source, repo, bus, TRACKED, clock, run_id="task-1").new_records == 3
    assert run_update_with(source, repo, bus, TRACKED, clock, run_id="task-1") is None  # another process: Redis
    assert run_update_with(source, repo, bus, TRACKED, clock, run_id="task-2").new_records == 3  # another run
    assert len(source.calls) == 2 and repo.count() == 6


class RedisDiesDuringFetch(FakePriceSource):
    def __init__(self, bus, *results):
        super().__init__(*results)
        self.bus = bus

    def fetch_prices(self, coins, vs_currencies):
        self.bus.down = True
        return super().fetch_prices(coins, vs_currencies)


def test_a_run_stored_while_redis_was_down_is_still_known_to_its_process(bus, clock):
    repo, finished = InMemoryPriceRepository(), FinishedRuns()
    source = RedisDiesDuringFetch(bus, answer(40000), answer(40100, T0 + timedelta(minutes=1)))
    assert run_update_with(source, repo, bus, TRACKED, clock, run_id="task-1", finished=finished).new_records == 3
    bus.down = False  # back, without the run's mark
    assert run_update_with(source, repo, bus, TRACKED, clock, run_id="task-1", finished=finished) is None
    assert len(source.calls) == 1 and repo.count() == 3


def test_a_failed_attempt_is_retried_under_the_same_id(bus, clock):
    source = FakePriceSource(UpstreamServerError("500"), answer())
    with pytest.raises(UpstreamServerError):
        run_update_with(source, InMemoryPriceRepository(), bus, TRACKED, clock, run_id="task-1")
    assert run_update_with(source, InMemoryPriceRepository(), bus, TRACKED, clock, run_id="task-1").new_records == 3


def test_a_bogus_retry_after_cools_down_at_most_the_cap(bus, clock):
    source = FakePriceSource(UpstreamRateLimited("429", retry_after=10 ** 9))
    with pytest.raises(UpstreamRateLimited):
        run_update_with(source, InMemoryPriceRepository(), bus, TRACKED, clock, max_cooldown=timedelta(minutes=15))
    assert bus.remaining("upstream-cooldown") == 900


def test_a_worker_clock_slightly_behind_beat_still_finds_the_fired_slot():
    schedule = parse_cron("*/15 * * * *")
    assert scheduled_slot(schedule, T0 - timedelta(seconds=2)) == T0  # beat fired 12:00 by its clock
    assert scheduled_slot(schedule, T0 + timedelta(minutes=7)) == T0
    assert scheduled_slot(parse_cron("* * * * *"), T0 - timedelta(seconds=3)) == T0


def test_giving_up_says_why():
    assert retry_decision(UpstreamRejected("bad key"), 0, T0, DEADLINE)[1] == "not retryable"
    assert retry_decision(UpstreamServerError("500"), 7, T0 + timedelta(minutes=12), DEADLINE)[1] == (
        "no time left before the next scheduled run")
    delay, reason = retry_decision(UpstreamRateLimited("429", retry_after=500), 0, T0, T0 + timedelta(hours=1),
                                   rng=lambda: 0.0, max_delay=420)
    assert delay is None and reason == "a 500 s wait is longer than a retry may wait"


def test_a_fresh_start_forgets_the_claims_a_dead_run_left_on_the_current_slot(bus):
    schedule = parse_cron("*/15 * * * *")
    now = T0 + timedelta(minutes=7)
    slot = schedule.previous(now)
    assert bus.claim(slot_fetch_key(slot), 600, owner="task-of-a-dead-run")
    assert bus.claim(STARTUP_CLAIM, 600)
    forget_dead_runs(bus, schedule, now)
    assert bus.claim(STARTUP_CLAIM, 60)  # this start's workers may claim the start-up update again
    assert bus.claim(slot_fetch_key(slot), 60, owner="task-of-this-start")
