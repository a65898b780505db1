"""Embedding outliers: mean cosine distance to the k nearest other images, flagged above a quantile.

The threshold is the issues.outlier_quantile of the reference profile's kNN distances when a
reference is set (the profile step sketches them with the same k and search), so a new batch
does not move the bar for images already there; without one, of this dataset's (issues.json
says which). An image's own distance can still fall when close neighbours arrive: that is
the point, it is no longer alone.
"""

from __future__ import annotations

from pixelscope.issues.base import Dataset, Finding, finder


@finder("outlier", _builtin=True)
def outlier(data: Dataset, found: dict[str, Finding]) -> Finding:
    frame, cfg = data.frame, data.cfg
    if data.embeddings is None:
        return Finding.skip("outlier", "no embeddings: run the embed step first")
    emb = data.embeddings
    if len(emb.ids) <= cfg.knn:
        return Finding.skip("outlier", f"needs more than issues.knn={cfg.knn} embedded images (found {len(emb.ids)})")
    graph = data.graph()
    distance = graph.distance(cfg.knn)
    threshold, source = data.knn_threshold(distance, cfg.outlier_quantile)
    by_id = dict(zip(emb.ids, distance))
    d = frame["id"].map(by_id).where(data.ok)
    flagged = d > threshold
    return Finding.flags("outlier", flagged, d.fillna(0.0),
                         lambda r: f"embedding outlier: kNN distance {d[r]:.3f} > {threshold:.3f}",
                         threshold={"value": threshold, "source": source},
                         knn=cfg.knn, index=graph.index)
