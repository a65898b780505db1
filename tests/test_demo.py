"""The demo `make demo` builds: mostly distinct images, and planted faults the finders catch."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from conftest import REPO
from pixelscope.config import parse_params
from pixelscope.demo import SHOWCASE_LABELS, build_showcase
from pixelscope.pipeline.stages import STAGES


@pytest.mark.slow
def test_the_demo_is_mostly_distinct_images_with_planted_faults_the_finders_catch(tmp_path):
    root = tmp_path / "demo"
    info = build_showcase(root / "data" / "raw", None, per_class=40, workers=2)
    shutil.copytree(REPO / "expectations", root / "expectations")
    p = parse_params({"ingest": {"workers": 2}})
    for s in STAGES[1:6]:  # ingest .. issues
        s.run(p, root)
    issues = pq.read_table(root / p.paths.issues).to_pandas().set_index("path")
    planted = info["planted"]
    assert planted == json.loads((root / "data" / "demo_planted.json").read_text())
    assert issues.loc[planted["exact_copies"], "exact_duplicate"].all()
    assert issues.loc[planted["near_copies"], "near_duplicate"].all()
    assert issues.loc[planted["leaks"], "leakage"].all()
    assert issues.loc[planted["dark"], "dark"].all()
    assert issues.loc[planted["label_flips"], "label_error"].sum() >= 2  # measured: 3 of 4
    assert set(issues.loc[planted["broken"], "status"]) == {"error"}
    # the old demo (crops of six photos) had 286 of 302 images in duplicate groups; this one a fifth
    assert issues["near_duplicate"].mean() < 0.3
    manifest = pq.read_table(root / p.paths.manifest).to_pandas()
    assert set(manifest["split"].dropna()) == {"train", "val", "test"} and set(manifest["label"].dropna()) == set(SHOWCASE_LABELS)
    assert manifest["path"].str.split("/").str[0].nunique() == 2  # two sources
    predictions = (root / "data" / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "path,prediction,confidence" and len(predictions) - 1 == int((manifest["status"] == "ok").sum())
