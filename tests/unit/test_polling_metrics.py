"""What update runs report through the Metrics port (app.ports.Metrics), over fakes."""
from datetime import datetime, timezone

from app.domain.errors import StorageUnavailable, UpstreamRateLimited
from app.domain.model import TrackedCoins
from app.ports import FetchResult
from app.services.polling import UpdateContext, report_failure, run_update, slot_key
from tests.memory_store import InMemoryPriceRepository
from tests.fakes import FakePriceSource, obs

TRACKED = TrackedCoins(("bitcoin", "ethereum", "matic-network"))


class RecordingMetrics:
    """A Metrics that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def run_finished(self, outcome):
        self.calls.append(("run", outcome))

    def upstream_call(self, status):
        self.calls.append(("upstream", status))

    def records_stored(self, count, observed, at):
        self.calls.append(("records", count, sorted((c, v) for c, v, _ in observed), at))

    def backfill_chunk(self, outcome):
        self.calls.append(("backfill", outcome))

    def sse_clients(self, delta):
        self.calls.append(("sse", delta))


def context(source, bus, clock, metrics) -> UpdateContext:
    return UpdateContext(source, InMemoryPriceRepository(), bus, bus, TRACKED, clock, metrics=metrics)


def answer():
    return FetchResult([obs("bitcoin", 40000), obs("ethereum", 2000), obs("polygon-ecosystem-token", 0.5)])


def test_a_stored_run_reports_one_call_its_records_and_its_outcome(bus, clock):
    metrics = RecordingMetrics()
    run_update(context(FakePriceSource(answer()), bus, clock, metrics))
    assert metrics.calls == [
        ("upstream", "200"),
        ("records", 3, [("bitcoin", "usd"), ("ethereum", "usd"), ("matic-network", "usd")], clock()),
        ("run", "stored")]


def test_a_429_is_counted_as_a_call_and_the_cooldown_after_it_is_not(bus, clock):
    metrics = RecordingMetrics()
    limited = UpstreamRateLimited("slow down", retry_after=30, details={"status": 429})
    source = FakePriceSource(limited, answer())
    for _ in range(2):
        try:
            run_update(context(source, bus, clock, metrics))
        except UpstreamRateLimited:
            pass
    assert metrics.calls == [("upstream", "429")]  # the second run waited out Retry-After without calling
    assert len(source.calls) == 1


def test_a_duplicate_trigger_is_counted_as_skipped(bus, clock):
    metrics = RecordingMetrics()
    slot = datetime(2024, 1, 1, tzinfo=timezone.utc)
    bus.claim(slot_key(slot), 60)
    assert run_update(context(FakePriceSource(), bus, clock, metrics), slot=slot) is None
    assert metrics.calls == [("run", "skipped")]


def test_a_failure_is_counted_as_retried_or_failed(bus, clock):
    metrics = RecordingMetrics()
    report_failure(bus, StorageUnavailable("down"), clock, 10.0, metrics)
    report_failure(bus, StorageUnavailable("down"), clock, None, metrics)
    assert metrics.calls == [("run", "retried"), ("run", "failed")]


def test_a_backfill_step_reports_its_chunk_and_its_coingecko_call():
    from app.domain.backfill import FREE_PLAN_MAX_DAYS
    from app.services.backfill import backfill_step, start_backfill
    from tests.backfill_fakes import FakeCounters, FakeHistorySource
    from tests.fakes import FakeBus, FakeClock

    clock, state, metrics = FakeClock(datetime(2026, 12, 1, 22, 45, tzinfo=timezone.utc)), FakeCounters(), \
        RecordingMetrics()
    start_backfill(state, TRACKED, "bitcoin", 30, None, clock(), FREE_PLAN_MAX_DAYS)
    backfill_step(FakeHistorySource(), InMemoryPriceRepository(), state, state, FakeBus(), "bitcoin", "usd", 30,
                  clock, metrics=metrics)
    assert metrics.calls == [("upstream", "200"), ("backfill", "stored")]
