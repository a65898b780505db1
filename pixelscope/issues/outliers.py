"""Embedding outliers: mean cosine distance to the k nearest other images, flagged above a quantile.

The threshold is issues.outlier_quantile of this dataset's kNN distances (issues.json records
it): a reference profile holds no kNN distances yet, so this flag is relative to the
dataset it runs on.
"""

from __future__ import annotations

import numpy as np

from pixelscope.issues.base import Dataset, Finding, finder
from pixelscope.issues.search import knn


@finder("outlier", _builtin=True)
def outlier(data: Dataset, found: dict[str, Finding]) -> Finding:
    frame, cfg = data.frame, data.cfg
    if data.embeddings is None:
        return Finding.skip("outlier", "no embeddings: run the embed step first")
    emb = data.embeddings
    if len(emb.ids) <= cfg.knn:
        return Finding.skip("outlier", f"needs more than issues.knn={cfg.knn} embedded images (found {len(emb.ids)})")
    sims, _, used = knn(emb.vectors, cfg.knn + 1, cfg.exact_index_max)
    distance = 1 - sims[:, 1:].mean(axis=1)  # column 0 is the image itself
    threshold = float(np.quantile(distance, cfg.outlier_quantile))
    by_id = dict(zip(emb.ids, distance))
    d = frame["id"].map(by_id).where(data.ok)
    flagged = d > threshold
    return Finding.flags("outlier", flagged, d.fillna(0.0),
                         lambda r: f"embedding outlier: kNN distance {d[r]:.3f} > {threshold:.3f}",
                         threshold={"value": threshold, "source": f"this dataset q{cfg.outlier_quantile:g}"},
                         knn=cfg.knn, index=used)



