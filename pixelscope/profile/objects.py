"""The object-level profile: the objects table (pixelscope.annotations) as mergeable sketches,
overall and per class, nested in the dataset profile as `profile.objects` and merged with it.

Its rows are objects, not images: files_seen counts the objects read, ok the kept ones, and
errors_by_reason the flagged ones by rule. The drift tests compare it like the image profile, in
a family of their own (`objects`) in drift.budget — "fewer large objects; maybe the zoom changed".
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixelscope.config import ProfileConfig
from pixelscope.profile.profile import Profile

# the objects table's columns as profiled (booleans as 0 / 1: their mean is the share)
OBJECT_KINDS = {"class": "categorical", "area": "numeric", "rel_area": "numeric", "aspect": "numeric",
                "cx": "numeric", "cy": "numeric", "width": "numeric", "height": "numeric", "fill": "numeric",
                "crowd": "numeric", "truncated": "numeric", "score": "numeric", "crop_brightness": "numeric",
                "crop_contrast": "numeric", "crop_sharpness": "numeric"}
SEGMENT = "class"


def object_profile(objects: Path, cfg: ProfileConfig, manifest_ids: set[str] | None = None) -> Profile | None:
    """The objects table as a Profile (segments: per class); None when there is no table or no row.
    With manifest_ids, a table whose kept objects name other images is refused (None): it was
    written for another manifest."""
    if not objects.exists():
        return None
    table = pq.read_table(objects)
    if table.num_rows == 0:
        return None
    if manifest_ids is not None:
        kept_ids = set(table.filter(pc.equal(table.column("status"), "ok")).column("id").to_pylist())
        if not kept_ids <= manifest_ids:
            return None
    table = table.append_column("reason", table.column("rule"))
    cfg = cfg.model_copy(update={"segments": [SEGMENT]})
    profile = Profile.empty({**OBJECT_KINDS, "status": "none", "reason": "none"}, cfg)
    for batch in table.to_batches(max_chunksize=65536):
        profile.update(pa.Table.from_batches([batch]))
    return profile
