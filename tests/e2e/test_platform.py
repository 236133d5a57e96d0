"""End to end on real processes: gunicorn web + Celery worker + Redis + fake CoinGecko; and `make run`'s supervisor."""
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
import requests

from app.embedded_redis import embedded_url, ensure_embedded_redis, responds, stop_embedded_redis
from app.config import Settings
from beat_schedule import TASK_NAME, build_schedule
from tests.procs import PY, Proc, celery_call, free_port, wait_until, web, worker

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def get(port, path):
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def answers(port, path, expected):
    response = get(port, path)
    return response.status_code == 200 and response.json() == expected


@pytest.fixture
def env(subprocess_env, redis_url, fake_coingecko, tmp_path):
    return {**subprocess_env, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data"),
            "COINGECKO_BASE_URL": fake_coingecko.base_url, "PORT": str(free_port()),
            "REFRESH_INTERVAL_SECONDS": "3600"}  # so only crypto-update can make the web see new data quickly


def test_scheduled_trigger_reaches_the_web_through_crypto_update(env, fake_coingecko, tmp_path):
    port = env["PORT"]
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    w, site = worker(env, tmp_path), web(env, tmp_path)
    try:
        wait_until(lambda: answers(port, "/stats?coin=bitcoin",
                                   {"price": 40000, "marketCap": 800000000, "24hChange": 3.4}),
                   40, what="first stats")
        # Split mode as a user runs it: the Procfile's web, a worker, and beat's own entry sent over Redis.
        fake_coingecko.set_price("bitcoin", 50000, market_cap=900000000, change_24h=-2.5)
        settings = Settings.from_env(env)
        entry = build_schedule(settings)[TASK_NAME]
        # The start-up update already stored the current slot, so this trigger stands for the next tick.
        next_slot = settings.schedule.next(datetime.now(timezone.utc)).isoformat()
        sent = time.monotonic()
        result = celery_call(env, "--kwargs", json.dumps({**entry["kwargs"], "slot": next_slot}),
                             "--expires", str(entry["options"]["expires"]))
        assert result.returncode == 0, result.stderr
        wait_until(lambda: answers(port, "/stats?coin=bitcoin",
                                   {"price": 50000, "marketCap": 900000000, "24hChange": -2.5}),
                   15, what="new price visible")
        assert time.monotonic() - sent < 10
        assert get(port, "/deviation?coin=bitcoin").json() == {"deviation": 5000.0}
        assert get(port, "/api/v1/deviation?coin=bitcoin").json() == {"deviation": 5000.0}
        assert get(port, "/stats?coin=matic-network").status_code == 200
        # Bad input over real HTTP: JSON errors, never a 500.
        assert get(port, "/stats").status_code == 400
        assert get(port, "/stats?coin=dogecoin").status_code == 404
        assert get(port, "/nope").json()["error"]["code"] == "not_found"
        # CoinGecko breaks: the web keeps the last good data, no process dies.
        fake_coingecko.enqueue("html", status=200)
        assert celery_call(env).returncode == 0
        wait_until(lambda: "CoinGecko answered 200 with HTML" in w.output, 15, what="failure logged")
        assert get(port, "/stats?coin=bitcoin").json()["price"] == 50000
        assert w.popen.poll() is None and site.popen.poll() is None
    finally:
        w.stop(), site.stop()


@pytest.mark.parametrize("variable,value", [
    ("UPDATE_CRON", "every quarter"), ("DATA_DIR", "/proc/no-such/dir"), ("REDIS_URL", "redis://[x"),
    ("UPDATE_CRON", "5/15 * * * *"),  # accepted once by our own parser, then beat and the worker died on it
    ("COINS", "bitcoin,notacoin"), ("VS_CURRENCIES", "usd,xyz"), ("COINS", ""),  # checked against CoinGecko's lists
])
def test_bad_configuration_stops_the_web_and_worker_naming_the_variable(env, tmp_path, variable, value):
    bad = {**env, variable: value}
    for name, args in (("web", [PY, "-m", "app.api.server"]),
                       ("worker", [PY, "-m", "celery", "-A", "tasks", "worker"]),
                       ("beat", [PY, "-m", "celery", "-A", "tasks", "beat", "--pidfile="])):
        if variable in ("COINS", "VS_CURRENCIES") and value and name == "beat":
            continue  # beat fetches nothing; the worker and the web refuse them
        result = subprocess.run(args, env=bad, cwd=Path(__file__).parents[2], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode != 0, name
        assert variable in result.stderr, (name, result.stderr[-500:])
        assert "Traceback" not in result.stderr, name
        problem = [line for line in result.stderr.splitlines() if variable in line]
        assert len(problem) == 1, (name, result.stderr[-800:])  # one line names it
        if value and variable in ("COINS", "VS_CURRENCIES"):
            assert value.split(",")[1] in problem[0]  # ... and the unknown value


FIRST = {"price": 40000, "marketCap": 800000000, "24hChange": 3.4}


@pytest.fixture
def make_run(subprocess_env, fake_coingecko, short_tmp):
    """start(name) runs `python -m app.cli run` (what `make run` runs) on the fake CoinGecko, waits until it serves
    the first price, and returns (process, port, env, data_dir); everything is stopped after the test."""
    started = []

    def start(name: str, **extra_env: str):
        data_dir, port = short_tmp / name, free_port()
        env = {**subprocess_env, "DATA_DIR": str(data_dir), "PORT": str(port),
               "COINGECKO_BASE_URL": fake_coingecko.base_url, **extra_env}
        fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
        run = Proc(name, [PY, "-m", "app.cli", "run"], env, short_tmp)
        started.append(run)
        wait_until(lambda: answers(port, "/stats?coin=bitcoin", FIRST), 60, what="make run serving")
        return run, port, env, data_dir

    yield start
    for run in started:
        run.stop()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "terminal-closed"])
