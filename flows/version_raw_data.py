"""Flow: version the raw data with DVC (dvc add, push to the default remote)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.common import project_params
from tasks.versioning import version_raw_data_task


@flow(name="version-raw-data")
def version_raw_data_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Track the raw folder with DVC and push it; returns the dataset version."""
    params = project_params(project, overrides)
    return version_raw_data_task(params, Path(project).resolve())
