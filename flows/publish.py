"""Flow: manifest + profile -> the results bundle (reports/publish)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.common import project_params
from tasks.publish import publish_task


@flow(name="publish")
def publish_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write summaries, versions, timings and the profile for the dashboard."""
    params = project_params(project, overrides)
    return publish_task(params, Path(project).resolve())
