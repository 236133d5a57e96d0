"""A worker dies (SIGKILL) or is asked to stop (SIGTERM) while a run is in flight: the run is not lost, and it is
stored exactly once."""
import signal
import time

import pytest

from tests.procs import wait_until

pytestmark = pytest.mark.slow

COINS = ("bitcoin", "ethereum", "polygon-ecosystem-token")


def in_flight(platform, calls: int) -> None:
    """Wait until the run has sent its CoinGecko request (which the fake holds, thanks to a delay fault)."""
    wait_until(lambda: platform.fake.request_count() > calls, 15, interval=0.05, what="run in flight")


def assert_stored_once(platform, figures, calls: int, upstream_calls: int) -> None:
    """The start-up run's records and the run's own, nothing else; and the CoinGecko calls it took."""
    figures.upstream_calls = platform.fake.request_count() - calls
    for coin in COINS:
        assert platform.count(coin) == 2, coin
    figures.runs(1, len(platform.stored_events()) - 1)
    assert figures.upstream_calls == upstream_calls


def run_in_flight(make_platform):
    """A platform with one worker that has stored its start-up run and now holds a triggered run in flight."""
    platform = make_platform()
    worker = platform.worker()
    platform.wait_stored(1, 40)
    calls = platform.fake.request_count()
    platform.fake.enqueue("delay", seconds=3)
    platform.trigger()
    in_flight(platform, calls)
    return platform, worker, calls


def test_a_run_whose_worker_is_killed_is_redelivered_and_stored_once(make_platform, figures):
    """Worker SIGKILLed mid-run: redelivered to a new worker, stored once"""
    # Redelivery waits for the visibility timeout; keep it short here (the default is half the update interval).
    platform = make_platform(BROKER_VISIBILITY_TIMEOUT_SECONDS="5")
    fake = platform.fake
    first = platform.worker("worker-a")
    platform.wait_stored(1, 40)
    calls = fake.request_count()
    fake.enqueue("delay", seconds=8)  # holds the run in flight (the read timeout is 20 s)
    platform.trigger()
    in_flight(platform, calls)
    killed = time.monotonic()
    assert platform.kill(first, signal.SIGKILL) == -signal.SIGKILL
    figures.faults += 1

    platform.worker("worker-b")
    platform.wait_stored(2, 30)
    redelivered_after = time.monotonic() - killed
    wait_until(platform.queue_idle, 10, what="the redelivered run acknowledged")
    time.sleep(2)  # past another visibility timeout sweep: a second redelivery would show up now

    assert_stored_once(platform, figures, calls, upstream_calls=2)  # the killed attempt and the redelivered one
    assert redelivered_after < 15, redelivered_after
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_sigterm_lets_the_run_in_flight_finish_and_store_once(make_platform, figures):
    """Worker SIGTERMed mid-run (main process): the run finishes, stored once, exit 0"""
    platform, worker, calls = run_in_flight(make_platform)
    worker.popen.send_signal(signal.SIGTERM)  # `kill PID`, `docker stop`, `make run`'s supervisor
    figures.faults += 1
    assert worker.popen.wait(30) == 0
    assert "Warm shutdown" in worker.output

    assert_stored_once(platform, figures, calls, upstream_calls=1)  # finished in flight, not redone
    assert platform.queue_idle()
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def test_sigterm_to_the_process_group_requeues_the_run_for_the_next_worker(make_platform, figures):
    """Worker's process group SIGTERMed mid-run: requeued, stored once by the next worker"""
    platform, worker, calls = run_in_flight(make_platform)
    # Heroku and systemd (KillMode=control-group) signal every process: the pool process running the run dies at
    # once, and the run goes back to the queue (task_reject_on_worker_lost) instead of being lost.
    worker.signal(signal.SIGTERM)
    figures.faults += 1
    assert worker.popen.wait(30) == 0
    assert len(platform.stored_events()) == 1  # the start-up run's: the aborted attempt stored nothing

    platform.worker("worker-b")  # the restart
    platform.wait_stored(2, 30)
    wait_until(platform.queue_idle, 10, what="the run acknowledged")
    assert_stored_once(platform, figures, calls, upstream_calls=2)  # the aborted attempt and the requeued one
    assert platform.check_store() == []
    assert figures.failures() == {}
