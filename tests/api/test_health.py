"""/healthz and /readyz: codes and states for anyone, details in the log, bounded and cached checks."""
import logging
import threading

import pytest

from app.api import create_app
from app.bootstrap import bootstrap
from app.bus.redis import RedisUpdateBus
from app.config import Settings
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import FakeBus, FakePriceSource, obs
from tests.procs import free_port


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_reports_backends_and_data_age(client, view, repo, clock):
    repo.add_batch([obs("bitcoin", 40000, clock.now)])
    view.refresh()
    clock.advance(seconds=90)
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ready"
    assert body["checks"] == {"store": {"ok": True}, "redis": {"ok": True}}
    assert body["data"]["age_seconds"] == 90.0 and body["data"]["stale"] is False
    assert body["backends"] == {"store": "sqlite", "broker": "embedded_redis"}
    assert "clock" not in body  # no event has reported the worker's clock yet


def test_readyz_is_503_when_redis_is_down(client, bus):
    bus.down = True
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"] == {"ok": False, "code": "broker_unavailable"}


def test_readyz_shows_no_password_host_or_path_and_logs_the_details(tmp_path, caplog):
    not_a_dir = tmp_path / "secret-store-dir"
    not_a_dir.write_text("a file, so the database beneath it cannot be created")
    redis_port = free_port()  # nothing listens there: connection refused
    settings = Settings.from_env({
        "DATA_DIR": str(tmp_path / "data"),
        "MONGODB_URI": "mongodb://admin:s3cret-pw@db-7.internal.example:27017/cryptostats",
        "REDIS_URL": f"redis://admin:s3cret-pw@localhost:{redis_port}/0"})
    repo = SqlitePriceRepository(not_a_dir / "prices.sqlite3")
    bus = RedisUpdateBus(settings.redis_url)
    app = create_app(services=bootstrap(settings, repo=repo, source=FakePriceSource(), bus=bus), background=False)
    try:
        with caplog.at_level(logging.INFO):
            response = app.test_client().get("/readyz")
    finally:
        bus.close()
    text = response.get_data(as_text=True)
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"] == {"store": {"ok": False, "code": "storage_unavailable"},
                              "redis": {"ok": False, "code": "broker_unavailable"}}
    assert body["backends"] == {"store": "mongodb", "broker": "redis"}
    for secret in ("s3cret-pw", "admin", "db-7", "internal", "localhost", str(redis_port), str(tmp_path)):
        assert secret not in text, secret
    # The operator finds out why in the log (the store's cause, Redis refusing), still without the password or the
    # store's path.
    assert "store not ready (storage_unavailable)" in caplog.text and "Connection refused" in caplog.text
    assert "s3cret-pw" not in caplog.text and "secret-store-dir" not in caplog.text


class FrozenBus(FakeBus):
    """A Redis that accepted the connection and then stopped answering (SIGSTOP): ping blocks until thawed."""

    def __init__(self) -> None:
        super().__init__()
        self.thawed = threading.Event()
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        self.thawed.wait(30)


@pytest.fixture
def frozen_bus():
    bus = FrozenBus()
    yield bus
    bus.thawed.set()


def test_concurrent_readyz_with_a_frozen_redis_run_one_probe_and_all_answer(settings, repo, clock, frozen_bus):
    app = create_app(services=bootstrap(settings, repo=repo, source=FakePriceSource(), bus=frozen_bus, clock=clock),
                     background=False)
    answers = []

    def ask():
        answers.append(app.test_client().get("/readyz"))

    threads = [threading.Thread(target=ask) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not frozen_bus.thawed.is_set()  # every answer came while Redis was still frozen
    assert len(answers) == 32 and all(a.status_code == 503 for a in answers)
    assert all(a.get_json()["checks"]["redis"] == {"ok": False, "code": "timeout"} for a in answers)
    assert all(a.get_json()["checks"]["store"] == {"ok": True} for a in answers)
    assert frozen_bus.pings == 1  # one probe at a time per process, whatever the number of callers


def test_readyz_shows_an_outage_at_once_and_does_not_probe_a_down_part_again_for_a_few_seconds(client, bus):
    assert client.get("/readyz").status_code == 200
    bus.down = True
    assert client.get("/readyz").status_code == 503  # a success is not cached
    bus.down = False  # within the few seconds a failure is kept, the part is not asked again
    assert client.get("/readyz").get_json()["checks"]["redis"] == {"ok": False, "code": "broker_unavailable"}


def test_readyz_is_ready_at_once_when_this_process_has_reached_redis_again(app, client, bus):
    """The listener's subscription coming back is proof that Redis answers: the cached failure is not repeated."""
    from app.api import extensions

    bus.down = True
    assert client.get("/readyz").status_code == 503
    bus.down = False
    extensions.readiness(app).forget_failure("redis")  # what the listener does when its subscription is restored
    assert client.get("/readyz").status_code == 200


def test_readyz_shows_the_workers_clock_skew_when_reported(client, view):
    view.note_event({"event": "stored", "coins": ["bitcoin"], "clock_skew_seconds": -600.0})
    assert client.get("/readyz").get_json()["clock"] == {"skew_seconds": -600.0, "ok": False}
    view.note_event({"event": "failed", "error": {"code": "upstream_unreachable"}, "clock_skew_seconds": 0.4})
    assert client.get("/readyz").get_json()["clock"] == {"skew_seconds": 0.4, "ok": True}
    view.note_event({"event": "stored", "coins": ["bitcoin"], "clock_skew_seconds": None})
    assert client.get("/readyz").get_json()["clock"] == {"skew_seconds": None, "ok": None}
