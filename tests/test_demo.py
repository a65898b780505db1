"""The demo `make demo` builds (flows/demo.py): mostly distinct images, planted faults the finders
catch, and two recorded versions whose drift and history the dashboard shows."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pixelscope.config import load_params
from pixelscope.demo import SHOWCASE_LABELS


def git(root, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_the_demo_is_mostly_distinct_images_with_planted_faults_the_finders_catch(demo_project):
    root = demo_project
    p = load_params(root / "params.yaml")
    issues = pq.read_table(root / p.paths.issues).to_pandas().set_index("path")
    planted = json.loads((root / "data" / "demo_planted.json").read_text())
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


@pytest.mark.slow
def test_make_demo_records_two_versions_with_a_real_drift_and_leaves_git_and_dvc_clean(demo_project):
    """v1 (the showcase) is the reference; v2 adds the shifted batch: the Drift page's table names
    the brightness and compression shift, the Versions page has both rows, and the project is
    left as a user's would be after committing (git and DVC clean, tags v1 and v2)."""
    root = demo_project
    assert set(git(root, "tag").split()) == {"v1", "v2"}
    assert git(root, "status", "--porcelain") == ""
    dvc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, capture_output=True, text=True)
    assert "up to date" in dvc.stdout, dvc.stdout + dvc.stderr
    p = load_params(root / "params.yaml")
    assert p.validate_.reference_rev == "v1" and p.validate_.on_failure == "warn"
    bundle = root / p.paths.publish
    drift = pq.read_table(bundle / "drift.parquet").to_pandas()
    drifted = set(drift[drift["drift"]]["feature"])
    assert {"brightness_mean", "bytes_per_pixel"} <= drifted, drifted
    history = pq.read_table(bundle / "history.parquet").to_pandas()
    assert list(history["rev"]) == ["v1", "v2"]
    v1, v2 = history.to_dict("records")
    assert v2["files"] - v1["files"] == 200 and v2["drift_ref"] and not v1["drift_ref"]
    assert "brightness_mean" in v2["drift_prev_features"]
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["validation"]["success"] is False  # the planted leaks fail the quality suite: shown, not hidden
    assert (bundle / "curation.parquet").exists() and summary["manifest"]["files_seen"] == v2["files"]
    incoming = pd.read_csv(root / "data" / "predictions.csv")
    assert incoming["path"].str.contains("/incoming/").sum() == 200  # the model's outputs cover the new batch


def test_the_demo_rebuilds_its_own_folder_and_refuses_any_other(tmp_path):
    from flows.demo import MARKER, new_project
    from pixelscope.errors import InputMissing

    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "precious.jpg").write_bytes(b"x")
    with pytest.raises(InputMissing, match="not a demo project"):
        new_project(mine)
    assert (mine / "data" / "precious.jpg").read_bytes() == b"x"
    demo = tmp_path / "demo"
    new_project(demo)
    (demo / "stale.txt").write_text("from an earlier demo")
    new_project(demo)
    assert (demo / MARKER).exists() and not (demo / "stale.txt").exists()
    assert git(demo, "log", "--format=%s").strip().startswith("demo project")
    assert load_params(demo / "params.yaml").profile.predictions is not None
    assert "${profile.predictions}" in (demo / "dvc.yaml").read_text()  # an optional dep the demo's params set
