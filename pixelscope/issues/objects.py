"""Object flags (with ingest.annotations): what is wrong with an image's boxes, one column pair per
flag, like the quality finder — `objects` is any of them.

    duplicate_boxes    two kept boxes of one class with IoU >= issues.objects.duplicate_iou: one
                       object annotated twice (score: the highest such IoU)
    class_overlap      boxes of two classes with IoU >= issues.objects.overlap_iou: which is it?
                       (score: the highest such IoU)
    small_objects      a box whose shorter side, with the image's longer side scaled to
                       issues.objects.input_size, is under issues.objects.min_side_px (score: how
                       far under, 0-1)
    cut_objects        objects cut at the image border (score: the share of its objects cut)
    no_objects         a readable image without a kept object while at least
                       issues.objects.no_objects_min_share of the images have some (score 1)
    rare_class         an image with an object of a class holding less than issues.objects.rare_share
                       of all objects (score: 1 - that share / the bar)
    flagged_objects    an object the objects stage flagged (a rule it broke; score 1)
    box_label_issue    with the model's boxes (ingest.annotations.predictions): a box whose
                       cleanlab.object_detection score — badly located, swapped class, or an
                       overlooked object (a prediction scored >= 0.95 where nothing is annotated) — is
                       below issues.objects.box_issue_max_score (score: 1 - the lowest; the reason names
                       each such box). Per-box scores, not cleanlab's image-level find_label_issues,
                       whose pooled verdict missed a box shifted by 60 % of its width (score 0.23, every
                       clean box >= 0.99) in the test that plants them. cleanlab scores an overlooked
                       object only when its predicted box touches no annotated box at all (IoU 0), so
                       a confident prediction (score >= issues.objects.overlooked_min_score) that
                       matches no annotation of its class at IoU 0.5 is flagged too.

Reasons name the objects (`#2 and #5 (ant): IoU 0.93`), so a reviewer can find them in the objects
table. The summary has the object-level class counts and the imbalance ratio (largest / smallest).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from pixelscope.issues.base import Dataset, Finding, finder

FLAGS = ("duplicate_boxes", "class_overlap", "small_objects", "cut_objects", "no_objects", "rare_class",
         "flagged_objects", "box_label_issue")


def _label_issues(data: Dataset, kept: pd.DataFrame, row_of: dict[str, int], flag: Any) -> None:
    """cleanlab.object_detection over every readable image: its image-level verdict, and per flagged
    image the lowest per-box score of each kind."""
    from pixelscope.annotations.evaluate import label_issues

    assert data.predicted is not None
    frame, cfg = data.frame, data.cfg.objects
    bar = cfg.box_issue_max_score
    pred = data.predicted[data.predicted["status"] == "ok"]
    boxes = label_issues(frame[frame["status"] == "ok"], kept, pred)
    boxes = boxes[(boxes[["badloc", "swap", "overlooked"]] < bar).any(axis=1)]  # only these are said
    unmatched = _unmatched(kept, pred[pred["score"].fillna(1.0) >= cfg.overlooked_min_score])
    by_path = dict(list(boxes.groupby("path", sort=False)))
    for path in set(by_path) | set(unmatched):
        if path not in row_of:
            continue
        said, lowest = [], 1.0
        mine = by_path.get(path, boxes.iloc[:0])
        for kind, col in (("badly located", "badloc"), ("swapped class", "swap"), ("overlooked", "overlooked")):
            for _, w in mine[mine[col] < bar].iterrows():
                which = f"#{int(w['object'])} ({w['class']})" if w["kind"] == "annotated" else \
                    f"a predicted {w['class']} at ({w['box'][0]:.0f}, {w['box'][1]:.0f})"
                said.append(f"cleanlab: {kind} {which} {w[col]:.2f}")
                lowest = min(lowest, float(w[col]))
        for name, score, x0, y0 in unmatched.get(path, []):
            said.append(f"overlooked? a {name} predicted at {score:.2f} at ({x0:.0f}, {y0:.0f}) matches no annotation")
            lowest = min(lowest, 1 - score)
        if said:
            flag("box_label_issue", row_of[path], 1 - lowest, "; ".join(said))


def _unmatched(gt: pd.DataFrame, pred: pd.DataFrame) -> dict[str, list[tuple[str, float, float, float]]]:
    """Per image, the predicted boxes that overlap no annotated box of their class at IoU >= 0.5."""
    corners = ["x0", "y0", "x1", "y1"]
    p = pred[["path", "class", *corners]].reset_index(drop=True)
    p["at"] = np.arange(len(p))
    pairs = p.merge(gt[["path", "class", *corners]], on=["path", "class"], suffixes=("", "_gt"))  # same image and class
    iou = iou_pairs(pairs[corners].to_numpy(float), pairs[[f"{c}_gt" for c in corners]].to_numpy(float))
    matched = np.zeros(len(p), bool)
    matched[pairs["at"].to_numpy()[iou >= 0.5]] = True
    out: dict[str, list[tuple[str, float, float, float]]] = {}
    left = pred.iloc[np.flatnonzero(~matched)]
    for path, name, score, x0, y0 in zip(left["path"], left["class"], left["score"].fillna(1.0), left["x0"], left["y0"]):
        out.setdefault(path, []).append((name, float(score), x0, y0))
    return out


def iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[k] with b[k], row by row (boxes as x0, y0, x1, y1)."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def pairs_within(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, of positions with the same group, for groups sorted so that each
    group's positions are contiguous: built per group size at once (no loop over images), so a
    million boxes in 100,000 images are 4.5 M pairs in a few array operations."""
    if len(groups) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sizes = np.diff(np.r_[starts, len(groups)])
    out_i, out_j = [], []
    for n in np.unique(sizes[sizes > 1]):
        a, b = np.triu_indices(int(n), k=1)
        base = starts[sizes == n][:, None]
        out_i.append((base + a).ravel())
        out_j.append((base + b).ravel())
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_i), np.concatenate(out_j)


