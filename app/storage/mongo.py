"""MongoDB price store (pymongo): the production store when MONGODB_URI is set (Atlas or self-hosted)."""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any, NamedTuple, Sequence

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError
from pymongo.topology_description import TopologyDescription

from app.domain.errors import StorageUnavailable
from app.domain.history import EPOCH, OhlcBucket, buckets_of
from app.domain.model import Observation

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "cryptostats"
COLLECTION = "observations"
# The unique key, newest first: serves "newest N of a coin" (an index walk, then LIMIT) and time ranges, and makes a
# replayed run write nothing.
KEY_INDEX = "coin_vs_observed_at_unique"
_KEY_FIELDS = [("coin", ASCENDING), ("vs_currency", ASCENDING), ("observed_at", DESCENDING)]
_FIELDS = ("price", "market_cap", "volume_24h", "change_24h", "fetched_at", "source")
# The polled series: documents written before records had a source lack the field, and were all polled.
_POLLED = {"source": {"$ne": "backfill"}}
# Codes of "this server does not know that operator": 15952 unknown group operator (MongoDB < 5.2),
# 238 NotImplemented (FerretDB), 168 InvalidPipelineOperator.
_UNSUPPORTED = {15952, 238, 168}
_PROJECTION = {"_id": 0, "coin": 1, "vs_currency": 1, "observed_at": 1, **{f: 1 for f in _FIELDS}}


def _to_doc(o: Observation) -> dict[str, Any]:
    return {"coin": o.coin, "vs_currency": o.vs_currency, "observed_at": o.observed_at, "price": o.price,
            "market_cap": o.market_cap, "volume_24h": o.volume_24h, "change_24h": o.change_24h,
            "fetched_at": o.fetched_at, "source": o.source}


