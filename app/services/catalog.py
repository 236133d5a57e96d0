"""Start-up check of COINS and VS_CURRENCIES against CoinGecko's catalogue: an unknown value would make every
update fail with "no valid price" and name nothing."""
from __future__ import annotations

import logging

from app.domain.errors import ConfigError, UpstreamError
from app.domain.model import TrackedCoins
from app.ports import CatalogSource

log = logging.getLogger(__name__)


def check_tracked(tracked: TrackedCoins, catalog: CatalogSource) -> None:
    """Raise ConfigError naming the variable and its first unknown values when CoinGecko knows them not.

    Coins are checked under the id they are fetched as (matic-network as polygon-ecosystem-token). When the
    catalogue cannot be had (CoinGecko unreachable, rate-limited, answering garbage) it logs one warning and
    returns: the platform must start offline, and the updates then say what is wrong.
    """
    try:
        ids, currencies = catalog.load()
    except UpstreamError as exc:
        log.warning("could not check COINS and VS_CURRENCIES against CoinGecko's lists: %s", exc.message)
        return
    unknown_coins = [c if tracked.source_id(c) == c else f"{c} (fetched as {tracked.source_id(c)})"
                     for c in tracked.public_ids if tracked.source_id(c) not in ids]
    if unknown_coins:
        raise ConfigError("COINS", f"{', '.join(unknown_coins)}: not a CoinGecko coin id (see GET /coins/list; "
                                   f"ids look like bitcoin, ethereum)")
    unknown_currencies = [c for c in tracked.vs_currencies if c not in currencies]
    if unknown_currencies:
        raise ConfigError("VS_CURRENCIES", f"{', '.join(unknown_currencies)}: not a currency CoinGecko supports "
                                           f"(see GET /simple/supported_vs_currencies; e.g. usd, eur)")
