"""Detection evaluation and box-level label issues, from the objects stage's two tables: the kept
annotated objects (ground truth) and the model's predicted boxes with scores.

- `coco_metrics`: pycocotools' COCOeval (the reference implementation, not a re-implementation):
  mAP (IoU 0.50:0.95), mAP@50, mAP@75, mAP by object size (COCO's small / medium / large), per-class
  AP and recall, and the same per slice of images (the values of a manifest column, e.g. label);
  every readable image takes part, so a box on an image without annotations is a false positive.
- `errors`: the false positives (predicted boxes matched to no ground truth at IoU 0.5) and false
  negatives (ground-truth boxes no prediction matched), from COCOeval's own matching, listable.
- `label_issues`: cleanlab.object_detection's per-box scores on the ground truth given the
  predictions — badly located boxes, swapped classes, and overlooked objects (a confident
  prediction where no box is annotated); lower = more likely wrong.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import pandas as pd

SIZES = ("small", "medium", "large")  # COCO's area ranges: < 32^2, < 96^2, larger (pixels)


def _coco(images: list[str], sizes: dict[str, tuple[int, int]], gt: pd.DataFrame, classes: list[str]) -> Any:
    from pycocotools.coco import COCO

    image_id = {p: k + 1 for k, p in enumerate(images)}
    cat = {c: k + 1 for k, c in enumerate(classes)}
    data = {"images": [{"id": image_id[p], "file_name": p, "width": sizes[p][0], "height": sizes[p][1]} for p in images],
            "annotations": [{"id": k + 1, "image_id": image_id[r.path], "category_id": cat[r.cls],
                             "bbox": [r.x0, r.y0, r.width, r.height], "area": r.width * r.height,
                             "iscrowd": int(r.crowd)}
                            for k, r in enumerate(gt.rename(columns={"class": "cls"}).itertuples())],
            "categories": [{"id": i, "name": c} for c, i in cat.items()]}
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _results(pred: pd.DataFrame, images: list[str], classes: list[str]) -> list[dict[str, Any]]:
    image_id = {p: k + 1 for k, p in enumerate(images)}
    cat = {c: k + 1 for k, c in enumerate(classes)}
    return [{"image_id": image_id[r.path], "category_id": cat[r.cls], "bbox": [r.x0, r.y0, r.width, r.height],
             "score": float(r.score if r.score == r.score else 1.0)}
            for r in pred.rename(columns={"class": "cls"}).itertuples() if r.path in image_id]


class Evaluation:
    """COCOeval over every readable image (ground truth: kept objects; detections: kept predicted boxes)."""

    def __init__(self, images: pd.DataFrame, gt: pd.DataFrame, pred: pd.DataFrame):
        from pycocotools.cocoeval import COCOeval

        self.images = sorted(images["path"])
        self.sizes = {p: (int(w), int(h)) for p, w, h in zip(images["path"], images["width"], images["height"])}
        self.classes = sorted(set(gt["class"]) | set(pred["class"]))
        self.gt, self.pred = gt, pred
        self.coco = _coco(self.images, self.sizes, gt, self.classes)
        results = _results(pred, self.images, self.classes)
        with contextlib.redirect_stdout(io.StringIO()):
            dets = self.coco.loadRes(results) if results else self.coco.loadRes(np.zeros((0, 7)))
        self.eval = COCOeval(self.coco, dets, "bbox")

    def run(self, image_ids: list[int] | None = None) -> dict[str, Any]:
        e = self.eval
        e.params.imgIds = image_ids if image_ids is not None else sorted(self.coco.getImgIds())
        with contextlib.redirect_stdout(io.StringIO()):
            e.evaluate()
            e.accumulate()
            e.summarize()
        s = [None if v < 0 else round(float(v), 4) for v in e.stats]
        precision, recall = e.eval["precision"], e.eval["recall"]  # [T, R, K, A, M], [T, K, A, M]
        per_class = []
        for k, c in enumerate(self.classes):
            p = precision[:, :, k, 0, -1]
            r50 = recall[0, k, 0, -1]
            per_class.append({"class": c, "ap": round(float(p[p > -1].mean()), 4) if (p > -1).any() else None,
                              "ap50": round(float(p[0][p[0] > -1].mean()), 4) if (p[0] > -1).any() else None,
                              "recall50": None if r50 < 0 else round(float(r50), 4),
                              "objects": int((self.gt["class"] == c).sum()), "predicted": int((self.pred["class"] == c).sum())})
        return {"map": s[0], "map50": s[1], "map75": s[2], **{f"map_{n}": s[3 + k] for k, n in enumerate(SIZES)},
                "recall100": s[8], "images": len(e.params.imgIds), "per_class": per_class}

    def errors(self) -> pd.DataFrame:
        """False positives and negatives at IoU 0.5 (over all images, after run())."""
        rows = []
        for ev in self.eval.evalImgs:
            if ev is None or ev["aRng"] != self.eval.params.areaRng[0]:
                continue
            path = self.images[ev["image_id"] - 1]
            for d, matched, ignored in zip(ev["dtIds"], ev["dtMatches"][0], ev["dtIgnore"][0]):
                if not matched and not ignored:
                    det = self.eval.cocoDt.anns[d]
                    rows.append({"path": path, "kind": "false_positive", "class": self.classes[det["category_id"] - 1],
                                 "bbox": det["bbox"], "score": det["score"]})
            for g, matched, ignored in zip(ev["gtIds"], ev["gtMatches"][0], ev["gtIgnore"]):
                if not matched and not ignored:
                    ann = self.coco.anns[g]
                    rows.append({"path": path, "kind": "false_negative", "class": self.classes[ann["category_id"] - 1],
                                 "bbox": ann["bbox"], "score": None})
        return pd.DataFrame(rows, columns=["path", "kind", "class", "bbox", "score"])


def coco_metrics(images: pd.DataFrame, gt: pd.DataFrame, pred: pd.DataFrame,
                 slice_by: str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """(metrics overall, per size and class, and per slice of `slice_by`; the FP / FN table)."""
    ev = Evaluation(images, gt, pred)
    slices = []
    if slice_by is not None and slice_by in images:
        for value, group in images.groupby(slice_by, dropna=True):
            ids = [ev.images.index(p) + 1 for p in group["path"]]
            m = ev.run(ids)
            slices.append({"slice": f"{slice_by}={value}", "images": m["images"], "map": m["map"], "map50": m["map50"]})
    result = ev.run()
    result["slices"] = slices
    return result, ev.errors()


def to_cleanlab(images: pd.DataFrame, gt: pd.DataFrame,
                pred: pd.DataFrame) -> tuple[list[str], list[dict[str, np.ndarray]], list[list[np.ndarray]], list[str]]:
    """(paths, labels, predictions, classes) in cleanlab.object_detection's form: per image, the
    annotated boxes (x0, y0, x1, y1) and class indices; the predicted boxes per class with their score."""
    classes = sorted(set(gt["class"]) | set(pred["class"]))
    cat = {c: k for k, c in enumerate(classes)}
    paths = sorted(images["path"])
    by_gt, by_pred = dict(list(gt.groupby("path"))), dict(list(pred.groupby("path")))
    labels, predictions = [], []
    for p in paths:
        g = by_gt.get(p, gt.iloc[:0])
        labels.append({"bboxes": g[["x0", "y0", "x1", "y1"]].to_numpy(np.float32).reshape(-1, 4),
                       "labels": g["class"].map(cat).to_numpy(np.int64)})
        d = by_pred.get(p, pred.iloc[:0])
        per_class = []
        for c in classes:
            dc = d[d["class"] == c]
            score = dc["score"].fillna(1.0).to_numpy(np.float32)[:, None]
            per_class.append(np.hstack([dc[["x0", "y0", "x1", "y1"]].to_numpy(np.float32).reshape(-1, 4), score]))
        predictions.append(per_class)
    return paths, labels, predictions, classes


def label_issues(images: pd.DataFrame, gt: pd.DataFrame, pred: pd.DataFrame) -> pd.DataFrame:
    """cleanlab.object_detection's per-box scores (lower = more likely an annotation error): one row per
    ground-truth box (badloc: badly located, swap: another class) and per overlooked candidate
    (a predicted box where no annotation is), with the image's path and the box."""
    from cleanlab.object_detection import rank

    paths, labels, predictions, classes = to_cleanlab(images, gt, pred)
    by_gt = dict(list(gt.groupby("path")))
    with warnings_off():
        badloc = rank.compute_badloc_box_scores(labels=labels, predictions=predictions)
        swap = rank.compute_swap_box_scores(labels=labels, predictions=predictions)
        overlooked = rank.compute_overlooked_box_scores(labels=labels, predictions=predictions)
    rows = []
    for k, p in enumerate(paths):
        g = by_gt.get(p, gt.iloc[:0])
        for j, obj in enumerate(g["object"]):
            rows.append({"path": p, "object": int(obj), "kind": "annotated", "class": g["class"].iloc[j],
                         "badloc": float(badloc[k][j]), "swap": float(swap[k][j]), "overlooked": None,
                         "box": g[["x0", "y0", "x1", "y1"]].iloc[j].tolist()})
        flat = np.vstack(predictions[k]) if predictions[k] else np.zeros((0, 5))
        names = [c for c, arr in zip(classes, predictions[k]) for _ in range(len(arr))]
        for j, score in enumerate(overlooked[k]):
            if not np.isnan(score):
                rows.append({"path": p, "object": None, "kind": "predicted", "class": names[j], "badloc": None,
                             "swap": None, "overlooked": float(score), "box": flat[j, :4].tolist()})
    return pd.DataFrame(rows, columns=["path", "object", "kind", "class", "badloc", "swap", "overlooked", "box"])


