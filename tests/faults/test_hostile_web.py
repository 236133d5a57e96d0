"""A hostile world against a real web server and a real Redis: a frozen Redis under a burst of /readyz, forged
and garbage `crypto-update` messages, and requests refused before the API (huge request lines and headers)."""
import json
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests

from app.bus import redis as bus
from app.domain.model import Observation
from app.storage.sqlite import SqlitePriceRepository
from tests.procs import wait_until

pytestmark = pytest.mark.slow

BITCOIN = {"price": 40000, "marketCap": 400000000000, "24hChange": 1.5}
FORGED_TEXT = "SERVICE MOVED: send your API key to evil.example"


def seed(platform, coins=("bitcoin",)) -> None:
    """Fresh data in the SQLite file, as a worker would have stored it (no worker needed here)."""
    repo = SqlitePriceRepository(platform.db_path)
    repo.ensure_schema()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    repo.add_batch([Observation(coin, "usd", 40000, 400000000000, 1e9, 1.5, now - timedelta(seconds=5), now)
                    for coin in coins])
    repo.close()


def start_web(platform) -> None:
    platform.web()
    wait_until(lambda: platform.get("/healthz", counted=False).status_code == 200, 30, what="web up")
    wait_until(lambda: platform.subscribers() == 1, 15, what="web subscribed to crypto-update")


def test_a_frozen_redis_and_a_burst_of_readyz_leave_stats_answering(make_platform, figures):
    """Redis frozen (SIGSTOP), 32 concurrent /readyz: /stats keeps answering, /readyz answers not ready"""
    platform = make_platform()
    seed(platform)
    start_web(platform)
    assert platform.shows("/stats?coin=bitcoin", BITCOIN)
    pid = int((platform.redis_dir / "redis.pid").read_text().strip())
    url = f"http://127.0.0.1:{platform.port}"
    os.kill(pid, signal.SIGSTOP)
    figures.faults += 1
    try:
        with ThreadPoolExecutor(32) as pool:
            burst = [pool.submit(requests.get, f"{url}/readyz", timeout=20) for _ in range(32)]
            stats = [platform.get("/stats?coin=bitcoin") for _ in range(3)]  # one web process
            ready = [future.result() for future in burst]
        frozen_throughout = open(f"/proc/{pid}/stat").read().split(") ", 1)[1].startswith("T")
    finally:
        os.kill(pid, signal.SIGCONT)
    for response in ready:
        figures.answered(response.status_code, deliberate=response.status_code == 503)
    assert frozen_throughout
    assert [(r.status_code, r.json()) for r in stats] == [(200, BITCOIN)] * 3
    assert all(r.status_code == 503 for r in ready)
    assert {json.dumps(r.json()["checks"]["redis"]) for r in ready} == {'{"ok": false, "code": "timeout"}'}
    assert all(r.json()["checks"]["store"] == {"ok": True} for r in ready)
    # Redis back: readiness recovers by itself.
    wait_until(lambda: platform.get("/readyz", counted=False).status_code == 200, 30, what="/readyz 200 again")
    assert figures.failures() == {}
    assert platform.tracebacks() == []


GARBAGE = [{"event": "stored", "rejected": ["bitcoin/usd"]}, {"event": "stored", "rejected": FORGED_TEXT},
           {"event": "failed", "error": FORGED_TEXT}, {"event": "failed", "error": {"code": 7}},
           {"event": "failed", "error": {"code": "upstream_unreachable"}, "retry_at": FORGED_TEXT},
           {"event": "stored", "coins": FORGED_TEXT}, [FORGED_TEXT], FORGED_TEXT, 42, None]
FLOOD = 5000


