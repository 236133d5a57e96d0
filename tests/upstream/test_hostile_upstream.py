"""The CoinGecko client against a hostile upstream over real HTTP: redirects, oversized and endless bodies, gzip
bombs, deep nesting, absurd Retry-After, a skewed Date, credentials in the base URL. Each becomes a bounded,
typed upstream error (or a measured skew), never a crash and never a leaked secret."""
import socket

import pytest

from app.domain.errors import UpstreamBadResponse, UpstreamRateLimited, UpstreamServerError, UpstreamUnavailable
from app.upstream.coingecko import CoinGeckoClient
from tests.fake_coingecko import FakeCoinGecko

KEY = "CG-secret-demo-key"
LIMIT = 256 * 1024


def fetch(server, **kwargs):
    kwargs.setdefault("max_response_bytes", LIMIT)
    return CoinGeckoClient(server.base_url, **kwargs).fetch_prices(["bitcoin"], ["usd"])


def test_a_redirect_to_another_host_is_not_followed_and_the_key_stays_home(fake_coingecko):
    with FakeCoinGecko() as elsewhere:
        elsewhere.set_price("bitcoin", 1.0)
        fake_coingecko.enqueue("redirect", location=f"{elsewhere.base_url}/simple/price?ids=bitcoin&vs_currencies=usd")
        with pytest.raises(UpstreamBadResponse) as err:
            fetch(fake_coingecko, api_key=KEY)
        assert elsewhere.requests == []  # neither the key nor the request went there
    assert "redirect" in err.value.message and err.value.transient
    assert fake_coingecko.requests[0]["headers"]["x-cg-demo-api-key"] == KEY  # the key went to its own host only


@pytest.mark.parametrize("fault,opts", [
    ("huge", {"size": 64 * 1024 * 1024}),
    ("huge", {"size": 64 * 1024 * 1024, "declare_length": True}),
    ("endless", {}),
    ("gzip_bomb", {"inflated": 256 * 1024 * 1024}),
])
def test_an_answer_larger_than_the_limit_is_cut_off_as_a_transient_error(fake_coingecko, fault, opts):
    fake_coingecko.enqueue(fault, **opts)
    with pytest.raises(UpstreamBadResponse) as err:
        fetch(fake_coingecko)
    assert "UPSTREAM_MAX_RESPONSE_BYTES" in err.value.message and err.value.transient
    assert err.value.details["limit_bytes"] == LIMIT


def test_an_answer_within_the_limit_is_read_whole(fake_coingecko):
    fake_coingecko.enqueue("huge", size=LIMIT - 10)  # spaces, then {}: read entirely, then "no valid price"
    with pytest.raises(UpstreamBadResponse) as err:
        fetch(fake_coingecko)
    assert "no valid price" in err.value.message
    fake_coingecko.enqueue("gzip_bomb", inflated=LIMIT // 2)
    with pytest.raises(UpstreamBadResponse) as err:
        fetch(fake_coingecko)
    assert "no valid price" in err.value.message


def test_json_nested_too_deeply_is_a_bad_response_not_a_recursion_error(fake_coingecko):
    fake_coingecko.enqueue("nested", depth=100_000)
    with pytest.raises(UpstreamBadResponse) as err:
        fetch(fake_coingecko)
    assert "nested" in err.value.message


@pytest.mark.timeout(20)  # a hang guard: the old tag-stripping pattern took ~50 s on this body
@pytest.mark.parametrize("status,error", [(503, UpstreamServerError), (200, UpstreamBadResponse)])
def test_a_megabyte_of_angle_brackets_gives_a_short_message(fake_coingecko, status, error):
    fake_coingecko.enqueue("raw", raw="<" * 1_000_000, status=status, content_type="text/html")
    with pytest.raises(error) as err:
        fetch(fake_coingecko, max_response_bytes=4 * 1024 * 1024)
    assert len(err.value.message) < 300


@pytest.mark.parametrize("retry_after", ["99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT", "²"])
def test_an_absurd_retry_after_is_bounded(fake_coingecko, retry_after):
    fake_coingecko.enqueue("rate_limit", retry_after=retry_after)
    with pytest.raises(UpstreamRateLimited) as err:
        fetch(fake_coingecko)
    assert err.value.retry_after is None or 0 <= err.value.retry_after <= 86400


@pytest.mark.parametrize("offset", [-600, 0])
def test_the_clock_skew_is_measured_from_the_date_header(fake_coingecko, offset):
    fake_coingecko.set_clock_offset(offset)
    result = fetch(fake_coingecko)
    assert result.clock_skew_seconds == pytest.approx(-offset, abs=2)


def test_a_clock_ten_minutes_behind_rejects_the_future_stamps_and_says_how_far_behind(fake_coingecko):
    fake_coingecko.set_clock_offset(600)
    with pytest.raises(UpstreamBadResponse) as err:
        fetch(fake_coingecko)
    assert err.value.clock_skew_seconds == pytest.approx(-600, abs=2)
    assert "s after we asked" in err.value.details["rejected"]["bitcoin/usd"]


def test_the_clock_skew_travels_with_an_error(fake_coingecko):
    fake_coingecko.set_clock_offset(600)
    fake_coingecko.enqueue("status", status=500)
    with pytest.raises(UpstreamServerError) as err:
        fetch(fake_coingecko)
    assert err.value.clock_skew_seconds == pytest.approx(-600, abs=2)


def test_credentials_in_the_base_url_appear_in_no_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = CoinGeckoClient(f"http://proxyuser:proxy-s3cret@127.0.0.1:{port}/api/v3", api_key=KEY, connect_timeout=1)
    with pytest.raises(UpstreamUnavailable) as err:
        client.fetch_prices(["bitcoin"], ["usd"])
    text = f"{err.value.message} {err.value} {err.value.details}"
    assert "proxy-s3cret" not in text and "proxyuser" not in text and KEY not in text
    assert "Connection refused" in err.value.message


def test_an_upstream_echoing_the_key_back_does_not_put_it_in_the_message(fake_coingecko):
    fake_coingecko.enqueue("body", status=401, body={"error": f"key {KEY} is not valid"})
    with pytest.raises(Exception) as err:
        fetch(fake_coingecko, api_key=KEY)
    assert KEY not in err.value.message and "***" in err.value.message


def test_the_limit_is_a_setting_that_rejects_nonsense():
    from app.config import Settings
    from app.domain.errors import ConfigError

    assert Settings.from_env({}).upstream_max_response_bytes == 4 * 1024 * 1024
    assert Settings.from_env({"UPSTREAM_MAX_RESPONSE_BYTES": "65536"}).upstream_max_response_bytes == 65536
    for bad in ("0", "-1", "lots", "1e9"):
        with pytest.raises(ConfigError) as err:
            Settings.from_env({"UPSTREAM_MAX_RESPONSE_BYTES": bad})
        assert err.value.variable == "UPSTREAM_MAX_RESPONSE_BYTES"
