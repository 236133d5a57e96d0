"""Redis dies at each point of a run's life (queued behind a running one, a retry countdown held by the worker, the
batch just stored but not yet announced or acknowledged): the worker outlives every outage, reconnects, and the
first trigger after Redis returns is stored. Celery 5.7's reconnect used to end the worker for good when it held an
unacknowledged message ("Unrecoverable error: AttributeError(... 'hostname')")."""
import sqlite3

import pytest

from tests.procs import wait_until

pytestmark = pytest.mark.slow


def _outage_then_next_trigger(platform, figures, worker, before: int, triggered: int) -> None:
    """Bring Redis back, then check the worker lived through it and stores the next trigger."""
    platform.start_redis()
    assert worker.popen.poll() is None, "the worker exited during the Redis outage"
    platform.fake.set_price("bitcoin", 47000, market_cap=940000000000, change_24h=1.5)
    platform.trigger()
    wait_until(lambda: any(row[4] == 47000 for row in platform.rows("bitcoin")), 40,
               what="the first trigger after the outage stored")
    wait_until(lambda: platform.count() - before >= triggered + 1, 20, what="every trigger stored")
    assert worker.popen.poll() is None
    assert "Unrecoverable error" not in worker.output
    figures.runs(triggered + 1, platform.count() - before)
    assert platform.check_store() == []
    assert figures.failures() == {}


def _started(make_platform, **env):
    platform = make_platform(**env)
    platform.fake.set_price("bitcoin", 40000, market_cap=800000000000, change_24h=3.4)
    worker = platform.worker()
    platform.wait_stored(1, 40)  # the start-up update on an empty store
    return platform, worker, platform.count()


def test_redis_dies_while_a_run_is_fetching_and_another_is_queued(make_platform, figures):
    """Redis dies with one run fetching from CoinGecko and one queued behind it: worker survives, all stored"""
    platform, worker, before = _started(make_platform)
    calls = platform.fake.request_count()
    platform.fake.enqueue("delay", seconds=4)  # the first run is still fetching when Redis dies
    platform.trigger()
    wait_until(lambda: platform.fake.request_count() > calls, 20, what="the first run fetching")
    platform.trigger()
    wait_until(lambda: platform.redis().llen("cryptostats") == 1, 10, what="the second run queued behind it")
    platform.stop_redis()  # SHUTDOWN SAVE: the queue and the unacked set survive the restart
    figures.faults += 1
    _outage_then_next_trigger(platform, figures, worker, before, triggered=2)


def test_redis_dies_while_a_retry_countdown_is_held(make_platform, figures):
    """Redis dies while the worker holds a retry countdown: worker survives, reconnects, stores the next trigger"""
    platform, worker, before = _started(make_platform, RETRY_BASE_SECONDS="5")
    platform.fake.enqueue("status", status=500)
    platform.trigger()
    wait_until(lambda: platform.failed_events(), 20, what="the first attempt failed, its retry held")
    platform.stop_redis()
    figures.faults += 1
    # The held retry is redelivered only after the visibility timeout (hours on this daily schedule); the run it
    # belongs to is not counted, the next trigger is.
    _outage_then_next_trigger(platform, figures, worker, before, triggered=0)


def test_redis_dies_after_the_batch_is_stored_before_it_is_announced(make_platform, figures):
    """Redis dies between storing a batch and announcing/acknowledging it: stored once, worker survives"""
    platform, worker, before = _started(make_platform)
    calls = platform.fake.request_count()
    lock = sqlite3.connect(platform.db_path, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # holds the run between its CoinGecko call and its write
        platform.trigger()
        wait_until(lambda: platform.fake.request_count() > calls, 20, what="the run fetched")
        platform.stop_redis()
        figures.faults += 1
    finally:
        lock.execute("ROLLBACK")  # within the store's 10 s busy timeout: the write goes through, Redis is gone
        lock.close()
    wait_until(lambda: platform.count() - before == 1, 15, what="the batch stored while Redis is down")
    wait_until(lambda: "could not announce" in worker.output, 15, what="the worker saying it could not announce")
    _outage_then_next_trigger(platform, figures, worker, before, triggered=1)