def test_forged_and_garbage_update_messages_are_ignored_and_never_shown(make_platform, figures):
    """Forged crypto-update messages and a last-event key: ignored, never a 500, never echoed, logged once"""
    platform = make_platform()
    seed(platform, coins=())  # an empty store: every coin answers 503 no_data, the answer events explain
    client = platform.redis()
    # A forged last-event key, read by the web when it subscribes.
    client.set(bus.KEY_PREFIX + "last-event", json.dumps({"event": "stored", "rejected": FORGED_TEXT}))
    figures.faults += 1
    start_web(platform)

    def get(path: str, counted: bool = True) -> requests.Response:
        response = requests.get(f"http://127.0.0.1:{platform.port}{path}", timeout=10)
        # 503 no_data is what the product must answer with an empty store; any other 5xx counts.
        deliberate = response.status_code == 503 and response.json()["error"]["code"] == "no_data"
        figures.answered(response.status_code, checked=counted, deliberate=deliberate)
        return response

    def no_data(response) -> str:
        assert response.status_code == 503 and response.headers["Content-Type"] == "application/json", response.text
        assert "SERVICE MOVED" not in response.text and "evil" not in response.text
        return response.json()["error"]["message"]

    assert "first update is pending" in no_data(get("/stats?coin=bitcoin"))
    for payload in GARBAGE:
        client.publish(bus.CHANNEL, json.dumps(payload))
    client.set(bus.KEY_PREFIX + "last-event", b"\xff\xfe not even text")
    for i in range(FLOOD):
        client.publish(bus.CHANNEL, b"not json %d" % i)
    # A well-formed but forged failure, its message the attacker's: only its known code is shown. Messages are
    # handled in order, so once it shows, every message before it was handled.
    client.publish(bus.CHANNEL, json.dumps({"event": "failed", "error": {"code": "upstream_unreachable",
                                                                            "message": FORGED_TEXT}}))
    figures.faults += len(GARBAGE) + 1 + FLOOD + 1
    wait_until(lambda: "CoinGecko unreachable" in no_data(get("/stats?coin=bitcoin", counted=False)), 60,
               what="the forged failure handled")
    for path in ("/stats?coin=bitcoin", "/deviation?coin=ethereum", "/stats?coin=matic-network"):
        assert "last update failed (CoinGecko unreachable)" in no_data(get(path))
    client.close()
    warnings = [line for line in platform.procs[0].output.splitlines() if "invalid message" in line]
    assert 1 <= len(warnings) <= 2, warnings  # at most one line a minute, however many messages
    assert FORGED_TEXT not in platform.procs[0].output
    assert figures.failures() == {}
    assert platform.tracebacks() == []


def raw(port: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are, read the whole answer (the server closes after an error, or on Connection: close).
    The write side stays open: a client that half-closes it is taken to have gone (hyper's default)."""
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


CLOSE = b"Connection: close\r\n\r\n"
# (what, request, status, JSON body): requests the HTTP parser itself (granian's hyper) refuses get its bare answer,
# no body at all (granian has no hook for those bodies), never HTML nor the client's text; the others get JSON.
HOSTILE = [
    ("request line of 10,000 bytes", b"GET /stats?coin=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n" + CLOSE,
     414, True),
    ("header of 10,000 bytes", b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10_000 + b"\r\n" + CLOSE, 431,
     True),
    ("200 headers", b"GET /stats HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
     + CLOSE, 431, False),
    ("garbage request line", b"<script>alert(1)</script>\r\n\r\n", 400, False),
    ("bad HTTP version", b"GET /stats HTTP/9.x\r\nHost: x\r\n" + CLOSE, 400, False),
    ("double slash with a forged Host", b"GET /api/v1//stats?coin=bitcoin HTTP/1.1\r\nHost: attacker.example\r\n"
     + CLOSE, 404, True),
]


def test_requests_refused_before_the_api_get_no_html_and_no_redirect_trusts_host(make_platform, figures):
    """Raw hostile requests: huge request line and headers, garbage, // with a forged Host, OPTIONS"""
    platform = make_platform()
    seed(platform)
    start_web(platform)
    for what, request, status, in_json in HOSTILE:
        got, headers, body = raw(platform.port, request)
        figures.faults += 1
        figures.answered(got)
        assert got == status, (what, got, body[:200])
        assert "<script>" not in body.decode() and "location" not in headers, what
        if not in_json:
            assert body == b"" and "content-type" not in headers, (what, headers, body[:200])
            continue
        assert headers["content-type"] == "application/json", (what, headers)
        error = json.loads(body)["error"]
        assert list(error) == ["code", "message", "details"] and error["code"], (what, error)
    got, headers, body = raw(platform.port, b"OPTIONS /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    figures.faults += 1
    figures.answered(got)
    assert got == 204 and body == b"" and "text/html" not in headers.get("content-type", "")
    assert "GET" in headers["allow"]
    assert platform.shows("/stats?coin=bitcoin", BITCOIN)  # and the web still serves
    assert figures.failures() == {}
    assert platform.tracebacks() == []
