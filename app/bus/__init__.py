"""Adapters of the UpdateBus and Claims ports (app/ports.py); app/bootstrap.py picks them."""
