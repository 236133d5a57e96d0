"""The Redis adapters of the two ports: `crypto-update` publish/subscribe with validation of every event that
arrives (RedisUpdateBus), and the claims, cooldowns and counters kept as keys under `cryptostats:` (RedisClaims)."""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import redis
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.domain.errors import BrokerUnavailable

log = logging.getLogger(__name__)

CHANNEL = "crypto-update"
KEY_PREFIX = "cryptostats:"
UPDATES_STREAM = KEY_PREFIX + "updates"  # the recent `stored` events (with their prices), for SSE replay
RUN_OUTCOMES = ("stored", "failed")  # the events kept as the last one
# Entries kept (approximately: MAXLEN ~ trims whole nodes, cheaply). At one update per minute, well over a day;
# a client gone for longer gets a fresh snapshot instead of a replay.
UPDATES_STREAM_MAXLEN = 2000
_STREAM_ID = r"^[0-9]{1,20}-[0-9]{1,20}$"


# Anyone who can publish to this Redis can put anything on `crypto-update` (and in the last-event key): every
# event is validated before use, and what does not fit is dropped. Generous bounds: a real event is a few hundred
# bytes, names at most every tracked coin, and waits at most a day.
MAX_EVENT_BYTES = 64 * 1024
_COIN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
_LABEL = r"^[a-z0-9][a-z0-9._-]{0,99}/[a-z]{2,10}$"
_DAY = 86_400.0


class _EventErrorSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$"))


class UpdateEventSchema(Schema):
    """A `stored` or `failed` event as the worker publishes it, or a `tracked` one (the admin routes). Unknown
    fields are ignored (newer workers add some); a known field of the wrong type or out of bounds makes the whole
    event invalid."""

    class Meta:
        unknown = EXCLUDE

    event = fields.String(required=True, validate=validate.OneOf(["stored", "failed", "tracked"]))
    # `tracked`: the tracked set changed at run time (POST/DELETE /api/v1/coins); `coins` is the new set.
    action = fields.String(validate=validate.OneOf(["added", "removed"]))
    coin = fields.String(validate=validate.Regexp(_COIN))
    at = fields.AwareDateTime(allow_none=True)
    stored_at = fields.AwareDateTime(allow_none=True)
    observed_at = fields.AwareDateTime(allow_none=True)
    slot = fields.AwareDateTime(allow_none=True)
    # Up to 1,000 tracked coins (issue 9's scale) in up to 20 currencies: rejections are per coin and currency.
    coins = fields.List(fields.String(validate=validate.Regexp(_COIN)), validate=validate.Length(max=5000))
    new_records = fields.Integer(strict=True, validate=validate.Range(min=0))
    rejected = fields.Dict(keys=fields.String(validate=validate.Regexp(_LABEL)),
                           values=fields.String(validate=validate.Length(max=1000)),
                           validate=validate.Length(max=20_000))
    error = fields.Nested(_EventErrorSchema)
    retry_in_seconds = fields.Float(allow_none=True, validate=validate.Range(min=0, max=_DAY))
    retry_at = fields.AwareDateTime(allow_none=True)
    clock_skew_seconds = fields.Float(allow_none=True, validate=validate.Range(min=-365 * _DAY, max=365 * _DAY))

    @validates_schema
    def _failed_has_error(self, data, **kwargs):
        if data["event"] == "failed" and "error" not in data:
            raise ValidationError("a failed event names its error", "error")
        if data["event"] == "tracked" and not {"action", "coin"} <= data.keys():
            raise ValidationError("a tracked event names its action and coin", "action")


_EVENT = UpdateEventSchema()


class _ThrottledWarning:
    """One WARNING line per `every_seconds` at most, counting what it held back (a flood of garbage must not
    flood the log). Thread-safe."""

    def __init__(self, every_seconds: float = 60.0) -> None:
        self.every_seconds = every_seconds
        self._last = float("-inf")
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, problem: str) -> None:
        with self._lock:
            self._held += 1
            now = time.monotonic()
            if now - self._last < self.every_seconds:
                return
            count, self._held, self._last = self._held, 0, now
        log.warning("ignored %d invalid message(s) on %s (latest: %s); at most one such line per %.0f s",
                    count, CHANNEL, problem, self.every_seconds)


