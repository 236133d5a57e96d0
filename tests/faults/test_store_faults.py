"""Store faults nobody would notice otherwise: a MongoDB that is down before the web loaded anything, and SQLite
files deleted, overwritten, read-only or on a full disk under a running worker and web. Each is reported with its
real cause, the web answers at once, and no batch is announced (nor its slot marked) unless it reads back."""
import socket
import subprocess
import time

import pytest
import requests

from app.bus import redis as bus
from tests.procs import PY, ROOT, free_port, wait_until

pytestmark = pytest.mark.slow


def test_mongodb_down_with_nothing_loaded_answers_503_at_once(make_platform, figures):
    """MongoDB down before the web loaded anything: /stats answers 503 no_data within 1 s"""
    closed = free_port()  # nothing listens there: every connection is refused
    platform = make_platform(MONGODB_URI=f"mongodb://127.0.0.1:{closed}/cryptostats")
    web = platform.web()
    figures.faults += 1
    # The first request as soon as the web can take it: its first store read (server selection, up to 5 s) is then
    # still in flight. The port opens in gunicorn's master before the worker has built the app; the worker's
    # start-up line says it has, a few milliseconds before it serves.
    wait_until(lambda: _accepts(int(platform.port)), 30, interval=0.01, what="the web's port open")
    wait_until(lambda: "web starting" in web.output, 30, interval=0.01, what="the web's worker building the app")
    for _ in range(5):
        started = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{platform.port}/stats?coin=bitcoin", timeout=15)
        took = time.monotonic() - started
        figures.answered(response.status_code, deliberate=response.status_code == 503)  # the promised no_data
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "no_data"
        assert str(closed) not in response.text
        assert took < 1.0, took
        time.sleep(1)  # past the web's 5 s on-demand refresh window, so at least one request tries the store
    wait_until(lambda: "cannot refresh stats from the store" in web.output, 30, what="the web's first refresh failed")
    assert figures.failures() == {}


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
    except OSError:
        return False
    return True


def _sqlite_platform(make_platform):
    platform = make_platform(RETRY_BASE_SECONDS="1")
    platform.fake.set_price("bitcoin", 40000, market_cap=800000000000, change_24h=3.4)
    worker = platform.worker()
    platform.wait_stored(1, 40)  # the start-up update on an empty store
    return platform, worker


def test_a_deleted_database_file_is_reported_and_recreated_not_written_blind(make_platform, figures):
    """SQLite file deleted under a running worker: the cause is logged, the next batch lands in a readable file"""
    platform, worker = _sqlite_platform(make_platform)
    for path in platform.db_path.parent.glob(platform.db_path.name + "*"):  # rm cryptostats.sqlite3*
        path.unlink()
    figures.faults += 1
    platform.trigger()
    platform.wait_stored(2, 30)
    assert "deleted or replaced while in use" in worker.output
    assert platform.count() == 1  # in the file at the path, as any reader sees it
    figures.runs(1, platform.count())
    assert platform.check_store() == []
    assert figures.failures() == {}


def test_a_database_overwritten_with_garbage_is_never_reported_stored(make_platform, figures):
    """SQLite file overwritten with garbage: no batch is announced stored, the log names the cause"""
    platform, worker = _sqlite_platform(make_platform)
    size = platform.db_path.stat().st_size
    with open(platform.db_path, "r+b") as f:  # same inode: the worker's open connection does not notice
        f.write(b"\x5a" * max(size, 4096))
    figures.faults += 1
    platform.trigger()
    wait_until(lambda: len(platform.failed_events()) >= 2, 30, what="the run failing and retrying")
    assert platform.stored_events()[1:] == []
    assert "not a SQLite database" in worker.output
    assert figures.failures() == {}


def test_a_full_disk_is_reported_as_such_and_the_run_stores_once_space_is_back(make_platform, figures, tmp_path):
    """Disk full under SQLite (a tiny tmpfs): logged as a full disk, stored once space is back"""
    data = tmp_path / "platform" / "data"
    data.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        platform, worker = _sqlite_platform(make_platform)
        filler = data / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass  # ENOSPC: the disk is full
        figures.faults += 1
        for _ in range(20):  # a batch fits in the WAL's free pages at first; soon it does not
            platform.fake.set_price("bitcoin", 40000, market_cap=800000000000, change_24h=3.4)
            platform.trigger()
            if wait_until(lambda: platform.failed_events() or platform.queue_idle(), 20, what="a run done"):
                if platform.failed_events():
                    break
        wait_until(lambda: "the disk is full" in worker.output, 20, what="the full disk named in the log")
        assert "cannot rollback" not in worker.output
        stored = len(platform.stored_events())
        filler.unlink()
        platform.wait_stored(stored + 1, 30)
        wait_until(platform.queue_idle, 20, what="every run acknowledged")
        figures.runs(len(platform.stored_events()), platform.count())
        assert platform.check_store() == []
        assert figures.failures() == {}
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)  # lazy: the platform still has it open


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_a_worker_started_while_data_dir_was_read_only_stores_once_it_is_writable(make_platform, figures):
    """DATA_DIR read-only when the worker opens the store: logged as read-only, stored once writable again"""
    platform = make_platform(RETRY_BASE_SECONDS="1")
    platform.fake.set_price("bitcoin", 40000, market_cap=800000000000, change_24h=3.4)
    data = platform.db_path.parent
    # A first batch without a worker, so the worker below finds fresh data (no start-up run) and the slot it is
    # sent is still open.
    poll = subprocess.run([PY, "-m", "app.cli", "poll-once"], env=platform.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert poll.returncode == 0, poll.stderr
    platform.web()
    wait_until(lambda: platform.shows("/stats?coin=bitcoin", {"price": 40000, "marketCap": 800000000000,
                                                               "24hChange": 3.4}), 30, what="the web serving")
    # We are root: chmod would not stop a write, a read-only mount does. The web's connection, opened before,
    # goes on through the mount beneath; every file opened from now on is opened through the read-only one.
    if not _mount("--bind", str(data), str(data)):
        pytest.skip("bind mounts are not allowed here (a read-only DATA_DIR is simulated by one)")
    try:
        assert _mount("-o", "remount,bind,ro", str(data)), "remounting DATA_DIR read-only failed"
        worker = platform.worker()  # its connection is opened read-only: SQLite falls back to it silently
        platform.fake.set_price("bitcoin", 41000, market_cap=820000000000, change_24h=2.5)
        platform.trigger({"scheduled": True})  # what beat sends: the run belongs to the current slot
        figures.faults += 1
        wait_until(lambda: len(platform.failed_events()) >= 2, 60, what="the run failing and retrying")
        assert "read-only" in worker.output
        slots_done = platform.redis().keys(bus.KEY_PREFIX + "slot-done:*")
        assert slots_done == [], "a slot was marked stored while nothing could be written"
        assert len(platform.stored_events()) == 1  # poll-once's only
        assert _mount("-o", "remount,bind,rw", str(data)), "remounting DATA_DIR writable failed"
        stored = platform.wait_stored(2, 60)[-1]  # a retry, on a connection opened afresh
        assert platform.redis().exists(bus.KEY_PREFIX + f"slot-done:{stored['slot']}")
        wait_until(lambda: platform.shows("/stats?coin=bitcoin", {"price": 41000, "marketCap": 820000000000,
                                                                   "24hChange": 2.5}), 30, what="the new price served")
        figures.answered(200)
        wait_until(platform.queue_idle, 20, what="every run acknowledged")
        figures.runs(2, platform.count())
        assert platform.check_store() == []
        assert figures.failures() == {}
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)  # lazy: the platform still has it open
