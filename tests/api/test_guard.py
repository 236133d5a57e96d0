"""Every answer's request id, security headers and size limit; the client address behind trusted proxies; JSON logs."""
import json
import logging

import pytest

from app import logs
from app.api.guard import API_POLICY, MAX_CONTENT_LENGTH, client_address, request_id
from app.config import Settings
from app.domain.errors import ConfigError


def test_every_answer_carries_the_security_headers(client):
    for path in ("/stats?coin=bitcoin", "/healthz", "/nowhere", "/openapi.json"):
        response = client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
        assert response.headers["Content-Security-Policy"] == API_POLICY, path


def test_the_dashboard_keeps_the_policy_its_page_needs(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_sane_request_id_is_echoed_and_a_bad_one_replaced(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123.x"}).headers["X-Request-ID"] == "abc-123.x"
    for bad in ("a" * 65, "evil; Set-Cookie: x", "ünicode", ""):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert echoed != bad and len(echoed) == 32


def test_request_id_validation():
    assert request_id("req:42_a.b-c") == "req:42_a.b-c"
    assert request_id("x y") != "x y" and request_id(None) != request_id(None)
    assert all(len(new) == 32 and int(new, 16) >= 0 for new in (request_id(None), request_id("x" * 65)))


def test_a_body_over_the_limit_is_413_in_the_error_shape(client):
    response = client.post("/stats", data=b"x" * (MAX_CONTENT_LENGTH + 1))
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


@pytest.mark.parametrize("peer, forwarded, trusted, expected", [
    ("10.0.0.2", "203.0.113.9", (), "10.0.0.2"),  # no proxy trusted: the header is the client's own text
    ("10.0.0.2", "203.0.113.9", 1, "203.0.113.9"),  # Render/Heroku: one hop
    ("10.0.0.2", "1.1.1.1, 203.0.113.9", 1, "203.0.113.9"),  # a forged left part is ignored
    ("10.0.0.2", "203.0.113.9", 2, "10.0.0.2"),  # fewer hops than trusted: the peer
    ("10.0.0.2", "1.1.1.1, 203.0.113.9, 10.0.0.7", ("10.0.0.0/8",), "203.0.113.9"),
    ("198.51.100.1", "203.0.113.9", ("10.0.0.0/8",), "198.51.100.1"),  # the peer is no trusted proxy
    ("10.0.0.2", "not-an-ip", ("10.0.0.0/8",), "not-an-ip"),
])
def test_client_address_believes_forwarded_for_only_from_trusted_proxies(peer, forwarded, trusted, expected):
    assert client_address(peer, forwarded, trusted) == expected


def test_operations_settings_are_parsed_and_bad_ones_name_the_variable():
    settings = Settings.from_env({"RATE_LIMIT": "120 per minute", "TRUSTED_PROXIES": "10.0.0.0/8, ::1",
                                  "LOG_FORMAT": "JSON", "METRICS_TOKEN": "t" * 16})
    assert (settings.rate_limit, settings.trusted_proxies, settings.log_format) == \
        ("120/minute", ("10.0.0.0/8", "::1"), "json")
    assert Settings.from_env({"RATE_LIMIT": "0", "TRUSTED_PROXIES": "1"}).rate_limit is None
    assert Settings.from_env({"TRUSTED_PROXIES": "1"}).trusted_proxies == 1
    assert "metrics_token" not in repr(settings) and "t" * 16 not in repr(settings)
    for name, value in (("RATE_LIMIT", "lots"), ("TRUSTED_PROXIES", "10.0.0.0/33"), ("LOG_FORMAT", "xml"),
                        ("METRICS_TOKEN", "short"), ("TRUSTED_PROXIES", "99")):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({name: value})
        assert caught.value.variable == name


def test_json_log_lines_carry_the_request_and_task_ids():
    formatter = logs.PlatformJsonFormatter("worker")
    record = logging.LogRecord("tasks.x", logging.INFO, __file__, 1, "stored %d", (3,), None)
    record.task = " 6f1c"
    token = logs.request_id.set("req-1")
    try:
        line = json.loads(formatter.format(record))
    finally:
        logs.request_id.reset(token)
    assert line["message"] == "stored 3" and line["level"] == "INFO" and line["logger"] == "tasks.x"
    assert (line["process"], line["task_id"], line["request_id"]) == ("worker", "6f1c", "req-1")
    assert "task" not in line


def test_new_request_ids_differ_between_processes():
    """Web processes are forked: each child makes ids of its own, not the parent's next ones."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_send_new_request_ids, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    ids = [queue.get(timeout=30) for _ in children] + [_new_request_ids()]
    for child in children:
        child.join(30)
    flat = [one for some in ids for one in some]
    assert len(set(flat)) == len(flat) == 3 * 50


def _new_request_ids():
    return [request_id(None) for _ in range(50)]


def _send_new_request_ids(queue):
    queue.put(_new_request_ids())
