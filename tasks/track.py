"""DVC bookkeeping as Prefect tasks: which stages are stale, and recording what ran."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from pixelscope.track.repo import commit_stages, stale_stages


@task(name="stage-is-stale")
def stage_is_stale_task(stage: str, project: Path) -> bool:
    return bool(stale_stages([stage], project))


@task(name="record-stage")
def record_stage_task(stage: str, project: Path) -> None:
    """Write the stage's deps/params/outs hashes to dvc.lock, so `dvc status` agrees with this run."""
    commit_stages([stage], project)