_bad_message = _ThrottledWarning()


def parse_event(raw: bytes | str | None) -> dict[str, Any] | None:
    """A validated `stored`/`failed`/`tracked` event from its wire form, or None (logged, throttled) when it is not one.
    Datetimes come back as aware datetimes, numbers as floats; unknown fields are dropped."""
    if raw is None:
        return None
    if len(raw) > MAX_EVENT_BYTES:
        _bad_message(f"{len(raw)} bytes, more than {MAX_EVENT_BYTES}")
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        _bad_message("not JSON")
        return None
    if not isinstance(data, dict):
        _bad_message(f"a JSON {type(data).__name__}, not an object")
        return None
    try:
        return _EVENT.load(data)
    except ValidationError as exc:
        # Only our own field names: the message's text is the sender's and is not repeated anywhere.
        names = sorted(exc.messages) if isinstance(exc.messages, dict) else ["_schema"]
        _bad_message("invalid " + ", ".join(names))
        return None


class _PriceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    coin = fields.String(required=True, validate=validate.Regexp(_COIN))
    currency = fields.String(required=True, validate=validate.Regexp(r"^[a-z]{2,10}$"))
    price = fields.Float(required=True, allow_nan=False)
    market_cap = fields.Float(allow_none=True, allow_nan=False)
    change_24h = fields.Float(allow_none=True, allow_nan=False)
    deviation = fields.Float(allow_none=True, allow_nan=False)
    observed_at = fields.String(required=True, validate=validate.Length(max=40))
    fetched_at = fields.String(required=True, validate=validate.Length(max=40))


class _UpdateSchema(UpdateEventSchema):
    prices = fields.List(fields.Nested(_PriceSchema), load_default=list, validate=validate.Length(max=10_000))


_UPDATE = _UpdateSchema()


def parse_update(raw: bytes | None) -> dict[str, Any] | None:
    """A validated entry of the updates stream ("prices" a list of plain dicts), or None (logged, throttled).
    Anyone who can write to this Redis can write there too: nothing unchecked reaches a client."""
    if raw is None:
        return None
    try:
        event = _UPDATE.load(json.loads(raw))
    except (ValueError, RecursionError, TypeError, ValidationError):
        _bad_message("an invalid entry in the updates stream")
        return None
    return event if event["event"] == "stored" else None


