"""SQLite price store (stdlib sqlite3, WAL): the embedded default under DATA_DIR."""
from __future__ import annotations

import calendar
import json
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
    source       TEXT    NOT NULL DEFAULT 'poll',  -- poll | backfill
    PRIMARY KEY (coin, vs_currency, observed_at)
) WITHOUT ROWID;
"""
_COLUMNS = "coin, vs_currency, observed_at, fetched_at, price, market_cap, volume_24h, change_24h, source"
# Databases made before records had a source: every record they hold was polled.
_MIGRATE_SOURCE = "ALTER TABLE observations ADD COLUMN source TEXT NOT NULL DEFAULT 'poll'"
# ON CONFLICT names the key, so only an existing key is skipped: `INSERT OR IGNORE` would also skip, silently, a row
# that breaks NOT NULL, and the batch would "succeed" without it.
_INSERT = (f"INSERT INTO observations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (coin, vs_currency, observed_at) DO NOTHING")
# The polled series only: /stats and /deviation are about our schedule's records, whatever a backfill added.
_LAST_N = (f"SELECT {_COLUMNS} FROM observations WHERE coin = ? AND vs_currency = ? AND source = 'poll' "
           "ORDER BY observed_at DESC LIMIT ?")
# Many pairs in one statement: the pairs arrive as one JSON parameter (no limit on how many, unlike `?` lists), and
# each pair's newest n polled records are a primary-key range from its n-th newest polled observed_at (a correlated
# look-up walking the key backwards), so the cost is ~2n rows per pair whatever the history holds. A ROW_NUMBER()
# window over the pairs would number every stored row (a year of history) to keep 100 per pair.
_WANT = ("WITH want(coin, vs) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
         "FROM json_each(:pairs))")
_LAST_N_MANY = f"""{_WANT}
SELECT {', '.join('o.' + c for c in _COLUMNS.split(', '))}
FROM want JOIN observations AS o ON o.coin = want.coin AND o.vs_currency = want.vs AND o.source = 'poll'
AND o.observed_at >= coalesce((SELECT observed_at FROM observations WHERE coin = want.coin AND vs_currency = want.vs
                               AND source = 'poll' ORDER BY observed_at DESC LIMIT 1 OFFSET :skip), 0)
ORDER BY o.coin, o.vs_currency, o.observed_at DESC
"""
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
            o.market_cap, o.volume_24h, o.change_24h, o.source)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, timezone.utc).replace(microsecond=(ms % 1000) * 1000)


def _from_row(row: tuple) -> Observation:
    coin, vs, observed, fetched, price, cap, vol, change, source = row
    return Observation(coin, vs, price, cap, vol, change,
                       datetime.fromtimestamp(observed, timezone.utc), _from_ms(fetched), source)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an existing table up to _SCHEMA (idempotent; a table not there yet is left to ensure_schema). Run at
    every open, so a web started on an old file reads it before anyone ran init-storage."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(observations)")}
    if columns and "source" not in columns:
        try:
            conn.execute(_MIGRATE_SOURCE)
        except sqlite3.OperationalError as exc:  # another process added it a moment ago
            if "duplicate column" not in str(exc):
                raise


# Primary result codes (sqlite3 exceptions carry the extended one; its low byte is the primary).
_CAUSES = {8: "the database is read-only (is DATA_DIR writable?)", 13: "the disk is full",
           11: "the database file is corrupt", 26: "the database file is not a SQLite database (overwritten?)",
           10: "disk I/O error"}


def _cause(exc: sqlite3.Error) -> str:
    code = getattr(exc, "sqlite_errorcode", None)
    cause = _CAUSES.get(code & 0xFF) if isinstance(code, int) else None
    return f"{cause} ({exc})" if cause else str(exc)


def _stale(exc: sqlite3.Error) -> bool:
    """Errors after which this connection must not be reused: a connection opened read-only stays read-only, and
    one on a corrupt or replaced file keeps answering from its own state."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (8, 10, 11, 26)


