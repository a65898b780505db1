"""A 2-D map of the embeddings for the dashboard: UMAP when installed, else PCA; written by the
embed step into the store (projection.parquet), copied into the bundle by publish."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.errors import ConfigError
from pixelscope.io.atomic import atomic_path

if TYPE_CHECKING:
    from pixelscope.embed.loader import Item
    from pixelscope.io.store import ShardStore


def project(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the method used. PCA is exact and deterministic (SVD)."""
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) == 0:
        return np.empty((0, 2), dtype=np.float32), "none"
    if method in ("auto", "umap") and len(x) >= 16:
        try:
            import umap

            xy = umap.UMAP(n_components=2, random_state=seed, metric="cosine").fit_transform(x)
            return np.asarray(xy, dtype=np.float32), "umap"
        except ImportError:
            if method == "umap":
                raise ConfigError("embed.projection: umap needs `pip install umap-learn` (or use pca/auto)") from None
    centered = x - x.mean(axis=0)
    if len(x) < 2:
        return np.zeros((len(x), 2), dtype=np.float32), "pca"
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    comps = vt[:2]
    comps *= np.sign(comps[:, :1] + 1e-12)  # fix the sign so runs agree
    xy = centered @ comps.T
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy.astype(np.float32), "pca"


def write_projection(store: ShardStore, items: list[Item], labels: dict[str, str | None], method: str) -> str:
    """projection.parquet in the store folder: id, path, label, x, y for every embedded manifest image."""
    have = store.ids()
    ids = [it.id for it in items if it.id in have]
    xy, used = project(store.get(ids) if ids else np.empty((0, store.meta["row_shape"][0])), method)
    paths = {it.id: it.path for it in items}
    table = pa.table({"id": ids, "path": [paths[i] for i in ids], "label": [labels[i] for i in ids],
                      "x": xy[:, 0], "y": xy[:, 1]})
    table = table.replace_schema_metadata({"pixelscope.projection": used})
    with atomic_path(store.folder / "projection.parquet") as tmp:
        pq.write_table(table, tmp)
    return used
