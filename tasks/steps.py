"""Any stage's step as one Prefect task, the step's own summary in the run log, and the one retry
rule of every task (`retry_options`). The step does the work, checks and metrics."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task

from pixelscope.config import Params
from pixelscope.errors import PixelscopeError
from pixelscope.pipeline.stages import Stage
from pixelscope.pipeline.steps import StepResult


def retry_options(params: Params) -> dict[str, Any]:
    """The one retry rule, for every task: pipeline.retries with backoff (delay, 4 x delay, ...), and
    only for failures that may be transient (I/O and the like). A PixelscopeError is an answer — bad
    input, a missing file, no reference, drift, a failed validation — and retrying gives it again."""
    n = params.pipeline.retries
    return {"retries": n, "retry_delay_seconds": [params.pipeline.retry_delay_s * 4 ** i for i in range(n)] or 0,
            "retry_condition_fn": transient}


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry anything but a PixelscopeError."""
    try:
        state.result()
    except PixelscopeError:
        return False
    except Exception:  # noqa: BLE001 - I/O and the like may pass
        return True
    return False


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
    result: dict[str, Any] = step_task(stage).with_options(**retry_options(params))(params, project)  # type: ignore[assignment]  # a sync task returns its value
    return result
