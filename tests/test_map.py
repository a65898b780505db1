"""The embedding map and its clusters (pixelscope/embed/projection.py, pixelscope/clusters.py):
UMAP keeps more true neighbours than PCA on real photos, a planted group of copies becomes one
cluster, and the cluster table says what each cluster is."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pixelscope.clusters import cluster_table
from pixelscope.config import parse_params
from pixelscope.embed.projection import clusters, pca_map

COPIES = 12


@pytest.fixture(scope="module")
def mapped(corpus, tmp_path_factory):
    """The real corpus (every camera and format, the broken files too) plus 12 re-encoded, resized
    copies of one bee photo, ingested and embedded with the default map (UMAP) and clusters."""
    from pixelscope.embed.step import embed_step
    from pixelscope.ingest.step import ingest_step

    root = tmp_path_factory.mktemp("map")
    raw = root / "data" / "raw"
    shutil.copytree(corpus, raw, ignore=shutil.ignore_patterns("*.csv", "*.md", "SHA256SUMS"))
    original = sorted((raw / "labeled" / "hymenoptera" / "bees").glob("*.jpg"))[0]
    im = Image.open(original).convert("RGB")
    planted = raw / "planted"
    planted.mkdir()
    for k in range(COPIES):
        scale = 1 - 0.03 * k
        im.resize((int(im.width * scale), int(im.height * scale))).save(planted / f"copy_{k:02d}.jpg", quality=95 - 2 * k)
    p = parse_params({"ingest": {"workers": 2}})
    ingest_step(p, root)
    r = embed_step(p, root)
    store = next((root / p.paths.embeddings).glob("*/projection.parquet"))
    return root, p, r, pq.read_table(store), original.relative_to(raw).as_posix()


@pytest.mark.slow
def test_the_default_map_is_umap_and_a_planted_group_of_copies_is_one_cluster(mapped):
    _, _, result, table, original = mapped
    assert result.details["projection"] == "umap" and table.schema.metadata[b"pixelscope.projection"] == b"umap"
    frame = table.to_pandas()
    group = frame[frame["path"].str.contains("/planted/") | frame["path"].str.endswith("/" + original)]
    assert len(group) == COPIES + 1
    assert group["cluster"].nunique() == 1 and group["cluster"].iloc[0] >= 0, group["cluster"].tolist()
    assert result.details["clusters"] == frame["cluster"].max() + 1 >= 2


@pytest.mark.slow
def test_umap_keeps_more_true_neighbours_than_pca_on_real_photos(mapped):
    """The share of each image's 10 nearest neighbours (cosine, full embedding) that are also among
    its 10 nearest on the map; the planted copies are left out so they do not flatter either map."""
    from pixelscope.io.store import current_store

    root, p, _, table, original = mapped
    frame = table.to_pandas()
    keep = ~frame["path"].str.contains("/planted/").to_numpy()
    store = current_store(root / p.paths.embeddings)
    x = store.get(frame["id"].tolist()).astype(np.float32)[keep]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    umap_xy = frame[["x", "y"]].to_numpy()[keep]
    got = {name: kept_neighbours(x, xy) for name, xy in (("umap", umap_xy), ("pca", pca_map(x)))}
    print(f"true neighbours kept on the map (k=10, {len(x)} corpus images): {got}")
    assert got["umap"] > got["pca"], got


def kept_neighbours(x: np.ndarray, xy: np.ndarray, k: int = 10) -> float:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    true = np.argsort(-sims, axis=1)[:, :k]
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(true, near)]))


def test_hdbscan_finds_separate_blobs_and_calls_scattered_points_noise():
    rng = np.random.default_rng(0)
    blobs = [rng.normal(c, 0.05, (40, 2)) for c in ((0, 0), (3, 0), (0, 3))]
    scattered = np.array([[10, 10], [-6, 9], [12, -7], [-8, -8], [20, 2], [3, 18]], dtype=float)  # far apart
    found = clusters(np.vstack([*blobs, scattered]), min_size=10)
    assert [len(set(found[i * 40:(i + 1) * 40])) for i in range(3)] == [1, 1, 1]
    assert len({found[0], found[40], found[80]}) == 3 and min(found[:120]) >= 0
    assert (found[120:] == -1).all()
    assert (clusters(np.zeros((5, 2)), min_size=10) == -1).all()  # too few to cluster: all noise


def test_the_cluster_table_puts_mixed_and_troubled_clusters_first_and_names_what_sets_them_apart():
    n = 30
    ids = [f"{i:064x}" for i in range(3 * n + 4)]
    frame = pd.DataFrame({
        "id": ids, "path": [f"p{i}.jpg" for i in range(len(ids))],
        "cluster": [0] * n + [1] * n + [2] * n + [-1] * 4,
        "label": ["cat"] * n + ["cat"] * 15 + ["dog"] * 15 + ["dog"] * n + ["cat", "dog", "cat", "dog"],
        "dark": [False] * n + [False] * n + [True] * 20 + [False] * 10 + [False] * 4,
        "dark_score": 0.0,
        "brightness_mean": [0.5] * n + [0.5] * n + [0.1] * n + [0.5] * 4,
    })
    frame.loc[frame.index[:n], "brightness_mean"] += np.linspace(-0.01, 0.01, n)  # not constant
    proj = pd.DataFrame({"id": ids, "x": np.r_[np.linspace(0, 1, n), np.linspace(5, 6, n), np.linspace(9, 10, n),
                                                 [20, 21, 22, 23]], "y": 0.0})
    t = cluster_table(frame, proj).set_index("cluster")
    assert list(t.index[:2]) in ([1, 2], [2, 1]) and t.index[-1] == -1  # mixed labels, many dark; noise last
    assert t.at[1, "purity"] == 0.5 and t.at[0, "purity"] == 1.0 and t.at[1, "labels"] == "cat 15 · dog 15"
    assert t.at[2, "standout"].startswith("dark 67% (21% overall)")  # 20 of 94
    assert t.at[2, "distinct"].startswith("brightness_mean -")
    assert t.at[0, "size"] == n and len(t.at[0, "central"]) == 6
    assert set(t.at[0, "central_paths"]) == {f"p{i}.jpg" for i in range(12, 18)}  # the middle of 0..1


def test_a_cluster_is_a_slice_in_evaluate_and_a_value_in_filters():
    from pixelscope.curate.select import Images
    from pixelscope.evaluate import evaluate

    n = 200
    cluster = np.r_[np.zeros(50), np.ones(150)].astype(int)
    right = np.r_[np.arange(50) % 2 == 0, np.arange(150) % 10 != 0]  # 50 % in cluster 0, 90 % elsewhere
    frame = pd.DataFrame({"status": "ok", "label": "cat", "pred_label": np.where(right, "cat", "dog"),
                          "cluster": pd.array(cluster, dtype="Int32")})
    slices = evaluate(frame)["slices"]
    assert slices[0]["slice"] == "cluster = 0" and slices[0]["size"] == 50
    assert not [s for s in slices if "quartile" in s["slice"] and s["column"] == "cluster"]
    tagged = frame.assign(tags=[["night"] if i < 30 else [] for i in range(n)], exif_model="X100", exif_iso=100)
    right = np.r_[np.arange(30) % 3 == 0, np.arange(170) % 10 != 0]  # a third right on "night", 90 % elsewhere
    tagged["pred_label"] = np.where(right, "cat", "dog")
    assert "tags has night" in [s["slice"] for s in evaluate(tagged)["slices"]]
    assert not [s for s in evaluate(tagged)["slices"] if s["column"] == "exif_iso"]
    images = Images.over(pd.DataFrame({"id": [str(i) for i in range(n)], "path": "x", "status": "ok",
                                       "cluster": pd.array(cluster, dtype="Int32")}))
    assert int(images.where("cluster = 0", "curate.where").sum()) == 50


def test_an_unchanged_map_is_not_recomputed_and_a_moved_file_or_new_setting_is_seen(tmp_path, monkeypatch):
    """A rerun of the embed step with the same images and settings keeps the stored map (UMAP at
    100k takes minutes); a moved file rewrites the paths only; another setting recomputes."""
    import pixelscope.embed.projection as projection
    from pixelscope.embed.loader import Item
    from pixelscope.io.store import ShardStore

    rng = np.random.default_rng(0)
    store = ShardStore.create(tmp_path / "emb", "k", "float16", (8,), model="m")
    ids = [f"{i:064x}" for i in range(40)]
    store.add(ids, rng.normal(size=(40, 8)).astype(np.float16))
    items = [Item(i, f"a/{k}.jpg") for k, i in enumerate(ids)]
    labels = {i: "cat" for i in ids}
    first = projection.write_projection(store, items, labels, "pca", cluster_min_size=5)
    target = next((tmp_path / "emb").rglob("projection.parquet"))
    written = pq.read_table(target)
    stamp = target.stat().st_mtime_ns

    def no_map(*_, **__):
        raise AssertionError("the map was recomputed")

    monkeypatch.setattr(projection, "project", no_map)
    assert projection.write_projection(store, items, labels, "pca", cluster_min_size=5) == first
    assert target.stat().st_mtime_ns == stamp  # nothing changed: not even rewritten
    moved = [Item(items[0].id, "b/moved.jpg"), *items[1:]]
    projection.write_projection(store, moved, labels, "pca", cluster_min_size=5)
    again = pq.read_table(target)
    assert again.column("path")[0].as_py() == "b/moved.jpg"
    assert again.select(["id", "x", "y", "cluster"]).equals(written.select(["id", "x", "y", "cluster"]))
    with pytest.raises(AssertionError, match="recomputed"):
        projection.write_projection(store, moved, labels, "pca", cluster_min_size=6)
    with pytest.raises(AssertionError, match="recomputed"):
        projection.write_projection(store, moved[:-1], labels, "pca", cluster_min_size=5)
