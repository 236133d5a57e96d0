"""tasks.store_crypto_stats run in this process (Celery's eager apply) over a real SQLite store and fakes: what the
task reports when a run is stopped after its batch was stored."""
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from app.bootstrap import bootstrap
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import FakeBus, FakePriceSource
from tests.unit.test_polling import answer


class StoppedWhileAnnouncing(FakeBus):
    """The soft time limit fires while the stored batch is being announced (after it was stored)."""

    def publish(self, event):
        if event.get("event") == "stored":
            raise SoftTimeLimitExceeded()
        super().publish(event)


@pytest.fixture
def task_services(settings, clock, monkeypatch):
    from tasks import prices

    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    bus = StoppedWhileAnnouncing()
    services = bootstrap(settings, repo=repo, source=FakePriceSource(answer(), answer()), bus=bus, clock=clock)
    monkeypatch.setattr(prices, "_services", services)
    monkeypatch.setattr(prices, "_schema_ready", True)
    return services, bus, repo


def test_a_run_stopped_after_it_stored_is_neither_reported_failed_nor_retried(task_services):
    from tasks.prices import store_crypto_stats

    services, bus, repo = task_services
    result = store_crypto_stats.apply(task_id="run-1")

    assert result.successful()  # no retry: that would be skipped as a second delivery anyway
    assert [e["event"] for e in bus.events] == []  # no "failed" announced for data that is stored
    assert len(repo.last_n("bitcoin", "usd", 10)) == 1
    assert len(services.source.calls) == 1
