"""GET /api/v1/stream as a dashboard sees it: the Procfile's web and worker on a real Redis, updates triggered with
`celery -A tasks call`, events read over a real socket."""
from __future__ import annotations

import json
import signal
import socket
import time
from typing import Iterator

import pytest
import redis
import requests

from tests.procs import celery_call, free_port, wait_until, web, worker

pytestmark = pytest.mark.slow

UPDATES = "cryptostats:updates"


@pytest.fixture
def env(subprocess_env, redis_url, fake_coingecko, tmp_path):
    return {**subprocess_env, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data"),
            "COINGECKO_BASE_URL": fake_coingecko.base_url, "PORT": str(free_port()), "WEB_CONCURRENCY": "1"}


@pytest.fixture
def platform(env, tmp_path, fake_coingecko):
    """The web and a worker, with the worker's start-up update stored and seen by the web."""
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    procs = [worker(env, tmp_path), web(env, tmp_path)]
    try:
        wait_until(lambda: requests.get(url(env, "/stats?coin=bitcoin"), timeout=2).json().get("price") == 40000,
                   40, what="first update served")
        yield env
    finally:
        for proc in procs:
            proc.stop()


def url(env, path: str) -> str:
    return f"http://127.0.0.1:{env['PORT']}{path}"


class Stream:
    """An SSE client over one HTTP response: yields (kind, id, data) events and ":" comments as ("comment", ...)."""

    def __init__(self, env, query: str = "", last_event_id: str | None = None) -> None:
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(url(env, "/api/v1/stream" + query), headers=headers, stream=True, timeout=10)
        self._lines = self.response.iter_lines(decode_unicode=True)

    def events(self) -> Iterator[tuple[str, str | None, object]]:
        kind, event_id, data = "message", None, []
        for line in self._lines:
            if line is None:
                continue
            if line == "":
                if data:
                    yield kind, event_id, json.loads("\n".join(data))
                kind, event_id, data = "message", None, []
            elif line.startswith(":"):
                yield "comment", None, line[1:].strip()
            elif line.startswith("retry:"):
                yield "retry", None, int(line[6:])
            else:
                field, _, value = line.partition(": ")
                if field == "event":
                    kind = value
                elif field == "id":
                    event_id = value
                elif field == "data":
                    data.append(value)

    def take(self, count: int, kinds=("snapshot", "price")) -> list[tuple[str, str | None, object]]:
        out = []
        for event in self.events():
            if event[0] in kinds:
                out.append(event)
                if len(out) == count:
                    return out
        raise AssertionError(f"the stream ended after {out}")

    def close(self) -> None:
        self.response.close()


def stored_updates(env) -> int:
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        return client.xlen(UPDATES)
    finally:
        client.close()


def update(env, fake_coingecko, price: float) -> None:
    before = stored_updates(env)
    fake_coingecko.set_price("bitcoin", price, market_cap=800000000 + price, change_24h=1.0)
    assert celery_call(env).returncode == 0
    wait_until(lambda: stored_updates(env) > before, 30, what=f"update {price} stored")


def test_a_stream_starts_with_a_snapshot_per_coin_and_pushes_every_stored_update(platform, fake_coingecko):
    stream = Stream(platform, "?coins=bitcoin,ethereum&currency=usd")
    try:
        assert stream.response.status_code == 200
        assert stream.response.headers["Content-Type"].startswith("text/event-stream")
        assert stream.response.headers["Cache-Control"] == "no-cache"
        assert stream.response.headers["X-Accel-Buffering"] == "no"
        assert next(stream.events())[0] == "retry"
        snapshots = stream.take(2)
        assert [(kind, data["coin"]) for kind, _, data in snapshots] == [("snapshot", "bitcoin"),
                                                                         ("snapshot", "ethereum")]
        first = snapshots[0][2]
        assert first["price"] == 40000 and first["currency"] == "usd" and first["stale"] is False
        assert {"market_cap", "change_24h", "deviation", "observed_at", "fetched_at"} <= set(first)
        assert all(event_id for _, event_id, _ in snapshots)

        fake_coingecko.set_price("bitcoin", 41000, market_cap=810000000, change_24h=1.0)
        assert celery_call(platform).returncode == 0
        pushed = stream.take(2)
        assert sorted(data["coin"] for _, _, data in pushed) == ["bitcoin", "ethereum"]
        bitcoin = next(data for _, _, data in pushed if data["coin"] == "bitcoin")
        assert (pushed[0][0], bitcoin["price"], bitcoin["market_cap"]) == ("price", 41000, 810000000)
        assert pushed[0][1] != snapshots[0][1]
    finally:
        stream.close()


def test_a_reconnecting_client_gets_what_it_missed_once_in_order_or_a_snapshot_when_too_old(platform,
                                                                                             fake_coingecko):
    stream = Stream(platform, "?coins=bitcoin")
    last_id = stream.take(1)[0][1]
    stream.close()
    for price in (42000, 43000, 44000):
        update(platform, fake_coingecko, price)

    again = Stream(platform, "?coins=bitcoin", last_event_id=last_id)
    try:
        missed = again.take(3)
        assert [(kind, data["price"]) for kind, _, data in missed] == [("price", 42000), ("price", 43000),
                                                                       ("price", 44000)]
        assert len({event_id for _, event_id, _ in missed}) == 3
        update(platform, fake_coingecko, 45000)
        assert [(k, d["price"]) for k, _, d in again.take(1)] == [("price", 45000)]  # then live, nothing twice
    finally:
        again.close()

    for unknown in ("1-0", "not-an-id"):
        stale = Stream(platform, "?coins=bitcoin", last_event_id=unknown)
        try:
            assert [(k, d["price"]) for k, _, d in stale.take(1)] == [("snapshot", 45000)]
        finally:
            stale.close()


