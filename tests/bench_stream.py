"""SSE delivery benchmark (issue 12): with 1,000 clients connected to GET /api/v1/stream, how long a new stored
update takes to reach each of them after the worker's publish on `crypto-update`.

    python -m tests.bench_stream                    # what `make bench` runs (well under a minute)
    python -m tests.bench_stream --clients 2000 --workers 1

The Procfile's server (app/api/server.serve, its settings; `wsgi:app`, WEB_CONCURRENCY processes) on a seeded
SQLite store and the embedded Redis, loopback only. 1,000 raw sockets (one selector thread) each read their stream's
snapshot; then, per round, a new record is stored and published the way the worker does (RedisUpdateBus.publish of
a `stored` event with app.services.polling.latest_prices), and the time each client sees its `price` event is
recorded from just before the publish. Prints p50/p99/max of that delivery delay and how many clients got it.
Target: p99 within 1 s. Figures: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.bench_http import Server, _free_port, _seed

ROUND_DEADLINE_SECONDS = 10.0  # a client without its `price` event by then counts as not reached


def _connect(port: int, count: int) -> list[socket.socket]:
    request = b"GET /api/v1/stream?coins=bitcoin HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)  # a saturated machine accepts slowly
        sock.sendall(request)
        socks.append(sock)
    return socks


def _read_until(socks: list[socket.socket], marker: bytes, deadline: float) -> dict[int, float]:
    """Read every socket until `marker` shows up in what it sent since this call; the time each saw it."""
    selector = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {}
    seen: dict[int, float] = {}
    for index, sock in enumerate(socks):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        buffers[index] = b""
    try:
        while len(seen) < len(socks) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
                index = key.data
                try:
                    chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                now = time.monotonic()
                if not chunk:  # closed by the server: never reached
                    selector.unregister(key.fileobj)
                    continue
                buffers[index] = (buffers[index] + chunk)[-4096:]
                if marker in buffers[index] and index not in seen:
                    seen[index] = now
                    selector.unregister(key.fileobj)
    finally:
        selector.close()
    return seen


def _publish(settings, price: float) -> float:
    """Store a new bitcoin record and publish `stored` as the worker does; the time just before the publish."""
    from app.bus.redis import RedisUpdateBus
    from app.domain.model import Observation
    from app.embedded_redis import embedded_url
    from app.services.polling import latest_prices
    from app.storage.sqlite import SqlitePriceRepository

    repo = SqlitePriceRepository(settings.sqlite_path)
    bus = RedisUpdateBus(embedded_url(settings.data_dir))
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        repo.add_batch([Observation("bitcoin", "usd", price, 800e9, 1e9, 3.4, now, now)])
        event = {"event": "stored", "coins": ["bitcoin"], "stored_at": now.isoformat(), "observed_at": now.isoformat(),
                 "new_records": 1, "rejected": {}, "slot": None, "clock_skew_seconds": None,
                 "prices": latest_prices(repo, settings.tracked, ["bitcoin"])}
        started = time.monotonic()
        bus.publish(event)
        return started
    finally:
        bus.close()
        repo.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="web processes (WEB_CONCURRENCY)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from app import embedded_redis as broker
    from app.bootstrap import prepare
    from app.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MONGODB_URI", "COINS", "VS_CURRENCIES")}
    env.update(DATA_DIR=str(tmp / "data"), HOST="127.0.0.1", PORT=str(_free_port()),
               WEB_CONCURRENCY=str(args.workers), STREAM_MAX_CLIENTS=str(min(args.clients, 1000)),  # its maximum, per process
               LOG_LEVEL="WARNING", REFRESH_INTERVAL_SECONDS="3600", PYTHONPATH=str(ROOT_DIR),
               RATE_LIMIT="0")  # 1,000 streams from one address: the per-client limit would refuse most
    settings = Settings.from_env(env)
    prepare(settings)  # the embedded Redis the web processes use
    _seed(settings)
    print(f"SSE benchmark: granian (app/api/server.py settings), {args.workers} web processes, {args.clients:,} "
          f"streams, {args.rounds} rounds; {os.cpu_count()} cores shared with whatever else runs")
    server = None
    socks: list[socket.socket] = []
    try:
        server = Server(env, "wsgi:app", tmp / "web.log")
        socks = _connect(server.port, args.clients)
        ready = _read_until(socks, b"event: snapshot", time.monotonic() + 60)
        print(f"connected: {len(ready):,} of {args.clients:,} read their snapshot")
        if len(ready) < args.clients:
            return 1
        for number in range(1, args.rounds + 1):
            started = _publish(settings, 41000.0 + number)
            reached = _read_until(socks, b"event: price", started + ROUND_DEADLINE_SECONDS)
            delays = sorted(1000 * (t - started) for t in reached.values())
            if delays:
                p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
                print(f"round {number}: {len(delays):,} of {args.clients:,} got the update; delivery delay p50 "
                      f"{statistics.median(delays):.0f} ms, p99 {p99:.0f} ms, max {delays[-1]:.0f} ms")
            else:
                print(f"round {number}: no client got the update within {ROUND_DEADLINE_SECONDS:g} s")
    finally:
        for sock in socks:
            sock.close()
        if server is not None:
            server.stop()
        broker.stop_embedded_redis(settings.data_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


ROOT_DIR = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    sys.exit(main())
