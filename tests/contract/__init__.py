"""Contract tests of the PriceRepository port: one suite, run against every store (see conftest.py)."""
