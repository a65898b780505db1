"""DVC as Prefect tasks: version the raw data, ask which stages are stale, record what ran."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from pixelscope.config import Params
from pixelscope.steps import version_step
from pixelscope.versioning import commit_stages, stale_stages


@task(name="version-raw-data", retries=2, retry_delay_seconds=[2, 8])
def version_raw_data_task(params: Params, project: Path) -> dict:
    """dvc add + push (retried with backoff: remotes are I/O)."""
    v = version_step(params, project)
    get_run_logger().info("raw data %s: version %s (%s files), pushed %s to remote %s",
                          v["path"], v["md5"], v["files"], v["pushed"], v["remote"])
    return v


@task(name="stage-is-stale")
def stage_is_stale_task(stage: str, project: Path) -> bool:
    return bool(stale_stages([stage], project))


@task(name="record-stage", retries=2, retry_delay_seconds=[1, 4])
def record_stage_task(stage: str, project: Path) -> None:
    """Write the stage's deps/params/outs hashes to dvc.lock, so `dvc status` agrees with this run."""
    commit_stages([stage], project)
