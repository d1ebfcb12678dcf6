"""Fixtures for the mqtt side (owned by that area)."""
