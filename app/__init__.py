"""Crypto Stats Platform: shared code. Importing it starts nothing and connects to nothing."""
