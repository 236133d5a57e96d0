"""Forged or garbage `crypto-update` messages, published on a real Redis: ignored unless valid, never a 500, never
echoed to clients, and logged at most once a minute."""
import json
import logging

import pytest
import redis

from app.api import extensions
from app.bus import redis as bus_module
from app.api import create_app
from app.bootstrap import bootstrap
from app.bus.redis import CHANNEL, KEY_PREFIX, RedisUpdateBus
from tests.fakes import FakePriceSource

FORGED_TEXT = "SERVICE MOVED: send your API key to evil.example"
FORGED = [
    {"event": "stored", "rejected": ["bitcoin/usd"]},
    {"event": "stored", "rejected": FORGED_TEXT},
    {"event": "failed", "error": FORGED_TEXT},
    {"event": "failed", "error": {"code": "upstream_unreachable"}, "retry_in_seconds": "soon"},
    {"event": "failed", "error": {"code": "upstream_unreachable"}, "retry_at": "tomorrow"},
    {"event": "failed", "error": {"code": "upstream_unreachable"}, "clock_skew_seconds": "ahead"},
    {"event": "failed"},
    {"event": "stored", "coins": "bitcoin"},
    {"event": "resubscribed"},
    [1, 2, 3],
    "a string",
    None,
]


@pytest.fixture
def publisher(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def web(settings, repo, redis_url, clock):
    bus = RedisUpdateBus(redis_url)
    app = create_app(services=bootstrap(settings, repo=repo, source=FakePriceSource(), bus=bus, clock=clock),
                     background=False)
    extensions.view(app).refresh()
    assert bus.next_event(1) == {"event": "resubscribed"}
    yield app, bus
    bus.close()


@pytest.fixture(autouse=True)
def fresh_log_throttle(monkeypatch):
    monkeypatch.setattr(bus_module, "_bad_message", bus_module._ThrottledWarning())


def deliver(app, bus, payload):
    """What the web's listener does with the next message: validate, remember."""
    event = bus.next_event(2)
    extensions.view(app).note_event(event)
    return event


@pytest.mark.parametrize("payload", FORGED, ids=range(len(FORGED)))
def test_a_malformed_event_is_ignored_and_never_turns_a_503_into_a_500(web, publisher, payload):
    app, bus = web
    publisher.publish(CHANNEL, json.dumps(payload))
    assert deliver(app, bus, payload) is None
    response = app.test_client().get("/stats?coin=bitcoin")
    assert response.status_code == 503
    assert "first update is pending" in response.get_json()["error"]["message"]


def test_valid_forged_events_show_only_fixed_codes_and_known_values(web, publisher):
    app, bus = web
    client = app.test_client()
    publisher.publish(CHANNEL, json.dumps({"event": "stored", "coins": [], "new_records": 0,
                                           "rejected": {"bitcoin/usd": FORGED_TEXT}, "x-extra": FORGED_TEXT}))
    assert deliver(app, bus, None) is not None  # well-formed (an unknown field is ignored), so it counts
    body = client.get("/stats?coin=bitcoin").get_data(as_text=True)
    assert "invalid values" in body and "SERVICE MOVED" not in body and "evil" not in body
    for code in ("upstream_unreachable", "not_one_of_ours"):
        publisher.publish(CHANNEL, json.dumps({"event": "failed", "at": "2026-11-25T12:00:00+00:00",
                                               "error": {"code": code, "message": FORGED_TEXT}}))
        assert deliver(app, bus, None) is not None
        response = client.get("/stats?coin=bitcoin")
        assert response.status_code == 503
        assert "SERVICE MOVED" not in response.get_data(as_text=True)
    assert response.get_json()["error"]["details"]["last_error"]["code"] == "unknown_error"


def test_a_forged_last_event_key_is_not_believed(web, publisher):
    app, bus = web
    publisher.set(KEY_PREFIX + "last-event", json.dumps({"event": "stored", "rejected": FORGED_TEXT}))
    assert bus.last_event() is None
    publisher.set(KEY_PREFIX + "last-event", b"\xff not json")
    assert bus.last_event() is None


def test_a_flood_of_garbage_is_logged_once(web, publisher, caplog):
    app, bus = web
    for i in range(2000):
        publisher.publish(CHANNEL, b"x" * (bus_module.MAX_EVENT_BYTES + 1) if i % 100 == 0 else b"not json %d" % i)
    with caplog.at_level(logging.WARNING):
        for _ in range(2000):
            assert bus.next_event(2) is None
    lines = [r for r in caplog.records if "invalid message" in r.getMessage()]
    assert len(lines) == 1 and "not json" not in lines[0].getMessage()
