"""HTTP benchmark of the web tier: the Procfile's server (app/api/server.serve, its settings, one worker process)
serving our app and, for comparison, a raw WSGI callable that returns the same bytes; loaded by `wrk`.

    python -m tests.bench_http                  # what `make bench` runs (about 4 minutes)
    python -m tests.bench_http --seconds 10     # longer runs, steadier figures
    python -m tests.bench_http --candidates     # also gunicorn gthread/gevent, when installed (not pinned)

It prints, measured in one run: our /stats and /deviation against the raw callable (req/s ratio), requests per
CPU-second of the server's processes (req/s per core, robust to other load on the machine), p99 at a fixed 500
req/s, and /stats throughput with 1,000 held SSE streams (GET /api/v1/stream) and with 200 slow + 200 idle
clients, each against the same server without them. Figures and how to read them: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RAW_BODY = b'{"price":40000,"marketCap":800000000000,"24hChange":3.4}\n'
TODAY_PER_CORE = 3700  # main's /stats on one gunicorn gthread worker, as issue 12 measured it (the baseline)
WRK_HINT = "wrk is needed: on Debian/Ubuntu, apt-get install wrk (.ci/run installs it)"


# ---- the WSGI callable the server imports (granian imports "tests.bench_http:raw" in its worker) -------------
# The same answer as /stats, byte for byte in size: its headers too (the server's cost grows with their number).
RAW_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(RAW_BODY))),
               ("Last-Modified", "Tue, 01 Dec 2026 12:00:00 GMT"), ("X-Data-Observed-At", "2026-12-01T12:00:00+00:00"),
               ("X-Data-Fetched-At", "2026-12-01T12:00:00+00:00"), ("X-Data-Stale", "false"),
               ("Cache-Control", "no-cache"),
               # What the app's hooks add to every answer (CORS, security headers, the request id): the same count
               # and size as /stats sends since the Operate issue's headers.
               ("Access-Control-Allow-Origin", "*"),
               ("Access-Control-Expose-Headers", "Content-Disposition, Last-Modified, RateLimit-Limit, RateLimit-Remaining, "
                "RateLimit-Reset, Retry-After, X-Data-Fetched-At, X-Data-Observed-At, X-Data-Stale, X-Request-ID"),
               ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
               ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
               ("X-Frame-Options", "DENY"), ("X-Request-ID", "64758594e20b5645fcd6d49b37ee86f3")]


def raw(environ, start_response):
    """The 5-line callable: the same answer /stats gives, fixed, nothing else."""
    start_response("200 OK", RAW_HEADERS)
    return [RAW_BODY]


# ---- the driver --------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed(settings) -> None:
    from app.domain.model import Observation
    from app.storage.sqlite import SqlitePriceRepository

    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    repo.add_batch([Observation("bitcoin", "usd", 40000.0 + i, 800e9, 1e9, 3.4, now - timedelta(minutes=15 * i),
                                now - timedelta(minutes=15 * i)) for i in range(100)])
    repo.close()


class Server:
    def __init__(self, env: dict[str, str], target: str, log: Path, command: list[str] | None = None) -> None:
        self.port = int(env["PORT"])
        args = command or [PY, "-c", f"import os, sys; from app.api import server; from app.config import Settings; "
                                      f"server.serve(Settings.from_env(os.environ), {target!r})"]
        self._log = open(log, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _get(self.port, "/stats?coin=bitcoin")[0] == 200:
                    return
            except OSError:
                pass
            if self.popen.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the server did not start; its log: {log}")

    def cpu_seconds(self) -> float:
        import psutil

        procs = [psutil.Process(self.popen.pid)]
        procs += procs[0].children(recursive=True)
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait()
        self._log.close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wrk(server: Server, path: str, seconds: float, connections: int = 50) -> dict[str, float]:
    """req/s, p99 ms and requests per CPU-second of the server, from one wrk run; non-2xx answers are an error."""
    before = server.cpu_seconds()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          f"http://127.0.0.1:{server.port}{path}"], capture_output=True, text=True, check=True).stdout
    cpu = server.cpu_seconds() - before
    if "Non-2xx" in out or re.search(r"Socket errors:.*timeout [1-9]", out):
        raise SystemExit(f"wrk saw errors on {path}:\n{out}")
    total = float(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p99_ms": float(p99.group(1)) * scale,
            "per_cpu_s": total / cpu if cpu > 0 else float("nan")}


def paced_p99(port: int, path: str, rate: float, seconds: float, threads: int = 4) -> tuple[float, int]:
    """p99 (ms) of requests sent at a fixed `rate`, timed from when each was due (no coordinated omission)."""
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter() + 0.2
    count = int(rate * seconds)

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for i in range(offset, count, threads):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                ok = response.status == 200 and bool(response.read())
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            latencies.append((time.perf_counter() - due) * 1000)
            errors[0] += not ok
        conn.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    latencies.sort()
    return latencies[int(len(latencies) * 0.99)], errors[0]


@contextmanager
def held_streams(port: int, count: int, settings, price: float):
    """`count` open GET /api/v1/stream answers (the product's SSE endpoint), each checked to have sent its snapshot;
    on exit, one new record stored and published as the worker does is checked to have reached every one."""
    from tests.bench_stream import _connect, _publish, _read_until

    socks = _connect(port, count)
    try:
        started = _read_until(socks, b"event: snapshot", time.monotonic() + 60)
        if len(started) < count:
            raise SystemExit(f"only {len(started)} of {count} streams sent their snapshot")
        yield socks
        published = _publish(settings, price)
        reached = _read_until(socks, b"event: price", published + 10)
        print(f"  an update stored and published once reached {len(reached)} of {count} streams")
    finally:
        for sock in socks:
            sock.close()
    # The server notices a stream's client left at its next write (a heartbeat, 15 s at most); until then the slots
    # count against STREAM_MAX_CLIENTS, so the next round would be refused 503.
    deadline = time.monotonic() + 40
    while _sse_clients(port) and time.monotonic() < deadline:
        time.sleep(0.5)


def _sse_clients(port: int) -> float:
    status, body = _get(port, "/metrics")
    found = re.search(rb"^cryptostats_sse_clients (\S+)$", body, re.M) if status == 200 else None
    return float(found.group(1)) if found else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the ratios (those with held clients: 3 at most)")
    parser.add_argument("--candidates", action="store_true", help="also gunicorn gthread and gevent, if installed")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_HINT, file=sys.stderr)
        return 1
    from app import embedded_redis as broker
    from app.bootstrap import prepare
    from app.config import Settings
    from tests.faults.test_slow_clients import Attackers

    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MONGODB_URI", "COINS", "VS_CURRENCIES")}
    env.update(DATA_DIR=str(tmp / "data"), HOST="127.0.0.1", PORT=str(_free_port()), WEB_CONCURRENCY="1",
               LOG_LEVEL="WARNING", REFRESH_INTERVAL_SECONDS="3600", PYTHONPATH=str(ROOT),
               # The load comes from one address: the per-client limit (RATE_LIMIT, 300/minute by default) would
               # answer it 429. The benchmark measures the server; the limit's own cost is one Redis INCR a request.
               RATE_LIMIT="0")
    settings = Settings.from_env(env)
    prepare(settings)  # the embedded Redis, shared by the servers below
    _seed(settings)
    s = args.seconds
    print(f"HTTP benchmark: granian (app/api/server.py settings), 1 worker process each, wrk -t1 -c50 -d{s:g}s, "
          f"median of {args.rounds} interleaved rounds; {os.cpu_count()} cores shared with whatever else runs")
    servers: list[Server] = []
    try:
        raw_server = Server(env, "tests.bench_http:raw", tmp / "raw.log")
        servers.append(raw_server)
        app_server = Server({**env, "PORT": str(_free_port())}, "wsgi:app", tmp / "product.log")
        servers.append(app_server)
        rounds = []
        runs = (("raw", raw_server, "/stats?coin=bitcoin"), ("stats", app_server, "/stats?coin=bitcoin"),
                ("deviation", app_server, "/deviation?coin=bitcoin"))
        for number in range(args.rounds):
            # Interleaved, so a change in the machine's load hits all of them alike; every other round in reverse
            # order, so a drift within a round favours none of them.
            order = runs if number % 2 == 0 else runs[::-1]
            rounds.append({name: wrk(server, path, s) for name, server, path in order})
        med = {name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]}
               for name in rounds[0]}
        ratio = {name: statistics.median(r[name]["rps"] / r["raw"]["rps"] for r in rounds) for name in rounds[0]}
        cpu_ratio = {name: statistics.median(r[name]["per_cpu_s"] / r["raw"]["per_cpu_s"] for r in rounds)
                     for name in rounds[0]}
        for name, label in (("raw", "raw callable"), ("stats", "/stats"), ("deviation", "/deviation")):
            m = med[name]
            print(f"{label:13s} {m['rps']:9,.0f} req/s {m['per_cpu_s']:9,.0f} req/CPU-s  p99 {m['p99_ms']:6.2f} ms"
                  + ("" if name == "raw" else f"   vs raw: {ratio[name]:.2f} (per CPU-s {cpu_ratio[name]:.2f})"))
        print(f"/stats per core: {med['stats']['per_cpu_s']:,.0f} req/CPU-s = "
              f"{med['stats']['per_cpu_s'] / TODAY_PER_CORE:.1f}x main's {TODAY_PER_CORE:,} (gunicorn gthread, one "
              f"worker, issue 12)")
        raw_server.stop()
        p99, errors = paced_p99(app_server.port, "/stats?coin=bitcoin", 500, max(10.0, 2 * s))
        print(f"/stats at a fixed 500 req/s: p99 {p99:.2f} ms, {errors} errors")
        held_ratios, slow_ratios = [], []
        for number in range(min(args.rounds, 3)):
            base = wrk(app_server, "/stats?coin=bitcoin", s)
            with held_streams(app_server.port, args.streams, settings, 41000.0 + number):
                held = wrk(app_server, "/stats?coin=bitcoin", s)
            attackers = Attackers(app_server.port)
            attackers.open()
            try:
                slow = wrk(app_server, "/stats?coin=bitcoin", s)
            finally:
                attackers.close()
            held_ratios.append((held["rps"] / base["rps"], held["p99_ms"], held["per_cpu_s"] / base["per_cpu_s"]))
            slow_ratios.append((slow["rps"] / base["rps"], slow["p99_ms"], slow["per_cpu_s"] / base["per_cpu_s"]))
        for label, figures in ((f"{args.streams:,} held streams", held_ratios),
                               ("200 slow + 200 idle clients", slow_ratios)):
            print(f"/stats with {label}: {statistics.median(f[0] for f in figures):.2f} of its throughput without "
                  f"(rounds: {', '.join(f'{f[0]:.2f}' for f in figures)}; per CPU-s "
                  f"{statistics.median(f[2] for f in figures):.2f}; p99 {statistics.median(f[1] for f in figures):.2f} ms)")
        # Issue 12's targets for other users while they are held: success >= 99.9 %, p99 < 50 ms (at 500 req/s, on
        # a schedule: wrk's p99 above is that of a saturated server, mostly its own queue).
        paced = max(10.0, 2 * s)
        with held_streams(app_server.port, args.streams, settings, 42000.0):
            p99, errors = paced_p99(app_server.port, "/stats?coin=bitcoin", 500, paced)
        _print_paced(f"{args.streams:,} held streams", p99, errors, int(500 * paced))
        attackers = Attackers(app_server.port)
        attackers.open()
        try:
            p99, errors = paced_p99(app_server.port, "/stats?coin=bitcoin", 500, paced)
        finally:
            attackers.close()
        _print_paced("200 slow + 200 idle clients", p99, errors, int(500 * paced))
    finally:
        for server in servers:
            server.stop()
        try:
            if args.candidates:
                _candidates(env, tmp, s)
        finally:
            broker.stop_embedded_redis(settings.data_dir)
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _print_paced(label: str, p99: float, errors: int, sent: int) -> None:
    print(f"/stats at a fixed 500 req/s with {label}: {100 * (sent - errors) / sent:.2f} % answered 200, "
          f"p99 {p99:.2f} ms")


def _candidates(env: dict[str, str], tmp: Path, seconds: float) -> None:
    """The other serving models measured the same way (one worker process): gunicorn gthread as main ran it
    (8 threads) and gunicorn's gevent worker. Needs `pip install gunicorn gevent` (not pinned: not used)."""
    for name, extra in (("gunicorn gthread", ["-k", "gthread", "--threads", "8"]),
                        ("gunicorn gevent", ["-k", "gevent", "--worker-connections", "2000"])):
        try:
            __import__("gunicorn")
            if "gevent" in name:
                __import__("gevent")
        except ImportError:
            print(f"{name}: not installed, skipped")
            continue
        figures = {}
        for target in ("raw", "product"):
            cmd = [PY, "-m", "gunicorn", "-w", "1", *extra, "-b", f"127.0.0.1:{env['PORT']}",
                   "--log-level=warning", "tests.bench_http:raw" if target == "raw" else "wsgi:app"]
            server = Server(env, target, tmp / f"{name}-{target}.log", command=cmd)
            try:
                figures[target] = wrk(server, "/stats?coin=bitcoin", seconds)
            finally:
                server.stop()
        r, st = figures["raw"], figures["product"]
        print(f"{name:17s} raw {r['rps']:7,.0f} req/s, /stats {st['rps']:7,.0f} req/s (ratio {st['rps'] / r['rps']:.2f}), "
              f"/stats {st['per_cpu_s']:7,.0f} req/CPU-s")


if __name__ == "__main__":
    sys.exit(main())
