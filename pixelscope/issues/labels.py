"""Label-error candidates: out-of-sample class probabilities from a kNN vote on the embeddings,
then confident learning (cleanlab's find_label_issues) — the library, not a re-implementation.

Out of sample: an image's own vote (and those of its byte-identical copies) never counts.
Only with labels and at least two classes of issues.min_per_class images; rows of rarer
classes are left out (nothing to learn them from) and say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pixelscope.issues.base import Dataset, Finding, finder
from pixelscope.issues.search import knn


def knn_probabilities(vectors: np.ndarray, ids: list[str], labels: np.ndarray, n_classes: int, k: int,
                      exact_max: int) -> tuple[np.ndarray, str]:
    """Similarity-weighted class votes of each row's k nearest other images (same id excluded)."""
    extra = int(pd.Series(ids).value_counts().max())  # an id's copies come back first: skip them
    sims, nbrs, used = knn(vectors, k + extra, exact_max)
    ids_arr = np.asarray(ids)
    nb = np.maximum(nbrs, 0)
    other = (nbrs >= 0) & (ids_arr[nb] != ids_arr[:, None])
    keep = other & (np.cumsum(other, axis=1) <= k)  # the first k other images of each row
    probs = np.full((len(ids), n_classes), 1e-3)
    rows = np.broadcast_to(np.arange(len(ids))[:, None], nb.shape)
    np.add.at(probs, (rows[keep], labels[nb[keep]]), np.maximum(sims[keep], 0.0))
    return probs / probs.sum(axis=1, keepdims=True), used


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
    ids = frame.loc[rows, "id"].tolist()
    vectors = data.embeddings.vectors[[where[i] for i in ids]]
    probs, used = knn_probabilities(vectors, ids, labels, len(classes), cfg.knn, cfg.exact_index_max)
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
