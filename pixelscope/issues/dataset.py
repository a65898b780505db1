"""Dataset-level findings: class imbalance, and quality features that alone predict the label
(spurious correlations: e.g. every cat photo is dark, so a model may learn darkness).

For each numeric feature, a depth-3 decision tree on that feature alone is cross-validated
(stratified folds) and its balanced accuracy compared with chance (1 / classes); gain =
(accuracy - chance) / (1 - chance). Features with gain >= issues.spurious_min_gain stand out.
Above SAMPLE labeled images the trees see a stratified sample (every class keeps at least a
few images): a balanced accuracy is estimated well long before that, and 100k images would
otherwise cost ~15 s (bench_issues_scale.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pixelscope.issues.base import Dataset, Finding, finder

FEATURES = ("brightness_mean", "contrast_rms", "dark_fraction", "bright_fraction", "entropy", "saturation_mean",
            "colorfulness", "sharpness", "edge_density", "bytes_per_pixel", "megapixels", "aspect_ratio")
SAMPLE = 20_000


def stratified_sample(labels: pd.Series, n: int, seed: int = 0) -> pd.Index:
    """About n rows, each class in proportion but never fewer than min(its size, 10)."""
    if len(labels) <= n:
        return labels.index
    rng = np.random.default_rng(seed)
    frac = n / len(labels)
    keep = [rng.choice(rows, max(min(len(rows), 10), round(len(rows) * frac)), replace=False)
            for rows in labels.groupby(labels).indices.values()]
    return labels.index[np.sort(np.concatenate(keep))]


def spurious(frame: pd.DataFrame, min_gain: float) -> list[dict]:
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    labelled = frame[frame["label"].notna()]
    labelled = labelled.loc[stratified_sample(labelled["label"], SAMPLE)]
    out = []
    for col in FEATURES:
        if col not in labelled:
            continue
        part = labelled[[col, "label"]].dropna()
        counts = part["label"].value_counts()
        if len(counts) < 2 or counts.min() < 2:
            continue
        folds = StratifiedKFold(n_splits=int(min(5, counts.min())), shuffle=True, random_state=0)
        acc = cross_val_score(DecisionTreeClassifier(max_depth=3, random_state=0), part[[col]].to_numpy(),
                              part["label"].to_numpy(), cv=folds, scoring="balanced_accuracy").mean()
        chance = 1 / len(counts)
        gain = (acc - chance) / (1 - chance)
        out.append({"feature": col, "balanced_accuracy": round(float(acc), 4), "chance": round(chance, 4),
                    "gain": round(float(gain), 4), "stands_out": bool(gain >= min_gain), "images": len(part)})
    return sorted(out, key=lambda r: -r["gain"])


@finder("dataset", _builtin=True)
def dataset(data: Dataset, found: dict[str, Finding]) -> Finding:
    frame, cfg = data.frame[data.ok], data.cfg
    counts = frame["label"].value_counts()
    if len(counts) < 2:
        return Finding.skip("dataset", f"needs labels with at least two classes (found {len(counts)})")
    rarest = counts.idxmin()
    share = float(counts.min() / counts.sum())
    ratio = share * len(counts)
    imbalance = {"classes": len(counts), "rarest": rarest, "rarest_share": round(share, 4),
                 "ratio_to_uniform": round(ratio, 4), "imbalanced": bool(ratio < cfg.imbalance_min_ratio),
                 "counts": {str(k): int(v) for k, v in counts.items()}}
    found_spurious = spurious(frame, cfg.spurious_min_gain)
    standing = [s["feature"] for s in found_spurious if s["stands_out"]]
    return Finding("dataset", summary={"imbalance": imbalance, "spurious": found_spurious,
                                       "spurious_features": standing,
                                       "flagged": int(imbalance["imbalanced"]) + len(standing)})
