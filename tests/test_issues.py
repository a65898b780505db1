"""Issue finders on real photos with planted problems, and their edge cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from conftest import ingest_to, profile_to, with_paths
from pixelscope.config import IssuesConfig, parse_params
from pixelscope.ingest.step import ingest_step
from pixelscope.issues import Dataset, Embeddings
from pixelscope.issues.duplicates import near_duplicate
from pixelscope.issues.labels import label_error
from pixelscope.issues.step import issues_step


def photos(corpus: Path, n: int) -> list[Path]:
    return sorted((corpus / "labeled" / "hymenoptera").rglob("*.jpg"))[:n]


def save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def run_issues(raw: Path, work: Path, **issues) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Ingest `raw`, run the issues step (no embedding store: hash signals only)."""
    p = parse_params({"ingest": {"workers": 1}, "issues": issues})
    ingest_to(p, raw, work / "m.parquet")
    p = with_paths(p, manifest=work / "m.parquet", raw=raw, embeddings=work / "none", issues=work / "issues.parquet",
                   issue_pairs=work / "pairs.parquet", issues_summary=work / "issues.json", neighbours=work / "n.parquet",
                   metrics=work / "metrics")
    issues_step(p, ".")
    return (pq.read_table(work / "issues.parquet").to_pandas(), pq.read_table(work / "pairs.parquet").to_pandas(),
            json.loads((work / "issues.json").read_text()))


