"""The pipeline flow: version the raw data, then run each stale stage, as `dvc repro` would.

    python -m flows.pipeline                 # ephemeral Prefect server, this project
    python -m flows.pipeline --set ingest.workers=1 --set pipeline.runner=dask

DVC decides what is stale (deps, params, outs of dvc.yaml); each stage that runs is then
recorded in dvc.lock, so afterwards `dvc status` is clean and `dvc repro` does nothing,
and a second pipeline run with unchanged inputs does no work.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.common import project_params, task_runner
from flows.ingest import run_ingest
from flows.profiling import run_profile
from pixelscope.config import Params
from tasks.embed import embed_task, preprocess_task
from tasks.publish import publish_task
from tasks.validate import validate_task
from tasks.versioning import record_stage_task, stage_is_stale_task, version_raw_data_task

STAGES = {
    "ingest": run_ingest,
    "preprocess": lambda params, project: preprocess_task(params, project),
    "embed": lambda params, project: embed_task(params, project),
    "profile": run_profile,
    "validate": lambda params, project: validate_task(params, project),
    "publish": lambda params, project: publish_task(params, project),
}


def run_pipeline(params: Params, project: Path, version_data: bool = True) -> dict[str, Any]:
    log = get_run_logger()
    result: dict[str, Any] = {"ran": [], "skipped": [], "seconds": {}}
    if version_data:
        result["version"] = version_raw_data_task(params, project)
    for stage, run in STAGES.items():
        if not stage_is_stale_task(stage, project):
            log.info("stage %s is up to date: skipped", stage)
            result["skipped"].append(stage)
            continue
        t0 = time.perf_counter()
        result[stage] = run(params, project)
        record_stage_task(stage, project)
        result["seconds"][stage] = round(time.perf_counter() - t0, 2)
        result["ran"].append(stage)
    log.info("pipeline: ran %s, skipped %s", result["ran"] or "nothing", result["skipped"] or "nothing")
    return result


@flow(name="pipeline")
def pipeline(project: str = ".", overrides: dict[str, Any] | None = None, version_data: bool = True) -> dict[str, Any]:
    """Version the raw data, then ingest -> preprocess -> embed -> profile -> validate -> publish, skipping up-to-date stages."""
    params = project_params(project, overrides)
    return run_pipeline(params, Path(project).resolve(), version_data)


def main(argv: list[str]) -> None:
    from pixelscope.config import ConfigError, dotted_overrides
    from pixelscope.steps import StepError
    from pixelscope.versioning import VersioningError

    try:
        overrides = dotted_overrides(_sets(argv))
        params = project_params(".", overrides or None)
        pipeline.with_options(task_runner=task_runner(params))(".", overrides or None)
    except (ConfigError, StepError, VersioningError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ConfigError) else 1)


def _sets(argv: list[str]) -> list[str]:
    out, it = [], iter(argv)
    for a in it:
        if a == "--set":
            out.append(next(it, ""))
        elif a.startswith("--set="):
            out.append(a.split("=", 1)[1])
        else:
            raise SystemExit(f"usage: python -m flows.pipeline [--set key=value ...] (got {a!r})")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
