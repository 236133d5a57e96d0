"""GET /metrics counts every answered request exactly, with its latency, whether the fast path or Flask answered
(requests are tallied in memory and added to prometheus-client's series in batches: app/metrics.RequestTally)."""
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from app.metrics import RequestTally, render
from tests.fakes import T0, obs


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped, name, **labels) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


def test_a_scrape_counts_every_answered_request_by_route_and_status(client, repo, view):
    repo.add_batch([obs("bitcoin", 40000 + i, T0 + timedelta(minutes=15 * i)) for i in range(3)])
    view.refresh()
    before = scrape(client)
    for _ in range(7):  # plain: answered by the fast path
        assert client.get("/stats?coin=bitcoin").status_code == 200
    assert client.get("/stats?coin=bitcoin&currency=usd").status_code == 200
    assert client.get("/stats?coin=nosuchcoin").status_code == 404  # Flask, the one error shape
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cryptostats_http_requests_total", route="/stats", method="GET", status="200") == 8
    assert moved("cryptostats_http_requests_total", route="/stats", method="GET", status="404") == 1
    assert moved("cryptostats_http_request_duration_seconds_count", route="/stats") == 9
    assert moved("cryptostats_http_request_duration_seconds_bucket", route="/stats", le="+Inf") == 9
    assert moved("cryptostats_http_request_duration_seconds_sum", route="/stats") > 0


def test_batched_latencies_land_in_their_buckets():
    tally = RequestTally(flush_seconds=3600)  # flushed by the test only
    route = "/tally-test"
    for seconds in (0.001, 0.005, 0.2, 20.0):
        tally.add(route, "GET", 200, seconds)
    tally.add(route, "GET", 503, 0.02)
    before = samples(render([])[0].decode())
    tally.flush()
    after = samples(render([])[0].decode())

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    bucket = "cryptostats_http_request_duration_seconds_bucket"
    assert moved("cryptostats_http_requests_total", route=route, method="GET", status="200") == 4
    assert moved("cryptostats_http_requests_total", route=route, method="GET", status="503") == 1
    # Prometheus buckets are cumulative and include their upper bound.
    assert [moved(bucket, route=route, le=le) for le in ("0.005", "0.01", "0.025", "0.25", "10.0", "+Inf")] \
        == [2, 2, 3, 4, 4, 5]
    assert abs(moved("cryptostats_http_request_duration_seconds_sum", route=route) - 20.226) < 1e-9
    tally.flush()  # nothing new: nothing added twice
    assert samples(render([])[0].decode()) == after
