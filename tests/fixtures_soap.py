"""Fixtures for the soap side (owned by that area)."""
