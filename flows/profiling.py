"""Flow: manifest -> profile; row-group ranges sketched in parallel, sketches merged.

(Not named profile.py: a deployment run puts this folder on sys.path, where that name
would shadow the standard library's `profile` module.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, unmapped

from flows.common import project_params
from pixelscope.config import Params
from tasks.profiling import merge_profiles_task, plan_parts, profile_part_task


def run_profile(params: Params, project: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    parts = profile_part_task.map(plan_parts(params, project), unmapped(params.model_dump(mode="json")),
                                  unmapped(str(project)))
    return merge_profiles_task(parts, params, project, t0)


@flow(name="profile")
def profile_flow(project: str = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the mergeable sketch profile of the manifest."""
    params = project_params(project, overrides)
    return run_profile(params, Path(project).resolve())
