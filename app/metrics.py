"""Metrics adapter (prometheus-client + Redis): what the services report, and the text GET /metrics answers.

Two halves, because the processes differ:
- Update runs, CoinGecko calls, records stored, data ages and backfill chunks happen in workers, which have no
  port on Render or Heroku. `RedisMetrics` keeps them as counters in the platform's Redis (HINCRBY), so every
  worker adds to the same figures, they outlive a worker restart, and the web's /metrics reads them at scrape time:
  one scrape target for the whole platform.
- Requests, latency and SSE clients happen in the web's processes. They are prometheus-client metrics in its
  multiprocess mode (PROMETHEUS_MULTIPROC_DIR, one directory per web instance made by `prepare_web_metrics`), so
  whichever web process answers the scrape reports the sum of all of them. Requests are tallied in the process's
  memory and added to those series once a second (`RequestTally`): a multiprocess write per request was half the
  cost of a /stats answer.
prometheus_client is imported lazily: its value class is chosen from PROMETHEUS_MULTIPROC_DIR, which the web's
entry point sets before its processes make any metric.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_left
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import redis

log = logging.getLogger(__name__)

PREFIX = "cryptostats"
COUNTERS_KEY = "metrics:counters"  # hash "<family>|<label value>" -> count
OBSERVED_KEY = "metrics:observed"  # hash "<coin>|<currency>" -> observed_at (Unix seconds) of the newest record
LAST_SUCCESS_KEY = "metrics:last-success"  # Unix seconds of the last run that stored
RUN_OUTCOMES = ("stored", "skipped", "failed", "retried")
# Pre-declared label values: a series exists (at 0) before its first event, so alert rules can use rate() on it.
KNOWN_LABELS = {"runs": RUN_OUTCOMES, "upstream": ("200", "429"), "backfill": ("stored", "retried", "failed")}
SCRAPE_TIMEOUT_SECONDS = 1.0  # a scrape must answer even when Redis hangs


def _label(value: str) -> str:
    return value.replace("|", "/")[:64]


class RedisMetrics:
    """The Metrics port over Redis (see the module docstring); SSE clients go to this process's gauge. Never
    raises: a failure is logged once until Redis answers again."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._failing = False

    def _write(self, what: str, action: Callable[[Any], object]) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            action(pipe)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            if not self._failing:
                log.warning("metrics: cannot record %s in Redis (%s); figures will miss it", what, type(exc).__name__)
            self._failing = True
        else:
            self._failing = False

    def run_finished(self, outcome: str) -> None:
        self._write("a run", lambda p: p.hincrby(COUNTERS_KEY, f"runs|{_label(outcome)}", 1))

    def upstream_call(self, status: str) -> None:
        self._write("a CoinGecko call", lambda p: p.hincrby(COUNTERS_KEY, f"upstream|{_label(status)}", 1))

    def records_stored(self, count: int, observed: Sequence[tuple[str, str, datetime]], at: datetime) -> None:
        def action(p) -> None:
            p.hincrby(COUNTERS_KEY, "records|", count)
            p.set(LAST_SUCCESS_KEY, at.timestamp())
            if observed:
                p.hset(OBSERVED_KEY, mapping={f"{_label(c)}|{_label(v)}": t.timestamp() for c, v, t in observed})
        self._write("stored records", action)

    def backfill_chunk(self, outcome: str) -> None:
        self._write("a backfill chunk", lambda p: p.hincrby(COUNTERS_KEY, f"backfill|{_label(outcome)}", 1))

    def sse_clients(self, delta: int) -> None:
        web_metrics().sse_clients.inc(delta)

    def close(self) -> None:
        self._client.close()


