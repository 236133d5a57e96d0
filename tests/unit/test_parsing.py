"""Validation of CoinGecko's /simple/price answers, field by field (quirks from shared/reference/coingecko.md)."""
import json
from datetime import datetime, timezone

import pytest

from app.domain.errors import UpstreamBadResponse
from app.upstream.coingecko import error_message, parse_simple_price, retry_after_seconds

NOW = datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=timezone.utc)


def parse(body, coins=("bitcoin",), vs=("usd",)):
    return parse_simple_price(body, list(coins), list(vs), NOW)


def test_full_answer_becomes_an_observation():
    result = parse({"bitcoin": {"usd": 40000, "usd_market_cap": 800000000, "usd_24h_vol": 1.5e10,
                                "usd_24h_change": 3.4, "last_updated_at": 1700000000}})
    [o] = result.observations
    assert (o.coin, o.vs_currency, o.price, o.market_cap, o.volume_24h, o.change_24h) == (
        "bitcoin", "usd", 40000.0, 800000000.0, 1.5e10, 3.4)
    assert o.observed_at == datetime.fromtimestamp(1700000000, timezone.utc)
    assert o.fetched_at == NOW
    assert result.rejected == {}


def test_exponent_form_and_numeric_strings_are_numbers():
    body = json.loads('{"bitcoin": {"usd": 4.0e4, "usd_market_cap": "8E8", "usd_24h_change": "-1.5"}}')
    [o] = parse(body).observations
    assert (o.price, o.market_cap, o.change_24h) == (40000.0, 800000000.0, -1.5)


def test_tiny_prices_in_exponent_form_survive():
    [o] = parse(json.loads('{"pepe": {"usd": 9.447e-8}}'), coins=("pepe",)).observations
    assert o.price == 9.447e-8


@pytest.mark.parametrize("bad", [None, 0, -5, "abc", True, "NaN", [], {}])
def test_invalid_price_is_rejected_with_a_reason_and_never_stored(bad):
    result = parse({"bitcoin": {"usd": bad}, "ethereum": {"usd": 2000}}, coins=("bitcoin", "ethereum"))
    assert [o.coin for o in result.observations] == ["ethereum"]
    assert "price" in result.rejected["bitcoin/usd"]


def test_negative_market_cap_rejects_the_coin():
    result = parse({"bitcoin": {"usd": 1, "usd_market_cap": -1}})
    assert result.observations == [] and "market_cap" in result.rejected["bitcoin/usd"]


def test_zero_market_cap_means_unknown():
    [o] = parse({"bitcoin": {"usd": 1, "usd_market_cap": 0}}).observations
    assert o.market_cap is None


def test_null_optional_fields_are_kept_as_unknown():
    [o] = parse({"bitcoin": {"usd": 1, "usd_market_cap": None, "usd_24h_change": None,
                             "last_updated_at": None}}).observations
    assert o.market_cap is None and o.change_24h is None
    assert o.observed_at == NOW.replace(microsecond=0)  # falls back to our fetch time


def test_unknown_ids_are_dropped_by_coingecko_and_reported():
    result = parse({"bitcoin": {"usd": 1}}, coins=("bitcoin", "notacoin"))
    assert "missing" in result.rejected["notacoin/usd"]


def test_deprecated_id_answered_with_an_empty_object_is_reported():
    result = parse({"matic-network": {}}, coins=("matic-network",))
    assert result.observations == [] and "no price" in result.rejected["matic-network/usd"]


def test_several_currencies_from_one_answer():
    result = parse({"bitcoin": {"usd": 40000, "eur": 37000, "eur_market_cap": 7e8}}, vs=("usd", "eur"))
    assert {(o.vs_currency, o.price) for o in result.observations} == {("usd", 40000.0), ("eur", 37000.0)}


def test_a_non_object_answer_is_a_bad_response():
    with pytest.raises(UpstreamBadResponse):
        parse(["bitcoin"])


@pytest.mark.parametrize("body,expected", [
    ('{"status":{"error_code":429,"error_message":"You\'ve exceeded the Rate Limit."}}',
     "You've exceeded the Rate Limit. (error_code 429)"),
    ('{"error":{"status":{"error_code":10012,"error_message":"too far back"}}}', "too far back (error_code 10012)"),
    ('{"error":"coin not found"}', "coin not found"),
    ('{"error_code":10011,"status":{"error_message":"use the api host"}}', "use the api host (error_code 10011)"),
    ("<html><body><h1>Error 1020</h1> Access denied</body></html>", "Error 1020 Access denied"),
])
def test_error_bodies_in_all_three_shapes_and_html(body, expected):
    assert error_message(body) == expected


def test_retry_after_in_seconds_or_http_date():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("119", now) == 119
    assert retry_after_seconds("Wed, 25 Nov 2026 12:01:00 GMT", now) == 60
    assert retry_after_seconds(None, now) is None and retry_after_seconds("soon", now) is None
