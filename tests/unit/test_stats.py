"""Deviation: the inherited contract's numbers and numerical stability."""
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.model import TrackedCoins
from app.domain import stats
from app.domain.stats import population_std
from app.services.reporting import build_summaries
from tests.memory_store import InMemoryPriceRepository
from tests.fakes import T0, obs
from datetime import timedelta


def test_contract_example_gives_4082_48():
    assert population_std([40000, 45000, 50000]) == 4082.48


def test_one_record_has_zero_deviation():
    assert population_std([40000]) == 0


def test_empty_is_refused():
    with pytest.raises(ValueError):
        population_std([])


def test_large_prices_with_tiny_spread_stay_exact():
    # The true deviation is 0.01; the naive E[x²]−E[x]² loses it to cancellation at this magnitude (and can even go
    # negative), which this test shows first.
    prices = [99999.99, 100000.01] * 50
    naive_variance = sum(p * p for p in prices) / 100 - (sum(prices) / 100) ** 2
    assert abs(naive_variance - 0.0001) / 0.0001 > 0.1  # more than 10 % off
    assert population_std(prices) == 0.01
    assert population_std([1e9 + 0.25, 1e9 - 0.25]) == 0.25


def test_deviation_covers_only_the_last_100_records():
    repo = InMemoryPriceRepository()
    # 50 old records far away, then 100 recent ones alternating 40000/45000: only the recent ones count.
    old = [obs("bitcoin", 1.0, T0 + timedelta(minutes=i)) for i in range(50)]
    recent = [obs("bitcoin", 40000 if i % 2 else 45000, T0 + timedelta(hours=1, minutes=i)) for i in range(100)]
    repo.add_batch(old + recent)
    summary = build_summaries(repo, TrackedCoins(("bitcoin",)))[("bitcoin", "usd")]
    assert summary.window == 100
    assert summary.deviation == 2500.0
    assert summary.latest.observed_at == T0 + timedelta(hours=1, minutes=99)


def test_matches_a_two_pass_reference_on_random_prices():
    rng = random.Random(3)
    prices = [rng.uniform(30000, 50000) for _ in range(100)]
    mean = sum(prices) / len(prices)
    reference = (sum((p - mean) ** 2 for p in prices) / len(prices)) ** 0.5
    assert population_std(prices) == round(reference, 2)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(min_value=1e-18, max_value=1e15), min_size=1, max_size=100),
       st.sampled_from([0.0, 1e-9, 1e-3]))
def test_the_fast_deviation_is_statistics_pstdev_exactly(prices, spread):
    # Near-equal prices too (1e8 with a tiny spread): where a naive formula loses the variance.
    prices = [p * (1 + spread * i) for i, p in enumerate(prices)] if spread else prices
    assert stats._exact_pstdev(prices) == statistics.pstdev(prices)
