"""The CoinGecko client over real HTTP against the fake server: one request, typed errors, key headers."""
import socket

import pytest

from app.domain.errors import (UpstreamBadResponse, UpstreamRateLimited, UpstreamRejected, UpstreamServerError,
                               UpstreamUnavailable)
from app.upstream.coingecko import CoinGeckoClient
from tests.fake_coingecko import FakeCoinGecko

COINS = ["bitcoin", "ethereum", "polygon-ecosystem-token"]


def client_for(server, **kwargs):
    return CoinGeckoClient(server.base_url, **kwargs)


def test_one_request_brings_every_coin(fake_coingecko):
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    result = client_for(fake_coingecko).fetch_prices(COINS, ["usd", "eur"])
    assert fake_coingecko.request_count("/simple/price") == 1
    [request] = fake_coingecko.requests
    assert request["query"]["include_last_updated_at"] == "true" and request["query"]["include_market_cap"] == "true"
    assert "crypto-stats-platform" in request["headers"]["user-agent"]
    assert len(result.observations) == 6 and result.rejected == {}
    btc = next(o for o in result.observations if o.coin == "bitcoin" and o.vs_currency == "usd")
    assert (btc.price, btc.market_cap, btc.change_24h) == (40000, 800000000, 3.4)


def test_deprecated_matic_network_is_reported_not_stored(fake_coingecko):
    result = client_for(fake_coingecko).fetch_prices(["bitcoin", "matic-network"], ["usd"])
    assert [o.coin for o in result.observations] == ["bitcoin"]
    assert "matic-network/usd" in result.rejected


def test_demo_key_goes_in_the_demo_header(fake_coingecko):
    client_for(fake_coingecko, api_key="CG-demo-key-123", plan="demo").fetch_prices(["bitcoin"], ["usd"])
    headers = fake_coingecko.requests[0]["headers"]
    assert headers["x-cg-demo-api-key"] == "CG-demo-key-123" and "x-cg-pro-api-key" not in headers


def test_pro_key_on_the_public_host_is_refused_and_not_retried():
    with FakeCoinGecko() as server:
        with pytest.raises(UpstreamRejected) as err:
            client_for(server, api_key="CG-pro-key-123", plan="pro").fetch_prices(["bitcoin"], ["usd"])
    assert "10010" in err.value.message and "CG-pro-key-123" not in err.value.message
    assert not err.value.transient


def test_429_carries_retry_after(fake_coingecko):
    fake_coingecko.enqueue("rate_limit", retry_after=119)
    with pytest.raises(UpstreamRateLimited) as err:
        client_for(fake_coingecko).fetch_prices(["bitcoin"], ["usd"])
    assert err.value.retry_after == 119 and "Rate Limit" in err.value.message


def test_429_without_retry_after(fake_coingecko):
    fake_coingecko.enqueue("rate_limit", retry_after=None)
    with pytest.raises(UpstreamRateLimited) as err:
        client_for(fake_coingecko).fetch_prices(["bitcoin"], ["usd"])
    assert err.value.retry_after is None


@pytest.mark.parametrize("fault,opts,error", [
    ("status", {"status": 500}, UpstreamServerError),
    ("status", {"status": 502}, UpstreamServerError),
    ("html", {"status": 503}, UpstreamServerError),
    ("html", {"status": 200}, UpstreamBadResponse),
    ("malformed", {}, UpstreamBadResponse),
    ("body", {"body": {"bitcoin": {"usd": None}}}, UpstreamBadResponse),
    ("body", {"body": {"bitcoin": {"usd": -3}}}, UpstreamBadResponse),
    ("body", {"body": {}}, UpstreamBadResponse),
    ("drop", {}, UpstreamUnavailable),
])
def test_unusable_answers_raise_typed_errors(fake_coingecko, fault, opts, error):
    fake_coingecko.enqueue(fault, **opts)
    with pytest.raises(error):
        client_for(fake_coingecko).fetch_prices(["bitcoin"], ["usd"])
    assert fake_coingecko.request_count("/simple/price") == 1  # the client itself never retries


def test_html_error_message_is_readable(fake_coingecko):
    fake_coingecko.enqueue("html", status=200)
    with pytest.raises(UpstreamBadResponse) as err:
        client_for(fake_coingecko).fetch_prices(["bitcoin"], ["usd"])
    assert "HTML" in err.value.message and "<" not in err.value.message


def test_read_timeout(fake_coingecko):
    fake_coingecko.enqueue("delay", seconds=2)
    with pytest.raises(UpstreamUnavailable) as err:
        client_for(fake_coingecko, read_timeout=0.3).fetch_prices(["bitcoin"], ["usd"])
    assert "timed out" in err.value.message


def test_nothing_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UpstreamUnavailable) as err:
        CoinGeckoClient(f"http://127.0.0.1:{port}/api/v3", connect_timeout=1).fetch_prices(["bitcoin"], ["usd"])
    assert "unreachable" in err.value.message and "Connection refused" in err.value.message


def _thousand_coins(fake) -> list[str]:
    # Ids as long as CoinGecko's usually are (bitcoin-cash, wrapped-steth, ...: ~12 characters).
    coins = [f"scale-coin-{i:04d}" for i in range(1000)]
    for i, coin in enumerate(coins):
        fake.set_price(coin, 1.0 + i)
    return coins


def test_a_thousand_coins_are_fetched_in_as_few_calls_as_the_url_limits_allow(fake_coingecko):
    coins = _thousand_coins(fake_coingecko)

    result = client_for(fake_coingecko).fetch_prices(coins, ["usd", "eur", "gbp"])

    assert not result.rejected
    assert {(o.coin, o.vs_currency) for o in result.observations} == {(c, v) for c in coins
                                                                      for v in ("usd", "eur", "gbp")}
    assert len({o.fetched_at for o in result.observations}) == 1  # one update, one fetch time
    sent = [r for r in fake_coingecko.requests if r["path"].endswith("/simple/price")]
    assert all(len(r["query"]["ids"].split(",")) <= 500 for r in sent)
    assert len(sent) == 3  # 1,000 ids of 15 characters, "%2C" between them: ~17 KB of ids, under 7 KB per call


def test_a_failed_call_of_a_multi_call_update_fails_it_whole(fake_coingecko):
    coins = _thousand_coins(fake_coingecko)
    fake_coingecko.enqueue("rate_limit", retry_after=30)  # the first call is refused

    with pytest.raises(UpstreamRateLimited):
        client_for(fake_coingecko).fetch_prices(coins, ["usd"])
    assert fake_coingecko.request_count("/simple/price") == 1  # no credit spent on calls whose result is dropped
