"""Profile parts as Prefect tasks: sketch row-group ranges of the manifest (merged by the flow).

(Not named profile.py: a deployment run puts this folder on sys.path, where that name
would shadow the standard library's `profile` module.)
"""

from __future__ import annotations

from prefect import task

from pixelscope.config import Params
from pixelscope.profile.step import profile_part


@task(name="profile-part")
def profile_part_task(row_groups: list[int], params: dict, project: str) -> str:
    """Sketches of some row groups, serialized (the only thing that travels between tasks)."""
    return profile_part(row_groups, Params.model_validate(params), project).serialize().decode()
