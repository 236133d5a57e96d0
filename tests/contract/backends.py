"""The stores the contract suite and `bench_store` run against, and the price history they are fed.

Each backend builds a fresh, empty store with its schema, and knows the few things the port cannot say: how to make
a write fail partway (a store-side failure, not a mock), what its schema looks like, how much history it holds in
reasonable time, and how to show that an index serves last_n.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.domain.errors import StorageUnavailable
from app.domain.model import Observation
from tests.memory_store import InMemoryPriceRepository
from app.storage.mongo import COLLECTION, KEY_INDEX, MongoPriceRepository
from app.storage import sqlite as sqlite_store
from app.storage.sqlite import SqlitePriceRepository

MONGODB_TEST_URI = "MONGODB_TEST_URI"
NO_SERVER_REASON = (f"{MONGODB_TEST_URI} is not set: no MongoDB-wire server to run against "
                    "(.ci/run starts FerretDB and sets it; or point it at any MongoDB)")
POISON = "poison"  # the coin a broken store refuses (see break_writes_of_poison)

HISTORY_END = datetime(2026, 11, 25, tzinfo=timezone.utc)
STEP = timedelta(minutes=1)


def sqlite_plan(repo: SqlitePriceRepository, query: str, args) -> list[str]:
    """SQLite's plan for one of the store's queries, one line per step (to prove which index serves it)."""
    return [row[3] for row in repo._query("EXPLAIN QUERY PLAN " + query, args)]


def history(coin: str, n: int, *, vs: str = "usd", end: datetime = HISTORY_END) -> list[Observation]:
    """`n` records a minute apart, oldest first, the newest one minute before `end`; fetched 1.5 s after each."""
    start = end - n * STEP
    return [Observation(coin, vs, 50_000 + i / 100, 9.6e11 + i, 2.5e10, -1.25 if i % 2 else None,
                        start + i * STEP, start + i * STEP + timedelta(milliseconds=1500))
            for i in range(n)]


def fresh_database_uri(base: str) -> tuple[str, str]:
    """`base` with a database of its own in the URI path (host list, credentials and options kept), and its name."""
    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    return urlunsplit(urlsplit(base)._replace(path="/" + name)), name


def _find_stages(plan: Any, stage: str) -> list[dict]:
    """Every stage named `stage` in an explain plan tree (inputStage/inputStages/queryPlan nest differently by
    server version), as dicts."""
    found: list[dict] = []
    if isinstance(plan, dict):
        if plan.get("stage") == stage:
            found.append(plan)
        for value in plan.values():
            found += _find_stages(value, stage)
    elif isinstance(plan, list):
        for value in plan:
            found += _find_stages(value, stage)
    return found


class Backend:
    """A store under test. `make()` returns a fresh, empty store with its schema; `cleanup()` removes it."""

    name = "?"
    history_size = 100_000
    history_batch = 10_000
    # A reason when the store cannot be made to fail partway through a batch; None when break_writes_of_poison can.
    no_partial_failure: str | None = None
    # The exception add_batch raises for a batch that contains the poison record.
    poison_error: type[BaseException] = StorageUnavailable

    def __init__(self) -> None:
        self.repo: Any = None

    def make(self):
        raise NotImplementedError

    def cleanup(self) -> None:
        if self.repo is not None:
            self.repo.close()

    def schema(self) -> Any:
        """What ensure_schema leaves behind, comparable with ==."""
        return None

    def poison(self, at: datetime) -> Observation:
        """A record the broken store refuses when it gets to it (after the records before it in the batch)."""
        return Observation(POISON, "usd", 1.0, None, None, None, at, at)

    def break_writes_of_poison(self) -> None:
        """Make the store refuse the poison record, from the inside."""
        raise NotImplementedError

    def last_n_plan_uses_key_index(self, coin: str, vs: str) -> str:
        """Assert that last_n is served by the key index; returns what was checked, for the test's message."""
        return "no query planner: nothing to check"


class MemoryBackend(Backend):
    name = "memory"
    # A record whose key cannot be hashed fails partway through the batch, on the Python side: the honest
    # partial failure of a dict-backed store.
    poison_error = TypeError

    def make(self):
        self.repo = InMemoryPriceRepository()
        self.repo.ensure_schema()
        return self.repo

    def poison(self, at: datetime) -> Observation:
        return Observation([POISON], "usd", 1.0, None, None, None, at, at)  # type: ignore[arg-type]

    def break_writes_of_poison(self) -> None:
        pass  # the poison record itself is unkeyable


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.path = Path(directory) / "contract.db"

    def make(self):
        self.repo = SqlitePriceRepository(self.path)
        self.repo.ensure_schema()
        return self.repo

    def _connect(self):
        return contextlib.closing(sqlite3.connect(self.path, isolation_level=None))

    def schema(self) -> Any:
        with self._connect() as conn:
            return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()

    def break_writes_of_poison(self) -> None:
        # A trigger aborts the statement when it reaches the poison row, so the rows before it in the batch have
        # been inserted inside the transaction: only the rollback can make them go away.
        with self._connect() as conn:
            conn.execute(f"CREATE TRIGGER refuse_poison BEFORE INSERT ON observations WHEN NEW.coin = '{POISON}' "
                         "BEGIN SELECT RAISE(ABORT, 'poison record refused'); END")

    def last_n_plan_uses_key_index(self, coin: str, vs: str) -> str:
        plan = sqlite_plan(self.repo, sqlite_store._LAST_N, (coin, vs, 100))
        assert any(step.startswith("SEARCH") and "USING PRIMARY KEY" in step for step in plan), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan  # the key order serves ORDER BY, no sort
        return " / ".join(plan)


