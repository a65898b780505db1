"""Dataset versions: diff two versions (git revs read through DVC, bundles, manifests, profiles)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pixelscope.versions import diff_images


def manifest(rows: list[tuple[str, str, str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "path", "label", "split"]).assign(status="ok")


def test_diff_images_names_every_kind_of_change():
    a = manifest([("i1", "cat/1.jpg", "cat", None), ("i2", "cat/2.jpg", "cat", None), ("i3", "dog/3.jpg", "dog", None),
                  ("i4", "dog/4.jpg", "dog", None), ("i5", "old/5.jpg", "old", "train"), ("i6", "x/6.jpg", "x", "train"),
                  ("c", "c/a.jpg", "c", None), ("c", "c/b.jpg", "c", None), ("i9", "same.jpg", None, None)])
    b = manifest([("i1", "cat/1.jpg", "cat", None),  # unchanged
                  ("i2x", "cat/2.jpg", "cat", None),  # modified: same path, new content
                  ("i3", "cat/3.jpg", "cat", None),  # moved dog -> cat: moved and relabelled
                  ("i5", "new/5.jpg", "old", "train"),  # moved (renamed), label kept
                  ("i6", "x/6.jpg", "x", "val"),  # split changed
                  ("c", "c/a.jpg", "c", None), ("c", "d/b.jpg", "c", None),  # one of two byte copies moved
                  ("i9", "same.jpg", None, None),  # unchanged, null label on both sides
                  ("i7", "new/7.jpg", "new", None)])  # added; dog/4.jpg removed
    d, unchanged = diff_images(a, b)
    by = {(r.change, r.path if r.change != "removed" else r.old_path): r for r in d.itertuples()}
    assert set(by) == {("modified", "cat/2.jpg"), ("moved", "cat/3.jpg"), ("moved", "new/5.jpg"),
                       ("unchanged", "x/6.jpg"), ("moved", "d/b.jpg"), ("added", "new/7.jpg"),
                       ("removed", "dog/4.jpg")}
    assert unchanged == 3  # cat/1, c/a, same.jpg
    assert by[("moved", "cat/3.jpg")].old_path == "dog/3.jpg" and by[("moved", "cat/3.jpg")].relabelled
    assert (by[("moved", "cat/3.jpg")].old_label, by[("moved", "cat/3.jpg")].label) == ("dog", "cat")
    assert not by[("moved", "new/5.jpg")].relabelled and by[("moved", "d/b.jpg")].old_path == "c/b.jpg"
    assert by[("unchanged", "x/6.jpg")].split_changed and not by[("unchanged", "x/6.jpg")].relabelled
    assert by[("modified", "cat/2.jpg")].old_id == "i2" and by[("modified", "cat/2.jpg")].id == "i2x"
    assert by[("removed", "dog/4.jpg")].path is None and by[("added", "new/7.jpg")].old_path is None
    same, n = diff_images(a, a)
    assert same.empty and n == len(a)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """A temp git + DVC project with three recorded versions (tags v1, v2, v3):
    v2 adds three images and removes two; v3 moves one image to another class folder
    (relabelled) and rewrites one file in place (modified)."""
    from test_pipeline import dvc, make_project, sh

    project = make_project(tmp_path_factory.mktemp("versions") / "project")
    raw = project / "data" / "raw"
    dvc("add", "-q", "data/raw", cwd=project)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "v0: recorded, not yet profiled"], project)
    sh(["git", "tag", "v0"], project)

    def record(tag: str) -> None:
        dvc("add", "-q", "data/raw", cwd=project)
        dvc("repro", "-q", "profile", "issues", cwd=project)
        sh(["git", "add", "-A"], project)
        sh(["git", "commit", "-qm", tag], project)
        sh(["git", "tag", tag], project)

    record("v1")
    files = sorted(p for p in raw.rglob("*_0*.jpg"))  # readable photos (<source>/<label>/<label>_NNNNN.jpg)
    cats, coffees = [f for f in files if f.parent.name == "cat"], [f for f in files if f.parent.name == "coffee"]
    plan = {"removed": [cats[0], coffees[0]], "added": []}
    for k, src in enumerate(files[5:8]):  # mirrored copies: new content
        dst = src.parent / f"added_{k}.jpg"
        Image.open(src).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(dst, quality=90)
        plan["added"].append(dst)
    for f in plan["removed"]:
        f.unlink()
    record("v2")
    moved_src = cats[1]
    moved_dst = moved_src.parent.parent / "coffee" / moved_src.name
    shutil.move(moved_src, moved_dst)
    modified = coffees[1]
    arr = np.asarray(Image.open(modified).convert("RGB"))
    Image.fromarray(255 - arr).save(modified, format="JPEG", quality=85)
    record("v3")
    rel = {k: sorted(p.relative_to(raw).as_posix() for p in v) for k, v in plan.items()}
    rel.update(moved=(moved_src.relative_to(raw).as_posix(), moved_dst.relative_to(raw).as_posix()),
               modified=modified.relative_to(raw).as_posix())
    return project, rel


def cli(project, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    from test_pipeline import sh

    return sh([sys.executable, "-m", "pixelscope", *args], project, check=check)


@pytest.mark.slow
def test_diff_of_git_revs_finds_exactly_the_changes_made(versions, tmp_path):
    project, made = versions
    d = json.loads(cli(project, "diff", "v1", "v2", "--json", "-o", str(tmp_path / "d.parquet")).stdout)
    c = d["counts"]
    assert (c["added"], c["removed"], c["modified"], c["moved"], c["relabelled"]) == (3, 2, 0, 0, 0)
    assert d["images"]["added"] == made["added"] and d["images"]["removed"] == made["removed"]
    assert c["files_a"] == 50 and c["files_b"] == 51 and c["unchanged"] == 48
    assert d["a"]["commit"] and d["a"]["md5"] != d["b"]["md5"]
    assert pd.read_parquet(tmp_path / "d.parquet")["change"].value_counts().to_dict() == {"added": 3, "removed": 2}
    assert {f["feature"] for f in d["features"]} >= {"brightness_mean", "width", "sharpness"}
    assert isinstance(d["issues"], dict) and "near_duplicate" in d["issues"]

    d = json.loads(cli(project, "diff", "v2", "v3", "--json").stdout)
    c = d["counts"]
    assert (c["added"], c["removed"], c["modified"], c["moved"], c["relabelled"]) == (0, 0, 1, 1, 1)
    old, new = made["moved"]
    assert d["images"]["modified"] == [made["modified"]] and d["images"]["moved_from"] == {new: old}
    assert d["images"]["relabelled"] == {new: ["cat", "coffee"]}

    text = cli(project, "diff", "v2", "v3").stdout
    assert f"moved    {old} -> {new}" in text and f"relabelled {new}: cat -> coffee" in text


@pytest.mark.slow
def test_diff_names_the_rev_and_the_file_it_lacks(versions, tmp_path):
    project, _ = versions
    r = cli(project, "diff", "HEAD~4", "v1", check=False)  # the first commit: no data/raw.dvc
    assert r.returncode == 1 and "HEAD~4: no recorded dataset version (data/raw.dvc is not in commit" in r.stderr
    r = cli(project, "diff", "v0", "v1", check=False)  # recorded but never profiled
    assert r.returncode == 1 and "v0: cannot read data/processed/profile.json at commit" in r.stderr
    r = cli(project, "diff", "nope", "v1", check=False)
    assert r.returncode == 1 and "'nope' is neither a bundle folder, a manifest / profile file nor a git rev" in r.stderr


@pytest.mark.slow
def test_diff_of_manifest_files_and_of_a_profile(versions, tmp_path):
    """Two manifest files give the image changes; a profile file gives feature deltas only, and says so."""
    project, _ = versions
    from dvc.api import DVCFileSystem

    for tag in ("v1", "v3"):
        DVCFileSystem(str(project), rev=tag).get_file("data/interim/manifest.parquet", str(tmp_path / f"{tag}.parquet"))
    d = json.loads(cli(project, "diff", str(tmp_path / "v1.parquet"), str(tmp_path / "v3.parquet"), "--json").stdout)
    assert (d["counts"]["added"], d["counts"]["removed"], d["counts"]["moved"], d["counts"]["modified"]) == (3, 2, 1, 1)
    d = json.loads(cli(project, "diff", str(tmp_path / "v1.parquet"), "data/processed/profile.json", "--json").stdout)
    assert d["images"] == {} and any("no manifest" in m for m in d["missing"]) and d["features"]
    r = cli(project, "diff", str(tmp_path / "v1.parquet"), "data/processed/profile.json", "-o",
            str(tmp_path / "none.parquet"), check=False)
    assert r.returncode == 2 and "no image changes to write" in r.stderr and not (tmp_path / "none.parquet").exists()
