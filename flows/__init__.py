"""Prefect flows: one per step, and `pipeline` that runs them all (see flows/pipeline.py)."""

from tasks import settings as _settings  # noqa: F401  (project Prefect settings before prefect loads)
