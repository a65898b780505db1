"""Curate on real photos: the ledger adds up, the recipe does what it says, splits are stable
and group-aware, and the real consumers load every export (torchvision, webdataset, datasets)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import REPO, ingest_to
from pixelscope.config import parse_params
from pixelscope.curate import export
from pixelscope.curate.step import curate_step
from pixelscope.errors import BadInput, ConfigError
from pixelscope.issues.step import issues_step


def photos(corpus: Path, label: str, n: int) -> list[Path]:
    return sorted((corpus / "labeled" / "hymenoptera").rglob(f"{label}*/*.jpg"))[:n]


def project(tmp: Path, layout: dict[str, list[Path]], validate: dict | None = None, **curate) -> tuple[object, Path]:
    """A project whose raw folder has `layout` (folder -> files); ingest + issues (hash signals) run."""
    for folder, files in layout.items():
        (tmp / "data" / "raw" / folder).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, tmp / "data" / "raw" / folder / f.name)
    shutil.copytree(REPO / "expectations", tmp / "expectations")  # the curated set is checked by the quality suite
    p = parse_params({"ingest": {"workers": 1}, "paths": {"embeddings": "none"}, "curate": curate,
                      "validate": validate or {}})
    ingest_to(p, tmp / p.paths.raw, tmp / p.paths.manifest)
    issues_step(p, tmp)
    return p, tmp


def ledger(root: Path) -> pd.DataFrame:
    return pq.read_table(root / "data" / "curated" / "curation.parquet").to_pandas()


@pytest.fixture
def planted(corpus, tmp_path):
    """Ants and bees (no split folders), a byte copy and a half-size copy of one ant, one broken file."""
    ants, bees = photos(corpus, "ants", 8), photos(corpus, "bees", 8)
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(ants[0], extra / "copy_of_ant.jpg")
    im = Image.open(ants[0])
    im.resize((im.width // 2, im.height // 2)).save(extra / "small_ant.jpg", quality=92)
    (extra / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return project(tmp_path, {"ants": ants + sorted(extra.glob("*ant.jpg")) + [extra / "broken.jpg"], "bees": bees})


@pytest.mark.slow
def test_the_ledger_adds_up_and_every_consumer_loads_the_same_set(planted):
    p, root = planted
    r = curate_step(p, root)
    led = ledger(root)
    c = r.details["counts"]
    assert c["files"] == len(led) == 19 and c["files"] == c["included"] + c["excluded"] + c["unreadable"]
    issues = pq.read_table(root / p.paths.issues).to_pandas()
    flagged = issues[(issues["status"] == "ok") & ~issues["path"].str.contains("ant.jpg")]
    quality = {k: int(flagged[k].sum()) for k in ("blurry", "dark") if flagged[k].any()}
    assert c["unreadable"] == 1 and c["excluded_by_first_reason"] == {"exact_duplicate": 1, "near_duplicate": 1,
                                                                       **quality}
    assert c["included"] == 16 - sum(quality.values())
    dropped = led[~led["included"] & led["path"].str.contains("ant.jpg")]
    assert len(dropped) == 2 and dropped["reasons"].str.contains("duplicate of ants/").all()
    inc = led[led["included"]]
    assert set(inc["split"]) <= {"train", "val", "test"} and (inc["split_from"] == "hash").all()
    out = root / "data" / "curated"
    expected = {(s, lab): len(g) for (s, lab), g in inc.groupby(["split", "label"])}

    # as a user's training script in the project's venv would: a fresh interpreter, no pixelscope import
    script = ("import json, os, sys, torchvision\n"
              "out = {}\n"
              "for split in sys.argv[2:]:\n"
              "    ds = torchvision.datasets.ImageFolder(os.path.join(sys.argv[1], split))\n"
              "    for path, y in ds.samples:\n"
              "        key = split + '/' + ds.classes[y]\n"
              "        out[key] = out.get(key, 0) + 1\n"
              "        assert os.stat(path).st_nlink >= 2, path  # hard links, no copies\n"
              "print(json.dumps(out))\n")
    splits = sorted(set(inc["split"]))
    r = subprocess.run([sys.executable, "-c", script, str(out / "torchvision"), *splits], capture_output=True,
                       text=True, cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == {f"{s}/{lab}": n for (s, lab), n in expected.items()}
    for fmt in ("torchvision", "imagefolder", "webdataset", "parquet"):
        assert export.verify(out / fmt) == [], fmt

    import webdataset as wds

    samples = list(wds.WebDataset(sorted(glob.glob(str(out / "webdataset" / "*.tar"))), shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(inc["id"])
    by_id = dict(zip(inc["id"], inc["label"]))
    classes = json.loads((out / "labels.json").read_text())["classes"]
    assert all(classes[int(s["cls"])] == by_id[s["__key__"]] for s in samples)

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    hf = datasets.load_dataset("parquet", data_files={
        s: sorted(glob.glob(str(out / "parquet" / "data" / f"{s}-*.parquet"))) for s in set(inc["split"])})
    for split, d in hf.items():
        assert d.features["label"].names == classes
        assert sorted(d["id"]) == sorted(inc.loc[inc["split"] == split, "id"])
        row = d[0]
        assert row["image"].size[0] > 0 and classes[row["label"]] == by_id[row["id"]]
    folder = datasets.load_dataset("imagefolder", data_dir=str(out / "imagefolder"))
    assert sum(len(d) for d in folder.values()) == len(inc)
    assert sorted(x for d in folder.values() for x in d["id"]) == sorted(inc["id"])


@pytest.mark.slow
def test_splits_are_stable_when_images_are_added_and_groups_never_straddle(corpus, tmp_path):
    ants, bees = photos(corpus, "ants", 20), photos(corpus, "bees", 20)
    copies = tmp_path / "copies"
    copies.mkdir()
    for f in ants[:5]:  # each of these has a byte copy: same group, so the same split
        shutil.copy(f, copies / f"again_{f.name}")
    keep_copies = {"exclude": ["unreadable"], "validate": {"on_failure": "warn"}}  # copies fail the quality suite
    p1, v1 = project(tmp_path / "v1", {"ants": ants[:12] + sorted(copies.glob("*")), "bees": bees[:12]}, **keep_copies)
    r = curate_step(p1, v1)
    assert r.details["exports"] and "expect_column_mean_to_be_between(exact_duplicate)" in json.loads(
        (v1 / "data" / "curated" / "curate.json").read_text())["validation"]["failed"]
    p2, v2 = project(tmp_path / "v2", {"ants": ants + sorted(copies.glob("*")), "bees": bees}, **keep_copies)
    curate_step(p2, v2)
    a, b = ledger(v1).set_index("path"), ledger(v2).set_index("path")
    assert len(b) > len(a) and (b.loc[a.index, "split"] == a["split"]).all()  # nothing moved
    grouped = b[b["duplicate_group"].notna()]
    assert len(grouped) >= 10 and (grouped.groupby("duplicate_group")["split"].nunique() == 1).all()
    # `pixelscope curate diff` says the same, and fails when an image moved under the same recipe
    cli = [sys.executable, "-m", "pixelscope.cli.app", "curate", "diff", "--json", "--against"]
    r = subprocess.run([*cli, str(v1 / "data" / "curated")], cwd=v2, capture_output=True, text=True, timeout=120)
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["moved"] == [] and len(d["added"]) == 16 and d["kept"] == len(a)
    tampered = tmp_path / "tampered"
    shutil.copytree(v1 / "data" / "curated", tampered, ignore=shutil.ignore_patterns("torchvision", "imagefolder"))
    t = ledger(v1)
    first = t.index[t["included"]][0]
    t.loc[first, "split"] = "test" if t.loc[first, "split"] != "test" else "train"
    t.to_parquet(tampered / "curation.parquet")
    r = subprocess.run([*cli, str(tampered)], cwd=v2, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and json.loads(r.stdout.splitlines()[0])["moved"] == [t.at[first, "path"]]


@pytest.mark.slow
def test_folder_splits_are_kept_and_a_filter_error_names_the_expression(corpus, tmp_path):
    ants = photos(corpus, "ants", 10)
    p, root = project(tmp_path, {"train/ants": ants[:7], "test/ants": ants[7:]}, where="width >= 100")
    r = curate_step(p, root)
    inc = ledger(root).query("included")
    assert (inc["split"] == inc["path"].str.split("/").str[0]).all() and (inc["split_from"] == "folder").all()
    assert r.details["counts"]["splits"] == inc["path"].str.split("/").str[0].value_counts().sort_index().to_dict()
    assert set(r.details["counts"]["splits"]) == {"train", "test"}
    bad = parse_params({**p.model_dump(mode="json", by_alias=True), "curate": {"where": "widht >= 100"}})
    with pytest.raises(ConfigError, match=r"curate.where: 'widht >= 100'.*widht"):
        curate_step(bad, root)
    bad = parse_params({**p.model_dump(mode="json", by_alias=True), "curate": {"slices": {"x": "width >>> 3"}}})
    with pytest.raises(ConfigError, match=r"curate.slices.x"):
        curate_step(bad, root)


@pytest.mark.slow
def test_label_fixes_balance_and_odd_labels(corpus, tmp_path):
    ants, bees = photos(corpus, "ants", 12), photos(corpus, "bees", 6)
    p, root = project(tmp_path, {"ants": ants, "bees": bees}, exclude=["unreadable"])  # only the balance drops
    fixes = root / "fixes.csv"
    fixes.write_text(f"path,new_label\nants/{ants[0].name},bees\nants/{ants[1].name},../../etc\n")
    base = p.model_dump(mode="json", by_alias=True)
    q = parse_params({**base, "curate": {**base["curate"], "label_fixes": "fixes.csv",
                                         "balance": {"max_per_class": 5, "keep": "quality"}}})
    r = curate_step(q, root)
    led = ledger(root)
    fixed = led.set_index("path").loc[[f"ants/{ants[0].name}", f"ants/{ants[1].name}"]]
    assert fixed["label"].tolist() == ["bees", "../../etc"] and fixed["original_label"].tolist() == ["ants", "ants"]
    inc = led[led["included"]]
    assert inc["label"].value_counts().to_dict() == {"ants": 5, "bees": 5, "../../etc": 1}
    capped = led["reasons"].fillna("").str.extract(r"balance: '(\w+)' capped at 5")[0].value_counts().to_dict()
    assert capped == {"ants": 5, "bees": 2}  # 10 ants and 7 bees after the fixes
    dirs = json.loads((root / "data" / "curated" / "labels.json").read_text())["folders"]
    assert dirs["../../etc"].startswith("class-") and dirs["ants"] == "ants"
    tree = root / "data" / "curated" / "torchvision"
    assert all(p.resolve().is_relative_to(tree.resolve()) for p in tree.rglob("*"))
    assert r.details["counts"]["labels_fixed"] == 2
    (root / "fixes.csv").write_text("path,new_label\nnot/there.jpg,ants\n")
    with pytest.raises(BadInput, match="match no image"):
        curate_step(q, root)


@pytest.mark.slow
def test_a_symlink_out_of_raw_is_refused_and_dry_run_writes_nothing(corpus, tmp_path):
    ants = photos(corpus, "ants", 4)
    outside = tmp_path / "secret"
    outside.mkdir()
    shutil.copy(ants[3], outside / "secret.jpg")
    raw = tmp_path / "data" / "raw" / "ants"
    raw.mkdir(parents=True)
    (raw / "link.jpg").symlink_to(outside / "secret.jpg")
    p, root = project(tmp_path, {"ants": ants[:3]}, exclude=["unreadable"])
    r = curate_step(p, root, dry_run=True)
    assert not (root / "data" / "curated").exists()
    assert r.details["counts"]["included"] == 3 and r.details["counts"]["excluded"] == 1
    curate_step(p, root)
    led = ledger(root).set_index("path")
    assert not led.at["ants/link.jpg", "included"] and "outside the raw folder" in led.at["ants/link.jpg", "reasons"]


@pytest.mark.slow
def test_the_card_parses_and_its_numbers_are_the_ledgers(planted):
    from huggingface_hub import DatasetCard

    from pixelscope.profile import Profile

    p, root = planted
    curate_step(p, root)
    out = root / "data" / "curated"
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    inc = ledger(root).query("included")
    assert {s["name"]: s["num_examples"] for s in data["dataset_info"]["splits"]} == inc["split"].value_counts().to_dict()
    names = data["dataset_info"]["features"][2]["dtype"]["class_label"]["names"]
    assert sorted(names.values()) == sorted(inc["label"].unique()) and data["task_categories"] == ["image-classification"]
    assert {c["split"] for c in data["configs"][0]["data_files"]} == set(inc["split"])
    assert "(zero leaks)" in card.text and f"{len(inc):,} images of 19 files" in card.text
    # no embeddings here: the card names the rule that decided (the thresholds, not the fused model)
    assert f"near-duplicates by pHash Hamming ≤ {p.issues.hash_max_distance} bits" in card.text
    assert json.loads((out / "curate.json").read_text())["leaks"] == {"ids_in_two_splits": 0, "groups_in_two_splits": 0}
    prof = Profile.load(out / "profile.json")  # the curated set's own profile
    assert prof.files_seen == len(inc) and prof.errors == 0
    checked = json.loads((out / "curate.json").read_text())["validation"]
    assert checked["success"] and checked["expectations"] >= 9 and "Curated set: passed the quality suite" in card.text
    results = json.loads((out / "validation.json").read_text())["results"]
    assert next(r for r in results if r["column"] == "leakage")["success"]  # computed on the curated splits


@pytest.mark.slow
def test_plugin_filters_and_sort_keys(corpus, tmp_path, monkeypatch):
    """A user's module adds a filter and a sort key: the filter's rows leave with its name, the
    cap keeps the best by the sort key; an unknown filter names the key."""
    from pixelscope.curate.plugins import FILTERS, SORT_KEYS

    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "my_curation.py").write_text(
        "from pixelscope.curate.plugins import curate_filter, sort_key\n\n"
        "@curate_filter('landscape')\n"
        "def landscape(frame):\n"
        "    return frame['width'] > frame['height']\n\n"
        "@sort_key('darkest')\n"
        "def darkest(frame):\n"
        "    return frame['brightness_mean']\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    ants = photos(corpus, "ants", 16)
    with FILTERS.scoped(), SORT_KEYS.scoped():
        p, root = project(tmp_path / "p", {"ants": ants}, exclude=["unreadable"], plugins=["my_curation"],
                          filters=["landscape"], balance={"max_per_class": 3, "keep": "quality", "order": ["darkest"]})
        curate_step(p, root)
        led = ledger(root)
        frame = pq.read_table(root / p.paths.manifest).to_pandas()
        portrait = frame["width"] <= frame["height"]
        assert portrait.any() and (led.loc[portrait, "reasons"] == "filter: landscape").all()
        landscape = frame[~portrait]
        assert set(led.loc[led["included"], "path"]) == set(landscape.nsmallest(3, "brightness_mean")["path"])
        bad = parse_params({**p.model_dump(mode="json", by_alias=True),
                            "curate": {**p.model_dump(mode="json")["curate"], "filters": ["nope"]}})
        with pytest.raises(ConfigError, match="curate.filters: unknown filter 'nope'"):
            curate_step(bad, root)


@pytest.mark.slow
def test_a_crash_mid_export_leaves_the_previous_set_and_a_rerun_cleans_up(planted, monkeypatch):
    p, root = planted
    curate_step(p, root)
    out = root / "data" / "curated"
    before = {fmt: (out / fmt / "SHA256SUMS").read_text() for fmt in ("torchvision", "webdataset")}
    old_ledger = (out / "curation.parquet").read_bytes()
    (out.parent / ".tmp-curated-999999").mkdir()  # what a killed run leaves behind
    calls = {"n": 0}
    real = export._place

    def dying(src, dst, how):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("killed")
        return real(src, dst, how)

    monkeypatch.setattr(export, "_place", dying)
    q = parse_params({**p.model_dump(mode="json", by_alias=True),
                      "curate": {**p.model_dump(mode="json")["curate"], "where": "width > 0", "link": "copy"}})
    with pytest.raises(KeyboardInterrupt):
        curate_step(q, root)
    assert (out / "torchvision" / "SHA256SUMS").read_text() == before["torchvision"]  # the old set, whole
    assert (out / "curation.parquet").read_bytes() == old_ledger and export.verify(out / "torchvision") == []
    assert not list(out.parent.glob(".tmp-curated-*"))  # this run's temp folder and the stale one are gone
    monkeypatch.setattr(export, "_place", real)
    curate_step(p, root)
    assert not list(out.parent.glob(".tmp-*")) and not list(out.glob(".tmp-*"))
    assert (out / "webdataset" / "SHA256SUMS").read_text() == before["webdataset"]


@pytest.mark.slow
def test_the_curated_set_is_logged_to_mlflow_and_read_back(planted, tmp_path):
    import hashlib

    from mlflow.tracking import MlflowClient

    p, root = planted
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    q = parse_params({**p.model_dump(mode="json", by_alias=True),
                      "curate": {**p.model_dump(mode="json")["curate"], "pretty_name": "ants-and-bees",
                                 "mlflow": {"enabled": True, "tracking_uri": uri, "experiment": "test",
                                            "artifact_location": str(tmp_path / "artifacts")}}})
    r = curate_step(q, root)
    out = root / "data" / "curated"
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(r.details["mlflow_run"])
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset for d in run.inputs.dataset_inputs}
    splits = json.loads((out / "curate.json").read_text())["splits"]
    assert set(inputs) == {{"train": "training", "val": "validation", "test": "test"}[s] for s in splits}
    digest = hashlib.sha256((out / "curation.parquet").read_bytes()).hexdigest()
    for d in inputs.values():
        assert d.digest == digest[:16] and d.source_type == "dvc" and d.name.startswith("ants-and-bees/")
        assert json.loads(d.source)["path"] == "data/raw"
    assert run.data.metrics["included"] == len(ledger(root).query("included"))
    assert run.data.tags["pixelscope.ledger_sha256"] == digest
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"README.md", "profile.json", "validation.json", "curate.json"} <= artifacts


def test_balance_caps_target_shares_and_keep_modes():
    """Unit level: a target share caps the classes it names; diverse covers the class (k-center on
    the embeddings), quality follows the comparator rank, random is seeded."""
    import numpy as np

    from pixelscope.curate.balance import caps, choose

    assert caps({"a": 100, "b": 40, "c": 10}, None, {"a": 0.5, "b": 0.5}) == {"a": 40, "b": 40, "c": 10}
    assert caps({"a": 100, "b": 40}, 30, None) == {"a": 30, "b": 30}
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4]  # four tight clusters; 40 of the 43 rows sit in the first one
    x = np.vstack([centres[0] + 0.01 * rng.normal(size=(40, 8)), centres[1:] + 0.01 * rng.normal(size=(3, 8))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = np.arange(43)
    rank = np.arange(43)  # row 0 is the best
    diverse = choose(rows, 4, "diverse", rank, x, seed=0)
    assert set(diverse) == {0, 40, 41, 42}  # one per cluster, starting from the best
    assert list(choose(rows, 4, "quality", rank, x, seed=0)) == [0, 1, 2, 3]
    r1, r2 = choose(rows, 4, "random", rank, x, seed=7), choose(rows, 4, "random", rank, x, seed=7)
    assert list(r1) == list(r2) and list(choose(rows, 4, "random", rank, x, seed=8)) != list(r1)


@pytest.mark.slow
def test_suggested_labels_above_a_score_are_taken(planted):
    """curate.accept_suggested_above relabels the label-error finder's candidates at or above the score."""
    p, root = planted
    curate_step(p, root)
    ok = ledger(root).index[ledger(root)["included"]]  # rows the default recipe keeps
    issues = pq.read_table(root / p.paths.issues).to_pandas()
    issues["label_error"] = False
    issues["label_error_score"] = 0.0
    issues["suggested_label"] = pd.Series(pd.NA, index=issues.index, dtype="string")
    issues.loc[ok[:2], ["label_error", "label_error_score", "suggested_label"]] = [[True, 0.9, "bees"], [True, 0.5, "bees"]]
    issues.to_parquet(root / p.paths.issues)
    q = parse_params({**p.model_dump(mode="json", by_alias=True),
                      "curate": {**p.model_dump(mode="json")["curate"], "accept_suggested_above": 0.8}})
    r = curate_step(q, root)
    led = ledger(root)
    assert led.loc[ok[0], "label"] == "bees" and led.loc[ok[0], "label_fixed_by"].startswith("suggested label")
    assert led.loc[ok[1], "label"] == led.loc[ok[1], "original_label"]  # 0.5 < 0.8: kept
    assert r.details["counts"]["labels_fixed"] == 1


def test_issue_exclusions_without_an_issues_table_name_the_keys(corpus, tmp_path):
    p = parse_params({"ingest": {"workers": 1}, "curate": {"accept_suggested_above": 0.9}})
    raw = tmp_path / "data" / "raw" / "ants"
    raw.mkdir(parents=True)
    for f in photos(corpus, "ants", 2):
        shutil.copy(f, raw / f.name)
    ingest_to(p, tmp_path / p.paths.raw, tmp_path / p.paths.manifest)
    from pixelscope.errors import InputMissing

    with pytest.raises(InputMissing, match=r"curate.exclude: exact_duplicate.*curate.accept_suggested_above.*pixelscope issues"):
        curate_step(p, tmp_path)
    assert not (tmp_path / "data" / "curated").exists()  # nothing written