def test_make_run_supervisor_serves_and_stops_cleanly(make_run, fake_coingecko, stop_signal):
    # A yearly schedule: no tick falls inside the test, so every CoinGecko call below is a start-up one (with the
    # default quarter-hourly one, a test running across hh:45 saw the tick's call too).
    run, port, _, data_dir = make_run(f"run-{stop_signal.name}", UPDATE_CRON="0 0 1 1 *")
    url = f"http://127.0.0.1:{port}/stats?coin=bitcoin"
    output = wait_until(lambda: url in run.output and run.output, 30, what="the URL printed")
    # Printed last, once the web answers and the first update is done, so it does not scroll away.
    assert output.index(url) > output.index("stored 3 new records") > output.index("Listening at")
    assert output.count(url) == 1
    # One log format: logging's timestamp, the level, and which process wrote the line; start-up lines once each.
    lines = [line for line in output.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line)]
    roles = {re.match(r"\S+ \S+ \S+ \[(\w+)", line).group(1) for line in lines}
    assert roles == {"supervisor", "web", "worker", "beat"}, roles
    for role in roles:
        assert output.count(f"] app.bootstrap: {role} starting;") == 1, role
    assert responds(embedded_url(data_dir))  # embedded Redis, no REDIS_URL given
    assert fake_coingecko.request_count("/simple/price") == 1  # one start-up update, not one per process
    run.popen.send_signal(stop_signal)
    assert run.popen.wait(40) == 0
    assert not responds(embedded_url(data_dir))
    assert "Traceback" not in run.output


def test_make_run_restarts_a_dead_embedded_redis_and_keeps_updating(make_run, fake_coingecko):
    run, port, env, data_dir = make_run("run-redis-dies")
    os.kill(int((data_dir / "redis.pid").read_text()), signal.SIGKILL)
    wait_until(lambda: "starting it again" in run.output and responds(embedded_url(data_dir)), 20,
               what="embedded Redis restarted")
    assert get(port, "/stats?coin=bitcoin").status_code == 200
    fake_coingecko.set_price("bitcoin", 41000, market_cap=810000000, change_24h=1.0)
    wait_until(lambda: celery_call(env).returncode == 0, 30, interval=1, what="trigger accepted")
    wait_until(lambda: answers(port, "/stats?coin=bitcoin",
                               {"price": 41000, "marketCap": 810000000, "24hChange": 1.0}), 60,
               what="update after the restart")
    run.popen.send_signal(signal.SIGINT)
    assert run.popen.wait(40) == 0
    assert not responds(embedded_url(data_dir))


def test_a_second_make_run_on_the_same_data_dir_is_refused_and_the_first_does_not_notice(make_run, short_tmp):
    first, port, env, data_dir = make_run("run-twice")
    second = subprocess.run([PY, "-m", "app.cli", "run"], env={**env, "PORT": str(free_port())}, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"another instance (pid {first.popen.pid}) runs on DATA_DIR {data_dir}; stop it first (Ctrl-C in its "
        f"terminal, or python -m app.cli stop)"]
    assert "http://" not in second.stdout  # no URL as if it worked
    assert responds(embedded_url(data_dir))  # the shared Redis is untouched...
    assert answers(port, "/stats?coin=bitcoin", FIRST)  # ...and the first keeps serving
    assert first.popen.poll() is None and "Traceback" not in first.output


def test_make_run_leaves_a_redis_it_did_not_start_and_app_cli_stop_stops_it(make_run, short_tmp, subprocess_env):
    data_dir = short_tmp / "run-foreign-redis"
    ensure_embedded_redis(data_dir)  # as the Procfile processes or `celery -A tasks call` leave it
    try:
        run, _, env, _ = make_run("run-foreign-redis")
        run.popen.send_signal(signal.SIGINT)
        assert run.popen.wait(40) == 0
        assert responds(embedded_url(data_dir))
        stop = subprocess.run([PY, "-m", "app.cli", "stop"], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=30)
        assert stop.returncode == 0, stop.stderr
        assert f"stopped the embedded Redis of DATA_DIR {data_dir}" in stop.stdout
        assert not responds(embedded_url(data_dir))
    finally:
        stop_embedded_redis(data_dir)


def test_app_cli_stop_stops_a_running_make_run_and_its_redis(make_run):
    run, port, env, data_dir = make_run("run-stopped")
    stop = subprocess.run([PY, "-m", "app.cli", "stop"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=90)
    assert stop.returncode == 0, stop.stderr
    assert f"stopped make run (pid {run.popen.pid})" in stop.stdout
    assert run.popen.wait(10) == 0
    assert not responds(embedded_url(data_dir))


def test_a_fresh_make_run_updates_at_once_whatever_a_dead_run_left_in_redis(make_run, short_tmp):
    # A stopped run's worker left its start-up claim and its claim on the current slot (both lasting 10 minutes
    # here); the fresh start must not wait for them. make_run waits at most 60 s for the first price.
    data_dir = short_tmp / "run-after-dead"
    url = ensure_embedded_redis(data_dir)
    slot = Settings.from_env({}).schedule.previous(datetime.now(timezone.utc))
    client = redis.Redis.from_url(url)
    client.set("cryptostats:startup-update", "-", ex=600)
    client.set(f"cryptostats:slot-fetching:{slot.isoformat()}", "task-id-of-a-dead-run", ex=600)
    client.close()
    try:
        run, port, _, _ = make_run("run-after-dead")
        assert "already being fetched by another run" not in run.output
    finally:
        stop_embedded_redis(data_dir)
