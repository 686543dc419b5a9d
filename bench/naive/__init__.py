"""Baseline (b): the naive Channels way, served by daphne as its own small ASGI app."""
