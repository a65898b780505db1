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


def darken(folder, factor: float = 0.45, gray: bool = True) -> None:
    """Every JPEG under folder darker (and grayscale): a shift every brightness test sees."""
    for f in sorted(folder.rglob("*.jpg")):
        try:
            im = Image.open(f).convert("L" if gray else "RGB")
        except OSError:  # the demo's broken files stay broken
            continue
        arr = (np.asarray(im).astype(float) * factor).astype(np.uint8)
        Image.fromarray(arr).convert("RGB").save(f, quality=90)


@pytest.fixture(scope="module")
def four_versions(versions, tmp_path_factory):
    """A copy of the three-version project with its history recorded (v1-v3), then a fourth
    version (v4: every image darkened) committed after it."""
    from test_pipeline import dvc, sh

    project = tmp_path_factory.mktemp("history") / "project"
    shutil.copytree(versions[0], project, symlinks=True)
    first = json.loads(cli(project, "history", "--json", "--set", "validate.reference_rev=v1").stdout)
    written = (project / "reports" / "history" / "history.parquet").read_bytes()
    again = json.loads(cli(project, "history", "--json", "--set", "validate.reference_rev=v1").stdout)
    unchanged = (project / "reports" / "history" / "history.parquet").read_bytes() == written
    darken(project / "data" / "raw")
    dvc("add", "-q", "data/raw", cwd=project)
    dvc("repro", "-q", "profile", "issues", cwd=project)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "v4: darker"], project)
    sh(["git", "tag", "v4"], project)
    return project, first, again, unchanged


@pytest.mark.slow
def test_history_has_one_row_per_version_with_counts_and_drift_and_is_incremental(four_versions):
    project, first, again, unchanged = four_versions
    # v0 recorded the same raw data as v1 (v1 only ran the pipeline): one version, read at v1
    assert first["counts"] == {"versions": 3, "computed": 3, "unchanged": 0, "skipped": 0, "drops": 0}
    assert again["counts"]["computed"] == 0 and "nothing new, not rewritten" in again["summary"]
    assert unchanged  # a rerun is a no-op: the file is not rewritten
    path = project / "reports" / "history" / "history.parquet"

    r = cli(project, "history", "--set", "validate.reference_rev=v1")  # v4 is new: only it is computed
    assert "4 versions (1 computed, 3 unchanged)" in r.stdout
    h = pd.read_parquet(path)
    assert h["rev"].tolist() == ["v1", "v2", "v3", "v4"] and set(h["kind"]) == {"version"}
    assert h["files"].tolist() == [50, 51, 51, 51] and (h["ok"] + h["errors"] == h["files"]).all()
    assert h["drift_prev"].tolist()[1:] == [False, False, True] and h["drift_prev"].isna().tolist()[0]
    assert h["drift_ref"].tolist() == [False, False, False, True]  # the reference is v1
    assert "brightness_mean" in h["drift_prev_features"].iloc[3]
    assert h["brightness_mean_p50"].iloc[3] < 0.6 * h["brightness_mean_p50"].iloc[2]
    assert h["previous"].tolist()[1:] == h["key"].tolist()[:3]
    shares = [json.loads(s) for s in h["label_shares"]]
    assert shares[2]["coffee"] > shares[1]["coffee"]  # v3 moved a cat into coffee/
    assert abs(sum(shares[0].values()) - 1) < 1e-5  # shares are rounded to 6 digits
    from dvc.api import DVCFileSystem

    from pixelscope.profile import Profile

    with DVCFileSystem(str(project), rev="v2").open("data/processed/profile.json", "rb") as fh:
        v2 = Profile.deserialize(fh.read())
    assert h["sharpness_p95"].iloc[1] == pytest.approx(v2.quantiles("sharpness", [0.95])[0])


@pytest.mark.slow
def test_history_of_given_revs_and_an_unknown_one_is_named(four_versions):
    project = four_versions[0]
    out = json.loads(cli(project, "history", "v2", "v4", "--json", "--set", "paths.history=other.parquet").stdout)
    h = pd.read_parquet(project / "other.parquet")
    assert out["counts"]["versions"] == 2 and h["rev"].tolist() == ["v2", "v4"] and h["drift_prev"].iloc[1]
    r = json.loads(cli(project, "history", "v0", "v1", "nope", "--json", "--set", "paths.history=x.parquet").stdout)
    assert r["counts"]["versions"] == 1 and r["counts"]["skipped"] == 2
    assert r["notes"][0].startswith("skipped v0: v0: cannot read data/processed/profile.json at commit")
    assert r["notes"][1].startswith("skipped nope: 'nope' is neither a bundle folder")


