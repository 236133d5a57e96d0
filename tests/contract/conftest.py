"""The stores every contract test runs against: memory, SQLite (in tmp_path), mongomock, and a real MongoDB-wire
server when MONGODB_TEST_URI is set (each test in a database of its own, dropped afterwards); without it the real
server's cases skip and say why."""
from __future__ import annotations

import pytest

from tests.contract.backends import (NO_SERVER_REASON, Backend, MemoryBackend, MongomockBackend, MongoServerBackend,
                                     SqliteBackend, real_server_uri)

BACKENDS = ("memory", "sqlite", "mongomock", "mongodb")


def open_backend(name: str, tmp_path):
    """A fresh store of the named kind, cleaned up after the test; the real server's cases skip without one."""
    if name == "memory":
        store: Backend = MemoryBackend()
    elif name == "sqlite":
        store = SqliteBackend(tmp_path)
    elif name == "mongomock":
        store = MongomockBackend()
    else:
        uri = real_server_uri()
        if uri is None:
            pytest.skip(NO_SERVER_REASON)
        store = MongoServerBackend(uri)
    try:
        store.make()
        yield store
    finally:
        store.cleanup()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Backend:
    yield from open_backend(request.param, tmp_path)


@pytest.fixture(params=["mongomock", "mongodb"])
def mongo_backend(request, tmp_path) -> Backend:
    yield from open_backend(request.param, tmp_path)


@pytest.fixture
def repo(backend):
    """The backend's fresh store: what a contract test talks to, through the port only."""
    return backend.repo
