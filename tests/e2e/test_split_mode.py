"""Split mode as deployed: the Procfile's web and worker on an external Redis, on SQLite and on MongoDB.

The MongoDB cases run against the MongoDB-wire server CI starts (MONGODB_TEST_URI), each in a database of its own.
"""
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pymongo
import pytest
import requests

from app.storage.mongo import MongoPriceRepository
from app.storage.sqlite import SqlitePriceRepository
from tests.contract.backends import NO_SERVER_REASON, fresh_database_uri, real_server_uri
from tests.procs import celery_call, free_port, wait_until, web, worker

pytestmark = pytest.mark.slow

CONTRACT_STATS = {"price": 50000, "marketCap": 900000000, "24hChange": -2.5}
PINNED = [(40000, 800000000, 3.4), (45000, 850000000, 1.0), (50000, 900000000, -2.5)]


@pytest.fixture(params=["sqlite", "mongodb"])
def store(request, tmp_path):
    """(extra env, a repository reading what the platform stored, database name or None)."""
    if request.param == "sqlite":
        yield {}, SqlitePriceRepository(tmp_path / "data" / "cryptostats.sqlite3"), None
        return
    base = real_server_uri()
    if base is None:
        pytest.skip(NO_SERVER_REASON)
    uri, name = fresh_database_uri(base)
    reader = MongoPriceRepository(uri)
    try:
        yield {"MONGODB_URI": uri}, reader, name
    finally:
        reader.client.drop_database(name)
        reader.close()


@pytest.fixture
def env(subprocess_env, redis_url, fake_coingecko, tmp_path):
    return {**subprocess_env, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data"),
            "COINGECKO_BASE_URL": fake_coingecko.base_url, "PORT": str(free_port())}


def get_json(port, path):
    response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    return response.status_code, response.json()


def test_split_mode_answers_the_contract_on_every_store(env, store, fake_coingecko, tmp_path):
    extra, reader, database = store
    env = {**env, **extra}
    port = env["PORT"]
    w, site = worker(env, tmp_path), web(env, tmp_path)
    try:
        for n, (price, cap, change) in enumerate(PINNED):
            fake_coingecko.set_price("bitcoin", price, market_cap=cap, change_24h=change)
            if n:  # the first is the worker's start-up update
                assert celery_call(env).returncode == 0
            wait_until(lambda: get_json(port, "/stats?coin=bitcoin") == (
                200, {"price": price, "marketCap": cap, "24hChange": change}), 30, what=f"price {price}")
        assert get_json(port, "/stats?coin=bitcoin") == (200, CONTRACT_STATS)
        assert get_json(port, "/deviation?coin=bitcoin") == (200, {"deviation": 4082.48})
        assert get_json(port, "/api/v1/deviation?coin=bitcoin") == (200, {"deviation": 4082.48})
        assert get_json(port, "/stats?coin=matic-network")[0] == 200
        assert get_json(port, "/stats?coin=dogecoin")[0] == 404
        assert [o.price for o in reader.last_n("bitcoin", "usd", 10)] == [50000, 45000, 40000]
        if database:  # the records are in the database named in the URI
            assert reader.client[database]["observations"].count_documents({}) == 9
    finally:
        w.stop(), site.stop()


def ferretdb_binary() -> str | None:
    candidates = [os.environ.get("FERRETDB_BIN"),
                  str(Path.home() / ".cache/cryptostats/ferretdb/v1.24.2/ferretdb"), shutil.which("ferretdb")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


class FerretDB:
    """A MongoDB-wire server of this test's own, so it can be stopped and started again on the same port."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory, self.port = binary, directory, free_port()
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.proc = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/cs_outage"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--handler=sqlite", f"--sqlite-url=file:{self.directory}/data/",
             f"--listen-addr=127.0.0.1:{self.port}", "--telemetry=disable", "--debug-addr=-",
             f"--state-dir={self.directory}", "--log-level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500).admin.command("ping"), 20,
                   what="FerretDB up")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def test_mongodb_going_away_mid_run_makes_the_task_retry_and_the_web_keep_serving(env, fake_coingecko, tmp_path):
    if real_server_uri() is None:
        pytest.skip(NO_SERVER_REASON)
    binary = ferretdb_binary()
    if binary is None:
        pytest.skip("no FerretDB binary to stop and restart (set FERRETDB_BIN; .ci/run builds one)")
    server = FerretDB(binary, tmp_path / "ferret")
    server.start()
    env = {**env, "MONGODB_URI": server.uri, "RETRY_BASE_SECONDS": "2"}
    port = env["PORT"]
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    w, site = worker(env, tmp_path), web(env, tmp_path)
    try:
        wait_until(lambda: get_json(port, "/stats?coin=bitcoin")[1].get("price") == 40000, 30, what="first data")
        server.stop()
        fake_coingecko.set_price("bitcoin", 41000, market_cap=810000000, change_24h=1.0)
        assert celery_call(env).returncode == 0
        wait_until(lambda: "MongoDB" in w.output and "retrying in" in w.output, 30, what="task retrying")
        assert get_json(port, "/stats?coin=bitcoin") == (200, {"price": 40000, "marketCap": 800000000,
                                                               "24hChange": 3.4})
        server.start()
        wait_until(lambda: get_json(port, "/stats?coin=bitcoin")[1].get("price") == 41000, 60,
                   what="stored after MongoDB returned")
        assert w.popen.poll() is None and site.popen.poll() is None
        assert "Traceback" not in w.output
    finally:
        w.stop(), site.stop(), server.stop()
