"""Upstream price sources (CoinGecko)."""