class RedisFiguresCollector:
    """A prometheus-client collector reading RedisMetrics' figures at scrape time."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=SCRAPE_TIMEOUT_SECONDS,
                                            socket_connect_timeout=SCRAPE_TIMEOUT_SECONDS)
        self._clock = clock

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily(f"{PREFIX}_worker_metrics_up",
                               "1 when the worker figures below could be read from Redis, else 0")
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(COUNTERS_KEY)
            pipe.hgetall(OBSERVED_KEY)
            pipe.get(LAST_SUCCESS_KEY)
            counters, observed, last_success = pipe.execute()
        except (redis.RedisError, OSError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counts: dict[str, dict[str, float]] = {family: dict.fromkeys(labels, 0.0)
                                               for family, labels in KNOWN_LABELS.items()}
        for field, value in counters.items():
            family, _, label = field.decode().partition("|")
            counts.setdefault(family, {})[label] = float(value)
        for family, name, label, doc in (
                ("runs", "update_runs", "outcome", "Update runs by outcome (stored, skipped, failed, retried)"),
                ("upstream", "coingecko_requests", "status", "CoinGecko requests by HTTP status (or error code)"),
                ("backfill", "backfill_chunks", "outcome", "History backfill chunks by outcome")):
            metric = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
            for value, count in sorted(counts.get(family, {}).items()):
                metric.add_metric([value], count)
            yield metric
        records = CounterMetricFamily(f"{PREFIX}_records_stored", "New price records stored")
        records.add_metric([], counts.get("records", {}).get("", 0.0))
        yield records
        last = GaugeMetricFamily(f"{PREFIX}_last_successful_update_timestamp_seconds",
                                 "Unix time of the last update run that stored (0 = none yet)")
        last.add_metric([], float(last_success or 0))
        yield last
        age = GaugeMetricFamily(f"{PREFIX}_data_age_seconds",
                                "Seconds since CoinGecko's last_updated_at of the newest stored price",
                                labels=["coin", "currency"])
        now = self._clock()
        for field, value in sorted(observed.items()):
            coin, _, currency = field.decode().partition("|")
            age.add_metric([coin, currency], max(0.0, now - float(value)))
        yield age

    def close(self) -> None:
        self._client.close()


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
TALLY_FLUSH_SECONDS = 1.0  # how late a request may show in a scrape answered by another web process


class _WebMetrics:
    """This web process's prometheus-client metrics (multiprocess when PROMETHEUS_MULTIPROC_DIR is set)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram, values

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # prometheus_client picks its value class at import; make sure it is the multiprocess one even if
            # something imported it before the entry point set the directory.
            values.ValueClass = values.MultiProcessValue()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=None)
        self.latency = Histogram(f"{PREFIX}_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["route"], registry=None, buckets=LATENCY_BUCKETS)
        self.sse_clients = Gauge(f"{PREFIX}_sse_clients", "Server-Sent Events clients connected", registry=None,
                                 multiprocess_mode="livesum")


_web: list[_WebMetrics] = []


def web_metrics() -> _WebMetrics:
    """This process's web metrics, made on first use (after the entry point set PROMETHEUS_MULTIPROC_DIR)."""
    if not _web:
        _web.append(_WebMetrics())
    return _web[0]


class RequestTally:
    """Answered requests counted in this process's memory (count, latency sum, latency bucket), added to the
    prometheus-client series by `flush`: every TALLY_FLUSH_SECONDS from a daemon thread started on the first
    request, before every scrape this process answers, and when the process ends. prometheus-client has no call
    that adds many observations at once, so `flush` adds to a histogram's bucket and sum values itself
    (tests/api/test_metrics.py checks the scrape against what was observed)."""

    _BOUNDS = (*map(float, LATENCY_BUCKETS), float("inf"))

    def __init__(self, flush_seconds: float = TALLY_FLUSH_SECONDS) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, int], list] = {}  # key -> [count, seconds, [per-bucket counts]]
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._flush_seconds = flush_seconds
        self._flusher: threading.Thread | None = None

    def add(self, route: str, method: str, status: int, seconds: float) -> None:
        bucket = bisect_left(self._BOUNDS, seconds)
        key = (route, method, status)
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                entry = self._pending[key] = [0, 0.0, [0] * len(self._BOUNDS)]
                if self._flusher is None:
                    self._start_flusher()
            entry[0] += 1
            entry[1] += seconds
            entry[2][bucket] += 1

    def flush(self) -> None:
        """Add what was tallied since the last flush to the prometheus-client series."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, (count, seconds, buckets) in pending.items():
            counter, histogram = self._labelled(key)
            counter.inc(count)
            histogram._sum.inc(seconds)
            for index, observed in enumerate(buckets):
                if observed:
                    histogram._buckets[index].inc(observed)

    def _labelled(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        series = self._series.get(key)
        if series is None:
            metrics = web_metrics()
            route, method, status = key
            series = self._series[key] = (metrics.requests.labels(route, method, str(status)),
                                          metrics.latency.labels(route))
        return series

    def _start_flusher(self) -> None:
        from multiprocessing import util

        self._flusher = threading.Thread(target=self._flush_forever, name="request-metrics", daemon=True)
        self._flusher.start()
        # A web server's worker is a multiprocessing child, which ends without atexit: its finalizers still run.
        util.Finalize(self, self.flush, exitpriority=10)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._flush_seconds)
            try:
                self.flush()
            except Exception:  # noqa: BLE001  a metrics file that cannot be written must not end the counting
                log.exception("metrics: cannot record request counts")

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending, self._series, self._flusher = {}, {}, None


_tally = RequestTally()
os.register_at_fork(after_in_child=_tally._after_fork)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency (on the hot path: the /stats fast path calls it per request)."""
    _tally.add(route, method, status, seconds)


def render(collectors: Sequence[Any]) -> tuple[bytes, str]:
    """(body, content type) of a scrape: every web process's metrics, plus `collectors` (the Redis figures)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    metrics = web_metrics()
    _tally.flush()  # this process's requests up to now; the others' are at most TALLY_FLUSH_SECONDS late
    registry = CollectorRegistry()
    if metrics.multiprocess:
        _forget_dead_processes()
        MultiProcessCollector(registry)
    else:
        for metric in (metrics.requests, metrics.latency, metrics.sse_clients):
            registry.register(metric)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_web_metrics(data_dir: Path, port: int) -> Path:
    """For the web's entry point, before it starts its processes: a per-instance PROMETHEUS_MULTIPROC_DIR (the
    operator's, when set, else DATA_DIR/prometheus-web-<PORT>), emptied, so counts of a previous run or another
    instance never add up with this one's. Returns it. Raises OSError when it cannot be made."""
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or data_dir / f"prometheus-web-{port}")
    if path.exists():
        for entry in path.glob("*.db"):
            entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path.resolve())
    return path


def _forget_dead_processes() -> None:
    """Live gauges (SSE clients) of web processes that have ended stop counting. Done at scrape time rather than in
    a server hook, since granian has none for a worker's exit (it respawns failed workers)."""
    from prometheus_client import multiprocess

    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
