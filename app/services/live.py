"""Live: the per-process fan-out of `stored` updates to Server-Sent Events streams, with replay by Last-Event-ID."""
from __future__ import annotations

import json
import logging
import threading
from collections import deque
from datetime import datetime
from typing import Any, Iterable, Iterator, Protocol

from app.domain.errors import BrokerUnavailable, InvalidQuery, TooManyStreams
from app.ports import Metrics, NullMetrics
from app.services.reporting import StatsView, coin_figures

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # a comment this often keeps proxies from closing an idle stream and finds gone clients
RETRY_MILLISECONDS = 5000  # the `retry:` advice: how soon EventSource reconnects after a drop
RECENT_IN_MEMORY = 256  # updates kept per process for streams that fell behind; older: a fresh snapshot
NO_UPDATE_ID = "0-0"  # the id of snapshots sent before any update was ever stored


class UpdateLog(Protocol):
    """The recent `stored` events, kept in Redis so any web process can replay them (app/bus/redis.py)."""

    def latest_update_id(self) -> str | None: ...

    def updates_after(self, update_id: str, upto: str | None = None) -> list[tuple[str, dict[str, Any]]] | None: ...


class NoUpdateLog:
    """An UpdateLog that keeps nothing (a bus without one): streams get snapshots and live pushes, no replay."""

    def latest_update_id(self) -> str | None:
        return None

    def updates_after(self, update_id: str, upto: str | None = None) -> list[tuple[str, dict[str, Any]]] | None:
        return None


def _frame(kind: str, event_id: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\nid: {event_id}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class LiveHub:
    """The one fan-out of a web process: `on_update()` (called by the `crypto-update` listener after the view is
    refreshed) reads the new entries of the updates log and wakes every stream; each stream waits on a
    threading.Condition, so 1,000 streams are 1,000 sleeping threads and no extra Redis connection.
    Counts streams against `max_clients`. Thread-safe."""

    def __init__(self, view: StatsView, updates: UpdateLog, max_clients: int,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or NullMetrics()  # the SSE clients gauge of GET /metrics
        self.view = view
        self.updates = updates
        self.max_clients = max_clients
        self.heartbeat_seconds = heartbeat_seconds
        self._cond = threading.Condition()
        self._seq = 0
        self._recent: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=RECENT_IN_MEMORY)
        self._last_id: str = NO_UPDATE_ID  # the newest update id this process has seen
        self._known = False  # whether _last_id was read from the log yet
        self._clients = 0
        self._closing = False

    @property
    def clients(self) -> int:
        return self._clients

    def _read_new(self) -> list[tuple[str, dict[str, Any]]]:
        if not self._known:  # first call: start from the end of the log (what is stored now is the snapshot)
            self._last_id, self._known = self.updates.latest_update_id() or NO_UPDATE_ID, True
            return []
        found = self.updates.updates_after(self._last_id)
        if found is None:  # our position was trimmed away (a very long Redis outage): start from the end again
            self._last_id = self.updates.latest_update_id() or NO_UPDATE_ID
            return []
        return found

    def on_update(self) -> None:
        """Read the updates stored since the last call and wake the streams. Logs and returns on a Redis outage
        (the next event catches up)."""
        try:
            with self._cond:
                fresh = self._read_new()
                for update_id, event in fresh:
                    self._seq += 1
                    self._recent.append((self._seq, update_id, event))
                    self._last_id = update_id
                if fresh:
                    self._cond.notify_all()
        except BrokerUnavailable as exc:
            log.warning("cannot read the updates stream for the live streams: %s", exc)

    def close(self) -> None:
        """Shutdown: every open stream ends at once (clients reconnect elsewhere with Last-Event-ID)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def open(self, coins: Iterable[str] | None, currency: str | None, last_event_id: str | None) -> Iterator[str]:
        """Check the request and take a slot, then return the stream's text: `retry:`, a `snapshot` per coin (or,
        after `last_event_id` still in the log, the `price` events missed since, in order, each once), then a
        `price` event per coin of every new update and `: heartbeat` every heartbeat_seconds. Raises UnknownCoin,
        UnknownCurrency or TooManyStreams before anything is sent. The slot is freed when the iterator is closed."""
        tracked = self.view.tracked
        public = {tracked.source_id(p): p for p in tracked.public_ids}
        wanted = tuple(dict.fromkeys(public[tracked.resolve(c)] for c in coins)) if coins else tracked.public_ids
        vs = (currency or tracked.vs_currencies[0]).strip().lower()
        if vs not in tracked.vs_currencies:  # a bad parameter (400), as GET /api/v1/coins says it
            raise InvalidQuery(f"currency {currency!r} is not tracked; allowed: {', '.join(tracked.vs_currencies)}",
                               details={"parameter": "currency", "value": currency,
                                        "allowed": list(tracked.vs_currencies)})
        with self._cond:
            if self._clients >= self.max_clients:
                raise TooManyStreams(f"this server holds its maximum of {self.max_clients} live streams; retry "
                                     "shortly", details={"retry_in_seconds": self.heartbeat_seconds})
            self._clients += 1
        self.metrics.sse_clients(1)
        return self._run(wanted, vs, last_event_id)

    def _run(self, coins: tuple[str, ...], vs: str, last_event_id: str | None) -> Iterator[str]:
        try:
            yield f"retry: {RETRY_MILLISECONDS}\n\n"
            with self._cond:
                if not self._known:
                    self._safe_read()
                seen, upto = self._seq, self._last_id
            missed = self._missed(last_event_id, upto)
            if missed is None:
                yield self._snapshot(coins, vs, upto)
            else:
                yield from (self._prices(update_id, event, coins, vs) for update_id, event in missed)
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._seq != seen or self._closing, self.heartbeat_seconds)
                    if self._closing:
                        return
                    fresh = [(i, e) for s, i, e in self._recent if s > seen]
                    fell_behind = self._seq - seen > len(fresh)
                    seen, upto = self._seq, self._last_id
                if fell_behind:
                    yield self._snapshot(coins, vs, upto)
                elif fresh:
                    yield "".join(self._prices(update_id, event, coins, vs) for update_id, event in fresh)
                else:
                    yield ": heartbeat\n\n"
        finally:
            with self._cond:
                self._clients -= 1
            self.metrics.sse_clients(-1)

    def _safe_read(self) -> None:
        try:
            self._read_new()
        except BrokerUnavailable:
            pass

    def _missed(self, last_event_id: str | None, upto: str | None) -> list[tuple[str, dict[str, Any]]] | None:
        if not last_event_id:
            return None
        if last_event_id == upto:
            return []
        try:
            return self.updates.updates_after(last_event_id, upto)
        except BrokerUnavailable:
            return None  # cannot replay: a snapshot is the honest answer

    def _snapshot(self, coins: tuple[str, ...], vs: str, upto: str) -> str:
        return "".join(_frame("snapshot", upto, coin_figures(self.view, coin, vs)) for coin in coins)

    def _prices(self, update_id: str, event: dict[str, Any], coins: tuple[str, ...], vs: str) -> str:
        out = []
        for price in event.get("prices", []):
            if price["coin"] in coins and price["currency"] == vs:
                out.append(_frame("price", update_id, {**price, "stale": self._stale(price["fetched_at"]),
                                                       "error": None}))
        return "".join(out)

    def _stale(self, fetched_at: str) -> bool | None:
        try:
            return self.view.clock() - datetime.fromisoformat(fetched_at) > self.view.stale_after
        except (ValueError, TypeError):
            return None