def test_an_idle_stream_carries_heartbeats(env, tmp_path):
    env = {**env, "STREAM_HEARTBEAT_SECONDS": "0.3"}
    site = web(env, tmp_path)
    try:
        wait_until(lambda: requests.get(url(env, "/healthz"), timeout=2).ok, 30, what="web up")
        stream = Stream(env, "?coins=bitcoin")
        try:
            snapshot = stream.take(1)[0]
            assert snapshot[0] == "snapshot" and snapshot[2]["error"]["code"] == "no_data"  # nothing stored yet
            assert stream.take(2, kinds=("comment",)) == [("comment", None, "heartbeat")] * 2
        finally:
            stream.close()
    finally:
        site.stop()


def test_bad_requests_are_refused_in_json_before_any_stream(env, tmp_path):
    site = web(env, tmp_path)
    try:
        wait_until(lambda: requests.get(url(env, "/healthz"), timeout=2).ok, 30, what="web up")
        unknown = requests.get(url(env, "/api/v1/stream?coins=bitcoin,dogecoin"), timeout=5)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_coin"
        bad = requests.get(url(env, "/api/v1/stream?currency=xyz"), timeout=5)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_query"
        assert "xyz" in bad.json()["error"]["message"]
    finally:
        site.stop()


def test_streams_beyond_the_limit_get_503_and_a_slot_frees_when_a_client_leaves(env, tmp_path):
    env = {**env, "STREAM_MAX_CLIENTS": "2", "STREAM_HEARTBEAT_SECONDS": "0.3"}
    site = web(env, tmp_path)
    try:
        wait_until(lambda: requests.get(url(env, "/healthz"), timeout=2).ok, 30, what="web up")
        held = [Stream(env, "?coins=bitcoin") for _ in range(2)]
        for stream in held:
            assert stream.response.status_code == 200
            stream.take(1)
        refused = requests.get(url(env, "/api/v1/stream?coins=bitcoin"), timeout=5)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) >= 1
        held.pop().close()

        def admitted():
            response = requests.get(url(env, "/api/v1/stream?coins=bitcoin"), stream=True, timeout=5)
            response.close()
            return response.status_code == 200
        wait_until(admitted, 10, interval=0.3, what="the slot of the client that left")
        for stream in held:
            stream.close()
    finally:
        site.stop()


def test_fifty_streams_share_the_one_redis_subscription_of_their_process(platform, fake_coingecko):
    client = redis.Redis.from_url(platform["REDIS_URL"])
    try:
        before = len(client.client_list())
        streams = [Stream(platform, "?coins=bitcoin") for _ in range(50)]
        for stream in streams:
            stream.take(1)
        assert len(client.client_list()) - before <= 2  # a reader of the updates log at most, never one per stream
        assert client.pubsub_numsub("crypto-update")[0][1] == 1  # the web's one listener
        fake_coingecko.set_price("bitcoin", 46000, market_cap=860000000, change_24h=1.0)
        assert celery_call(platform).returncode == 0
        assert all(stream.take(1)[0][2]["price"] == 46000 for stream in streams)  # every one got it
        for stream in streams:
            stream.close()
    finally:
        client.close()


def test_sigterm_ends_open_streams_at_once_and_still_answers_a_request_in_flight(env, tmp_path, fake_coingecko):
    """granian waits for every in-flight request on SIGTERM (20 s at most): an open stream must not hold it."""
    fake_coingecko.set_price("bitcoin", 40000, market_cap=800000000, change_24h=3.4)
    procs = [worker(env, tmp_path), web(env, tmp_path)]
    site = procs[1]
    try:
        wait_until(lambda: requests.get(url(env, "/stats?coin=bitcoin"), timeout=2).json().get("price") == 40000,
                   40, what="first update served")
        streams = [Stream(env, "?coins=bitcoin") for _ in range(3)]
        for stream in streams:
            assert stream.take(1)[0][0] == "snapshot"
        in_flight = socket.create_connection(("127.0.0.1", int(env["PORT"])), timeout=10)
        in_flight.sendall(b"GET /stats?coin=bitcoin HTTP/1.1\r\nHost: localhost\r\n")  # the last line held back
        time.sleep(0.5)  # accepted by the web process
        started = time.monotonic()
        site.popen.send_signal(signal.SIGTERM)
        for stream in streams:  # each ends cleanly (the chunked answer closes), nothing after it
            assert [kind for kind, _, _ in stream.events() if kind in ("snapshot", "price")] == []
        in_flight.sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := in_flight.recv(65536):
            answer += chunk
        in_flight.close()
        assert answer.startswith(b"HTTP/1.1 200 OK") and b'"price":40000' in answer
        assert site.popen.wait(15) == 0
        assert time.monotonic() - started < 10  # well before GRACEFUL_TIMEOUT_SECONDS (20 s)
    finally:
        for proc in procs:
            proc.stop()
