"""Tracking at run time: the tracked set persisted in the store (seeded from COINS), changed by the admin routes
and announced on `crypto-update`; and the listing of the tracked coins with their latest figures."""
from __future__ import annotations

import hmac
import logging
import re
from datetime import datetime
from typing import Any, Callable

from app.domain.coins import Catalog
from app.domain.errors import (AdminForbidden, AdminTokenMissing, BrokerUnavailable, InvalidBody, TrackingConflict, UnknownCoin)
from app.domain.model import TrackedCoins
from app.ports import CoinRegistry, UpdateBus
from app.services.catalog import StoredCatalog
from app.services.reporting import StatsView, coin_figures

log = logging.getLogger(__name__)

_COIN_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")  # CoinGecko's ids (as COINS accepts them)


def current_tracked(registry: CoinRegistry, initial: TrackedCoins) -> TrackedCoins:
    """The tracked coins as the store holds them, with `initial`'s currencies and aliases. When the store holds
    none yet, it is seeded with `initial`'s coins (COINS) first. One small read. Raises StorageUnavailable."""
    coins = registry.tracked_coins()
    if not coins:
        registry.seed_tracked(initial.public_ids)
        coins = registry.tracked_coins() or list(initial.public_ids)
    return initial.with_coins(coins)


def check_admin(configured: str | None, authorization: str | None) -> None:
    """Let an admin request through, or raise: AdminForbidden when ADMIN_TOKEN is not configured (no one may) or
    the token is wrong, AdminTokenMissing when no `Bearer` token was sent. Compared in constant time."""
    if not configured:
        raise AdminForbidden("admin routes are disabled: ADMIN_TOKEN is not configured on this server")
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AdminTokenMissing("this route needs the header 'Authorization: Bearer <ADMIN_TOKEN>'")
    if not hmac.compare_digest(token.strip().encode(), configured.encode()):
        raise AdminForbidden("the admin token is not valid")


def coin_id_from_body(body: Any) -> str:
    """The `id` of a JSON body {"id": "solana"}, lower-cased. Raises InvalidBody naming what is wrong."""
    if not isinstance(body, dict):
        raise InvalidBody('the body must be a JSON object such as {"id": "solana"}',
                          details={"expected": {"id": "a CoinGecko coin id"}})
    coin = body.get("id")
    if not isinstance(coin, str) or not _COIN_ID.match(coin.strip().lower()):
        raise InvalidBody("'id' must be a CoinGecko coin id (a string such as \"solana\")",
                          details={"field": "id", "expected": "string like bitcoin, ethereum"})
    return coin.strip().lower()


class CoinTracking:
    """Adds and removes tracked coins. `changed` is called after a change (the web refreshes its own view at
    once; the others learn of it from the event)."""

    def __init__(self, registry: CoinRegistry, catalog: StoredCatalog, bus: UpdateBus, initial: TrackedCoins,
                 clock: Callable[[], datetime], changed: Callable[[], object] = lambda: None) -> None:
        self.registry = registry
        self.catalog = catalog
        self.bus = bus
        self.initial = initial
        self.clock = clock
        self.changed = changed

    def track(self, coin: str) -> tuple[dict[str, Any], bool]:
        """Track `coin` (a CoinGecko id, checked against the cached /coins/list). Returns (its listing header,
        whether it was newly added). Raises UnknownCoin with the closest ids, the catalogue's UpstreamError when
        none can be had, StorageUnavailable. Idempotent."""
        catalog = self.catalog.get()
        source = self.initial.source_id(coin)
        if catalog.get(source) is None:
            raise UnknownCoin(f"coin {coin!r} is not a CoinGecko coin id; see GET /api/v1/search?q=",
                              details={"coin": coin, "candidates": catalog.closest(coin)})
        added = self.registry.track(coin)
        if added:
            self._announce("added", coin)
        return describe_coin(self.initial, catalog, coin), added

    def untrack(self, coin: str) -> None:
        """Stop tracking `coin` (its stored records stay). Raises UnknownCoin when it is not tracked,
        TrackingConflict for the last tracked coin (an update must fetch something), StorageUnavailable."""
        tracked = current_tracked(self.registry, self.initial)
        if coin not in tracked.public_ids:
            raise UnknownCoin(f"coin {coin!r} is not tracked; tracked coins: {', '.join(tracked.public_ids)}",
                              details={"coin": coin, "tracked": list(tracked.public_ids)})
        if len(tracked.public_ids) == 1:
            raise TrackingConflict(f"{coin} is the last tracked coin; track another one before removing it",
                                   details={"coin": coin})
        if self.registry.untrack(coin):
            self._announce("removed", coin)

    def _announce(self, action: str, coin: str) -> None:
        self.changed()
        try:
            coins = self.registry.tracked_coins()
            self.bus.publish({"event": "tracked", "action": action, "coin": coin, "coins": coins,
                              "at": self.clock().isoformat()})
        except BrokerUnavailable as exc:
            # Stored: the worker reads the set at each run; other web processes re-read it every
            # REFRESH_INTERVAL_SECONDS anyway.
            log.warning("coin %s %s but the change could not be announced: %s", coin, action, exc.message)


def describe_coin(tracked: TrackedCoins, catalog: Catalog | None, coin: str) -> dict[str, Any]:
    """id, symbol, name (of the CoinGecko id it is fetched as; None when the catalogue is not stored yet),
    aliases and currencies of a coin."""
    entry = catalog.get(tracked.source_id(coin)) if catalog is not None else None
    return {"id": coin, "symbol": entry.symbol if entry else None, "name": entry.name if entry else None,
            "aliases": tracked.aliases_of(coin), "currencies": list(tracked.vs_currencies)}


def coin_listing(view: StatsView, catalog: Catalog | None, coin: str, currency: str) -> dict[str, Any]:
    """One tracked coin's header (describe_coin) and its latest figures in `currency` from the web's memory; a
    coin without data has nulls and `error` saying why. Raises UnknownCoin / UnknownCurrency."""
    return {**coin_figures(view, coin, currency), **describe_coin(view.tracked, catalog, coin)}


def public_id(tracked: TrackedCoins, coin: str) -> str:
    """The tracked public id for a coin asked by its public id or the id it is fetched as. Raises UnknownCoin."""
    source = tracked.resolve(coin)
    if coin in tracked.public_ids:
        return coin
    return next(c for c in tracked.public_ids if tracked.source_id(c) == source)
