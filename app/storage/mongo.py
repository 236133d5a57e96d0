"""MongoDB price store (pymongo): the production store when MONGODB_URI is set (Atlas or self-hosted)."""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from typing import Any, Sequence

from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError
from pymongo.topology_description import TOPOLOGY_TYPE

from app.domain.errors import StorageUnavailable
from app.domain.model import Observation

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "cryptostats"
COLLECTION = "observations"
# The unique key, newest first: serves "newest N of a coin" (an index walk, then LIMIT) and time ranges, and makes a
# replayed run write nothing.
KEY_INDEX = "coin_vs_observed_at_unique"
_KEY_FIELDS = [("coin", ASCENDING), ("vs_currency", ASCENDING), ("observed_at", DESCENDING)]
_FIELDS = ("price", "market_cap", "volume_24h", "change_24h", "fetched_at")
_PROJECTION = {"_id": 0, "coin": 1, "vs_currency": 1, "observed_at": 1, **{f: 1 for f in _FIELDS}}


def _to_doc(o: Observation) -> tuple[dict[str, Any], dict[str, Any]]:
    key = {"coin": o.coin, "vs_currency": o.vs_currency, "observed_at": o.observed_at}
    return key, {"price": o.price, "market_cap": o.market_cap, "volume_24h": o.volume_24h,
                 "change_24h": o.change_24h, "fetched_at": o.fetched_at}


def _from_doc(d: dict[str, Any]) -> Observation:
    return Observation(d["coin"], d["vs_currency"], d["price"], d.get("market_cap"), d.get("volume_24h"),
                       d.get("change_24h"), d["observed_at"], d["fetched_at"])


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

    def _run(self, what: str, fn):
        try:
            return fn()
        except PyMongoError as exc:
            raise StorageUnavailable(f"MongoDB {what} failed: {exc.__class__.__name__}: {str(exc)[:300]}") from exc

    def ensure_schema(self) -> None:
        """Create the unique key index if missing; a second call changes nothing (same name, same spec)."""
        self._run("create_index", lambda: self.collection.create_index(_KEY_FIELDS, unique=True, name=KEY_INDEX))

    def index_names(self) -> list[str]:
        return self._run("list_indexes", lambda: [ix["name"] for ix in self.collection.list_indexes()])

    def _supports_transactions(self) -> bool:
        description = getattr(self.client, "topology_description", None)  # absent on mongomock
        return description is not None and description.topology_type in (TOPOLOGY_TYPE.ReplicaSetWithPrimary, TOPOLOGY_TYPE.Sharded)

    def add_batch(self, observations: Sequence[Observation]) -> int:
        """Upsert-if-absent every record (`$setOnInsert` on the unique key), so a replay writes nothing.

        On a replica set or sharded cluster (Atlas) the batch runs in one transaction: all or nothing. A standalone
        server (and FerretDB 1.x, which has no transactions) gets the same ordered bulk without one: a batch cut
        short by a failure is retried whole by the task, and the unique key makes the retry converge to the full
        batch without duplicates.
        """
        if not observations:
            return 0
        ops = [UpdateOne(key, {"$setOnInsert": rest}, upsert=True) for key, rest in map(_to_doc, observations)]

        def write() -> int:
            self.client.admin.command("ping")  # select a server first so topology_type is known
            try:
                if self._supports_transactions():
                    with self.client.start_session() as session:
                        return session.with_transaction(
                            lambda s: self.collection.bulk_write(ops, ordered=True, session=s).upserted_count
                        )
                return self.collection.bulk_write(ops, ordered=True).upserted_count
            except BulkWriteError as exc:
                # Two writers upserting the same new key at once: MongoDB may fail one with E11000. The record is
                # there either way, which is what an insert-if-absent wants.
                errors = exc.details.get("writeErrors", [])
                if errors and all(e.get("code") == 11000 for e in errors):
                    return exc.details.get("nUpserted", 0)
                raise

        return self._run("write", write)

    def latest(self, coin: str, vs_currency: str) -> Observation | None:
        rows = self.last_n(coin, vs_currency, 1)
        return rows[0] if rows else None

    def _last_n_cursor(self, coin: str, vs_currency: str, n: int):
        return (self.collection.find({"coin": coin, "vs_currency": vs_currency}, _PROJECTION)
                .sort("observed_at", DESCENDING).limit(n))

    def last_n(self, coin: str, vs_currency: str, n: int) -> list[Observation]:
        if n <= 0:
            return []
        return self._run("read", lambda: [_from_doc(d) for d in self._last_n_cursor(coin, vs_currency, n)])

    def explain_last_n(self, coin: str, vs_currency: str, n: int) -> dict[str, Any]:
        """The server's query plan for last_n (proof that the key index is used)."""
        return self._run("explain", lambda: self._last_n_cursor(coin, vs_currency, n).explain())

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

