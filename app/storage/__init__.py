"""Price stores. `make_repository(settings)` is the only place that picks one."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import Settings
    from app.ports import CoinRegistry, PriceRepository


def make_repository(settings: "Settings") -> "PriceRepository":
    """MongoDB when MONGODB_URI is set, else SQLite under DATA_DIR. Connects lazily (after fork)."""
    if settings.mongodb_uri:
        from app.storage.mongo import MongoPriceRepository

        return MongoPriceRepository(settings.mongodb_uri)
    from app.storage.sqlite import SqlitePriceRepository

    return SqlitePriceRepository(settings.sqlite_path)


def make_coin_registry(repo: "PriceRepository") -> "CoinRegistry":
    """The coin tables (catalogue, tracked set) in the same store as `repo`, over its connection."""
    from app.storage.registry import MongoCoinRegistry, SqliteCoinRegistry
    from app.storage.mongo import MongoPriceRepository
    from app.storage.sqlite import SqlitePriceRepository

    if isinstance(repo, SqlitePriceRepository):
        return SqliteCoinRegistry(repo)
    if isinstance(repo, MongoPriceRepository):
        return MongoCoinRegistry(repo)
    # Any other store (the tests' in-memory one) brings its own.
    return repo.coin_registry()  # type: ignore[attr-defined]
