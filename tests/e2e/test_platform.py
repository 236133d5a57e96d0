"""End to end on real processes: gunicorn web + Celery worker + Redis + fake CoinGecko; and `make run`'s supervisor."""
import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from app.broker import embedded_url, responds
from app.config import Settings
from beat_schedule import TASK_NAME, build_schedule
from tests.procs import PY, Proc, celery_call, free_port, wait_until, web, worker

pytestmark = pytest.mark.slow


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


@pytest.mark.parametrize("variable,value", [("UPDATE_CRON", "every quarter"), ("DATA_DIR", "/proc/no-such/dir"),
                                            ("REDIS_URL", "redis://[x")])
def test_bad_configuration_stops_the_web_and_worker_naming_the_variable(env, tmp_path, variable, value):
    bad = {**env, variable: value}
    for name, args in (("web", [PY, "-m", "app.api.server"]),
                       ("worker", [PY, "-m", "celery", "-A", "tasks", "worker"])):
        result = subprocess.run(args, env=bad, cwd=Path(__file__).parents[2], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode != 0, name
        assert variable in result.stderr, (name, result.stderr[-500:])
        assert "Traceback" not in result.stderr, name


FIRST = {"price": 40000, "marketCap": 800000000, "24hChange": 3.4}


@pytest.fixture
def make_run(subprocess_env, fake_coingecko, short_tmp):
    """start(name) runs `python -m app.cli run` (what `make run` runs) on the fake CoinGecko, waits until it serves
    the first price, and returns (process, port, env, data_dir); everything is stopped after the test."""
    started = []

    def start(name: str):
        data_dir, port = short_tmp / name, free_port()
        env = {**subprocess_env, "DATA_DIR": str(data_dir), "PORT": str(port),
               "COINGECKO_BASE_URL": fake_coingecko.base_url}
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
    run, port, _, data_dir = make_run(f"run-{stop_signal.name}")
    assert f"http://127.0.0.1:{port}/stats?coin=bitcoin" in run.output
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
