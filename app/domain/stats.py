"""Price statistics (pure functions)."""
from __future__ import annotations

import statistics
from typing import Sequence

# The inherited contract: deviation over the last 100 records stored for a coin.
DEVIATION_WINDOW = 100


def population_std(prices: Sequence[float]) -> float:
    """Population standard deviation of `prices`, rounded to 2 decimals.

    statistics.pstdev sums exactly (it works on fractions), so prices near 1e5 with a tiny spread neither lose
    their variance to cancellation nor come out negative, as the naive E[x²]−E[x]² does. One price gives 0.
    Raises ValueError on an empty sequence.
    """
    if not prices:
        raise ValueError("population_std needs at least one price")
    return round(statistics.pstdev(prices), 2)
