"""Flows: preprocess (files -> model-ready tensors) and embed (tensors or files -> embeddings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.common import project_params
from tasks.embed import embed_task, preprocess_task


@flow(name="preprocess")
def preprocess_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Decode, orient and transform the new images of the manifest into the tensor store."""
    params = project_params(project, overrides)
    return preprocess_task(params, Path(project).resolve())


@flow(name="embed")
def embed_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Embed the new images of the manifest with embed.model; write the 2-D projection."""
    params = project_params(project, overrides)
    return embed_task(params, Path(project).resolve())
