"""The Redis adapters of the update bus and the claims against a real redis-server."""
import pytest

from app.bus.redis import RedisClaims, RedisUpdateBus
from app.embedded_redis import ensure_embedded_redis, stop_embedded_redis
from app.domain.errors import BrokerUnavailable


@pytest.fixture
def bus(redis_url):
    bus = RedisUpdateBus(redis_url)
    yield bus
    bus.close()


@pytest.fixture
def claims(redis_url):
    claims = RedisClaims(redis_url)
    yield claims
    claims.close()


def test_publish_reaches_a_subscriber_and_is_kept_as_the_last_event(bus, redis_url):
    listener = RedisUpdateBus(redis_url)
    try:
        assert listener.next_event(0.1) == {"event": "resubscribed"}
        bus.publish({"event": "stored", "coins": ["bitcoin"]})
        assert listener.next_event(2) == {"event": "stored", "coins": ["bitcoin"]}
        assert bus.last_event() == {"event": "stored", "coins": ["bitcoin"]}
    finally:
        listener.close()


def test_a_tracked_change_does_not_hide_the_last_run_outcome(bus):
    """A web starting after a coin was added still learns why the last update failed."""
    failed = {"event": "failed", "at": "2026-12-02T01:00:00+00:00", "error": {"code": "upstream_unavailable"}}
    bus.publish(failed)
    bus.publish({"event": "tracked", "action": "added", "coin": "solana", "coins": ["bitcoin", "solana"]})
    last = bus.last_event()
    assert (last["event"], last["error"]) == ("failed", {"code": "upstream_unavailable"})


def test_a_claim_is_exclusive_but_its_owner_keeps_it(claims):
    assert claims.claim("slot-fetching:x", 30, owner="task-1")
    assert not claims.claim("slot-fetching:x", 30, owner="task-2")
    assert claims.claim("slot-fetching:x", 30, owner="task-1")  # the same run, retried or redelivered
    assert claims.claim("startup-update", 30) and not claims.claim("startup-update", 30)
    assert 29 < claims.remaining("startup-update") <= 30 and claims.remaining("nothing") is None


def test_a_released_claim_can_be_taken_by_another_owner(claims):
    assert claims.claim("slot-fetching:y", 600, owner="task-of-a-dead-run")
    claims.release("slot-fetching:y")
    claims.release("never-claimed")  # no-op
    assert claims.claim("slot-fetching:y", 30, owner="task-of-this-start")


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
