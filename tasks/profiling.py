"""Profile as Prefect tasks: sketch row-group ranges of the manifest, then merge the sketches."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from prefect import get_run_logger, task

from pixelscope.config import Params
from pixelscope.profile import Profile, merge_all
from pixelscope.steps import ProfileSummary, StepError, save_profile


def plan_parts(params: Params, project: Path) -> list[list[int]]:
    """Row-group ranges of the manifest, about one shard of files each."""
    manifest = project / params.paths.manifest
    if not manifest.exists():
        raise StepError(f"manifest not found: {manifest} (run ingest first)")
    groups = pq.ParquetFile(manifest).metadata.num_row_groups
    per = max(1, params.pipeline.shard_size // params.ingest.chunk_rows)
    return [list(range(i, min(groups, i + per))) for i in range(0, groups, per)] or [[]]


@task(name="profile-part")
def profile_part_task(row_groups: list[int], params: dict, project: str) -> str:
    """Sketches of some row groups, serialized (the only thing that travels between tasks)."""
    p = Params.model_validate(params)
    return Profile.from_manifest(Path(project) / p.paths.manifest, p.profile, row_groups=row_groups).serialize().decode()


@task(name="merge-profiles", retries=2, retry_delay_seconds=[1, 4])
def merge_profiles_task(parts: list[str], params: Params, project: Path, t0: float) -> dict:
    """Merge part profiles into one and write it (atomic) with its metrics."""
    merged = merge_all(Profile.deserialize(p.encode()) for p in parts)
    s: ProfileSummary = save_profile(merged, project / params.paths.manifest, project / params.paths.profile, t0,
                                     project / params.paths.metrics / "profile.json", project / params.paths.embeddings,
                                     params)
    get_run_logger().info("profile %s: %d files, %d KiB", s.profile, s.files_seen, s.bytes // 1024)
    return s.to_dict()

