"""Any stage's step as one Prefect task: retries for steps whose failures may be transient,
the step's own summary in the run log. The step does the work, checks and metrics."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task

from pixelscope.config import Params
from pixelscope.pipeline.stages import Stage
from pixelscope.pipeline.steps import StepResult


def retry_options(params: Params, retry: bool = True) -> dict[str, Any]:
    """pipeline.retries with backoff (delay, 4 x delay, ...), or none."""
    n = params.pipeline.retries if retry else 0
    return {"retries": n, "retry_delay_seconds": [params.pipeline.retry_delay_s * 4 ** i for i in range(n)] or 0}


def log_result(result: StepResult) -> dict[str, Any]:
    log = get_run_logger()
    log.info("%s", result.summary)
    for note in result.notes:
        (log.warning if note.startswith("failed") else log.info)("%s: %s", result.stage, note)
    return result.to_dict()


@cache
def step_task(stage: Stage) -> Task:
    """The task that runs `stage`'s step once (its work inside may already be parallel)."""

    def run(params: Params, project: Path) -> dict[str, Any]:
        return log_result(stage.run(params, project))

    run.__doc__ = stage.doc
    return task(name=stage.name)(run)


def run_step(stage: Stage, params: Params, project: Path) -> dict[str, Any]:
    return step_task(stage).with_options(**retry_options(params, stage.retry))(params, project)