@contextlib.contextmanager
def warnings_off() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def evaluate_boxes(params: Any, project: Any, slice_by: str = "label") -> dict[str, Any] | None:
    """`pixelscope evaluate` with predicted boxes: the COCO metrics overall, by size, per class and per
    slice, and the false positives / negatives (also written to reports/evaluate/box_errors.parquet);
    None when the objects stage wrote no predicted boxes."""
    from pathlib import Path

    import pyarrow.parquet as pq

    from pixelscope.annotations.objects import objects_of
    from pixelscope.io.atomic import atomic_path

    paths = params.paths.under(project)
    if not paths.manifest.exists():
        return None
    frame = pq.read_table(paths.manifest, columns=["id", "path", "status", "width", "height", "label"]).to_pandas()
    gt, pred = objects_of(paths.objects, frame), objects_of(paths.predicted_objects, frame)
    if gt is None or pred is None:
        return None
    images = frame[frame["status"] == "ok"]
    metrics, errors = coco_metrics(images, gt[gt["status"] == "ok"], pred[pred["status"] == "ok"], slice_by)
    out = Path(project) / "reports" / "evaluate" / "box_errors.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        errors.assign(bbox=errors["bbox"].map(list)).to_parquet(tmp, index=False)
    metrics["errors"] = {"false_positives": int((errors["kind"] == "false_positive").sum()),
                         "false_negatives": int((errors["kind"] == "false_negative").sum()), "file": str(out)}
    return metrics
