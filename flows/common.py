"""What every flow needs: the project's params (with overrides) and the task runner they choose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from pixelscope.config import Params, load_params, set_params
from pixelscope.io.parallel import resolve_workers


def apply_overrides(project: str | Path, overrides: dict[str, Any] | None = None) -> Params:
    """The project's params with the overrides (from the Prefect UI, say) validated and then WRITTEN
    into params.yaml (comments kept), so `dvc status`, `dvc params diff` and dvc.lock describe exactly
    what ran. Flows call this once per run; to only read, use pixelscope.config.load_params."""
    path = Path(project) / "params.yaml"
    params = load_params(path, overrides)
    if overrides:
        set_params(path, overrides)
    return params


def task_runner(params: Params):
    """local: threads feeding one process pool of ingest.workers (one shard more than workers in
    flight, so the pool stays busy while a finished shard's rows are stored); dask: a Dask cluster."""
    if params.pipeline.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if params.pipeline.dask_address:
            return DaskTaskRunner(address=params.pipeline.dask_address)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": params.pipeline.dask_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=resolve_workers(params.ingest.workers) + 1)
