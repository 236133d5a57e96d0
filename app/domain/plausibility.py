"""What a plausible price record is: finite figures within sane bounds and a time stamp the source could mean."""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from app.domain.model import Observation

# Bounds wide enough for every real CoinGecko figure in every vs-currency it offers, narrow enough that the stats
# over 100 records stay finite (a price of 1e308 squared is infinite; 5e-324 is a denormal, not a price). The
# smallest real prices are meme tokens near 1e-13 USD, i.e. ~1e-18 in btc; the largest a bitcoin in sats (1e8)
# or in VND/IDR (~2e9). Market caps and volumes of tokens with absurd supplies reach 1e16 in the weakest currency.
MIN_PRICE = 1e-18
MAX_PRICE = 1e15
MAX_AMOUNT = 1e20  # market cap, 24 h volume
MAX_CHANGE_PERCENT = 1e7  # a 100,000-fold rise in 24 h; the floor, -100 %, is the schema's
# CoinGecko stamps last_updated_at with its own clock, never after its now. Two minutes allow for an unsynced
# worker clock, and a forged stamp in the future outranks real records for two minutes at most.
MAX_FUTURE = timedelta(minutes=2)
# A price CoinGecko last refreshed more than a day before we asked is a frozen value of a coin it no longer prices
# (coingecko.md §5: matic-network), not a current price.
MAX_AGE = timedelta(days=1)
# CoinGecko's /simple/price cache lives 60 s (coingecko.md §4); an edge serving an older copy than the last we stored
# is possible, one more than ten cache lifetimes older is not a copy of the same series (1970 is not).
MAX_BACKWARDS = timedelta(minutes=10)


def implausible(obs: Observation, requested_at: datetime, previous: Observation | None) -> str | None:
    """Why `obs` cannot be a real CoinGecko price, or None when it can.

    `requested_at` is when we asked (our clock); `previous` is the newest record already stored for the same coin
    and currency, if any. Pure; raises nothing.
    """
    if not _finite_within(obs.price, MIN_PRICE, MAX_PRICE):
        return f"price {obs.price!r} is outside {MIN_PRICE:g}..{MAX_PRICE:g}"
    for name, value, low, high in (("market_cap", obs.market_cap, 0.0, MAX_AMOUNT),
                                   ("volume_24h", obs.volume_24h, 0.0, MAX_AMOUNT),
                                   ("change_24h", obs.change_24h, -100.0, MAX_CHANGE_PERCENT)):
        if value is not None and not _finite_within(value, low, high):
            return f"{name} {value!r} is outside {low:g}..{high:g}"
    ahead = (obs.observed_at - requested_at).total_seconds()
    if ahead > MAX_FUTURE.total_seconds():
        return f"last_updated_at is {ahead:.0f} s after we asked (more than {MAX_FUTURE.total_seconds():.0f} s)"
    if -ahead > MAX_AGE.total_seconds():
        return f"last_updated_at is {-ahead / 3600:.0f} h before we asked (a frozen value, not a current price)"
    if previous is not None:
        behind = (previous.observed_at - obs.observed_at).total_seconds()
        if behind > MAX_BACKWARDS.total_seconds():
            return (f"last_updated_at is {behind:.0f} s older than the record already stored "
                    f"(more than {MAX_BACKWARDS.total_seconds():.0f} s)")
    return None


def _finite_within(value: float, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high
