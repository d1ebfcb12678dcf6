"""Where the project's contracts live: the XSDs and WSDLs (schemas/), the national mappings and
reference tables (mappings/) and the Airflow DAGs (dags/), all relative to the checkout."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
MAPPINGS_DIR = PROJECT_ROOT / "mappings"
DAGS_DIR = PROJECT_ROOT / "dags"
