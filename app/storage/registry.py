"""The coin tables of each store (CoinGecko's catalogue as last fetched, the coins tracked at run time): SQLite and
MongoDB share their price store's connection; the in-memory one is for tests. Implement CoinRegistry."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone
from typing import Any, Sequence

from pymongo.errors import BulkWriteError

from app.domain.coins import Catalog, CatalogEntry
from app.storage.mongo import DEFAULT_DATABASE, MongoPriceRepository
from app.storage.sqlite import SqlitePriceRepository

CATALOG_KEY = "coingecko"


def _catalog_body(catalog: Catalog) -> str:
    # The whole catalogue as one JSON text (~17k coins, about 1 MB): replaced in one write, so a reader sees the old
    # list or the new one, on a MongoDB without transactions too; read in one go, as search needs it whole. Text,
    # not a BSON array of arrays: FerretDB 1.x refuses nested arrays.
    return json.dumps({"entries": [[e.id, e.symbol, e.name] for e in catalog.entries],
                       "vs_currencies": sorted(catalog.vs_currencies)}, separators=(",", ":"))


def _catalog_of(body: str, fetched_at: datetime) -> Catalog:
    blob: dict[str, Any] = json.loads(body)
    return Catalog(tuple(CatalogEntry(*row) for row in blob["entries"]), frozenset(blob["vs_currencies"]),
                   fetched_at)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS coin_catalog (
    key          TEXT    PRIMARY KEY,
    fetched_at   INTEGER NOT NULL,  -- milliseconds
    body         TEXT    NOT NULL   -- JSON: {"entries": [[id, symbol, name], ...], "vs_currencies": [...]}
);
CREATE TABLE IF NOT EXISTS tracked_coins (
    coin         TEXT    PRIMARY KEY,
    position     INTEGER NOT NULL   -- order of addition (COINS' order for the seeded ones)
);
"""


class SqliteCoinRegistry:
    """Tables `coin_catalog` and `tracked_coins` in the price store's SQLite file, over its connections."""

    def __init__(self, repo: SqlitePriceRepository) -> None:
        self.repo = repo
        self._ready: set[tuple[int, int] | None] = set()  # files (dev, inode) the tables were created in
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = self.repo._conn()
        file_id = self.repo._file_id()
        if file_id not in self._ready:  # once per file: a deleted file is recreated without these tables
            try:
                conn.executescript(_SQLITE_SCHEMA)
            except sqlite3.Error as exc:
                raise self.repo._failed("schema creation", exc) from exc
            with self._lock:
                self._ready.add(file_id)
        return conn

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = self._conn()
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self.repo._failed("read", exc) from exc

    def _write(self, fn) -> Any:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self.repo._failed("write", exc) from exc
        return result

    def ensure_schema(self) -> None:
        self._conn()

    def catalog_fetched_at(self) -> datetime | None:
        rows = self._read("SELECT fetched_at FROM coin_catalog WHERE key = ?", (CATALOG_KEY,))
        return _from_ms(rows[0][0]) if rows else None

    def load_catalog(self) -> Catalog | None:
        rows = self._read("SELECT fetched_at, body FROM coin_catalog WHERE key = ?", (CATALOG_KEY,))
        return _catalog_of(rows[0][1], _from_ms(rows[0][0])) if rows else None

    def save_catalog(self, catalog: Catalog) -> None:
        body = _catalog_body(catalog)
        self._write(lambda c: c.execute(
            "INSERT INTO coin_catalog (key, fetched_at, body) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "fetched_at = excluded.fetched_at, body = excluded.body", (CATALOG_KEY, _ms(catalog.fetched_at), body)))

    def tracked_coins(self) -> list[str]:
        return [r[0] for r in self._read("SELECT coin FROM tracked_coins ORDER BY position, coin")]

    def seed_tracked(self, coins: Sequence[str]) -> bool:
        def seed(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM tracked_coins LIMIT 1").fetchone():
                return False
            conn.executemany("INSERT INTO tracked_coins (coin, position) VALUES (?, ?) ON CONFLICT DO NOTHING",
                             [(c, i) for i, c in enumerate(dict.fromkeys(coins))])
            return True
        return self._write(seed)

    def track(self, coin: str) -> bool:
        return self._write(lambda c: c.execute(
            "INSERT INTO tracked_coins (coin, position) SELECT ?, coalesce(max(position), -1) + 1 FROM tracked_coins "
            "WHERE true ON CONFLICT (coin) DO NOTHING", (coin,)).rowcount == 1)

    def untrack(self, coin: str) -> bool:
        return self._write(lambda c: c.execute("DELETE FROM tracked_coins WHERE coin = ?", (coin,)).rowcount == 1)

    def ping(self) -> None:
        self.repo.ping()

    def close(self) -> None:
        self.repo.close()


class MongoCoinRegistry:
    """Collections `coin_catalog` (one document: the whole list as JSON text) and `tracked_coins` (`_id` = the coin, so a coin
    is tracked once however many processes add it), in the price store's database, over its client."""

    def __init__(self, repo: MongoPriceRepository) -> None:
        self.repo = repo

    def _db(self):
        return self.repo.client.get_default_database(default=DEFAULT_DATABASE)

    def ensure_schema(self) -> None:
        pass  # `_id` is the only key either collection needs, and it is always indexed

    def catalog_fetched_at(self) -> datetime | None:
        doc = self.repo._run("read", lambda: self._db().coin_catalog.find_one({"_id": CATALOG_KEY},
                                                                               {"fetched_at": 1}))
        return _from_ms(doc["fetched_at"]) if doc else None

    def load_catalog(self) -> Catalog | None:
        doc = self.repo._run("read", lambda: self._db().coin_catalog.find_one({"_id": CATALOG_KEY}))
        return _catalog_of(doc["body"], _from_ms(doc["fetched_at"])) if doc else None

    def save_catalog(self, catalog: Catalog) -> None:
        doc = {"fetched_at": _ms(catalog.fetched_at), "body": _catalog_body(catalog)}
        self.repo._run("write", lambda: self._db().coin_catalog.replace_one({"_id": CATALOG_KEY}, doc, upsert=True))

    def tracked_coins(self) -> list[str]:
        return self.repo._run("read", lambda: [
            d["_id"] for d in self._db().tracked_coins.find({}, {"_id": 1}).sort([("position", 1), ("_id", 1)])])

    def seed_tracked(self, coins: Sequence[str]) -> bool:
        def seed() -> bool:
            collection = self._db().tracked_coins
            if collection.find_one({}, {"_id": 1}) is not None:
                return False
            try:  # two processes seeding at once insert the same `_id`s: the second one's are refused, harmlessly
                collection.insert_many([{"_id": c, "position": i} for i, c in enumerate(dict.fromkeys(coins))],
                                       ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                return False
            return True
        return self.repo._run("write", seed)

    def track(self, coin: str) -> bool:
        # Nanoseconds since the epoch order additions after the seeded positions (0, 1, ...).
        result = self.repo._run("write", lambda: self._db().tracked_coins.update_one(
            {"_id": coin}, {"$setOnInsert": {"position": time.time_ns()}}, upsert=True))
        return result.upserted_id is not None

    def untrack(self, coin: str) -> bool:
        return self.repo._run("write", lambda: self._db().tracked_coins.delete_one({"_id": coin})).deleted_count == 1

    def ping(self) -> None:
        self.repo.ping()

    def close(self) -> None:
        self.repo.close()
