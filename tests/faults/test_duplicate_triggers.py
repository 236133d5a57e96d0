"""Two beats by mistake: the same scheduled slot triggered twice, picked up by two workers at the same moment, costs
one CoinGecko call and stores once; a manual run right after still runs."""
import time
from datetime import datetime, timedelta, timezone

import pytest

from beat_schedule import TASK_NAME, build_schedule
from app.domain.model import Observation
from app.storage.sqlite import SqlitePriceRepository
from tests.procs import wait_until

pytestmark = pytest.mark.slow


def seed_fresh_data(platform) -> None:
    repo = SqlitePriceRepository(platform.db_path)
    repo.ensure_schema()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    repo.add_batch([Observation(coin, "usd", price, None, None, None, now - timedelta(minutes=1), now)
                    for coin, price in (("bitcoin", 40000), ("ethereum", 2200), ("polygon-ecosystem-token", 0.45))])
    repo.close()


def test_the_same_slot_from_two_beats_is_fetched_and_stored_once(make_platform, figures):
    """Same scheduled slot sent twice, two workers: CoinGecko called once; manual call not blocked"""
    platform = make_platform()
    fake = platform.fake
    seed_fresh_data(platform)  # so the workers queue no start-up update: the two beats' triggers are the only runs
    platform.worker("worker-a"), platform.worker("worker-b")
    wait_until(lambda: all(" ready." in w.output for w in platform.procs), 30, what="both workers ready")
    calls, rows = fake.request_count(), platform.count()

    # Exactly what each of two beats sends at a tick (the worker works out the slot: the tick just passed).
    entry = build_schedule(platform.settings)[TASK_NAME]
    fake.enqueue("delay", seconds=1)  # hold the first fetch, so its twin surely starts while it is in flight
    for _ in range(2):
        platform.trigger(entry["kwargs"], **entry["options"])
    figures.faults += 1
    platform.wait_stored(1, 20)
    wait_until(platform.queue_idle, 10, what="both triggers acknowledged")
    time.sleep(1)
    assert fake.request_count() - calls == 1
    assert platform.count() - rows == 1
    assert sum("already being fetched" in w.output for w in platform.procs) == 1  # the twin said why it skipped

    result = platform.celery_call()  # `celery -A tasks call tasks.store_crypto_stats` right after
    assert result.returncode == 0, result.stderr
    platform.wait_stored(2, 30)
    wait_until(platform.queue_idle, 10, what="the manual run acknowledged")

    figures.upstream_calls = fake.request_count() - calls
    figures.runs(2, len(platform.stored_events()))  # the slot once, the manual run once
    assert figures.upstream_calls == 2
    assert platform.count() - rows == 2
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_a_run_delivered_twice_is_stored_once(make_platform, figures):
    """The same run handed out twice (a message restored to the queue, or published twice), two workers: stored once"""
    platform = make_platform()
    fake = platform.fake
    seed_fresh_data(platform)  # no start-up update: the runs below are the only ones
    platform.worker("worker-a"), platform.worker("worker-b")
    wait_until(lambda: all(" ready." in w.output for w in platform.procs), 30, what="both workers ready")
    calls, rows = fake.request_count(), platform.count()

    platform.trigger(task_id="manual-run-1")
    platform.wait_stored(1, 30)
    wait_until(platform.queue_idle, 10, what="the run acknowledged")
    platform.trigger(task_id="manual-run-1")  # its second delivery, to whichever worker is free
    figures.faults += 1
    wait_until(lambda: sum("skipping this second delivery" in w.output for w in platform.procs) == 1, 30,
               what="the second delivery skipped")
    wait_until(platform.queue_idle, 10, what="the second delivery acknowledged")
    platform.trigger()  # a new run still runs
    platform.wait_stored(2, 30)

    figures.upstream_calls = fake.request_count() - calls
    figures.runs(2, len(platform.stored_events()))
    assert figures.upstream_calls == 2
    assert platform.count() - rows == 2
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []
