"""Flow: raw folder -> manifest, shards of files mapped over tasks."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped

from flows.common import project_params
from pixelscope.config import Params
from pixelscope.ingest import ManifestWriter, close_shared_pools, resolve_workers
from pixelscope.steps import ingest_metrics, write_metrics
from tasks.ingest import ingest_shard_task, plan_shards


def run_ingest(params: Params, project: Path) -> dict[str, Any]:
    """Map shards over tasks, then write their rows, in order, into the manifest (atomic)."""
    t0 = time.perf_counter()
    shards, keys, excluded = plan_shards(params, project)
    local = params.pipeline.runner == "local"
    futures = ingest_shard_task.map([[asdict(e) for e in s] for s in shards], keys,
                                    unmapped(params.model_dump(mode="json")), unmapped(local))
    get_run_logger().info("ingest: %d files in %d shards (%s runner)", sum(map(len, shards)), len(shards),
                          params.pipeline.runner)
    path = project / params.paths.manifest
    try:
        with ManifestWriter(path, params.ingest.chunk_rows, params.features.plugins) as writer:
            for _ in range(len(futures)):
                for row in futures.pop(0).result():  # pop: each shard's rows are freed once written
                    writer.add(row)
    finally:
        if local:
            close_shared_pools()
    workers = resolve_workers(params.ingest.workers) if local else params.pipeline.dask_workers
    summary = writer.summary(project / params.paths.raw, excluded, time.perf_counter() - t0, workers)
    write_metrics(project / params.paths.metrics / "ingest.json", ingest_metrics(summary))
    get_run_logger().info("manifest %s: %d files, %d ok, %d errors %s", path, summary.seen, summary.ok,
                          summary.errors, summary.errors_by_reason or "")
    return summary.to_dict()


@flow(name="ingest", log_prints=True)
def ingest_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read every file of the raw folder into the manifest (metadata, features, or an error row)."""
    params = project_params(project, overrides)
    return run_ingest(params, Path(project).resolve())