class _RedisConnection:
    """One lazily made redis-py client, remade in a process that forked since (after fork, sockets are not ours).
    Redis errors become BrokerUnavailable; the next call reconnects."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = redis.Redis.from_url(self.url, socket_connect_timeout=3, socket_timeout=5,
                                                    health_check_interval=15)
                self._pid = os.getpid()
                self._connected()
            return self._client

    def _connected(self) -> None:
        """Called (under the lock) when a new client was made."""

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(f"Redis {what} failed: {exc.__class__.__name__}: {exc}") from exc

    def ping(self) -> None:
        with self._errors("ping"):
            self.client.ping()

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None


class RedisUpdateBus(_RedisConnection):
    """Implements UpdateBus over one Redis: PUBLISH on `crypto-update`, the last event kept under `cryptostats:`.

    Connections are made lazily in the process that uses them (after fork). Redis errors become BrokerUnavailable;
    the next call reconnects.
    """

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        super().__init__(url)
        self.channel = channel
        self._pubsub = None

    def _connected(self) -> None:
        self._pubsub = None

    def publish(self, event: dict[str, Any]) -> None:
        """SET a run's outcome as the last event (a `tracked` change is no outcome: it must not hide the last
        failure from a web starting later), XADD a `stored` one (its `prices` included) to the capped updates
        stream, PUBLISH; in one transaction. `prices` stays out of the channel and the last-event key (bounded by
        MAX_EVENT_BYTES)."""
        payload = json.dumps({k: v for k, v in event.items() if k != "prices"}, separators=(",", ":"))
        with self._errors("publish"):
            pipe = self.client.pipeline(transaction=True)
            if event.get("event") in RUN_OUTCOMES:
                pipe.set(KEY_PREFIX + "last-event", payload)
            if event.get("event") == "stored":
                pipe.xadd(UPDATES_STREAM, {"event": json.dumps(event, separators=(",", ":"))},
                          maxlen=UPDATES_STREAM_MAXLEN, approximate=True)
            pipe.publish(self.channel, payload)
            pipe.execute()

    def latest_update_id(self) -> str | None:
        """The id of the newest entry of the updates stream, or None when it is empty."""
        with self._errors("read"):
            entries: Any = self.client.xrevrange(UPDATES_STREAM, count=1)
        return entries[0][0].decode() if entries else None

    def updates_after(self, update_id: str, upto: str | None = None,
                      limit: int = UPDATES_STREAM_MAXLEN) -> list[tuple[str, dict[str, Any]]] | None:
        """The `stored` events after `update_id` (up to `upto` included), oldest first, as (id, event) with their
        `prices` validated; or None when `update_id` is not (or no longer) in the stream: too old, or unknown."""
        if not re.match(_STREAM_ID, update_id or "") or (upto is not None and not re.match(_STREAM_ID, upto)):
            return None
        with self._errors("read"):
            # "0-0": before the first update (a snapshot taken when none was stored), always known.
            if update_id != "0-0" and not self.client.xrange(UPDATES_STREAM, update_id, update_id):
                return None
            entries: Any = self.client.xrange(UPDATES_STREAM, "(" + update_id, upto or "+", count=limit)
        out = []
        for raw_id, fields_ in entries:
            event = parse_update(fields_.get(b"event"))
            if event is not None:
                out.append((raw_id.decode(), event))
        return out

    def last_event(self) -> dict[str, Any] | None:
        with self._errors("read"):
            raw = self.client.get(KEY_PREFIX + "last-event")
        return parse_event(raw)

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        with self._errors("subscribe"):
            try:
                if self._pubsub is None:
                    pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.channel)
                    self._pubsub = pubsub
                    return {"event": "resubscribed"}
                # get_message answers None at once for the (ignored) subscribe confirmation: wait out the timeout.
                deadline = time.monotonic() + timeout
                while True:
                    message = self._pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                    if message is not None or time.monotonic() >= deadline:
                        break
            except BaseException:
                self._drop_pubsub()
                raise
        if message is None or message.get("type") != "message":
            return None
        return parse_event(message["data"])

    def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except (redis.RedisError, OSError):
                pass

    def close(self) -> None:
        self._drop_pubsub()
        super().close()


_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


class RedisClaims(_RedisConnection):
    """Implements Claims over one Redis: each claim is a key under `cryptostats:` with a TTL (SET NX EX).

    Connections are made lazily in the process that uses them (after fork). Redis errors become BrokerUnavailable;
    the next call reconnects.
    """

    def claim(self, key: str, ttl_seconds: int, owner: str | None = None) -> bool:
        with self._errors("claim"):
            if owner is None:
                return bool(self.client.set(KEY_PREFIX + key, "-", nx=True, ex=max(1, int(ttl_seconds))))
            # One atomic step (Redis 6.2 has no SET NX GET): a separate GET after a failed SET NX could miss a
            # claim that expired in between and skip a slot nobody fetches.
            return bool(self.client.eval(_CLAIM_SCRIPT, 1, KEY_PREFIX + key, owner, max(1, int(ttl_seconds))))

    def is_claimed(self, key: str) -> bool:
        with self._errors("read"):
            return bool(self.client.exists(KEY_PREFIX + key))

    def remaining(self, key: str) -> float | None:
        with self._errors("read"):
            ms = self.client.pttl(KEY_PREFIX + key)
        return ms / 1000 if ms and ms > 0 else None

    def release(self, key: str) -> None:
        with self._errors("release"):
            self.client.delete(KEY_PREFIX + key)
