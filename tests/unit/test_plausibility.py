"""What a plausible record is, and what a run does with the rest: absurd values and time stamps are rejected with
the reason, in the log and in the event; the clock skew is published; hostile Retry-After values cannot crash the
retry policy; hostile text is handled in bounded time."""
import logging
from datetime import timedelta

import pytest

from app.domain.errors import UpstreamBadResponse, UpstreamRateLimited, UpstreamServerError
from app.domain.model import TrackedCoins
from app.domain.plausibility import implausible
from app.ports import FetchResult
from app.services.polling import report_failure, retry_decision
from tests.memory_store import InMemoryPriceRepository
from app.upstream.coingecko import parse_simple_price, redactor, retry_after_seconds
from tests.fakes import T0, FakePriceSource, obs, run_update_with

TRACKED = TrackedCoins(("bitcoin", "ethereum", "matic-network"))
POL = "polygon-ecosystem-token"


@pytest.mark.parametrize("record", [
    obs("bitcoin", 40000),
    obs("bitcoin", 9.447e-8),  # exponent-form micro prices are real (coingecko.md §6)
    obs("bitcoin", 1.6e9, vs="vnd", market_cap=3e16),
    obs("bitcoin", 40000, T0 - timedelta(hours=3)),  # an illiquid coin CoinGecko refreshed a while ago
    obs("bitcoin", 40000, T0 + timedelta(seconds=60)),  # within the clock skew allowed
])
def test_real_records_are_plausible(record):
    assert implausible(record, T0, None) is None


@pytest.mark.parametrize("record,why", [
    (obs("bitcoin", 1e308), "price"),
    (obs("bitcoin", 5e-324), "price"),
    (obs("bitcoin", float("inf")), "price"),
    (obs("bitcoin", 40000, market_cap=1e300), "market_cap"),
    (obs("bitcoin", 40000, change=1e12), "change_24h"),
    (obs("bitcoin", 40000, T0 + timedelta(seconds=290)), "after we asked"),
    (obs("bitcoin", 40000, T0 - timedelta(days=20000)), "before we asked"),  # last_updated_at=1 (1970)
])
def test_absurd_records_are_rejected_with_the_reason(record, why):
    assert why in implausible(record, T0, None)


def test_a_record_much_older_than_the_stored_one_is_rejected_a_little_older_is_not():
    previous = obs("bitcoin", 40000, T0)
    assert "older than the record already stored" in implausible(obs("bitcoin", 1, T0 - timedelta(hours=1)), T0,
                                                                  previous)
    assert implausible(obs("bitcoin", 40000, T0 - timedelta(seconds=90)), T0, previous) is None


def test_a_run_stores_the_plausible_coins_and_names_the_rest(bus, clock, caplog):
    repo = InMemoryPriceRepository()
    answer = FetchResult([obs("bitcoin", 1e308), obs("ethereum", 2000, T0 + timedelta(seconds=290), fetched=T0),
                          obs(POL, 0.5)], clock_skew_seconds=0.2)
    with caplog.at_level(logging.WARNING):
        report = run_update_with(FakePriceSource(answer), repo, bus, TRACKED, clock)
    assert report.coins == [POL] and repo.count() == 1
    [event] = bus.events
    assert set(event["rejected"]) == {"bitcoin/usd", "ethereum/usd"}
    assert "price" in event["rejected"]["bitcoin/usd"] and "after we asked" in event["rejected"]["ethereum/usd"]
    assert event["clock_skew_seconds"] == 0.2
    assert "bitcoin/usd" in caplog.text and "ethereum/usd" in caplog.text
    assert "clock" not in caplog.text  # a fifth of a second is no skew worth a line


def test_an_answer_without_one_plausible_record_fails_the_run(bus, clock):
    repo = InMemoryPriceRepository()
    repo.add_batch([obs("bitcoin", 40000)])
    stale = FetchResult([obs("bitcoin", 41000, T0 - timedelta(hours=2), fetched=T0)])
    with pytest.raises(UpstreamBadResponse) as err:
        run_update_with(FakePriceSource(stale), repo, bus, TRACKED, clock)
    assert "older than the record already stored" in err.value.details["rejected"]["bitcoin/usd"]
    assert repo.count() == 1


def test_a_skewed_worker_clock_is_said_once_per_run_and_published(bus, clock, caplog):
    repo = InMemoryPriceRepository()
    failing = UpstreamServerError("500")
    failing.clock_skew_seconds = -600.0
    source = FakePriceSource(FetchResult([obs("bitcoin", 40000)], clock_skew_seconds=-600.0), failing)
    with caplog.at_level(logging.WARNING):
        run_update_with(source, repo, bus, TRACKED, clock)
        with pytest.raises(UpstreamServerError) as err:
            run_update_with(source, repo, bus, TRACKED, clock)
    report_failure(bus, err.value, clock, 10)
    lines = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
    assert len(lines) == 2 and all("600 s behind" in line for line in lines)
    assert [e["clock_skew_seconds"] for e in bus.events] == [-600.0, -600.0]


@pytest.mark.parametrize("header", ["99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_an_absurd_retry_after_gives_up_cleanly_instead_of_overflowing(header):
    error = UpstreamRateLimited("429", retry_after=retry_after_seconds(header, T0))
    assert retry_decision(error, 0, T0, T0 + timedelta(minutes=15)) == (None, "no time left before the next "
                                                                               "scheduled run")
    # Even unbounded values from another source cannot overflow the policy.
    for value in (1e20, 1e300, float("inf"), float("nan")):
        assert retry_decision(UpstreamRateLimited("429", retry_after=value), 0, T0, T0 + timedelta(days=1))[0] is None


def test_an_integer_too_large_for_a_float_is_a_rejected_coin_not_a_crash():
    body = {"bitcoin": {"usd": 10 ** 400}, "ethereum": {"usd": 2000, "last_updated_at": int(T0.timestamp())}}
    result = parse_simple_price(body, ["bitcoin", "ethereum"], ["usd"], T0)
    assert [o.coin for o in result.observations] == ["ethereum"] and "bitcoin/usd" in result.rejected


def test_redaction_removes_the_key_and_the_base_urls_credentials():
    redact = redactor("http://proxyuser:pr0xy-pass@proxy.internal:3128/api/v3", "CG-key-123")
    text = redact("GET http://proxyuser:pr0xy-pass@proxy.internal failed with key CG-key-123; pass pr0xy-pass")
    assert "pr0xy-pass" not in text and "proxyuser" not in text and "CG-key-123" not in text


def test_the_event_carries_a_null_skew_when_unknown(bus, clock):
    run_update_with(FakePriceSource(FetchResult([obs("bitcoin", 40000)])), InMemoryPriceRepository(), bus, TRACKED, clock)
    assert bus.events[0]["clock_skew_seconds"] is None
    report_failure(bus, UpstreamServerError("500"), clock, None)
    assert bus.events[1]["clock_skew_seconds"] is None
