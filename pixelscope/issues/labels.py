"""Label-error candidates: out-of-sample class probabilities from a kNN vote on the embeddings,
then confident learning (cleanlab's find_label_issues) — the library, not a re-implementation.

Out of sample: an image's own vote (and those of its byte-identical copies) never counts. The
votes come from the shared kNN graph (pixelscope.neighbours): the first issues.knn labeled
images among each image's neighbours.
Only with labels and at least two classes of issues.min_per_class images; rows of rarer
classes are left out (nothing to learn them from) and say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pixelscope.issues.base import Dataset, Finding, finder
from pixelscope.neighbours import Graph


def knn_probabilities(graph: Graph, label_counts: np.ndarray, k: int) -> np.ndarray:
    """Class probabilities of every embedded image from the similarity-weighted votes of its k
    nearest other labeled images (each of their files votes with its label; the image's own
    files never vote). label_counts: (images, classes) labeled files per embedded image."""
    labeled = label_counts.sum(axis=1) > 0
    nb = np.maximum(graph.nbrs, 0)
    valid = (graph.nbrs >= 0) & labeled[nb]
    keep = valid & (np.cumsum(valid, axis=1) <= k)
    weight = np.where(keep, np.maximum(graph.sims, 0.0), 0.0)
    probs = np.full(label_counts.shape, 1e-3)
    for t in range(graph.k):  # one neighbour rank at a time: (images, classes) memory, not (images, k, classes)
        probs += weight[:, t, None] * label_counts[nb[:, t]]
    return probs / probs.sum(axis=1, keepdims=True)


@finder("label_error", _builtin=True)
def label_error(data: Dataset, found: dict[str, Finding]) -> Finding:
    from cleanlab.filter import find_label_issues

    frame, cfg = data.frame, data.cfg
    if data.embeddings is None:
        return Finding.skip("label_error", "no embeddings: run the embed step first")
    where = data.embeddings.index_of()
    usable = data.ok & frame["label"].notna() & frame["id"].isin(where)
    counts = frame.loc[usable, "label"].value_counts()
    classes = sorted(counts[counts >= cfg.min_per_class].index)
    if len(classes) < 2:
        return Finding.skip("label_error", f"needs labels with at least two classes of {cfg.min_per_class}+ images "
                                           f"(found {dict(counts)})")
    rows = frame.index[usable & frame["label"].isin(classes)]
    code = {c: i for i, c in enumerate(classes)}
    labels = frame.loc[rows, "label"].map(code).to_numpy()
    at = np.array([where[i] for i in frame.loc[rows, "id"]], dtype=np.int64)  # each row's embedded image
    counts_per_image = np.zeros((len(where), len(classes)))
    np.add.at(counts_per_image, (at, labels), 1.0)
    graph = data.graph()
    probs = knn_probabilities(graph, counts_per_image, cfg.knn)[at]
    used = graph.index
    # n_jobs=1: cleanlab would fork a process pool, which can deadlock beside an orchestrator's
    # threads (a served Prefect run hung on it); its results do not depend on n_jobs
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    flagged = pd.Series(False, index=frame.index)
    score = pd.Series(0.0, index=frame.index)
    suggested = pd.Series(pd.NA, index=frame.index, dtype="string")
    given_conf = probs[np.arange(len(rows)), labels]
    score[rows] = 1 - given_conf
    best = probs.argmax(axis=1)
    flagged[rows[ranked]] = True
    suggested[rows[ranked]] = [classes[b] for b in best[ranked]]
    reasons = {int(rows[i]): [f"label {classes[labels[i]]!r} looks like {classes[best[i]]!r} "
                              f"(kNN p={probs[i, best[i]]:.2f} vs {given_conf[i]:.2f})"] for i in ranked}
    left_out = sorted(set(counts.index) - set(classes))
    return Finding("label_error", {"label_error": flagged, "label_error_score": score, "suggested_label": suggested},
                   reasons, summary={"flagged": int(flagged.sum()), "classes": len(classes), "knn": cfg.knn,
                                     "index": used, "method": "kNN vote + cleanlab.filter.find_label_issues",
                                     **({"classes_left_out": left_out} if left_out else {})})