def _stored_key(coin: str, vs_currency: str, at: datetime) -> tuple[str, str, datetime]:
    """The key as the server holds it: BSON dates are UTC milliseconds, so a key written with microseconds (or in
    another zone) matches the stored one only after the same rounding. Naive times are UTC, as BSON reads them."""
    at = _utc(at)
    return coin, vs_currency, at.replace(microsecond=at.microsecond // 1000 * 1000)


def _utc(at: datetime) -> datetime:
    # The client is created with tzinfo=timezone.utc, but mongomock ignores that option; normalise here too.
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _from_doc(d: dict[str, Any]) -> Observation:
    return Observation(d["coin"], d["vs_currency"], d["price"], d.get("market_cap"), d.get("volume_24h"),
                       d.get("change_24h"), _utc(d["observed_at"]), _utc(d["fetched_at"]),
                       d.get("source") or "poll")


class MongoPriceRepository:
    """Price store in the database named by the URI's path (`cryptostats` when it has none), collection
    `observations`. The client is created lazily in the process that uses it (PyMongo is not fork-safe), with
    bounded server-selection, connect and socket timeouts and retryable writes; driver errors become
    StorageUnavailable.
    """

    def __init__(self, uri: str, *, server_selection_timeout_ms: int = 5000, socket_timeout_ms: int = 20000,
                 client_factory=None) -> None:
        self.uri = uri
        self._factory = client_factory or (lambda: MongoClient(self.uri, connect=False, **self._options))
        self._options = dict(
            serverSelectionTimeoutMS=server_selection_timeout_ms,
            connectTimeoutMS=min(server_selection_timeout_ms, 10000),
            socketTimeoutMS=socket_timeout_ms,
            retryWrites=True,
            retryReads=True,
            tz_aware=True,
            tzinfo=timezone.utc,  # else bson's own utc object, which e.g. email.utils refuses as "not UTC"
            appname="crypto-stats-platform",
        )
        self._client: MongoClient | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> MongoClient:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                # A client inherited through fork is unusable (its sockets and monitor threads belong to the
                # parent); drop it without closing the parent's sockets.
                self._client = self._factory()
                self._pid = os.getpid()
            return self._client

    @property
    def database_name(self) -> str:
        return self.client.get_default_database(default=DEFAULT_DATABASE).name

    @property
    def collection(self):
        return self.client.get_default_database(default=DEFAULT_DATABASE)[COLLECTION]

    def _known_unreachable(self) -> str | None:
        """Why no server can serve us, when the driver's monitor already found every one down; else None.

        Server selection would otherwise wait its whole timeout on each call although the answer is known (a web
        request with nothing loaded waited 5-9 s for its 503). The monitor keeps checking in the background
        (every heartbeatFrequencyMS, 10 s), so calls go through again once it sees a server back.
        """
        description = getattr(self.client, "topology_description", None)  # mongomock: absent, or a collection
        if not isinstance(description, TopologyDescription) or description.has_readable_server():
            return None
        servers = list(description.server_descriptions().values())
        if servers and all(server.error is not None for server in servers):
            return f"{servers[0].error.__class__.__name__}: no server reachable"
        return None

    def _run(self, what: str, fn):
        reason = self._known_unreachable()
        if reason is not None:
            raise StorageUnavailable(f"MongoDB {what} failed: {reason}")
        try:
            return fn()
        except PyMongoError as exc:
            raise StorageUnavailable(f"MongoDB {what} failed: {exc.__class__.__name__}: {str(exc)[:300]}") from exc

    def ensure_schema(self) -> None:
        """Create the unique key index if missing; a second call changes nothing (same name, same spec)."""
        self._run("create_index", lambda: self.collection.create_index(_KEY_FIELDS, unique=True, name=KEY_INDEX))

    def add_batch(self, observations: Sequence[Observation]) -> int:
        """Insert the records whose key is not stored yet, so a replay writes nothing and returns 0. Idempotent.

        One unordered `insert_many`: the unique key index refuses every record already stored (E11000), which is
        what an insert-if-absent wants, and the others are written whatever their order. No transaction, on a
        replica set neither (no test here can run one): a batch cut short by a failure is retried whole by the
        task, and the unique key makes the retry converge to the full batch without duplicates. Measured on
        FerretDB 1.x against the former "look up the stored keys, then insert" (docs/mongodb.md): faster, since
        FerretDB scans the collection for that look-up.
        """
        if not observations:
            return 0
        # First occurrence of a key wins within a batch too (as a replay skips what is stored).
        firsts: dict[tuple[str, str, datetime], Observation] = {}
        for o in observations:
            firsts.setdefault(_stored_key(o.coin, o.vs_currency, o.observed_at), o)
        docs = [_to_doc(o) for o in firsts.values()]

        def write() -> int:
            try:
                return len(self.collection.insert_many(docs, ordered=False).inserted_ids)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if errors and all(e.get("code") == 11000 for e in errors):
                    return exc.details.get("nInserted", 0)
                raise

        return self._run("write", write)

    def latest(self, coin: str, vs_currency: str) -> Observation | None:
        rows = self.last_n(coin, vs_currency, 1)
        return rows[0] if rows else None

    def _last_n_cursor(self, coin: str, vs_currency: str, n: int):
        return (self.collection.find({"coin": coin, "vs_currency": vs_currency, **_POLLED}, _PROJECTION)
                .sort("observed_at", DESCENDING).limit(n))

    def last_n(self, coin: str, vs_currency: str, n: int) -> list[Observation]:
        if n <= 0:
            return []
        return self._run("read", lambda: [_from_doc(d) for d in self._last_n_cursor(coin, vs_currency, n)])

    # False once the server refused $topN (MongoDB < 5.2, FerretDB 1.x, mongomock): the pairs' records are then
    # read in key-index order and cut to n per pair here.
    _server_has_top_n = True

    def latest_many(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Observation]:
        return {pair: rows[0] for pair, rows in self.last_n_many(pairs, 1).items()}

    def last_n_many(self, pairs: Sequence[tuple[str, str]], n: int) -> dict[tuple[str, str], list[Observation]]:
        """One aggregation: $match on the key index's prefix ($in coins, $in currencies, polled), then $group per
        pair keeping its n newest with $topN. Without $topN, one find sorted like the key index, cut here (every
        polled record of those pairs crosses the wire: FerretDB's figure in make bench)."""
        wanted = set(pairs)
        if n <= 0 or not wanted:
            return {}
        match = {"coin": {"$in": sorted({c for c, _ in wanted})},
                 "vs_currency": {"$in": sorted({v for _, v in wanted})}, **_POLLED}
        out: dict[tuple[str, str], list[Observation]] = {}

        def grouped() -> None:
            fields = {f: f"${f}" for f in ("coin", "vs_currency", "observed_at", *_FIELDS)}
            pipeline = [{"$match": match},
                        {"$group": {"_id": {"c": "$coin", "v": "$vs_currency"},
                                    "docs": {"$topN": {"n": n, "sortBy": {"observed_at": DESCENDING},
                                                       "output": fields}}}}]
            for group in self.collection.aggregate(pipeline):
                pair = (group["_id"]["c"], group["_id"]["v"])
                if pair in wanted:
                    out[pair] = [_from_doc(d) for d in group["docs"]]

        def scanned() -> None:
            cursor = self.collection.find(match, _PROJECTION).sort(_KEY_FIELDS)
            for d in cursor:
                pair = (d["coin"], d["vs_currency"])
                rows = out.setdefault(pair, []) if pair in wanted else None
                if rows is not None and len(rows) < n:
                    rows.append(_from_doc(d))

        def read() -> dict[tuple[str, str], list[Observation]]:
            if self._server_has_top_n:
                try:
                    grouped()
                    return out
                except (OperationFailure, NotImplementedError) as exc:  # NotImplementedError: mongomock's way
                    if isinstance(exc, OperationFailure) and exc.code not in _UNSUPPORTED:
                        raise
                    log.info("this server has no $topN (%s); keeping the newest records per pair client-side",
                             str(exc)[:120])
                    self._server_has_top_n = False
                    out.clear()
            scanned()
            return out

        return self._run("read", read)

    def between(self, coin: str, vs_currency: str, start: datetime, end: datetime) -> list[Observation]:
        # MongoDB stores milliseconds; so does the comparison, which is exact for our whole-second observed_at.
        query = {"coin": coin, "vs_currency": vs_currency, "observed_at": {"$gte": start, "$lt": end}}
        return self._run("read", lambda: [
            _from_doc(d) for d in self.collection.find(query, _PROJECTION).sort("observed_at", ASCENDING)
        ])

    def count(self) -> int:
        return self._run("count", lambda: self.collection.count_documents({}))

    def ping(self) -> None:
        self._run("ping", lambda: self.client.admin.command("ping"))

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    # False once the server has refused the OHLC pipeline as not implemented (FerretDB 1.x has no $subtract or $mod
    # in $group); the records are then grouped here, from a projected range read.
    _server_groups_ohlc = True

    def ohlc(self, coin: str, vs_currency: str, start: datetime, end: datetime,
             bucket_seconds: int) -> list[OhlcBucket]:
        """Per-bucket aggregates from one aggregation: $match on the key index's range, $sort by observed_at (the
        index order), $group by bucket with $first/$last. On a server without those expression operators
        (FerretDB 1.24: error 238 NotImplemented) the same range is read with a projection and grouped here."""
        query = {"coin": coin, "vs_currency": vs_currency, "observed_at": {"$gte": start, "$lt": end}}

        def grouped() -> list[OhlcBucket]:
            # date - (ms since the epoch mod width) is the bucket's start, still a date: the epoch-aligned UTC bucket.
            key = {"$subtract": ["$observed_at", {"$mod": [{"$subtract": ["$observed_at", EPOCH]},
                                                           bucket_seconds * 1000]}]}
            pipeline = [
                {"$match": query},
                {"$sort": {"observed_at": ASCENDING}},
                {"$group": {"_id": key, "open": {"$first": "$price"}, "high": {"$max": "$price"},
                            "low": {"$min": "$price"}, "close": {"$last": "$price"}, "n": {"$sum": 1},
                            "market_cap": {"$last": "$market_cap"}, "volume": {"$last": "$volume_24h"}}},
                {"$sort": {"_id": ASCENDING}},
            ]
            return [OhlcBucket(_utc(d["_id"]), d["open"], d["high"], d["low"], d["close"], d["n"],
                               d.get("market_cap"), d.get("volume")) for d in self.collection.aggregate(pipeline)]

        def read() -> list[OhlcBucket]:
            if self._server_groups_ohlc:
                try:
                    return grouped()
                except OperationFailure as exc:
                    if exc.code != 238:  # NotImplemented; anything else is a real failure
                        raise
                    log.info("this server cannot group OHLC buckets (%s); grouping them client-side",
                             str(exc)[:120])
                    self._server_groups_ohlc = False
            cursor = self.collection.find(query, {"_id": 0, "observed_at": 1, "price": 1, "market_cap": 1,
                                                  "volume_24h": 1}).sort("observed_at", ASCENDING)
            return buckets_of((_Point(_utc(d["observed_at"]), d["price"], d.get("market_cap"), d.get("volume_24h"))
                               for d in cursor), bucket_seconds)

        return self._run("read", read)


class _Point(NamedTuple):
    """The fields of a record that an OHLC bucket needs."""

    observed_at: datetime
    price: float
    market_cap: float | None
    volume_24h: float | None