@pytest.mark.slow
def test_monitor_flags_a_shifted_drop_not_a_like_one_and_rolls_both_into_the_window(versions, tmp_path,
                                                                                      prefect_server):
    """Two drops through the real Prefect flow against the v1 reference: a drop like the
    reference passes, a darkened one fails the run (after it is recorded); the rolling profile
    of the week is the merge of both, and equals the profile of all their images."""
    from flows.monitor import monitor
    from pixelscope.config import set_params
    from pixelscope.profile import Profile

    project = tmp_path / "project"
    shutil.copytree(versions[0], project, symlinks=True)

    set_params(project / "params.yaml", {"validate": {"reference_rev": "v1"}})
    like, shifted = tmp_path / "drops" / "like", tmp_path / "drops" / "shifted"
    for drop in (like, shifted):
        shutil.copytree(project / "data" / "raw", drop)
    for f in sorted(like.rglob("*.jpg")):  # the same scenes, mirrored and re-encoded
        try:
            Image.open(f).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(f, quality=92)
        except OSError:
            continue
    files = sum(1 for f in like.rglob("*") if f.is_file())
    darken(shifted)

    ok = monitor(str(project), str(like), "2026-12-01", return_state=True)
    assert ok.is_completed(), ok.message
    bad = monitor(str(project), str(shifted), "2026-12-02", return_state=True)
    assert bad.is_failed() and "DRIFT in" in bad.message and "brightness_mean" in bad.message
    warned = monitor(str(project), str(shifted), "2026-12-02", "warn", return_state=True)
    assert warned.is_completed()  # on_drift: warn records it and passes
    result = warned.result()
    assert result["counts"]["drops_in_window"] == 2 and result["details"]["window"] == "2026-W49"

    h = pd.read_parquet(project / "reports" / "history" / "history.parquet")
    drops = h[h["kind"] == "drop"].set_index("rev")
    assert sorted(drops.index) == ["like", "shifted"]  # the rerun replaced its row
    assert not drops.loc["like", "drift_ref"] and drops.loc["shifted", "drift_ref"]
    assert drops.loc["like", "files"] == files and drops.loc["shifted", "window"] == "2026-W49"

    root = project / "reports" / "monitor"
    rolling = Profile.load(root / "rolling" / "2026-W49.json")
    parts = [Profile.load(root / "drops" / d / "profile.json") for d in ("like", "shifted")]
    assert rolling.files_seen == sum(p.files_seen for p in parts) == 2 * files  # each drop once, not twice
    both = pd.concat([pd.read_parquet(root / "drops" / d / "manifest.parquet") for d in ("like", "shifted")])
    values = np.sort(both.loc[both["status"] == "ok", "brightness_mean"].to_numpy())
    eps = rolling.columns["brightness_mean"].rank_error
    for q in (0.1, 0.5, 0.9):
        got = rolling.quantiles("brightness_mean", [q])[0]
        rank = np.searchsorted(values, got, side="right") / len(values)
        assert abs(rank - q) <= eps + 1 / len(values), (q, rank)
    assert rolling.columns["label"].count == both.loc[both["status"] == "ok", "label"].notna().sum()


@pytest.mark.slow
def test_monitor_cli_names_what_is_missing(versions, tmp_path):
    """`pixelscope monitor`: no reference, no drop folder, a bad --date or on_drift are clear errors."""
    project = versions[0]
    r = cli(project, "monitor", str(tmp_path), check=False)
    assert r.returncode == 2 and "no reference to compare the drop with: set validate.reference" in r.stderr
    r = cli(project, "monitor", str(tmp_path / "nope"), "--set", "validate.reference_rev=v1", check=False)
    assert r.returncode == 1 and f"no drop folder at {tmp_path / 'nope'}" in r.stderr
    r = cli(project, "monitor", check=False)
    assert r.returncode == 2 and "no drop folder given" in r.stderr
    r = cli(project, "monitor", str(tmp_path), "--date", "yesterday", check=False)
    assert r.returncode == 2 and "--date 'yesterday': not a date" in r.stderr
    r = cli(project, "monitor", str(tmp_path), "--on-drift", "maybe", check=False)
    assert r.returncode == 2 and "monitor.on_drift" in r.stderr
    r = cli(project, "monitor", str(tmp_path), "--set", "monitor.cron=daily", check=False)
    assert r.returncode == 2 and "monitor.cron" in r.stderr and "5 fields" in r.stderr


def test_a_drop_date_with_an_offset_is_converted_to_utc_not_relabelled():
    """`--date 2026-12-06T23:30-05:00` is 04:30 UTC on 7 December: the drop belongs to that day and to
    ISO week 50 (it used to keep 23:30, relabelled UTC, and land in 6 December and week 49)."""
    from datetime import UTC, datetime

    from pixelscope.errors import ConfigError
    from pixelscope.monitor import parse_when, window_of

    when = parse_when("2026-12-06T23:30:00-05:00")
    assert when == datetime(2026, 12, 7, 4, 30, tzinfo=UTC) and when.tzinfo is UTC
    assert window_of(when, "day") == "2026-12-07" and window_of(when, "week") == "2026-W50"
    assert parse_when("2026-12-06") == datetime(2026, 12, 6, tzinfo=UTC)  # no offset: UTC
    assert parse_when(None) is None
    with pytest.raises(ConfigError, match="--date 'yesterday': not a date"):
        parse_when("yesterday")