class MongomockBackend(Backend):
    name = "mongomock"
    # mongomock checks a unique index by scanning every stored document on each insert (quadratic): 2,000
    # records take 20 s. The code paths are the same at any size; the 100k proof is the real server's.
    history_size = 500
    history_batch = 100
    no_partial_failure = ("mongomock, like a standalone server, has no multi-document transactions: a batch cut "
                          "short converges on retry instead (test_retry_after_a_partial_write_converges)")

    def make(self):
        import mongomock
        from mongomock.store import ServerStore

        # Clients made by the factory share one fake server, so close() and reuse behave as a reconnect would.
        server = ServerStore()
        uri = "mongodb://mongomock.invalid/cryptostats_contract"
        self.repo = MongoPriceRepository(
            uri, client_factory=lambda: mongomock.MongoClient(uri, tz_aware=True, tzinfo=timezone.utc, _store=server))
        self.repo.ensure_schema()
        return self.repo

    def schema(self) -> Any:
        return [dict(ix) for ix in self.repo.collection.list_indexes()]

    def last_n_plan_uses_key_index(self, coin: str, vs: str) -> str:
        assert KEY_INDEX in [ix["name"] for ix in self.repo.collection.list_indexes()]
        return "mongomock has no query planner: only the key index's presence is checked"


class MongoServerBackend(Backend):
    """A real MongoDB-wire server (MongoDB, Atlas, or FerretDB in CI); every store gets a database of its own."""

    name = "mongodb"
    # FerretDB scans the whole collection for each batch's look-up of stored keys (MongoPriceRepository.add_batch):
    # fewer, larger batches keep the 100k write to ~20 s there.
    history_batch = 25_000

    def __init__(self, base_uri: str) -> None:
        super().__init__()
        self.base_uri = base_uri
        self.database: str | None = None

    def make(self):
        uri, self.database = fresh_database_uri(self.base_uri)
        self.repo = MongoPriceRepository(uri, server_selection_timeout_ms=5000, socket_timeout_ms=60_000)
        self.repo.ensure_schema()
        self.no_partial_failure = (
            "MongoDB batches are written without a transaction (none could be tested here: no replica set): a "
            "batch cut short converges on retry instead (test_retry_after_a_partial_write_converges)")
        return self.repo

    def cleanup(self) -> None:
        if self.repo is not None and self.database is not None:
            with contextlib.suppress(Exception):  # the server may be gone; the test has its own verdict
                self.repo.client.drop_database(self.database)
        super().cleanup()

    def build_info(self) -> dict:
        return self.repo.client.admin.command("buildInfo")

    def ferretdb_version(self) -> str | None:
        return self.build_info().get("ferretdbVersion")

    def schema(self) -> Any:
        return [dict(ix) for ix in self.repo.collection.list_indexes()]

    def break_writes_of_poison(self) -> None:
        # A validator refuses the poison document on the server, after the documents before it were written.
        self.repo.collection.database.command("collMod", COLLECTION, validator={"coin": {"$ne": POISON}})

    def last_n_plan_uses_key_index(self, coin: str, vs: str) -> str:
        explain = self.repo._last_n_cursor(coin, vs, 100).explain()  # the server's plan for last_n
        ferretdb = explain.get("serverInfo", {}).get("ferretdbVersion")
        if ferretdb:
            # KNOWN LIMITATION (docs/mongodb.md): FerretDB 1.x on SQLite pushes down only `_id` equality filters, so
            # its plan for last_n is a SCAN of the collection's table, index or not. What can honestly be
            # checked: the unique key index exists (it also enforces the key), and FerretDB reports whether the
            # filter was pushed down. Real MongoDB gets the IXSCAN check below.
            assert KEY_INDEX in [ix["name"] for ix in self.repo.collection.list_indexes()]
            assert isinstance(explain.get("filterPushdown"), bool), explain
            return f"FerretDB {ferretdb}: index present, filterPushdown={explain['filterPushdown']}, " \
                   f"plan {explain.get('queryPlanner')}"
        plan = explain["queryPlanner"]["winningPlan"]
        scans = [s for stage in ("IXSCAN", "EXPRESS_IXSCAN") for s in _find_stages(plan, stage)
                 if s.get("indexName") == KEY_INDEX]
        assert scans, plan
        return f"IXSCAN {KEY_INDEX}"


def sqlite_in_temp_dir() -> tuple[SqliteBackend, tempfile.TemporaryDirectory]:
    directory = tempfile.TemporaryDirectory(prefix="cs-bench-")
    return SqliteBackend(Path(directory.name)), directory


def real_server_uri() -> str | None:
    return os.environ.get(MONGODB_TEST_URI) or None
