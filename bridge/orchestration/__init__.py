"""Orchestration: how Airflow runs the bridge. `airflow_wiring` turns the operator's Airflow
Connections into Settings inside tasks; `standalone` starts and stops `airflow standalone`."""