@pytest.fixture(scope="module")
def planted(corpus, tmp_path_factory):
    """12 distinct ant/bee photos, plus planted copies of the first three and a dark and a blurred one."""
    root = tmp_path_factory.mktemp("planted")
    raw = root / "raw"
    src = photos(corpus, 14)
    (raw / "orig").mkdir(parents=True)
    (raw / "copies").mkdir()
    for f in src[:12]:
        shutil.copy(f, raw / "orig" / f.name)
    a, b, c = (Image.open(f).convert("RGB") for f in src[:3])
    shutil.copy(src[0], raw / "copies" / "a_bytes.jpg")  # the same bytes
    save(a, raw / "copies" / "a_pixels.png")  # the same decoded pixels, other bytes
    save(b, raw / "copies" / "b_q40.jpg", quality=40)
    save(b.resize((b.width // 2, b.height // 2), Image.LANCZOS), raw / "copies" / "b_half.jpg", quality=92)
    save(c.resize((c.width // 2, c.height // 2), Image.LANCZOS), raw / "copies" / "c_half.jpg", quality=92)
    d, e = (Image.open(f).convert("RGB") for f in src[12:14])
    save(ImageEnhance.Brightness(d).enhance(0.08), raw / "bad" / "dark.jpg", quality=92)
    save(e.filter(ImageFilter.GaussianBlur(8)), raw / "bad" / "blurred.jpg", quality=92)
    issues, pairs, summary = run_issues(raw, root)
    return issues.set_index("path"), pairs, summary, src


def test_exact_duplicates_by_bytes_and_by_pixels(planted):
    issues, pairs, summary, src = planted
    a = f"orig/{src[0].name}"
    assert issues.loc["copies/a_bytes.jpg", "exact_duplicate"] and issues.loc["copies/a_pixels.png", "exact_duplicate"]
    group = issues.loc[a, "duplicate_group"]
    assert issues.loc["copies/a_bytes.jpg", "duplicate_group"] == issues.loc["copies/a_pixels.png", "duplicate_group"] == group
    members = {a, "copies/a_bytes.jpg", "copies/a_pixels.png"}
    exact = pairs[pairs["kind"].str.startswith("exact")]
    assert set(exact["a"]) | set(exact["b"]) == members
    byte_pair = exact[exact["kind"] == "exact_bytes"]
    assert len(byte_pair) == 1 and {byte_pair["a"].iloc[0], byte_pair["b"].iloc[0]} == {a, "copies/a_bytes.jpg"}
    assert (exact["kind"] == "exact_pixels").sum() == 1  # the PNG against the JPEG bytes, whichever is kept
    assert issues.loc[list(members), "representative"].sum() == 1


def test_near_duplicates_grouped_with_the_best_as_representative(planted):
    issues, pairs, summary, src = planted
    b, c = f"orig/{src[1].name}", f"orig/{src[2].name}"
    assert issues.loc[["copies/b_q40.jpg", "copies/b_half.jpg"], "near_duplicate"].all()
    assert issues.loc["copies/b_q40.jpg", "duplicate_group"] == issues.loc["copies/b_half.jpg", "duplicate_group"] \
        == issues.loc[b, "duplicate_group"]
    assert issues.loc["copies/c_half.jpg", "duplicate_group"] == issues.loc[c, "duplicate_group"]
    # the comparator keeps the largest resolution, not the first file: the half-size copies are never kept
    assert issues.loc[c, "representative"] and not issues.loc["copies/c_half.jpg", "representative"]
    assert not issues.loc["copies/b_half.jpg", "representative"]
    near = pairs[pairs["kind"] == "near"]
    limit = IssuesConfig().hash_max_distance
    assert set(near["signal"]) <= {"hash", "embedding", "both"} and (near["distance"] <= limit).all()
    assert summary["finders"]["near_duplicate"]["thresholds"]["hash_max_distance"] == limit


def test_distinct_photos_are_not_grouped(planted):
    issues, _, _, src = planted
    distinct = [f"orig/{f.name}" for f in src[3:12]]
    assert issues.loc[distinct, "duplicate_group"].isna().all()
    assert issues.loc[distinct, "representative"].all()


def test_planted_dark_and_blurry_are_flagged(planted):
    issues, _, summary, _ = planted
    assert issues.loc["bad/dark.jpg", "dark"] and "dark: mean brightness" in issues.loc["bad/dark.jpg", "reasons"]
    assert issues.loc["bad/blurred.jpg", "blurry"]
    assert summary["finders"]["quality"]["thresholds"]["blurry"]["source"] == "issues.blurry_max_detail (absolute)"
    assert not issues.loc[issues.index.str.startswith("orig/"), "dark"].any()


def test_finders_that_need_embeddings_or_splits_say_so(planted):
    _, _, summary, _ = planted
    f = summary["finders"]
    assert "no embeddings" in f["label_error"]["skipped"] and "no embeddings" in f["outlier"]["skipped"]
    assert "no splits" in f["leakage"]["skipped"]
    assert summary["embeddings"].startswith("no embedding store")


def hashes_frame(phashes: list[str], widths: list[int]) -> pd.DataFrame:
    n = len(phashes)
    return pd.DataFrame({"id": [f"id{i}" for i in range(n)], "path": [f"p{i}.jpg" for i in range(n)],
                         "status": "ok", "label": None, "split": None, "phash": phashes, "width": widths,
                         "height": widths, "sharpness": 100.0, "dark_fraction": 0.0, "bright_fraction": 0.0,
                         "exif_make": None, "exif_model": None})


def test_groups_do_not_chain():
    """A~B and B~C within 4 bits, A and C 6 bits apart: C must not join A's group through B."""
    a = 0
    b = 0b111  # 3 bits from A
    c = 0b111111  # 6 bits from A, 3 from B
    frame = hashes_frame([f"{h:016x}" for h in (a, b, c)], [300, 200, 100])  # A is the best representative
    f = near_duplicate(Dataset(frame, IssuesConfig(hash_max_distance=4)), {})
    group = f.columns["duplicate_group"]
    assert group[0] == group[1] and pd.isna(group[2])
    assert f.columns["representative"].tolist() == [True, False, True]


def test_leakage_across_split_folders_is_listed_pair_by_pair(corpus, tmp_path):
    src = photos(corpus, 3)
    raw = tmp_path / "raw"
    for split, f in (("train", src[0]), ("val", src[0]), ("test", src[0]), ("train", src[1]), ("val", src[2])):
        (raw / split / "ant").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, raw / split / "ant" / f.name)
    issues, pairs, summary = run_issues(raw, tmp_path)
    leak = pairs[pairs["kind"] == "leakage"]
    assert len(leak) == 3 and leak["cross_split"].all()  # train-val, train-test, val-test
    assert issues["leakage"].sum() == 3 and summary["finders"]["leakage"]["pairs"] == 3
    assert not issues.set_index("path").loc[f"train/ant/{src[1].name}", "leakage"]


def test_flags_of_old_images_do_not_move_when_a_batch_is_added(corpus, tmp_path):
    """With a pinned reference profile, blurry (issues.blurry_mode: reference) and odd-size thresholds
    come from it: adding very blurry and very large images does not change the flags of the images
    already there. In the default absolute mode blurry never depends on the other images."""
    old = tmp_path / "v1"
    for f in photos(corpus, 20):
        (old / "x").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, old / "x" / f.name)
    p = parse_params({"ingest": {"workers": 1}})
    ingest_to(p, old, tmp_path / "ref.parquet")
    profile_to(p, tmp_path / "ref.parquet", tmp_path / "ref.json")
    new = tmp_path / "v2"
    shutil.copytree(old, new)
    for i, f in enumerate(photos(corpus, 30)[20:]):
        im = Image.open(f).convert("RGB")
        save(im.filter(ImageFilter.GaussianBlur(6)).resize((im.width * 3, im.height * 3)), new / "y" / f"big_{i}.jpg")

    def flags(raw: Path, work: Path, reference: str | None, mode: str = "reference") -> pd.DataFrame:
        p = parse_params({"ingest": {"workers": 1}, "validate": {"reference": reference},
                          "issues": {"blurry_mode": mode}})
        ingest_to(p, raw, work / "m.parquet")
        issues_step(with_paths(p, manifest=work / "m.parquet", raw=raw, embeddings=work / "none",
                               issues=work / "i.parquet", issue_pairs=work / "p.parquet",
                               issues_summary=work / "i.json", neighbours=work / "n.parquet",
                               metrics=work / "metrics"), ".")
        t = pq.read_table(work / "i.parquet").to_pandas().set_index("path")
        return t[["blurry", "odd_size", "odd_aspect"]]

    ref = str(tmp_path / "ref.json")
    before = flags(old, tmp_path / "a", ref)
    after = flags(new, tmp_path / "b", ref)
    assert after.loc[before.index].equals(before)
    assert after.loc[after.index.str.startswith("y/"), "blurry"].all()
    assert json.loads((tmp_path / "b" / "i.json").read_text())["finders"]["quality"]["thresholds"]["blurry"][
        "source"].startswith("reference")
    # without the reference the thresholds follow the data, and the old images' flags do move
    alone, grown = flags(old, tmp_path / "c", None), flags(new, tmp_path / "d", None)
    assert alone["blurry"].any() and not grown.loc[alone.index].equals(alone)
    # absolute mode: no reference needed, the old images keep their flags, the blurred batch is flagged
    alone, grown = flags(old, tmp_path / "e", None, "absolute"), flags(new, tmp_path / "f", None, "absolute")
    assert grown.loc[alone.index, "blurry"].equals(alone["blurry"]) and not alone["blurry"].any()
    assert grown.loc[grown.index.str.startswith("y/"), "blurry"].all()


def clustered(n_per: int, classes: int, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per)
    x = centres[labels] + 0.35 * rng.normal(size=(len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test_label_errors_found_by_knn_and_cleanlab():
    x, labels = clustered(40, 4)
    names = np.array(["ant", "bee", "cat", "dog"])
    given = labels.copy()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(given), 12, replace=False)
    given[flipped] = (given[flipped] + 1) % 4
    ids = [f"id{i}" for i in range(len(x))]
    frame = pd.DataFrame({"id": ids, "path": [f"{i}.jpg" for i in ids], "status": "ok", "label": names[given],
                          "split": None})
    f = label_error(Dataset(frame, IssuesConfig(), Embeddings(ids, x, "synthetic")), {})
    found = set(np.flatnonzero(f.columns["label_error"].to_numpy()))
    assert len(found & set(flipped)) >= 10 and len(found - set(flipped)) <= 3
    suggested = f.columns["suggested_label"]
    assert all(suggested[i] == names[labels[i]] for i in found & set(flipped))
    assert "cleanlab" in f.summary["method"]


def test_label_errors_need_two_classes():
    x, _ = clustered(10, 1)
    ids = [f"id{i}" for i in range(10)]
    frame = pd.DataFrame({"id": ids, "path": ids, "status": "ok", "label": "ant", "split": None})
    f = label_error(Dataset(frame, IssuesConfig(), Embeddings(ids, x, "synthetic")), {})
    assert f.skipped and "two classes" in f.skipped


def test_one_image_and_only_broken_files_give_a_table_not_a_crash(corpus, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(photos(corpus, 1)[0], one / "a.jpg")
    issues, pairs, summary = run_issues(one, tmp_path / "w1")
    assert len(issues) == 1 and len(pairs) == 0 and not issues["near_duplicate"].any()
    assert "needs labels" in summary["finders"]["dataset"]["skipped"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "empty.jpg").write_bytes(b"")
    (broken / "junk.png").write_bytes(b"not an image")
    issues, pairs, summary = run_issues(broken, tmp_path / "w2")
    assert issues["unreadable"].all() and summary["finders"]["unreadable"]["flagged"] == 2
    assert not issues["quality"].any() and len(pairs) == 0


def test_unknown_finder_is_a_config_error(corpus, tmp_path):
    from pixelscope.errors import ConfigError

    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(photos(corpus, 1)[0], one / "a.jpg")
    with pytest.raises(ConfigError, match="issues.finders: unknown finder"):
        run_issues(one, tmp_path, finders=["quality", "nope"])


def test_a_plugin_finder_runs_and_writes_its_columns(corpus, tmp_path, monkeypatch):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "my_finders.py").write_text(
        "from pixelscope.issues import Finding, finder\n\n"
        "@finder('wide')\n"
        "def wide(data, found):\n"
        "    r = data.frame['aspect_ratio'] > 1.2\n"
        "    return Finding.flags('wide', r, data.frame['aspect_ratio'].fillna(0), 'wider than 1.2')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    from pixelscope.issues import FINDERS

    with FINDERS.scoped():
        raw = tmp_path / "raw"
        raw.mkdir()
        for f in photos(corpus, 4):
            shutil.copy(f, raw / f.name)
        issues, _, summary = run_issues(raw, tmp_path, plugins=["my_finders"], finders=["quality", "wide"])
    assert "wide" in issues and "wide_score" in issues and summary["finders"]["wide"]["flagged"] == issues["wide"].sum()



def test_the_approximate_graph_above_exact_index_max_agrees_with_exact_search():
    """Above issues.exact_index_max the graph comes from IVF over a PCA, re-scored on the full
    vectors: nearly the same neighbours, exact cosines, no invented pairs."""
    from pixelscope.neighbours import knn_graph

    x, _ = clustered(30, 20, dim=64, seed=3)
    exact = knn_graph(x, 20, exact_max=10**6)
    approx = knn_graph(x, 20, exact_max=100, reduce_dim=16)
    assert exact.index.startswith("exact") and approx.index.startswith("IVF-Flat") and "16-d PCA" in approx.index
    assert not (exact.nbrs == np.arange(len(x))[:, None]).any()  # an image is never its own neighbour
    found = approx.nbrs >= 0
    cos = np.einsum("nd,nkd->nk", x, x[np.maximum(approx.nbrs, 0)])
    # re-ranked with the full vectors at float16 (the embedding store's precision), not the 16-d PCA
    assert np.abs(approx.sims[found] - cos[found]).max() < 2e-3
    recall = np.mean([len(set(p[:10]) & set(q[:10])) / 10 for p, q in zip(exact.nbrs, approx.nbrs)])
    assert recall >= 0.95
    e_pairs, a_pairs = (set(zip(*g.pairs(0.9)[:2])) for g in (exact, approx))
    assert a_pairs <= e_pairs and len(a_pairs) >= 0.95 * len(e_pairs)


def test_near_duplicate_pairs_of_a_big_group_of_copies_are_complete():
    """More copies than the graph keeps per image: the search widens for those rows, so every
    pair is found (exact and approximate index)."""
    from pixelscope.neighbours import knn_graph

    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 32))
    x = np.vstack([base + 0.01 * rng.normal(size=(60, 32)), rng.normal(size=(200, 32))]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for exact_max in (10**6, 100):
        i, j, _ = knn_graph(x, 20, exact_max=exact_max, reduce_dim=8).pairs(0.95)
        group = {(a, b) for a, b in zip(i, j) if b < 60}
        assert len(group) == 60 * 59 // 2


def test_the_outlier_bar_comes_from_the_reference_profiles_knn_distances(corpus, tmp_path):
    """The profile sketches every image's kNN distance; pinned as the reference, it fixes the outlier
    threshold, so a batch of scattered new images does not unflag an old outlier."""
    from pixelscope.io.store import CURRENT, ShardStore

    src = photos(corpus, 40)
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for f in src[:30]:
        (v1 / "x").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, v1 / "x" / f.name)
    shutil.copytree(v1, v2)
    for f in src[30:]:
        (v2 / "y").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, v2 / "y" / f.name)
    p = parse_params({"ingest": {"workers": 1}, "issues": {"outlier_quantile": 0.9}})
    ingest_to(p, v2, tmp_path / "all.parquet")
    frame = pq.read_table(tmp_path / "all.parquet").to_pandas()
    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    centre /= np.linalg.norm(centre)
    old = frame["path"].str.startswith("x/").to_numpy()
    x = np.where(old[:, None], centre + 0.05 * rng.normal(size=(len(frame), 64)), rng.normal(size=(len(frame), 64)))
    planted = int(np.flatnonzero(old)[0])
    away = rng.normal(size=64)
    away -= away @ centre * centre
    x[planted] = 0.3 * centre + 0.95 * away / np.linalg.norm(away)  # cosine ~0.3 to the cluster
    store = ShardStore.create(tmp_path / "emb", "synthetic", "float16", (64,), model="synthetic")
    store.add(frame["id"].tolist(), x.astype(np.float16))
    (tmp_path / "emb" / CURRENT).write_text(json.dumps({"key": "synthetic", "model": "synthetic", "dim": 64}))
    ingest_to(p, v1, tmp_path / "v1.parquet")
    profile_to(p, tmp_path / "v1.parquet", tmp_path / "ref.json", embeddings=tmp_path / "emb")
    knn = json.loads((tmp_path / "ref.json").read_text())["embedding"]["knn"]
    assert knn["k"] == 10 and knn["index"].startswith("exact")

    def outliers(raw: Path, work: Path, reference: str | None) -> tuple[pd.Series, dict]:
        q = parse_params({"ingest": {"workers": 1}, "issues": {"outlier_quantile": 0.9},
                          "validate": {"reference": reference}})
        ingest_to(q, raw, work / "m.parquet")
        issues_step(with_paths(q, manifest=work / "m.parquet", raw=raw, embeddings=tmp_path / "emb",
                               issues=work / "i.parquet", issue_pairs=work / "p.parquet",
                               issues_summary=work / "i.json", neighbours=work / "n.parquet",
                               metrics=work / "metrics"), ".")
        t = pq.read_table(work / "i.parquet").to_pandas().set_index("path")
        return t["outlier"], json.loads((work / "i.json").read_text())["finders"]["outlier"]["threshold"]

    ref = str(tmp_path / "ref.json")
    before, bar1 = outliers(v1, tmp_path / "a", ref)
    after, bar2 = outliers(v2, tmp_path / "b", ref)
    planted_path = frame.at[planted, "path"]
    assert before[planted_path] and bar1["source"].startswith("reference") and bar1 == bar2
    assert after.loc[before.index].equals(before)
    # without the reference the bar follows the data: the scattered batch lifts it over the old outlier
    grown, bar3 = outliers(v2, tmp_path / "c", None)
    assert bar3["source"].startswith("this dataset") and bar3["value"] > bar1["value"]
    assert not grown[planted_path]


def test_an_empty_manifest_gives_empty_tables_and_says_why_finders_skipped(tmp_path):
    """Ingest refuses an empty folder; a manifest with no rows (e.g. everything filtered out
    upstream) still gives the three outputs, each finder either at 0 or skipped with a reason."""
    from pixelscope.ingest.step import manifest_columns
    from pixelscope.io.manifest import manifest_schema

    pq.write_table(manifest_schema(manifest_columns()).empty_table(), tmp_path / "m.parquet")
    p = with_paths(parse_params({}), manifest=tmp_path / "m.parquet", raw=tmp_path, embeddings=tmp_path / "none",
                   issues=tmp_path / "i.parquet", issue_pairs=tmp_path / "p.parquet",
                   issues_summary=tmp_path / "i.json", neighbours=tmp_path / "n.parquet", metrics=tmp_path / "metrics")
    r = issues_step(p, ".")
    assert pq.read_table(tmp_path / "i.parquet").num_rows == 0 and pq.read_table(tmp_path / "p.parquet").num_rows == 0
    finders = json.loads((tmp_path / "i.json").read_text())["finders"]
    assert all(f.get("flagged", 0) == 0 or f.get("skipped") for f in finders.values())
    assert "no embeddings" in finders["label_error"]["skipped"] and r.counts["files_seen"] == 0


def test_a_reference_without_values_of_a_feature_falls_back_to_this_dataset(tmp_path):
    """A reference profile whose column holds no values (all null there) gives no threshold of its
    own: the flag's bar comes from this dataset, and issues.json says why."""
    import pyarrow as pa

    from pixelscope.profile import Profile

    n = 40
    frame = pd.DataFrame({"status": ["ok"] * n, "megapixels": np.linspace(0.1, 4.0, n)})
    from pixelscope.ingest.step import manifest_columns
    from pixelscope.io.manifest import manifest_schema

    cols = manifest_columns()
    rows = {c.name: [None] * n for c in cols} | {"id": [f"{i:064x}" for i in range(n)], "status": ["ok"] * n,
                                                  "path": [f"{i}.jpg" for i in range(n)], "width": [640] * n}
    pq.write_table(pa.Table.from_pydict(rows, schema=manifest_schema(cols)), tmp_path / "ref.parquet")
    ref = Profile.from_manifest(tmp_path / "ref.parquet")
    assert "megapixels" in ref.columns and ref.quantiles("megapixels", [0.5])[0] is None
    data = Dataset(frame, IssuesConfig(), reference=ref, reference_name="ref.json")
    value, source = data.threshold("megapixels", 0.01)
    assert value == pytest.approx(frame["megapixels"].quantile(0.01))
    assert source == "this dataset q0.01 (reference ref.json has no megapixels values)"


def test_overexposed_dark_and_blurred_real_photos_are_found_at_any_size(corpus, tmp_path):
    """The absolute bars (chosen on other sources by benchmarks/bench_quality.py) on 32 x 32 CIFAR
    images and on ant / bee photos: each planted overexposed (RGB x 3.5, clipped), dark (x 0.08) and
    blurred (Gaussian sigma 4) copy is found, and the untouched images are not flagged — except the
    overexposed flag's known limit: a white-background studio shot (an ant on white, 58 % of its
    pixels clipped, mean 0.71) reads as overexposed to clipping and brightness alone (bench_quality:
    4-8 % of untouched photos, the issue's 1 % not met)."""
    cifar = sorted((corpus / "labeled" / "cifar10").rglob("*.jpg"))[::10][:12]  # airplanes, cats and dogs
    raw = tmp_path / "raw"
    for group, files in (("tiny", cifar), ("photo", photos(corpus, 12))):
        for k, f in enumerate(files):
            im = Image.open(f).convert("RGB")
            a = np.asarray(im, dtype=np.float32)
            ext = f.suffix.lower()
            save(im, raw / group / "none" / f"{k}{ext}")
            save(Image.fromarray(np.clip(a * 3.5, 0, 255).astype(np.uint8)), raw / group / "overexposed" / f"{k}{ext}")
            save(Image.fromarray((a * 0.08).astype(np.uint8)), raw / group / "dark" / f"{k}{ext}")
            save(im.filter(ImageFilter.GaussianBlur(4)), raw / group / "blurry" / f"{k}{ext}")
    issues, _, summary = run_issues(raw, tmp_path / "work")
    issues = issues.set_index("path")
    kind = issues.index.str.split("/").str[1]
    assert (issues.index.str.startswith("tiny/") & (kind == "none")).sum() == 12  # 32 x 32, judged at 32 x 32
    for flag in ("overexposed", "dark", "blurry"):
        for group in ("tiny", "photo"):
            mine = issues.index.str.startswith(f"{group}/")
            missed = set(issues.index[mine & (kind == flag) & ~issues[flag]])
            assert not missed, (flag, missed)
            wrong = set(issues.index[mine & (kind == "none") & issues[flag]])
            known = {"photo/none/6.jpg"} if (flag, group) == ("overexposed", "photo") else set()  # the studio shot
            assert wrong == known, (flag, wrong)
        assert (issues.loc[kind == flag, f"{flag}_score"] >= 0.5).all()  # a flag's score says how sure
    assert summary["finders"]["quality"]["thresholds"]["overexposed"]["clipped"] == 0.3


def test_flipped_and_letterboxed_copies_are_near_duplicates_at_any_size(corpus, tmp_path):
    """By the hash alone (no embeddings): a left-right flipped copy matches through the mirrored pHash,
    a letterboxed + pillarboxed copy through the hash of the content inside its padding — on 32 x 32
    CIFAR images and on ant / bee photos; distinct originals stay apart. Measured: every flip, and 21
    of the 24 padded copies (where an image's own edges are uniform, the padding's end is ambiguous:
    those are left to the embedding)."""
    cifar = sorted((corpus / "labeled" / "cifar10").rglob("*.jpg"))[::10][:12]
    raw = tmp_path / "raw"
    for group, files in (("tiny", cifar), ("photo", photos(corpus, 12))):
        for k, f in enumerate(files):
            im = Image.open(f).convert("RGB")
            w, h = im.size
            save(im, raw / group / f"{k}_orig.png")
            save(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), raw / group / f"{k}_flip.jpg", quality=92)
            side = max(w, h) * 5 // 4  # padded on all sides: a letterbox and a pillarbox at once
            canvas = Image.new("RGB", (side, side))
            canvas.paste(im, ((side - w) // 2, (side - h) // 2))
            save(canvas, raw / group / f"{k}_box.jpg", quality=92)
    issues, pairs, _ = run_issues(raw, tmp_path / "work")
    group_of = issues.set_index("path")["duplicate_group"]

    def together(kind: str) -> int:
        pairs_of = [(group_of[f"{g}/{k}_orig.png"], group_of[f"{g}/{k}_{kind}.jpg"]) for g in ("tiny", "photo")
                    for k in range(12)]
        return sum(pd.notna(a) and pd.notna(b) and a == b for a, b in pairs_of)

    assert together("flip") == 24
    assert together("box") >= 21
    originals = group_of[[f"{g}/{k}_orig.png" for g in ("tiny", "photo") for k in range(12)]]
    assert originals.dropna().nunique() == originals.notna().sum()  # no two originals in one group
    flips = pairs[pairs["b"].str.endswith("_flip.jpg") | pairs["a"].str.endswith("_flip.jpg")]
    assert len(flips) >= 24 and (flips["signal"] == "hash").all()


def test_a_small_letterboxed_copy_is_not_kept_over_its_original_and_a_half_size_copy_joins(corpus, tmp_path):
    """32 px photos with a letterboxed copy (JPEG q92: ringing hides most of a 32 px letterbox's bars
    from border_fraction) and a 16 px half-size copy, by the hash alone: the original is kept, never the
    padded copy (issues.representative counts up to 7 hidden lines a side), and the half-size copy
    is in the original's group (the hashes' padding crop no longer eats a small photo's own edges)."""
    raw = tmp_path / "raw"
    shrunk = [Image.open(f).convert("RGB") for f in photos(corpus, 16)]
    for im in shrunk:
        im.thumbnail((32, 32), Image.LANCZOS)
    for k, im in enumerate([im for im in shrunk if im.width != im.height][:12]):  # a square one has no bars
        w, h = im.size
        save(im, raw / f"{k}_orig.jpg", quality=92)
        save(im.resize((w // 2, h // 2), Image.LANCZOS), raw / f"{k}_half.jpg", quality=92)
        boxed = Image.new("RGB", (max(w, h), max(w, h)))
        boxed.paste(im, ((max(w, h) - w) // 2, (max(w, h) - h) // 2))
        save(boxed, raw / f"{k}_box.jpg", quality=92)
    issues, _, _ = run_issues(raw, tmp_path / "work")
    group, kept = issues.set_index("path")["duplicate_group"], issues.set_index("path")["representative"]
    boxed_kept = [k for k in range(12) if pd.notna(group[f"{k}_box.jpg"]) and kept[f"{k}_box.jpg"]]
    joined = [k for k in range(12) if pd.notna(group[f"{k}_half.jpg"]) and group[f"{k}_half.jpg"] == group[f"{k}_orig.jpg"]]
    assert not boxed_kept, boxed_kept  # measured: 0 of 12 (3 of 12 with the old 3 % allowance)
    assert len(joined) >= 11, joined  # measured: 12 of 12 (10 with the old padding crop)


def copy_kinds(im: Image.Image, out: Path, name: str) -> list[Path]:
    """Ten visible copy kinds of one image (as benchmarks/bench_duplicates.py plants them)."""
    w, h = im.size
    side = max(w, h)
    boxed = Image.new("RGB", (side, side))
    boxed.paste(im, ((side - w) // 2, (side - h) // 2))
    marked = im.copy()
    ImageDraw.Draw(marked).text((w // 20, h - h // 6), "(c) pixelscope 2026", fill=(255, 255, 255),
                                font=ImageFont.load_default(size=max(12, h // 12)))
    copies = {"q40": (im, {"quality": 40}), "half": (im.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS), {}),
              "crop": (im.crop((w // 20, h // 20, w - w // 20, h - h // 20)), {}),
              "bright": (ImageEnhance.Brightness(im).enhance(1.15), {}),
              "rotate": (im.rotate(3, resample=Image.BICUBIC), {}),
              "flip": (im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {}), "mark": (marked, {}), "box": (boxed, {})}
    made = [save(c, out / f"{name}_{kind}.jpg", **({"quality": 92} | kw)) for kind, (c, kw) in copies.items()]
    return made + [save(im, out / f"{name}_png.png")]


@pytest.mark.slow
def test_every_copy_kind_is_found_on_tiny_and_photo_sized_images_and_untouched_ones_are_not(corpus, tmp_path):
    """The fused rule (hash + embedding + size, issues.near_duplicate_model) with the shipped defaults:
    nine visible copy kinds of 32 x 32 CIFAR images and of ant / bee photos join their original's
    group; distinct originals — of the same classes, the hard negatives — are never grouped."""
    from pixelscope.embed.step import embed_step

    cifar = sorted((corpus / "labeled" / "cifar10").rglob("*.jpg"))
    tiny, photo = cifar[::15][:8], photos(corpus, 8)
    raw = tmp_path / "raw"
    for group, files in (("tiny", tiny), ("photo", photo)):
        for k, f in enumerate(files):
            im = Image.open(f).convert("RGB")
            save(im, raw / group / f"{k}_orig.jpg", quality=95)
            if k < 4:  # the first four are copied, the other four stay untouched
                copy_kinds(im, raw / group, str(k))
    p = parse_params({"ingest": {"workers": 1}})
    work = tmp_path / "work"
    p = with_paths(p, manifest=work / "m.parquet", raw=raw, embeddings=work / "emb", issues=work / "issues.parquet",
                   issue_pairs=work / "pairs.parquet", issues_summary=work / "issues.json", neighbours=work / "n.parquet",
                   metrics=work / "metrics", tensors=work / "tensors")
    ingest_step(p, ".")
    embed_step(p, ".")
    issues_step(p, ".")
    issues = pq.read_table(work / "issues.parquet").to_pandas().set_index("path")
    summary = json.loads((work / "issues.json").read_text())["finders"]["near_duplicate"]
    assert summary["rule"] == "fused"
    group = issues["duplicate_group"]
    family = issues.index.str.extract(r"^(\w+)/(\d+)_", expand=True).agg("/".join, axis=1).to_numpy()
    copies = [(f"{g}/{k}_orig.jpg", path) for path in issues.index for g in ("tiny", "photo") for k in range(4)
              if path.startswith(f"{g}/{k}_") and not path.endswith("_orig.jpg")]
    assert len(copies) == 2 * 4 * 9
    missed = [c for o, c in copies if not (pd.notna(group[o]) and pd.notna(group[c]) and group[o] == group[c])]
    assert len(missed) <= 2, missed  # measured: every copy found
    for g in ("tiny", "photo"):
        untouched = [f"{g}/{k}_orig.jpg" for k in range(4, 8)]
        assert issues.loc[untouched, "duplicate_group"].isna().all() and not issues.loc[untouched, "near_duplicate"].any()
    grouped = issues[group.notna()]
    fam = pd.Series(family, index=issues.index)[grouped.index]
    assert (fam.groupby(grouped["duplicate_group"]).nunique() == 1).all()  # no group mixes two originals
    found = [c for _, c in copies if c not in missed]
    assert (issues.loc[found, "near_duplicate_score"] >= summary["thresholds"]["min_probability"]).all()  # P(pair)
