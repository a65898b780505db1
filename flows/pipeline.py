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

from flows.common import apply_overrides, task_runner
from flows.steps import run_stage
from pixelscope.config import Params
from pixelscope.pipeline.stages import DVC_STAGES, stage
from tasks.steps import retry_options
from tasks.track import record_stage_task, stage_is_stale_task


def run_pipeline(params: Params, project: Path, version_data: bool = True) -> dict[str, Any]:
    log = get_run_logger()
    result: dict[str, Any] = {"ran": [], "skipped": [], "seconds": {}}
    if version_data:
        result["version"] = run_stage(stage("version"), params, project)
    for s in DVC_STAGES:
        if not stage_is_stale_task.with_options(**retry_options(params))(s.name, project):
            log.info("stage %s is up to date: skipped", s.name)
            result["skipped"].append(s.name)
            continue
        t0 = time.perf_counter()
        result[s.name] = run_stage(s, params, project)
        record_stage_task.with_options(**retry_options(params))(s.name, project)
        result["seconds"][s.name] = round(time.perf_counter() - t0, 2)
        result["ran"].append(s.name)
    log.info("pipeline: ran %s, skipped %s", result["ran"] or "nothing", result["skipped"] or "nothing")
    return result


@flow(name="pipeline")
def pipeline(project: str = ".", overrides: dict[str, Any] | None = None, version_data: bool = True) -> dict[str, Any]:
    """Version the raw data, then run each stage of dvc.yaml in order (ingest -> ... -> publish),
    skipping the ones DVC reports up to date."""
    params = apply_overrides(project, overrides)
    return run_pipeline(params, Path(project).resolve(), version_data)


def main(argv: list[str]) -> None:
    from pixelscope.config import dotted_overrides, load_params
    from pixelscope.errors import ConfigError, PixelscopeError

    try:
        overrides = dotted_overrides(_sets(argv))
        params = load_params(Path("params.yaml"), overrides or None)  # read only: the flow writes them, once
        pipeline.with_options(task_runner=task_runner(params))(".", overrides or None)
    except PixelscopeError as e:
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
