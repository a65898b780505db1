"""Model evaluation from the stored outputs: how good the model is, and where it fails.

Input: the manifest joined with the issues table and the model's outputs (`profile.predictions`:
pred_label, pred_confidence). Rows with both a label and a prediction are evaluated; how many
that is of the readable images is reported (a predictions file may cover part of the data).

- the confusion matrix (true label x predicted), per-class precision / recall / F1 with
  support, accuracy and macro-F1;
- calibration, when confidences are given: ten equal-width confidence bins (count, mean
  confidence, accuracy) and the expected calibration error (sum over bins of n_b / N times
  |accuracy_b - confidence_b|);
- where the model fails: slices over every categorical column (label, source, split, cluster, camera
  make and model, review tags, semantic class, issue flags, ...) and over the quartiles of every
  numeric feature, each with its size,
  accuracy, Wilson 95 % interval and the gap to the rest. A slice is listed only when the model
  is worse there with 95 % confidence — the slice's Wilson upper bound is below the accuracy on
  the rest, and a two-proportion z-test of slice against rest says so one-sided at 95 %
  (z >= 1.645: a rest of a handful of images proves nothing) — and only when the slice and the
  rest both hold MIN_SLICE images or more; listed slices are sorted by how sure the gap is (z),
  not by its size. Each slice is tested on its own (no correction for the many slices tried):
  a listed slice is a lead to look at, the top of the list the surest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pixelscope.config import Params
from pixelscope.errors import InputMissing

MIN_SLICE = 20
BINS = 10
Z95 = 1.959963984540054
Z_ONE_SIDED = 1.6448536269514722  # a slice worse than the rest, one-sided at 95 %
SKIP = {"id", "path", "status", "reason", "detail", "pred_label", "pred_confidence", "pred_agrees", "pred_boxes",
        "pred_box_area", "warning", "exif_datetime", "phash", "dhash", "ahash", "whash", "duplicate_group",
        "group_key", "representative"}
GROUP_IDS = {"cluster"}  # integer columns that name groups (the embedding map's clusters)
CAMERA = {"exif_make", "exif_model"}  # the EXIF columns that are slices (the others are values, not groups)
LISTS = {"tags"}  # list columns: each value is a slice ("tags has x"), from the ledger's review tags


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def load_frame(params: Params, project: str | Path) -> pd.DataFrame:
    """Manifest + issue columns + the model's output columns, one row per manifest row."""
    import pyarrow.parquet as pq

    from pixelscope.io.manifest import manifest_frame
    from pixelscope.profile.outputs import model_outputs

    project = Path(project)
    paths = params.paths.under(project)
    if not paths.manifest.exists():
        raise InputMissing(f"manifest not found: {paths.manifest} (run `pixelscope ingest` first)")
    if params.profile.predictions is None:
        raise InputMissing("evaluate needs the model's predictions: set profile.predictions (a CSV or Parquet file "
                           "with `path` or `id`, `prediction`, optional `confidence`)")
    outputs = model_outputs(paths.manifest, paths.embeddings, project / params.profile.predictions)
    assert outputs is not None  # predictions were given
    frame = manifest_frame(paths.manifest, paths.issues if paths.issues.exists() else None)
    joined = outputs.join(pq.read_table(paths.manifest, columns=["path"])).to_pandas()
    for name in outputs.kinds:
        if name not in frame:
            frame[name] = joined[name].to_numpy()
    return with_tags(frame, paths.curated / "curation.parquet")


def with_tags(frame: pd.DataFrame, ledger: Path) -> pd.DataFrame:
    """The review tags of each row (the curate ledger's `tags`, by path), when there is a ledger."""
    import pyarrow.parquet as pq

    if "tags" in frame or not ledger.exists() or "tags" not in pq.read_schema(ledger).names:
        return frame
    tags = pq.read_table(ledger, columns=["path", "tags"]).to_pandas().drop_duplicates("path").set_index("path")["tags"]
    return frame.assign(tags=frame["path"].map(tags).to_numpy())


def evaluate(frame: pd.DataFrame, min_slice: int = MIN_SLICE) -> dict[str, Any]:
    readable = frame[frame["status"] == "ok"] if "status" in frame else frame
    if "pred_label" not in frame or "label" not in frame:
        raise InputMissing("evaluate needs labels and predictions (pred_label)")
    rows = evaluated_rows(frame)
    if rows.empty:
        raise InputMissing("no readable image has both a label and a prediction")
    truth, pred = rows["label"].astype(str).to_numpy(), rows["pred_label"].astype(str).to_numpy()
    right = truth == pred
    classes = sorted(set(truth) | set(pred))
    confusion = pd.crosstab(pd.Categorical(truth, classes), pd.Categorical(pred, classes), dropna=False)
    per_class = []
    for c in classes:
        tp = int(((truth == c) & right).sum())
        support, predicted = int((truth == c).sum()), int((pred == c).sum())
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if support else None)
        per_class.append({"class": c, "precision": precision, "recall": recall, "f1": f1, "support": support})
    f1s = [c["f1"] for c in per_class if c["support"]]
    out: dict[str, Any] = {
        "evaluated": int(len(rows)), "readable": int(len(readable)),
        "coverage": round(len(rows) / max(1, len(readable)), 4),
        "accuracy": float(right.mean()), "macro_f1": float(np.mean(f1s)) if f1s else None,
        "classes": classes, "confusion": confusion.to_numpy().tolist(), "per_class": per_class,
        "calibration": calibration(rows, right), "slices": failing_slices(rows, right, min_slice),
    }
    return out


