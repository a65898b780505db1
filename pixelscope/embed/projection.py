"""A 2-D map of the embeddings and its clusters, for the dashboard and for slicing: written by
the embed step into the store (projection.parquet: id, path, label, x, y, cluster), copied into
the bundle by publish; the issues step carries `cluster` into the issues table
(pixelscope.clusters.read_clusters), so
`curate.where`, slices, the Images filter and `pixelscope evaluate` can use it.

- Map: UMAP (umap-learn, cosine, seeded) by default; it keeps neighbourhoods, where PCA of a
  1280-d embedding mostly shows its two largest directions (BENCHMARKS.md, "Map and clusters",
  measures how many true neighbours each keeps). UMAP runs on the top PCA_DIMS principal
  components of the unit vectors (the usual speed-up; cosine is kept). Above FIT_SAMPLE images it
  is fitted on a seeded sample and the rest are placed with `transform`. `embed.projection: pca`
  (or umap-learn missing, said in the metrics) gives the exact, deterministic PCA map instead.
- Clusters: HDBSCAN (scikit-learn) on the 2-D map, so a cluster is a dense region the user sees;
  noise is -1. The smallest cluster is `embed.cluster_min_size` images, or by default
  max(5, sqrt(n) / 2) (16 at 1,000 images, 158 at 100,000).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.errors import ConfigError
from pixelscope.io.atomic import atomic_path

if TYPE_CHECKING:
    from pixelscope.embed.loader import Item
    from pixelscope.io.store import ShardStore

FIT_SAMPLE = 20_000  # UMAP fits on at most this many images; the rest are transformed
PCA_DIMS = 50  # UMAP's input: the unit vectors' top principal components
MIN_UMAP = 16  # fewer images than this: PCA (UMAP needs a neighbourhood)


def _top_components(x: np.ndarray, dims: int, rng: np.random.Generator) -> np.ndarray:
    """x projected on its top `dims` principal directions (fitted on at most FIT_SAMPLE rows)."""
    if x.shape[1] <= dims:
        return x
    fit = x if len(x) <= FIT_SAMPLE else x[rng.choice(len(x), FIT_SAMPLE, replace=False)]
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return ((x - mean) @ vt[:dims].T).astype(np.float32)


def umap_map(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """UMAP coordinates (n, 2) of unit vectors x: fit on a sample above FIT_SAMPLE, transform the rest."""
    import warnings

    import umap

    rng = np.random.default_rng(seed)
    z = _top_components(x, PCA_DIMS, rng)
    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, len(z) - 1), random_state=seed)
    with warnings.catch_warnings():  # "n_jobs overridden by random_state": seeded runs are single-threaded
        warnings.simplefilter("ignore", UserWarning)
        if len(z) <= FIT_SAMPLE:
            return np.asarray(reducer.fit_transform(z), dtype=np.float32)
        fit = np.sort(rng.choice(len(z), FIT_SAMPLE, replace=False))
        reducer.fit(z[fit])
        rest = np.setdiff1d(np.arange(len(z)), fit)
        xy = np.empty((len(z), 2), dtype=np.float32)
        xy[fit] = reducer.embedding_
        xy[rest] = reducer.transform(z[rest])
    return xy


def pca_map(vectors: np.ndarray) -> np.ndarray:
    """The exact, deterministic PCA map (SVD; signs fixed so runs agree)."""
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) < 2:
        return np.zeros((len(x), 2), dtype=np.float32)
    centered = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    comps = vt[:2]
    comps *= np.sign(comps[:, :1] + 1e-12)
    xy = centered @ comps.T
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy.astype(np.float32)


def project(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the method used: "umap", or "pca" (asked, too few images, or
    "pca (umap-learn is not installed)")."""
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) == 0:
        return np.empty((0, 2), dtype=np.float32), "none"
    if method in ("auto", "umap") and len(x) >= MIN_UMAP:
        try:
            import umap  # noqa: F401
        except ImportError:
            if method == "umap":
                raise ConfigError("embed.projection: umap needs `pip install umap-learn` (or use pca/auto)") from None
            return pca_map(x), "pca (umap-learn is not installed)"
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return umap_map(unit, seed), "umap"
    return pca_map(x), "pca"


def min_cluster_size(n: int, configured: int | None = None) -> int:
    return configured if configured is not None else max(5, round(math.sqrt(n) / 2))


def clusters(xy: np.ndarray, min_size: int) -> np.ndarray:
    """HDBSCAN cluster ids of the map's points (int32; noise -1; all -1 when there are too few)."""
    if len(xy) < max(2 * min_size, 3):
        return np.full(len(xy), -1, dtype=np.int32)
    from sklearn.cluster import HDBSCAN

    found = HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(np.asarray(xy, dtype=np.float64))
    return found.astype(np.int32)


def write_projection(store: ShardStore, items: list[Item], labels: dict[str, str | None], method: str,
                     cluster: bool = True, cluster_min_size: int | None = None) -> tuple[str, int]:
    """projection.parquet in the store folder: id, path, label, x, y, cluster for every embedded
    manifest image. Returns the method used and the number of clusters found."""
    have = store.ids()
    ids = [it.id for it in items if it.id in have]
    target = store.folder / "projection.parquet"
    request = f"{method}; clusters {cluster}; min size {cluster_min_size}"
    size = min_cluster_size(len(ids), cluster_min_size)
    kept = _same_map(target, ids, request)
    if kept is not None:  # the same images and settings give the same map (UMAP is seeded): not recomputed
        xy, found, used = kept
    else:
        xy, used = project(store.get(ids) if ids else np.empty((0, store.meta["row_shape"][0])), method)
        found = clusters(xy, size) if cluster else np.full(len(ids), -1, dtype=np.int32)
    paths = {it.id: it.path for it in items}
    table = pa.table({"id": ids, "path": [paths[i] for i in ids], "label": [labels[i] for i in ids],
                      "x": xy[:, 0], "y": xy[:, 1], "cluster": pa.array(found, pa.int32())})
    n_clusters = int(found.max()) + 1 if len(found) else 0
    table = table.replace_schema_metadata({"pixelscope.projection": used, "pixelscope.clusters": str(n_clusters),
                                           "pixelscope.cluster_min_size": str(size),
                                           "pixelscope.projection_request": request})
    if kept is None or not pq.read_table(target, columns=["path", "label"]).equals(table.select(["path", "label"])):
        with atomic_path(target) as tmp:  # rewritten when the map or a path / label changed
            pq.write_table(table, tmp)
    return used, n_clusters


def _same_map(path: Path, ids: list[str], request: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(xy, clusters, method) of the stored map when it covers exactly these ids, in this order, and
    was made with the same settings; else None (also when it cannot be read)."""
    try:
        meta = pq.read_schema(path).metadata or {}
        if meta.get(b"pixelscope.projection_request", b"").decode() != request:
            return None
        t = pq.read_table(path, columns=["id", "x", "y", "cluster"])
    except (OSError, pa.ArrowException):
        return None
    if t.column("id").to_pylist() != ids:
        return None
    xy = np.stack([t.column("x").to_numpy(), t.column("y").to_numpy()], axis=1).astype(np.float32)
    return xy, t.column("cluster").to_numpy().astype(np.int32), meta[b"pixelscope.projection"].decode()
