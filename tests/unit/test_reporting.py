"""The web's in-memory view and the loop that keeps it fresh, over fakes."""
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from app.domain.errors import NoData, StorageUnavailable
from app.domain.model import TrackedCoins
from app.services.reporting import StatsView, keep_fresh
from tests.memory_store import InMemoryPriceRepository
from tests.fakes import T0, obs
from tests.procs import wait_until

TRACKED = TrackedCoins(("bitcoin", "ethereum"))


@pytest.fixture
def repo():
    return InMemoryPriceRepository()


@pytest.fixture
def view(repo, clock):
    return StatsView(repo, TRACKED, clock, stale_after=timedelta(minutes=30))


def test_answers_come_from_memory_while_the_store_is_down(view, repo):
    repo.add_batch([obs("bitcoin", 40000)])
    view.refresh()
    repo.fail_with = StorageUnavailable("down")
    with pytest.raises(StorageUnavailable):
        view.refresh()
    summary, freshness = view.summary("bitcoin", None)
    assert summary.latest.price == 40000 and not freshness.stale


def test_a_store_that_was_down_at_start_is_read_on_demand(view, repo):
    repo.fail_with = StorageUnavailable("down")
    with pytest.raises(NoData) as err:
        view.summary("bitcoin", None)
    assert "unreachable" in err.value.message
    repo.fail_with = None
    repo.add_batch([obs("bitcoin", 40000)])
    view._last_demand_refresh = float("-inf")  # past the five-second guard
    assert view.summary("bitcoin", None)[0].latest.price == 40000