def calibration(rows: pd.DataFrame, right: np.ndarray) -> dict[str, Any] | None:
    if "pred_confidence" not in rows or rows["pred_confidence"].isna().all():
        return None
    conf = rows["pred_confidence"].astype(float).to_numpy()
    have = ~np.isnan(conf)
    conf, ok = conf[have], right[have]
    edges = np.linspace(0, 1, BINS + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, BINS - 1)
    bins, ece = [], 0.0
    for b in range(BINS):
        m = which == b
        if not m.any():
            continue
        acc, mean = float(ok[m].mean()), float(conf[m].mean())
        ece += m.sum() / len(conf) * abs(acc - mean)
        bins.append({"from": float(edges[b]), "to": float(edges[b + 1]), "count": int(m.sum()),
                     "confidence": mean, "accuracy": acc})
    return {"ece": float(ece), "bins": bins, "with_confidence": int(have.sum())}


def _candidates(rows: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(column, description, mask) for every categorical value and numeric quartile."""
    out = []
    for col in rows.columns:
        if col in SKIP or col.endswith("_score") or (col.startswith("exif_") and col not in CAMERA):
            continue
        s = rows[col]
        if col in LISTS:
            has = s.map(lambda v: set(v) if isinstance(v, (list, tuple, np.ndarray)) else set())
            for tag in sorted(set().union(*has)) if len(has) else []:
                out.append((col, f"{col} has {tag}", has.map(lambda t, tag=tag: tag in t).to_numpy(dtype=bool)))
        elif col in GROUP_IDS:  # ids of groups, not quantities: each value is a slice
            values = s.dropna()
            for v in sorted(values.unique()) if 1 < values.nunique() <= 200 else []:
                out.append((col, f"{col} = {int(v)}", (s == v).fillna(False).to_numpy(dtype=bool)))
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
            values = s.dropna().astype(object)
            plain = all(isinstance(v, (str, bool, np.bool_)) for v in values.head(1000))  # not lists (tags)
            if plain and 1 < values.nunique() <= 50:
                for v in sorted(values.unique(), key=str):
                    out.append((col, f"{col} = {v}", (s == v).fillna(False).to_numpy(dtype=bool)))
        elif pd.api.types.is_numeric_dtype(s) and s.nunique() > 4:
            s = s.astype(float)
            q = s.quantile([0.25, 0.5, 0.75]).to_numpy()
            edges = [-np.inf, *q, np.inf]
            for k in range(4):
                lo, hi = edges[k], edges[k + 1]
                m = ((s >= lo) & (s < hi) if k < 3 else s >= lo).fillna(False).to_numpy(dtype=bool)
                where = f"< {hi:.4g}" if k == 0 else f">= {lo:.4g}" if k == 3 else f"in [{lo:.4g}, {hi:.4g})"
                out.append((col, f"{col} {where} (quartile {k + 1})", m))
    return out


def evaluated_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows evaluate() scores: readable, with a label and a prediction."""
    readable = frame[frame["status"] == "ok"] if "status" in frame else frame
    return readable[readable["label"].notna() & readable["pred_label"].notna()]


def slice_mask(rows: pd.DataFrame, name: str) -> np.ndarray:
    """The mask of a slice by the name evaluate() gave it (over the same rows). Only the slice's own
    column is cut again (every column's quartiles took about a second at 100k images)."""
    column = name.split(" ", 1)[0]
    for _, described, mask in _candidates(rows[[column]] if column in rows.columns else rows):
        if described == name:
            return mask
    raise KeyError(name)


def failing_slices(rows: pd.DataFrame, right: np.ndarray, min_slice: int) -> list[dict[str, Any]]:
    found = []
    for col, name, mask in _candidates(rows):
        n, rest = int(mask.sum()), int((~mask).sum())
        if n < min_slice or rest < min_slice:
            continue
        hits, rest_hits = int(right[mask].sum()), int(right[~mask].sum())
        acc, rest_acc = hits / n, rest_hits / rest
        lo, hi = wilson(hits, n)
        if hi >= rest_acc:
            continue  # not worse than the rest with 95 % confidence
        pooled = (hits + rest_hits) / (n + rest)
        se = math.sqrt(max(pooled * (1 - pooled) * (1 / n + 1 / rest), 1e-12))
        z = (rest_acc - acc) / se
        if z < Z_ONE_SIDED:
            continue
        found.append({"slice": name, "column": col, "size": n, "accuracy": acc, "interval": [lo, hi],
                      "rest_accuracy": rest_acc, "gap": rest_acc - acc, "z": z})
    return sorted(found, key=lambda s: -s["z"])


__all__ = ["evaluate", "evaluated_rows", "load_frame", "slice_mask", "wilson"]