class SqlitePriceRepository:
    """Price store in one SQLite file. Thread- and fork-safe: a connection per thread, opened in the process using it.

    A busy timeout absorbs short write locks from other processes; past it, operations raise StorageUnavailable.
    Faults under a running process are reported with their cause, never carried on silently: the file deleted or
    replaced (its inode no longer the one opened; the next call reopens, recreating the schema if the file is
    gone), a corrupt file (quick_check on open), read-only or I/O errors (the connection is dropped and reopened),
    a full disk. A batch counts as stored only once a fresh connection reads it back.
    """

    def __init__(self, path: Path | str, busy_timeout_seconds: float = 10.0) -> None:
        # Absolute: the read-back after a write opens the file by URI, and DATA_DIR's default ("data") is relative.
        self.path = Path(path).absolute()
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            if self._file_id() == self._local.file_id:
                return conn
            # Writes would go on into an unlinked (or replaced) file that nobody else can read.
            self._drop()
            raise StorageUnavailable("the SQLite database file was deleted or replaced while in use; "
                                     "its history is no longer reachable, reopening")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_seconds, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {check}")
                if created:  # deleted under us, or never created: a reader must find a table, not an error
                    conn.executescript(_SCHEMA)
                else:
                    _migrate(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open the SQLite database: {_cause(exc)}") from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot open the SQLite database: {exc.strerror}") from exc
        self._local.conn, self._local.pid, self._local.file_id = conn, os.getpid(), self._file_id()
        return conn

    def _failed(self, what: str, exc: sqlite3.Error) -> StorageUnavailable:
        if _stale(exc):
            self._drop()
        return StorageUnavailable(f"SQLite {what} failed: {_cause(exc)}")

    def _query(self, sql: str, args: tuple | dict = ()) -> list[tuple]:
        conn = self._conn()
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:  # locked, missing table, corrupt file
            raise self._failed("read", exc) from exc

    def ensure_schema(self) -> None:
        conn = self._conn()
        try:
            conn.executescript(_SCHEMA)
            _migrate(conn)
        except sqlite3.Error as exc:
            raise self._failed("schema creation", exc) from exc

    def add_batch(self, observations: Sequence[Observation]) -> int:
        """One transaction: all rows or none. Existing keys are skipped (and a key repeated in the batch is stored
        once, as first given), so a replayed run adds nothing. Returns only after a fresh connection (as another
        process would open one) read every row back; raises StorageUnavailable otherwise."""
        conn = self._conn()
        rows = [_to_row(o) for o in observations]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(_INSERT, rows)
                added = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite already rolled back on e.g. a full disk
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._failed("write", exc) from exc
        self._read_back(rows)
        return added

    def _read_back(self, rows: list[tuple]) -> None:
        # The writing connection may keep "succeeding" on a file that others cannot read (overwritten in place:
        # WAL commits never touch the main file).
        keys = sorted({row[:3] for row in rows})
        try:
            fresh = sqlite3.connect(self.path.as_uri() + "?mode=ro", uri=True, timeout=self.busy_timeout_seconds)
            try:
                found = sum(fresh.execute("SELECT count(*) FROM observations WHERE coin = ? AND vs_currency = ? "
                                          "AND observed_at = ?", key).fetchone()[0] for key in keys)
            finally:
                fresh.close()
        except sqlite3.Error as exc:
            self._drop()
            raise StorageUnavailable(f"SQLite batch written but not readable back: {_cause(exc)}") from exc
        if found != len(keys):
            self._drop()
            raise StorageUnavailable(f"SQLite batch written but only {found} of {len(keys)} rows read back")

    def latest(self, coin: str, vs_currency: str) -> Observation | None:
        rows = self.last_n(coin, vs_currency, 1)
        return rows[0] if rows else None

    def last_n(self, coin: str, vs_currency: str, n: int) -> list[Observation]:
        if n <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        return [_from_row(r) for r in self._query(_LAST_N, (coin, vs_currency, n))]

    def latest_many(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Observation]:
        return {pair: rows[0] for pair, rows in self.last_n_many(pairs, 1).items()}

    def last_n_many(self, pairs: Sequence[tuple[str, str]], n: int) -> dict[tuple[str, str], list[Observation]]:
        if n <= 0 or not pairs:
            return {}
        rows = self._query(_LAST_N_MANY, {"pairs": json.dumps([list(p) for p in set(pairs)]), "skip": n - 1})
        out: dict[tuple[str, str], list[Observation]] = {}
        # Records of one update share their times (fetched_at always, observed_at often): each distinct time is
        # made into a datetime once, which was most of the cost of 300,000 rows.
        observed: dict[int, datetime] = {}
        fetched: dict[int, datetime] = {}
        for coin, vs, obs_s, fetch_ms, price, cap, vol, change, source in rows:
            at = observed.get(obs_s)
            if at is None:
                at = observed[obs_s] = datetime.fromtimestamp(obs_s, timezone.utc)
            got = fetched.get(fetch_ms)
            if got is None:
                got = fetched[fetch_ms] = _from_ms(fetch_ms)
            out.setdefault((coin, vs), []).append(Observation(coin, vs, price, cap, vol, change, at, got, source))
        return out

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
        self._drop()

    def ohlc(self, coin: str, vs_currency: str, start: datetime, end: datetime,
             bucket_seconds: int) -> list[OhlcBucket]:
        """Per-bucket aggregates, grouped by SQLite (see _OHLC); bounds as in between()."""
        rows = self._query(_OHLC, self._ohlc_args(coin, vs_currency, start, end, bucket_seconds))
        return [OhlcBucket(datetime.fromtimestamp(t, timezone.utc), o, h, lo, c, n, cap, vol)
                for t, o, h, lo, c, n, cap, vol in rows]

    @staticmethod
    def _ohlc_args(coin: str, vs_currency: str, start: datetime, end: datetime, bucket_seconds: int) -> dict:
        return {"coin": coin, "vs": vs_currency, "lo": int(-(-start.timestamp() // 1)), "hi": end.timestamp(),
                "width": int(bucket_seconds)}
