"""The command line and the settings every entry point reads, on real processes: `init-storage` (the Procfile's
release), `poll-once`, `./.env`, and LOG_LEVEL with the one log format."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests

from app.embedded_redis import stop_embedded_redis
from tests.procs import PY, Proc, free_port, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# logging's default timestamp, the level, then which process wrote the line.
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[(\w+)[^\]]*\] ")


def cli(env: dict[str, str], *args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "app.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def env(subprocess_env, fake_coingecko, short_tmp, request):
    """A DATA_DIR of this test's own (the processes start an embedded Redis there, stopped afterwards)."""
    data_dir = short_tmp / re.sub(r"\W", "", request.node.name)[-40:]
    yield {**subprocess_env, "DATA_DIR": str(data_dir), "COINGECKO_BASE_URL": fake_coingecko.base_url}
    stop_embedded_redis(data_dir)


def test_init_storage_creates_the_schema_once_and_again(env):
    for _ in range(2):  # the release step of every deploy: idempotent
        result = cli(env, "init-storage")
        assert result.returncode == 0, result.stderr
        assert "storage ready: store: SQLite" in result.stderr
    with sqlite3.connect(Path(env["DATA_DIR"]) / "cryptostats.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM observations").fetchone() == (0,)


def test_init_storage_on_an_unreachable_store_fails_in_one_line(env):
    port = free_port()  # nothing listens there
    result = cli({**env, "MONGODB_URI": f"mongodb://user:hunter2@127.0.0.1:{port}/cryptostats"}, "init-storage")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "init-storage failed" in line]


def test_poll_once_prints_what_it_stored_as_json(env, fake_coingecko):
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    result = cli(env, "poll-once")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["event"] == "stored" and report["new_records"] == 3
    assert report["coins"] == ["bitcoin", "ethereum", "polygon-ecosystem-token"]
    assert fake_coingecko.request_count("/simple/price") == 1


def test_the_default_data_dir_is_relative_to_the_working_directory_and_works(env, fake_coingecko, short_tmp):
    """DATA_DIR unset, as `make run` starts: ./data, a relative path, through every store read and write"""
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    cwd = short_tmp / "cwd"
    cwd.mkdir()
    unset = {k: v for k, v in env.items() if k != "DATA_DIR"}
    try:
        result = cli(unset, "poll-once", cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["new_records"] == 3
        assert "Traceback" not in result.stderr
        with sqlite3.connect(cwd / "data" / "cryptostats.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM observations").fetchone() == (3,)
    finally:
        stop_embedded_redis(cwd / "data")


def test_poll_once_with_coingecko_down_says_why_in_one_line(env, fake_coingecko):
    fake_coingecko.set_down()
    result = cli(env, "poll-once")
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "update failed: CoinGecko answered 503" in result.stderr


def test_dotenv_is_read_by_the_cli_and_the_web_and_the_real_environment_wins(env, fake_coingecko, tmp_path):
    port = free_port()
    (tmp_path / ".env").write_text(f"# as copied from .env.example\nCOINS=ethereum\nPORT={port}\n"
                                   f"COINGECKO_BASE_URL={fake_coingecko.base_url}\n")
    real = {k: v for k, v in env.items() if k != "COINGECKO_BASE_URL"}  # only the file names the fake
    result = cli({**real, "COINS": "bitcoin"}, "poll-once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["coins"] == ["bitcoin"]  # COINS from the environment, not the file
    web = Proc("web", [PY, "-m", "app.api.server"], real, tmp_path, cwd=tmp_path)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 30,
                   what="the web on the PORT of .env")
    finally:
        web.stop()
    # `celery -A tasks ...` reads it too: a bad line in the file stops beat naming the variable.
    (tmp_path / ".env").write_text("UPDATE_CRON=every quarter\n")
    beat = subprocess.run([PY, "-m", "celery", "-A", "tasks", "beat", "--pidfile="], env=real, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert beat.returncode == 2 and "UPDATE_CRON" in beat.stderr, beat.stderr[-500:]


@pytest.mark.parametrize("level", ["DEBUG", "WARNING"])
def test_log_level_reaches_the_web_granian_and_the_worker_in_one_format(env, level, fake_coingecko):
    if level == "WARNING":
        fake_coingecko.set_down()  # so the worker has a warning to say: its start-up update fails and is retried
    port = free_port()
    run_env = {**env, "LOG_LEVEL": level, "PORT": str(port)}
    logs = Path(env["DATA_DIR"]).parent
    web = Proc(f"web-{level}", [PY, "-m", "app.api.server"], run_env, logs)
    # The Procfile's worker line, which no longer says --loglevel.
    worker = Proc(f"worker-{level}", [PY, "-m", "celery", "-A", "tasks", "worker", "--concurrency=1",
                                      "--without-gossip", "--without-mingle", "--hostname", f"w-{level}@%h"],
                  run_env, logs)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 30, what="web up")
        last = "worker starting" if level == "DEBUG" else "retrying in"
        wait_until(lambda: last in worker.output, 60, what=f"worker line {last!r}")
    finally:
        web.stop(), worker.stop()
    for name, proc in (("web", web), ("worker", worker)):
        formatted = [m for m in map(LINE.match, proc.output.splitlines()) if m]
        assert {m.group(2) for m in formatted} == {name}, (name, proc.output[-1500:])  # who wrote each line
        levels = {m.group(1) for m in formatted}
        if level == "DEBUG":
            assert "DEBUG" in levels, (name, proc.output[-1500:])
        else:
            assert levels <= {"WARNING", "ERROR", "CRITICAL"}, (name, proc.output[-1500:])
    if level == "DEBUG":
        assert re.search(r"INFO \[web\] _granian: Starting granian", web.output)  # the server's own logger too
    else:
        assert "Starting granian" not in web.output  # granian's INFO lines too
        # The worker's lines about a run carry its task id.
        assert re.search(r"WARNING \[worker [0-9a-f-]{36}\] tasks\.store_crypto_stats: update failed", worker.output)


def test_no_password_host_or_path_of_the_deployment_reaches_a_log_line(env):
    """The drivers name what they know (PyMongo its hosts, SQLite its file); the log says which variable instead."""
    uri = "mongodb://admin:hunter2@db-7.invalid:27017,db-8.invalid:27018/cryptostats?replicaSet=rs0"
    result = cli({**env, "MONGODB_URI": uri, "COINGECKO_API_KEY": "fake-api-key-for-the-test"}, "init-storage")
    assert result.returncode == 1
    assert "init-storage failed" in result.stderr and "<MONGODB_URI host>" in result.stderr
    for secret in ("hunter2", "admin", "db-7.invalid", "db-8.invalid", "fake-api-key-for-the-test",
                   str(Path(env["DATA_DIR"]).resolve())):
        assert secret not in result.stderr, secret
