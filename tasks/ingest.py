"""Ingest as Prefect tasks: plan shards, ingest each shard (cached by content hashes + params + code)."""

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
from pixelscope.discover import FileEntry, discover
from pixelscope.ingest import ingest_shard, process_shard_in_pool
from pixelscope.steps import StepError
from pixelscope.versioning import file_hashes
from tasks.runtime import code_version


def shard_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key: content hashes of the shard's files + the params that change rows + code."""
    return "ingest-shard-" + parameters["key"]


def plan_shards(params: Params, project: Path) -> tuple[list[list[FileEntry]], list[str], int]:
    """Split the raw folder into shards; each gets a key from file content hashes + params + code."""
    root = project / params.paths.raw
    if not root.is_dir():
        raise StepError(f"raw folder not found: {root}")
    entries, excluded = discover(root, params.ingest)
    if not entries:
        raise StepError(f"no files to ingest in {root} ({excluded} excluded by ingest.exclude)")
    hashes = file_hashes(params, project) or {}
    size = params.pipeline.shard_size
    shards = [entries[i:i + size] for i in range(0, len(entries), size)]
    settings = json.dumps({"ingest": params.ingest.model_dump(mode="json", exclude={"workers", "chunk_rows"}),
                           "features": params.features.model_dump(mode="json"), "code": code_version()},
                          sort_keys=True)
    keys = []
    for shard in shards:
        h = hashlib.sha256(settings.encode())
        for e in shard:
            content = hashes.get(e.rel)
            if content is None:  # not tracked by DVC (yet): size + mtime stand in for content
                st = os.stat(e.path)
                content = f"{st.st_size}:{st.st_mtime_ns}"
            h.update(f"{e.rel}\0{e.label}\0{content}\n".encode())
        keys.append(h.hexdigest())
    return shards, keys, excluded


@task(name="ingest-shard", cache_key_fn=shard_key, persist_result=True, result_serializer="json",
      retries=1, retry_delay_seconds=2)
def ingest_shard_task(shard: list[dict[str, Any]], key: str, params: dict[str, Any], in_pool: bool) -> list[dict[str, Any]]:
    """Manifest rows for one shard. A broken file is an error row, never a task failure."""
    p = Params.model_validate(params)
    entries = [FileEntry(**e) for e in shard]
    t0 = time.perf_counter()
    rows = process_shard_in_pool(entries, p.ingest, p.features) if in_pool else ingest_shard(entries, p.ingest, p.features)
    errors = sum(r["status"] != "ok" for r in rows)
    get_run_logger().info("shard %s: %d files, %d errors, %.1fs", key[:8], len(rows), errors, time.perf_counter() - t0)
    return rows
