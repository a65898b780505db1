"""The version stage (`pixelscope version-data`, the `version-raw-data` flow): `dvc add` the raw
folder and push it to the default remote. Not a dvc.yaml stage: it makes the data dep that
the others read. The DVC bookkeeping itself is in track/repo.py."""

from __future__ import annotations

import time
from pathlib import Path

from pixelscope.config import Params
from pixelscope.io.url import Url
from pixelscope.pipeline.steps import ProgressFn, StepResult
from pixelscope.track.repo import record_file, version_raw_data


def version_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """dvc add + push the raw folder; the result's details are the version."""
    t0 = time.perf_counter()
    v = version_raw_data(params, project)
    if isinstance(params.paths.raw, Url):
        summary = (f"raw data {v.path}: in a store, not copied; versioned as the ingest stage's DVC dependency "
                   + (f"(dvc.lock: version {v.md5}, {v.files} objects, {v.bytes or 0:,} bytes)" if v.md5
                      else "(recorded in dvc.lock when the ingest stage runs)"))
    else:
        summary = (f"raw data {v.path}: version {v.md5} ({v.files} files, {v.bytes:,} bytes)"
                   + (f", pushed {v.pushed} files to remote '{v.remote}'" if v.remote else ""))
    return StepResult(stage="version", summary=summary, seconds=time.perf_counter() - t0,
                      counts={"files": v.files or 0, "pushed": v.pushed or 0},
                      outputs={"dvc_file": str(Path(project) / record_file(params))}, details=v.to_dict())
