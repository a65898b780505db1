"""One flow per stage, each written out (what the `<flow>/pixelscope` deployments run). The sharded
stages map their parts over tasks (the core's plan / part / finish); the others run their step as
one task. A flow's description is its stage's doc in the stage table.

    from flows.steps import ingest_flow
    ingest_flow(project=".", overrides={"ingest": {"workers": 2}})
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, unmapped

from flows.common import apply_overrides
from pixelscope.config import Params
from pixelscope.ingest.step import close_shared_pools, finish_ingest, plan_ingest
from pixelscope.io.parallel import resolve_workers
from pixelscope.pipeline.stages import Stage, stage
from pixelscope.profile import Profile
from pixelscope.profile.step import finish_profile, plan_profile
from tasks.ingest import ingest_shard_task, shard_keys
from tasks.profiling import profile_part_task
from tasks.steps import log_result, retry_options, run_step


def run_ingest(params: Params, project: Path) -> dict[str, Any]:
    """Map shards over tasks (cached per shard), then write their rows, in order, into the manifest."""
    t0 = time.perf_counter()
    plan = plan_ingest(params, project)
    local = params.pipeline.runner == "local"
    futures = ingest_shard_task.with_options(**retry_options(params)).map(
        [[asdict(e) for e in s] for s in plan.shards], shard_keys(plan, params, project),
        unmapped(params.model_dump(mode="json")), unmapped(local))
    get_run_logger().info("ingest: %d files in %d shards (%s runner)", plan.files, len(plan.shards),
                          params.pipeline.runner)

    def parts():
        for _ in range(len(futures)):
            yield futures.pop(0).result()  # pop: each shard's rows are freed once written

    workers = resolve_workers(params.ingest.workers) if local else params.pipeline.dask_workers
    try:
        result = finish_ingest(params, project, plan, parts(), t0, workers)
    finally:
        if local:
            close_shared_pools()
    return log_result(result)


def run_profile(params: Params, project: Path) -> dict[str, Any]:
    """Sketch row-group ranges in parallel, merge the sketches, write the profile."""
    t0 = time.perf_counter()
    parts = profile_part_task.with_options(**retry_options(params)).map(
        plan_profile(params, project), unmapped(params.model_dump(mode="json")), unmapped(str(project)))
    return log_result(finish_profile(params, project, (Profile.deserialize(p.result().encode()) for p in parts), t0))


SHARDED = {"ingest": run_ingest, "profile": run_profile}


def run_stage(s: Stage, params: Params, project: Path) -> dict[str, Any]:
    """A stage inside a flow: the sharded ones map over tasks, the others are one task."""
    if s.sharded:
        return SHARDED[s.name](params, project)
    return run_step(s, params, project)


def _run(name: str, project: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    params = apply_overrides(project, overrides)
    return run_stage(stage(name), params, Path(project).resolve())


# Each flow takes `project` (the repository folder) and `overrides` (nested params, validated and
# written to params.yaml so DVC records what ran). A deployment loads its flow by entrypoint
# (flows/steps.py:<function name>).

@flow(name="version-raw-data", description=stage("version").doc, log_prints=True)
def version_raw_data_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("version", project, overrides)


@flow(name="ingest", description=stage("ingest").doc, log_prints=True)
def ingest_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("ingest", project, overrides)


@flow(name="objects", description=stage("objects").doc, log_prints=True)
def objects_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("objects", project, overrides)


@flow(name="preprocess", description=stage("preprocess").doc, log_prints=True)
def preprocess_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("preprocess", project, overrides)


@flow(name="embed", description=stage("embed").doc, log_prints=True)
def embed_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("embed", project, overrides)


@flow(name="profile", description=stage("profile").doc, log_prints=True)
def profile_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("profile", project, overrides)


@flow(name="issues", description=stage("issues").doc, log_prints=True)
def issues_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("issues", project, overrides)


@flow(name="validate", description=stage("validate").doc, log_prints=True)
def validate_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("validate", project, overrides)


@flow(name="curate", description=stage("curate").doc, log_prints=True)
def curate_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("curate", project, overrides)


@flow(name="publish", description=stage("publish").doc, log_prints=True)
def publish_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run("publish", project, overrides)


FLOWS: dict[str, Flow] = {"version": version_raw_data_flow, "ingest": ingest_flow, "objects": objects_flow,
                          "preprocess": preprocess_flow,
                          "embed": embed_flow, "profile": profile_flow, "issues": issues_flow,
                          "validate": validate_flow, "curate": curate_flow, "publish": publish_flow}
