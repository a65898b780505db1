"""Ingest shards as Prefect tasks, cached by the shard's file contents + params + the stage's code."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.context import TaskRunContext

from pixelscope.config import Params
from pixelscope.ingest.step import IngestPlan, ingest_part
from pixelscope.io.discover import FileEntry
from pixelscope.pipeline.stages import stage
from pixelscope.track.repo import file_hashes


def shard_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return "ingest-shard-" + parameters["key"]


def shard_keys(plan: IngestPlan, params: Params, project: Path) -> list[str]:
    """One cache key per shard: content hashes of its files (DVC's; a store's ETag; else size + mtime), the params
    that change rows, and the source the ingest stage runs (the same files dvc.yaml lists)."""
    hashes = file_hashes(params, project) or {}
    settings = json.dumps({"ingest": params.ingest.model_dump(mode="json", exclude={"workers", "chunk_rows"}),
                           "features": params.features.model_dump(mode="json"), "code": stage("ingest").code_hash()},
                          sort_keys=True)
    keys = []
    for shard in plan.shards:
        h = hashlib.sha256(settings.encode())
        for e in shard:
            content = hashes.get(e.rel) or (f"etag:{e.etag}:{e.size}" if e.etag else None)  # a store object: its ETag
            if content is None:  # not tracked by DVC (yet): size + mtime stand in for content
                st = os.stat(e.path)
                content = f"{st.st_size}:{st.st_mtime_ns}"
            h.update(f"{e.rel}\0{e.label}\0{content}\n".encode())
        keys.append(h.hexdigest())
    return keys


@task(name="ingest-shard", cache_key_fn=shard_key, persist_result=True, result_serializer="json")
def ingest_shard_task(shard: list[dict[str, Any]], key: str, params: dict[str, Any], in_pool: bool) -> list[dict[str, Any]]:
    """Manifest rows for one shard. A broken file is an error row, never a task failure."""
    t0 = time.perf_counter()
    rows = ingest_part([FileEntry(**e) for e in shard], Params.model_validate(params), in_pool=in_pool)
    errors = sum(r["status"] != "ok" for r in rows)
    get_run_logger().info("shard %s: %d files, %d errors, %.1fs", key[:8], len(rows), errors, time.perf_counter() - t0)
    return rows