def iou_of(boxes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """IoU of box i with box j, pair by pair (boxes as x0, y0, x1, y1)."""
    return iou_pairs(boxes[i], boxes[j])


@finder("objects", _builtin=True)
def objects(data: Dataset, found: dict[str, Finding]) -> Finding:
    if data.objects is None:
        return Finding.skip("objects", "no annotated objects (set ingest.annotations and run `pixelscope objects`)")
    frame, cfg = data.frame, data.cfg.objects
    row_of = {p: r for r, p in zip(frame.index, frame["path"])}
    flags: dict[str, dict[int, float]] = {f: {} for f in FLAGS}
    reasons: dict[int, list[str]] = {}

    def flag(name: str, r: int, score: float, why: str) -> None:
        flags[name][r] = max(score, flags[name].get(r, 0.0))
        reasons.setdefault(r, []).append(f"{name.replace('_', ' ')}: {why}")

    obj = data.objects
    for path, bad in obj[obj["status"] == "flagged"].groupby("path", sort=False):
        if path in row_of:
            flag("flagged_objects", row_of[path], 1.0, "; ".join(f"#{o} {rule}" for o, rule in zip(bad["object"], bad["rule"])))
    kept = obj[obj["status"] == "ok"]
    counts = Counter(kept["class"])
    total = sum(counts.values())
    rare = {c for c, n in counts.items() if n / total < cfg.rare_share} if total else set()
    kept = kept[kept["path"].isin(row_of.keys())].sort_values(["path", "object"], kind="stable").reset_index(drop=True)
    rows = kept["path"].map(row_of).to_numpy()
    longer = np.maximum(frame["width"], frame["height"]).to_numpy(float)[frame.index.get_indexer(rows)]
    side = np.minimum(kept["width"], kept["height"]).to_numpy(float) * cfg.input_size / longer
    per_image = kept.assign(_row=rows, _side=side, _small=side < cfg.min_side_px, _cut=kept["truncated"].astype(bool),
                            _rare=kept["class"].isin(rare))
    stats = per_image.groupby("_row", sort=False).agg(n=("object", "size"), small=("_small", "sum"), cut=("_cut", "sum"),
                                                       rare=("_rare", "sum"))
    smallest = per_image[per_image["_small"]].sort_values("_side", kind="stable").drop_duplicates("_row")
    for r, obj_, side_ in zip(smallest["_row"], smallest["object"], smallest["_side"]):  # reasons: flagged images only
        flag("small_objects", int(r), float(1 - side_ / cfg.min_side_px),
             f"{int(stats.at[r, 'small'])} of {int(stats.at[r, 'n'])} boxes under {cfg.min_side_px:g} px at "
             f"{cfg.input_size} px input (#{obj_}: {side_:.1f} px)")
    cut = stats[stats["cut"] > 0]
    for r, n_cut, n in zip(cut.index, cut["cut"], cut["n"]):
        flag("cut_objects", int(r), float(n_cut / n), f"{int(n_cut)} of {int(n)} objects cut at the border")
    for r, g in per_image[per_image["_rare"]].groupby("_row", sort=False):
        mine = sorted(set(g["class"]))
        share = min(counts[c] / total for c in mine)
        flag("rare_class", int(r), 1 - share / cfg.rare_share, f"{', '.join(mine)} ({share:.2%} of all objects)")
    i, j = pairs_within(rows)
    if len(i):
        iou = iou_of(kept[["x0", "y0", "x1", "y1"]].to_numpy(float), i, j)
        classes = kept["class"].to_numpy()
        same = classes[i] == classes[j]
        for name, mask, bar in (("duplicate_boxes", same & (iou >= cfg.duplicate_iou), cfg.duplicate_iou),
                                ("class_overlap", ~same & (iou >= cfg.overlap_iou), cfg.overlap_iou)):
            hits = pd.DataFrame({"row": rows[i[mask]], "i": i[mask], "j": j[mask], "iou": iou[mask]})
            for r, g in hits.groupby("row", sort=False):
                best = g.loc[g["iou"].idxmax()]
                a, b = kept.loc[int(best["i"])], kept.loc[int(best["j"])]
                flag(name, int(r), float(best["iou"]), f"#{a['object']} ({a['class']}) and #{b['object']} ({b['class']}): "
                     f"IoU {best['iou']:.2f} >= {bar:g}" + (f"; {len(g)} pairs" if len(g) > 1 else ""))
    if data.predicted is not None:
        _label_issues(data, kept, row_of, flag)
    ok = frame["status"] == "ok"
    with_objects = frame["path"].isin(set(kept["path"]))
    share = float(with_objects[ok].mean()) if ok.any() else 0.0
    if share >= cfg.no_objects_min_share:
        for r in frame.index[ok & ~with_objects]:
            flag("no_objects", int(r), 1.0, f"no objects, while {share:.0%} of the images have some")
    columns: dict[str, pd.Series] = {}
    any_flag = pd.Series(False, index=frame.index)
    worst = pd.Series(0.0, index=frame.index)
    for name in FLAGS:
        score = pd.Series(flags[name], dtype=float).reindex(frame.index, fill_value=0.0)
        mask = pd.Series(False, index=frame.index)
        mask[list(flags[name])] = True
        columns[name], columns[f"{name}_score"] = mask, score
        any_flag |= mask
        worst = np.maximum(worst, score)
    summary: dict[str, Any] = {
        "flagged": int(any_flag.sum()), "by_flag": {n: len(flags[n]) for n in FLAGS},
        "objects": total, "classes": dict(counts.most_common()),
        "imbalance": round(max(counts.values()) / min(counts.values()), 2) if counts else None,
        "rare_classes": sorted(rare), "images_with_objects_share": round(share, 4),
        "thresholds": cfg.model_dump()}
    return Finding("objects", {"objects": any_flag, "objects_score": worst, **columns}, reasons, summary=summary)