class HangingRepository(InMemoryPriceRepository):
    """A store whose reads hang until released, as MongoDB's server selection does for 5 s when it is down."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()  # set once a read is waiting
        self.released = threading.Event()

    def last_n_many(self, pairs, n):
        self.reading.set()
        self.released.wait()
        return super().last_n_many(pairs, n)


@pytest.fixture
def hanging(clock):
    repo = HangingRepository()
    pool = ThreadPoolExecutor(2)
    yield repo, StatsView(repo, TRACKED, clock, stale_after=timedelta(minutes=30)), pool
    repo.released.set()
    pool.shutdown()


def test_a_request_does_not_wait_for_the_store_read_already_in_flight(hanging):
    repo, view, pool = hanging
    first_read = pool.submit(view.try_refresh)  # the listener's first read, on a web just started
    assert repo.reading.wait(10)
    answer = pool.submit(view.summary, "bitcoin", None)
    # The store has not answered (and will not until released): a request that waited on it could not be done.
    assert isinstance(answer.exception(timeout=10), NoData)
    assert "unreachable" in answer.exception().message
    assert not first_read.done()


def test_a_request_with_nothing_loaded_does_not_wait_on_a_store_that_hangs(hanging):
    repo, view, pool = hanging
    repo.add_batch([obs("bitcoin", 40000)])
    answer = pool.submit(view.summary, "bitcoin", None)
    assert isinstance(answer.exception(timeout=10), NoData)
    assert repo.reading.wait(10)  # the request did have the store read, in the background
    repo.released.set()
    wait_until(lambda: view.loaded, 10, what="the read on demand finishing")
    assert view.summary("bitcoin", None)[0].latest.price == 40000


def test_keep_fresh_refreshes_on_events_and_survives_a_redis_outage(view, repo, bus):
    stop = threading.Event()
    thread = threading.Thread(target=keep_fresh, args=(view, bus, 3600, stop), kwargs={"poll_timeout": 0.01})
    thread.start()
    try:
        wait_until(lambda: view.loaded, 5, what="first refresh")
        bus.down = True
        repo.add_batch([obs("bitcoin", 41000, T0 + timedelta(minutes=15))])
        bus.down = False
        bus.publish({"event": "stored", "coins": ["bitcoin"]})
        wait_until(lambda: view.summary("bitcoin", None)[0].latest.price == 41000, 10, what="refresh after event")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_keep_fresh_says_when_its_subscription_is_back_after_an_outage(view, bus, caplog):
    back = threading.Event()
    stop = threading.Event()
    thread = threading.Thread(target=keep_fresh, args=(view, bus, 3600, stop),
                              kwargs={"poll_timeout": 0.01, "on_redis_back": back.set})
    with caplog.at_level(logging.WARNING):
        thread.start()
        try:
            wait_until(lambda: view.loaded, 5, what="first refresh")
            bus.down = True
            wait_until(lambda: "subscription lost" in caplog.text, 5, what="the outage noticed")
            assert not back.is_set()
            bus.down = False
            assert back.wait(10)
        finally:
            stop.set()
            thread.join(5)


def test_a_coin_coingecko_keeps_rejecting_says_why(view, repo):
    repo.add_batch([obs("bitcoin", 40000)])
    view.refresh()
    view.note_event({"event": "stored", "coins": ["bitcoin"],
                     "rejected": {"ethereum/usd": "price: Must be greater than 0."}})
    with pytest.raises(NoData) as err:
        view.summary("ethereum", None)
    assert "CoinGecko gave no valid price" in err.value.message and "(invalid price)" in err.value.message
    assert "greater than 0" not in err.value.message  # the event's text is never repeated, only known field names


def test_a_web_started_after_a_failure_learns_it_from_redis(view, bus):
    bus.publish({"event": "failed", "error": {"code": "upstream_rejected", "message": "bad key"}})
    bus.pending.clear()  # published before this web subscribed
    stop = threading.Event()
    thread = threading.Thread(target=keep_fresh, args=(view, bus, 3600, stop), kwargs={"poll_timeout": 0.01})
    thread.start()
    try:
        wait_until(lambda: view.loaded, 5, what="first refresh")
        with pytest.raises(NoData) as err:
            view.summary("bitcoin", None)
        assert "last update failed (CoinGecko refused the request" in err.value.message
        assert "bad key" not in err.value.message
    finally:
        stop.set()
        thread.join(5)


def test_an_unexpected_store_error_does_not_kill_the_listener(view, repo, bus, caplog):
    caplog.set_level(logging.INFO)
    repo.fail_with = RuntimeError("corrupt file")
    stop = threading.Event()
    thread = threading.Thread(target=keep_fresh, args=(view, bus, 0.05, stop), kwargs={"poll_timeout": 0.01})
    thread.start()
    try:
        stop.wait(0.3)
        assert thread.is_alive()
        repo.fail_with = None
        repo.add_batch([obs("bitcoin", 40000)])
        wait_until(lambda: view.loaded, 10, what="refresh after recovery")
    finally:
        stop.set()
        thread.join(5)
    # A bug is not a store outage: its traceback is logged, once for the whole outage, then the recovery.
    assert caplog.text.count("Traceback") == 1 and "RuntimeError: corrupt file" in caplog.text
    assert "store reachable again" in caplog.text


def test_a_known_store_failure_is_one_line_per_outage_without_traceback(view, repo, caplog):
    repo.fail_with = StorageUnavailable("SQLite database is locked")
    for _ in range(5):  # requests and the listener keep trying during the outage
        assert view.try_refresh() is False
    assert "Traceback" not in caplog.text
    assert caplog.text.count("cannot refresh stats from the store (SQLite database is locked)") == 1
    repo.fail_with = RuntimeError("bug in building summaries")
    assert view.try_refresh() is False  # a new kind of failure is reported, with its traceback
    assert caplog.text.count("Traceback") == 1


def test_a_failed_store_write_does_not_show_internal_hosts_to_clients(view):
    view.refresh()
    view.note_event({"event": "failed", "error": {
        "code": "storage_unavailable", "message": "MongoDB write failed: db-7.internal:27017 refused"}})
    with pytest.raises(NoData) as err:
        view.summary("bitcoin", None)
    assert "storage_unavailable" in err.value.message
    assert "internal" not in err.value.message and "internal" not in str(err.value.details)
