"""What the port leaves to each store and services still rely on: an unreachable MongoDB fails fast and says so,
the database comes from the URI, a MongoDB write racing another writer counts only its own records, and SQLite
refuses a batch with a record it cannot store, whole."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from app.domain.errors import StorageUnavailable
from app.domain.model import Observation
from app.storage.mongo import DEFAULT_DATABASE, MongoPriceRepository
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import T0, obs

# Nothing listens on port 1 of the loopback: connections are refused at once, as when MongoDB is down.
DOWN_URI = "mongodb://127.0.0.1:1/cryptostats_down"


@pytest.mark.parametrize("operation", ["ping", "ensure_schema", "add_batch", "last_n", "count"])
def test_mongodb_down_raises_storage_unavailable_within_the_selection_timeout(operation):
    repo = MongoPriceRepository(DOWN_URI, server_selection_timeout_ms=300)
    calls = {"ping": repo.ping, "ensure_schema": repo.ensure_schema, "count": repo.count,
             "add_batch": lambda: repo.add_batch([obs("bitcoin", 1.0)]),
             "last_n": lambda: repo.last_n("bitcoin", "usd", 5)}
    started = time.monotonic()

    with pytest.raises(StorageUnavailable) as caught:
        calls[operation]()

    # A guard against hanging (the driver's default is 30 s of server selection), not a speed target.
    assert time.monotonic() - started < 10
    assert "MongoDB" in caught.value.message and "ServerSelectionTimeoutError" in caught.value.message
    assert "127.0.0.1:1" in caught.value.message
    repo.close()


def test_mongodb_database_comes_from_the_uri_path():
    assert MongoPriceRepository("mongodb://127.0.0.1:1/prices?retryWrites=true").database_name == "prices"


def test_mongodb_database_defaults_to_cryptostats():
    assert MongoPriceRepository("mongodb://127.0.0.1:1/").database_name == DEFAULT_DATABASE == "cryptostats"


def test_sqlite_refuses_a_batch_with_a_missing_price_whole(tmp_path):
    # `INSERT OR IGNORE` would skip the NULL row silently and store the rest; only an existing key may be skipped.
    repo = SqlitePriceRepository(tmp_path / "prices.db")
    repo.ensure_schema()
    broken = Observation("bitcoin", "usd", None, None, None, None, T0, T0)  # type: ignore[arg-type]

    with pytest.raises(StorageUnavailable, match="NOT NULL"):
        repo.add_batch([obs("bitcoin", 1.0, T0.replace(minute=1)), broken, obs("bitcoin", 2.0, T0.replace(minute=2))])

    assert repo.count() == 0
    repo.close()


def test_mongodb_insert_racing_another_writer_counts_only_its_own_records(mongo_backend):
    rival = mongo_backend.repo
    batch = [obs("bitcoin", 100.0 + i, T0 + timedelta(minutes=i)) for i in range(5)]
    repo = MongoPriceRepository(rival.uri, client_factory=rival._factory)
    rival.add_batch([batch[2]])  # another worker stored one of these records first

    assert repo.add_batch(batch) == 4
    assert rival.count() == 5
    assert rival.last_n("bitcoin", "usd", 10) == batch[::-1]
    repo.close()


def test_sqlite_adds_the_source_column_to_a_database_made_before_it(tmp_path):
    """An existing database keeps its records, now read as polled, and takes backfilled ones."""
    import sqlite3
    from datetime import timedelta

    import dataclasses

    from app.storage.sqlite import SqlitePriceRepository
    from tests.fakes import T0, obs

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("""CREATE TABLE observations (coin TEXT NOT NULL, vs_currency TEXT NOT NULL,
        observed_at INTEGER NOT NULL, fetched_at INTEGER NOT NULL, price REAL NOT NULL, market_cap REAL,
        volume_24h REAL, change_24h REAL, PRIMARY KEY (coin, vs_currency, observed_at)) WITHOUT ROWID;""")
    conn.execute("INSERT INTO observations VALUES ('bitcoin', 'usd', ?, ?, 40000, NULL, NULL, NULL)",
                 (int(T0.timestamp()), int(T0.timestamp()) * 1000))
    conn.commit()
    conn.close()
    repo = SqlitePriceRepository(path)

    assert repo.latest("bitcoin", "usd").source == "poll"
    repo.add_batch([dataclasses.replace(obs("bitcoin", 1.0, T0 + timedelta(hours=1)), source="backfill")])
    assert repo.latest("bitcoin", "usd").price == 40000
    assert repo.count() == 2
