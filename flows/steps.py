"""One flow per stage, all from one factory over the stage table; the sharded stages map
their parts over tasks (the core's plan / part / finish), the others run their step as one task.

    from flows.steps import FLOWS, run_stage
    FLOWS["ingest"](project=".")           # what the `ingest/pixelscope` deployment runs
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, unmapped

from flows.common import project_params
from pixelscope.config import Params
from pixelscope.ingest.step import close_shared_pools, finish_ingest, plan_ingest
from pixelscope.io.parallel import resolve_workers
from pixelscope.pipeline.stages import STAGES, Stage
from pixelscope.profile import Profile
from pixelscope.profile.step import finish_profile, plan_profile
from tasks.ingest import ingest_shard_task, shard_keys
from tasks.profiling import profile_part_task
from tasks.steps import log_result, run_step, step_task


def run_ingest(params: Params, project: Path) -> dict[str, Any]:
    """Map shards over tasks (cached per shard), then write their rows, in order, into the manifest."""
    t0 = time.perf_counter()
    plan = plan_ingest(params, project)
    local = params.pipeline.runner == "local"
    futures = ingest_shard_task.map([[asdict(e) for e in s] for s in plan.shards], shard_keys(plan, params, project),
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
    parts = profile_part_task.map(plan_profile(params, project), unmapped(params.model_dump(mode="json")),
                                  unmapped(str(project)))
    return log_result(finish_profile(params, project, (Profile.deserialize(p.result().encode()) for p in parts), t0))


SHARDED = {"ingest": run_ingest, "profile": run_profile}


def run_stage(stage: Stage, params: Params, project: Path) -> dict[str, Any]:
    if stage.sharded:
        return SHARDED[stage.name](params, project)
    return run_step(stage, params, project)


def step_flow(stage: Stage) -> Flow:
    """The flow for one stage: project params (+ validated overrides written to params.yaml), then the stage."""

    def run(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        params = project_params(project, overrides)
        return run_stage(stage, params, Path(project).resolve())

    # A deployment loads its flow by entrypoint (this file : the function's qualified name),
    # so each flow function gets a name that this module also binds (below).
    run.__name__ = run.__qualname__ = f"{stage.name.replace('-', '_')}_flow"
    run.__doc__ = stage.doc
    return flow(name=stage.flow_name, log_prints=True)(run)


FLOWS: dict[str, Flow] = {s.name: step_flow(s) for s in STAGES}
globals().update({f.fn.__name__: f for f in FLOWS.values()})

__all__ = ["FLOWS", "SHARDED", "run_stage", "step_flow", "step_task", *(f.fn.__name__ for f in FLOWS.values())]
