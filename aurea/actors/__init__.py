"""Aurea's actors: each owns its state and handles one message at a time."""
