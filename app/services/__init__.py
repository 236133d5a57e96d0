"""Use cases: polling CoinGecko into the store, and reporting stats from memory. Pure Python over the ports."""
