"""SQLite price store (stdlib sqlite3, WAL): the embedded default under DATA_DIR."""
from __future__ import annotations

import calendar
import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from app.domain.errors import StorageUnavailable
from app.domain.history import OhlcBucket
from app.domain.model import Observation

# One row per (coin, vs_currency, observed_at): the primary key is the unique key that makes replays write nothing,
# and its order serves "newest N of a coin" and time ranges without another index. Times are UTC epoch
# seconds (observed_at, CoinGecko's resolution) and milliseconds (fetched_at, MongoDB's resolution).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    coin         TEXT    NOT NULL,
    vs_currency  TEXT    NOT NULL,
    observed_at  INTEGER NOT NULL,
    fetched_at   INTEGER NOT NULL,  -- milliseconds
    price        REAL    NOT NULL,
    market_cap   REAL,
    volume_24h   REAL,
    change_24h   REAL,
    PRIMARY KEY (coin, vs_currency, observed_at)
) WITHOUT ROWID;
"""
_COLUMNS = "coin, vs_currency, observed_at, fetched_at, price, market_cap, volume_24h, change_24h"
# ON CONFLICT names the key, so only an existing key is skipped: `INSERT OR IGNORE` would also skip, silently, a row
# that breaks NOT NULL, and the batch would "succeed" without it.
_INSERT = (f"INSERT INTO observations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (coin, vs_currency, observed_at) DO NOTHING")
_LAST_N = (f"SELECT {_COLUMNS} FROM observations WHERE coin = ? AND vs_currency = ? "
           "ORDER BY observed_at DESC LIMIT ?")
_BETWEEN = (f"SELECT {_COLUMNS} FROM observations WHERE coin = ? AND vs_currency = ? "
            "AND observed_at >= ? AND observed_at < ? ORDER BY observed_at")
# OHLC in one statement: GROUP BY bucket over the primary key's range (coin, vs_currency, observed_at), keeping each
# bucket's first and last observed_at; open and close (and the last market cap and volume) are then two primary-key
# look-ups per bucket, rather than a window function over every row. Integer division aligns buckets to the epoch
# (observed_at is never before 1970).
_OHLC = """
WITH b AS (
    SELECT observed_at / :width AS k, min(observed_at) AS first_at, max(observed_at) AS last_at,
           max(price) AS high, min(price) AS low, count(*) AS n
    FROM observations
    WHERE coin = :coin AND vs_currency = :vs AND observed_at >= :lo AND observed_at < :hi
    GROUP BY k
)
SELECT b.k * :width, o.price, b.high, b.low, c.price, b.n, c.market_cap, c.volume_24h
FROM b
JOIN observations AS o ON o.coin = :coin AND o.vs_currency = :vs AND o.observed_at = b.first_at
JOIN observations AS c ON c.coin = :coin AND c.vs_currency = :vs AND c.observed_at = b.last_at
ORDER BY b.k
"""


def _epoch_ms(at: datetime) -> int:
    # Exactly as BSON encodes a date (whole milliseconds, rounded down, integer arithmetic), so both stores give
    # back the same instant for the same input.
    return calendar.timegm(at.utctimetuple()) * 1000 + at.microsecond // 1000


def _to_row(o: Observation) -> tuple:
    return (o.coin, o.vs_currency, _epoch_ms(o.observed_at) // 1000, _epoch_ms(o.fetched_at), o.price,
            o.market_cap, o.volume_24h, o.change_24h)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, timezone.utc).replace(microsecond=(ms % 1000) * 1000)


def _from_row(row: tuple) -> Observation:
    coin, vs, observed, fetched, price, cap, vol, change = row
    return Observation(coin, vs, price, cap, vol, change,
                       datetime.fromtimestamp(observed, timezone.utc), _from_ms(fetched))


class SqlitePriceRepository:
    """Price store in one SQLite file. Thread- and fork-safe: a connection per thread, opened in the process using it.

    A busy timeout absorbs short write locks from other processes; past it, operations raise StorageUnavailable.
    """

    def __init__(self, path: Path | str, busy_timeout_seconds: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_seconds, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:  # locked, missing table, corrupt file
            raise StorageUnavailable(f"SQLite read failed: {exc}") from exc

    def ensure_schema(self) -> None:
        try:
            self._conn().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot create SQLite schema: {exc}") from exc

    def add_batch(self, observations: Sequence[Observation]) -> int:
        """One transaction: all rows or none. Existing keys are skipped (and a key repeated in the batch is stored
        once, as first given), so a replayed run adds nothing."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(_INSERT, [_to_row(o) for o in observations])
                added = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"SQLite write failed: {exc}") from exc
        return added

    def latest(self, coin: str, vs_currency: str) -> Observation | None:
        rows = self.last_n(coin, vs_currency, 1)
        return rows[0] if rows else None

    def last_n(self, coin: str, vs_currency: str, n: int) -> list[Observation]:
        if n <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        return [_from_row(r) for r in self._query(_LAST_N, (coin, vs_currency, n))]

    def explain_last_n(self, coin: str, vs_currency: str, n: int) -> list[str]:
        """SQLite's plan for last_n, one line per step (proof that the primary key serves it)."""
        return [row[3] for row in self._query("EXPLAIN QUERY PLAN " + _LAST_N, (coin, vs_currency, n))]

    def between(self, coin: str, vs_currency: str, start: datetime, end: datetime) -> list[Observation]:
        # observed_at is stored in whole seconds: a start inside a second includes that second's record only if the
        # record's time is >= start, which ceil() expresses exactly.
        lo = -(-start.timestamp() // 1)
        rows = self._query(_BETWEEN, (coin, vs_currency, int(lo), end.timestamp()))
        return [_from_row(r) for r in rows]

    def count(self) -> int:
        return self._query("SELECT count(*) FROM observations")[0][0]

    def ping(self) -> None:
        self._query("SELECT 1")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local = threading.local()

    def ohlc(self, coin: str, vs_currency: str, start: datetime, end: datetime,
             bucket_seconds: int) -> list[OhlcBucket]:
        """Per-bucket aggregates, grouped by SQLite (see _OHLC); bounds as in between()."""
        rows = self._query(_OHLC, self._ohlc_args(coin, vs_currency, start, end, bucket_seconds))
        return [OhlcBucket(datetime.fromtimestamp(t, timezone.utc), o, h, lo, c, n, cap, vol)
                for t, o, h, lo, c, n, cap, vol in rows]

    def explain_ohlc(self, coin: str, vs_currency: str, start: datetime, end: datetime,
                     bucket_seconds: int) -> list[str]:
        """SQLite's plan for ohlc (proof that the primary key serves the range and the look-ups)."""
        return [row[3] for row in self._query("EXPLAIN QUERY PLAN " + _OHLC,
                                              self._ohlc_args(coin, vs_currency, start, end, bucket_seconds))]

    @staticmethod
    def _ohlc_args(coin: str, vs_currency: str, start: datetime, end: datetime, bucket_seconds: int) -> dict:
        return {"coin": coin, "vs": vs_currency, "lo": int(-(-start.timestamp() // 1)), "hi": end.timestamp(),
                "width": int(bucket_seconds)}
