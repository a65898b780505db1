"""Publish as a Prefect task."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from pixelscope.config import Params
from pixelscope.steps import publish_step


@task(name="publish", retries=2, retry_delay_seconds=[1, 4])
def publish_task(params: Params, project: Path) -> dict:
    bundle = publish_step(params, project)
    m = bundle["manifest"]
    get_run_logger().info("published %s: %d files, %d ok, %d errors", params.paths.publish, m["files_seen"], m["ok"], m["errors"])
    return {"publish": str(params.paths.publish), "files_seen": m["files_seen"], "ok": m["ok"], "errors": m["errors"]}
