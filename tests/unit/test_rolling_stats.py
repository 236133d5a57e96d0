"""Rolling statistics (pure): windows, estimators, price vs log returns, annualised volatility, numerical stability."""
import math
import random
import statistics
from datetime import timedelta

import pytest

from app.domain.errors import InvalidQuery
from app.domain.stats import ESTIMATORS, SERIES, parse_choice, parse_window, population_std, rolling_stats
from tests.fakes import T0, obs


def series(prices, step=timedelta(minutes=15)):
    return [obs("bitcoin", p, T0 + i * step) for i, p in enumerate(prices)]


@pytest.mark.parametrize("text, count, seconds", [(None, 100, None), ("2", 2, None), ("10000", 10000, None),
                                                  ("24h", None, 86400), ("7D", None, 604800),
                                                  ("30d", None, 2592000)])
def test_windows_count_records_or_cover_a_span(text, count, seconds):
    window = parse_window(text)
    assert (window.count, window.seconds) == (count, seconds)


@pytest.mark.parametrize("text", ["1", "0", "10001", "-5", "1h", "abc", "1.5", "١٠٠"])
def test_a_bad_window_names_the_allowed_values(text):
    with pytest.raises(InvalidQuery) as caught:
        parse_window(text)
    assert caught.value.details["parameter"] == "window"
    assert "2..10000" in caught.value.message and "24h, 7d, 30d" in caught.value.message


@pytest.mark.parametrize("parameter, allowed", [("estimator", ESTIMATORS), ("on", SERIES)])
def test_a_bad_choice_names_the_allowed_values(parameter, allowed):
    assert parse_choice(None, parameter, allowed) == allowed[0]
    with pytest.raises(InvalidQuery) as caught:
        parse_choice("median", parameter, allowed)
    assert caught.value.details == {"parameter": parameter, "value": "median", "allowed": list(allowed)}


def test_price_statistics_of_the_contract_example():
    result = rolling_stats(series([40000, 45000, 50000]))
    assert result == {"n": 3, "from": T0.isoformat(), "to": (T0 + timedelta(minutes=30)).isoformat(),
                      "mean": 45000.0, "sd": 4082.48, "min": 40000, "max": 50000, "change_pct": 25.0,
                      "volatility_annualized": None}


def test_population_sd_on_price_is_deviations_figure_exactly():
    rng = random.Random(11)
    prices = [rng.uniform(30000, 50000) for _ in range(100)]
    assert rolling_stats(series(prices))["sd"] == population_std(prices)


def test_sample_sd_divides_by_n_minus_one():
    assert rolling_stats(series([40000, 45000, 50000]), "sample")["sd"] == 5000.0
    assert rolling_stats(series([40000]), "sample")["sd"] is None  # undefined for one value
    assert rolling_stats(series([40000]), "population")["sd"] == 0


def test_log_returns_are_over_consecutive_records():
    prices = [100.0, 110.0, 99.0, 105.0]
    returns = [math.log(b / a) for a, b in zip(prices, prices[1:])]

    result = rolling_stats(series(prices), "sample", "log_return")

    assert result["n"] == 3
    assert result["mean"] == pytest.approx(statistics.mean(returns), rel=1e-12)
    assert result["sd"] == pytest.approx(statistics.stdev(returns), rel=1e-12)
    assert (result["min"], result["max"]) == (pytest.approx(min(returns)), pytest.approx(max(returns)))
    assert result["change_pct"] == pytest.approx(5.0)


def test_volatility_is_annualised_at_the_median_observed_interval():
    prices = [100.0, 101.0, 100.5, 102.0, 101.0]
    # One long gap (a missed poll) among 15-minute steps: the median interval is still 15 minutes.
    records = series(prices)
    records[-1] = obs("bitcoin", 101.0, records[-2].observed_at + timedelta(hours=3))

    result = rolling_stats(records, "population", "log_return")

    periods_per_year = 365 * 24 * 4
    assert result["volatility_annualized"] == pytest.approx(result["sd"] * math.sqrt(periods_per_year), rel=1e-12)


def test_volatility_is_only_given_for_log_returns():
    assert rolling_stats(series([1.0, 2.0, 3.0]), "population", "price")["volatility_annualized"] is None


def test_prices_near_1e8_with_a_tiny_spread_stay_exact():
    # True SD 0.01 around 1e8: the naive E[x²]−E[x]² loses it entirely to cancellation at this magnitude.
    prices = [99_999_999.99, 100_000_000.01] * 50
    naive = sum(p * p for p in prices) / len(prices) - (sum(prices) / len(prices)) ** 2
    assert abs(naive - 0.0001) / 0.0001 > 0.1

    by_price = rolling_stats(series(prices))
    assert by_price["sd"] == 0.01 == population_std(prices)
    assert by_price["mean"] == 100_000_000.0

    by_return = rolling_stats(series(prices), "population", "log_return")
    # Alternating ±2e-10 relative moves; log(b / a) would round b / a to a few ulps of 1 first.
    expected = math.log1p(0.02 / 99_999_999.99)
    assert by_return["max"] == pytest.approx(expected, rel=1e-6)
    assert by_return["sd"] == pytest.approx(expected, rel=1e-6)


def test_an_empty_window_has_no_figures():
    assert rolling_stats([]) == {"n": 0, "from": None, "to": None, "mean": None, "sd": None, "min": None,
                                 "max": None, "change_pct": None, "volatility_annualized": None}
    one = rolling_stats(series([5.0]), "population", "log_return")
    assert (one["n"], one["sd"], one["from"]) == (0, None, T0.isoformat())
