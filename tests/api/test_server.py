"""The web server's own limits (answered in the one JSON shape) and the /stats fast path, which must answer
exactly as Flask does."""
import json
from datetime import timedelta

import pytest

from app.api import limits, stats
from tests.fakes import T0, obs


def test_a_request_line_over_the_limit_is_a_json_414_without_the_clients_text(client):
    response = client.get("/stats?coin=" + "<script>" * 600)
    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == {"error": {"code": "request_uri_too_long", "message": "the request line is too long",
                                             "details": None}}


def test_a_header_over_the_limit_is_a_json_431(client):
    response = client.get("/healthz", headers={"X-Big": "b" * (limits.LIMIT_FIELD_SIZE + 1)})
    assert response.status_code == 431
    assert response.get_json()["error"]["code"] == "request_header_fields_too_large"


def test_requests_within_the_limits_reach_the_app(client):
    response = client.get("/stats?coin=" + "a" * 100, headers={"X-Big": "b" * 4000})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "unknown_coin"


def store(repo, view, prices):
    repo.add_batch([obs("bitcoin", p, T0 + timedelta(minutes=15 * i)) for i, p in enumerate(prices)])
    view.refresh()


PER_REQUEST = {"x-request-id", "ratelimit-remaining", "ratelimit-reset"}


def same_headers(response) -> list:
    return sorted((k, v) for k, v in response.headers.items() if k.lower() not in PER_REQUEST)


@pytest.mark.parametrize("path", ["/stats", "/deviation", "/api/v1/stats", "/api/v1/deviation"])
def test_the_fast_path_answers_as_flask_does(app, client, repo, view, clock, path):
    store(repo, view, [40000, 45000, 50000])
    fast = client.get(f"{path}?coin=bitcoin")  # the plain query: answered by stats.FastPath
    slow = client.get(f"{path}?coin=%62itcoin&ignored=1")  # the same question, answered by the Flask route
    assert fast.status_code == slow.status_code == 200
    assert fast.get_data() == slow.get_data()
    assert same_headers(fast) == same_headers(slow)
    # What differs per request is there on both: the request's id, and the rate limit counted down by one.
    assert fast.headers["X-Request-ID"] != slow.headers["X-Request-ID"]
    assert int(fast.headers["RateLimit-Remaining"]) - int(slow.headers["RateLimit-Remaining"]) == 1
    clock.advance(minutes=61)  # the newest record is 30 minutes after T0; stale after two 15-minute intervals
    assert client.get(f"{path}?coin=bitcoin").headers["X-Data-Stale"] == "true"


def test_the_fast_path_serves_the_new_data_after_a_refresh(client, repo, view):
    store(repo, view, [40000])
    assert json.loads(client.get("/stats?coin=bitcoin").data)["price"] == 40000
    repo.add_batch([obs("bitcoin", 41000, T0 + timedelta(hours=1))])
    view.refresh()
    assert json.loads(client.get("/stats?coin=bitcoin").data)["price"] == 41000


def test_the_view_renders_once_per_refresh(repo, view):
    store(repo, view, [40000])
    calls = []

    def render(summary):
        calls.append(summary)
        return stats.render_stats(summary)

    first, _ = view.rendered("bitcoin", None, render)
    again, _ = view.rendered("bitcoin", None, render)
    assert again is first and len(calls) == 1
    view.refresh()  # nothing new in the store: the prepared answer is still the right one
    assert view.rendered("bitcoin", None, render)[0] is first and len(calls) == 1
    repo.add_batch([obs("bitcoin", 41000, T0 + timedelta(hours=1))])
    view.refresh()
    assert json.loads(view.rendered("bitcoin", None, render)[0].body)["price"] == 41000
    assert len(calls) == 2


def test_the_benchmarks_raw_callable_sends_the_headers_stats_sends(client, repo, view):
    """make bench compares /stats with a raw callable "returning the same bytes": granian's cost grows with the
    number of headers, so the comparison is fair only while both send the same ones."""
    from tests.bench_http import RAW_HEADERS

    store(repo, view, [40000])
    answer = client.get("/stats?coin=bitcoin")
    sent = [name for name, _ in answer.headers.items() if not name.startswith("RateLimit-")]  # bench: RATE_LIMIT=0
    assert sorted(name for name, _ in RAW_HEADERS) == sorted(sent)
