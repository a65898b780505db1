"""Flow: expectation suites over the manifest and the drift table against the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.common import project_params
from tasks.validate import validate_task


@flow(name="validate")
def validate_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the quality and drift suites; fail (validate.on_failure: fail) or warn."""
    params = project_params(project, overrides)
    return validate_task(params, Path(project).resolve())
