"""A 2-D map of the embeddings for the dashboard: UMAP when installed, else PCA."""

from __future__ import annotations

import numpy as np

from pixelscope.errors import ConfigError


def project(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the method used. PCA is exact and deterministic (SVD)."""
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) == 0:
        return np.empty((0, 2), dtype=np.float32), "none"
    if method in ("auto", "umap") and len(x) >= 16:
        try:
            import umap  # type: ignore[import-not-found]

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
