"""The Redis adapter of the update bus against a real redis-server."""
import pytest

from app.broker import RedisUpdateBus, ensure_embedded_redis, stop_embedded_redis
from app.domain.errors import BrokerUnavailable


@pytest.fixture
def bus(redis_url):
    bus = RedisUpdateBus(redis_url)
    yield bus
    bus.close()


def test_publish_reaches_a_subscriber_and_is_kept_as_the_last_event(bus, redis_url):
    listener = RedisUpdateBus(redis_url)
    try:
        assert listener.next_event(0.1) == {"event": "resubscribed"}
        bus.publish({"event": "stored", "coins": ["bitcoin"]})
        assert listener.next_event(2) == {"event": "stored", "coins": ["bitcoin"]}
        assert bus.last_event() == {"event": "stored", "coins": ["bitcoin"]}
    finally:
        listener.close()


def test_a_claim_is_exclusive_but_its_owner_keeps_it(bus):
    assert bus.claim("slot-fetching:x", 30, owner="task-1")
    assert not bus.claim("slot-fetching:x", 30, owner="task-2")
    assert bus.claim("slot-fetching:x", 30, owner="task-1")  # the same run, retried or redelivered
    assert bus.claim("startup-update", 30) and not bus.claim("startup-update", 30)
    assert 29 < bus.remaining("startup-update") <= 30 and bus.remaining("nothing") is None


def test_a_released_claim_can_be_taken_by_another_owner(bus):
    assert bus.claim("slot-fetching:y", 600, owner="task-of-a-dead-run")
    bus.release("slot-fetching:y")
    bus.release("never-claimed")  # no-op
    assert bus.claim("slot-fetching:y", 30, owner="task-of-this-start")


def test_a_redis_outage_is_reported_and_the_subscription_comes_back(short_tmp):
    data_dir = short_tmp / "bus-outage"
    url = ensure_embedded_redis(data_dir)
    listener = RedisUpdateBus(url)
    try:
        assert listener.next_event(0.1) == {"event": "resubscribed"}
        stop_embedded_redis(data_dir)
        with pytest.raises(BrokerUnavailable):
            for _ in range(50):  # the dead connection is noticed on the next read
                listener.next_event(0.1)
        ensure_embedded_redis(data_dir)
        assert listener.next_event(0.1) == {"event": "resubscribed"}
    finally:
        listener.close()
        stop_embedded_redis(data_dir)
