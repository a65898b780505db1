"""Preprocess and embed as Prefect tasks (each one task: the work inside is already parallel,
decode workers feeding one model on one device)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from pixelscope.config import Params
from pixelscope.steps import embed_step, preprocess_step


def _log(step: str, c) -> dict:
    get_run_logger().info("%s: %d new in %.1fs (%.0f img/s), %d reused, %d errors %s; %s", step, c.computed, c.seconds,
                          c.images_per_s, c.reused, c.errors, c.errors_by_reason or "", c.info)
    return c.to_dict()


@task(name="preprocess", retries=1, retry_delay_seconds=2)
def preprocess_task(params: Params, project: Path) -> dict:
    """New manifest images -> model-ready uint8 tensors (incremental by image id)."""
    return _log("preprocess", preprocess_step(params, project, metrics=project / params.paths.metrics / "preprocess.json"))


@task(name="embed", retries=1, retry_delay_seconds=2)
def embed_task(params: Params, project: Path) -> dict:
    """New manifest images -> embeddings + the 2-D projection (incremental by image id)."""
    return _log("embed", embed_step(params, project, metrics=project / params.paths.metrics / "embed.json"))
