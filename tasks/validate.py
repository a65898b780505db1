"""Validate as a Prefect task: suites over the manifest and the drift table (Great Expectations)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from pixelscope.config import Params
from pixelscope.steps import validate_step


@task(name="validate")
def validate_task(params: Params, project: Path) -> dict:
    """Raises (the flow fails, packaging and publishing do not run) when the suites fail and
    validate.on_failure is `fail`; with `warn` the failures are logged and the run goes on."""
    r = validate_step(params, project)
    log = get_run_logger()
    for f in r["failed"]:
        log.warning("validation failed: %s", f)
    log.info("validate: %s (%d failed); results in %s", "passed" if r["success"] else "FAILED", len(r["failed"]),
             params.validate_.results)
    return {k: r[k] for k in ("success", "failed", "drifted", "reference")}
