"""Fixtures for the airflow side (owned by that area)."""
