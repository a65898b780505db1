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


def _by_image(table: pd.DataFrame, where: dict[str, int]) -> pd.DataFrame:
    """The rows of table whose image is in `where`, in that image order (rows of an image in table order)."""
    table = table[table["path"].isin(where)]
    return table.iloc[np.argsort(table["path"].map(where).to_numpy(), kind="stable")]


def to_cleanlab(images: pd.DataFrame, gt: pd.DataFrame,
                pred: pd.DataFrame) -> tuple[list[str], list[dict[str, np.ndarray]], list[list[np.ndarray]], list[str]]:
    """(paths, labels, predictions, classes) in cleanlab.object_detection's form: per image, the
    annotated boxes (x0, y0, x1, y1) and class indices; the predicted boxes per class with their score."""
    classes = sorted(set(gt["class"]) | set(pred["class"]))
    cat = {c: k for k, c in enumerate(classes)}
    paths = sorted(images["path"])
    where = {p: k for k, p in enumerate(paths)}
    gt, pred = _by_image(gt, where), pred[pred["path"].isin(where)]
    # one sort per table, then slices per image (and per class): no pandas filter per image or class
    g_box = gt[["x0", "y0", "x1", "y1"]].to_numpy(np.float32)
    g_cls = gt["class"].map(cat).to_numpy(np.int64)
    g_bounds = np.searchsorted(gt["path"].map(where).to_numpy(), np.arange(len(paths) + 1))
    p_at, p_cls = pred["path"].map(where).to_numpy(float), pred["class"].map(cat).to_numpy(np.int64)
    p_order = np.lexsort((p_cls, p_at))
    p_rows = np.hstack([pred[["x0", "y0", "x1", "y1"]].to_numpy(np.float32),
                        pred["score"].fillna(1.0).to_numpy(np.float32)[:, None]])[p_order]
    p_at, p_cls = p_at[p_order], p_cls[p_order]
    p_bounds = np.searchsorted(p_at, np.arange(len(paths) + 1))
    none = np.zeros((0, 5), np.float32)  # shared by every absent class: cleanlab only reads it
    labels, predictions = [], []
    for k in range(len(paths)):
        s, e = g_bounds[k], g_bounds[k + 1]
        labels.append({"bboxes": g_box[s:e].reshape(-1, 4), "labels": g_cls[s:e]})
        s, e = p_bounds[k], p_bounds[k + 1]
        per_class = [none] * len(classes)
        if e > s:
            cuts = np.flatnonzero(np.diff(p_cls[s:e])) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, e - s]):
                per_class[int(p_cls[s + a])] = p_rows[s + a:s + b]
        predictions.append(per_class)
    return paths, labels, predictions, classes


CLEANLAB_CHUNK = 2000  # images per task


def _chunk_min_similarity(job: tuple[list, list]) -> float:
    from cleanlab.object_detection import rank

    labels, predictions = job
    with warnings_off():
        return float(rank._get_min_possible_similarity(rank.ALPHA, predictions, labels))


def _chunk_scores(job: tuple[list, list, float]) -> tuple[list, list, list]:
    from cleanlab.object_detection import rank

    labels, predictions, least = job
    with warnings_off():
        aux = [rank._get_valid_inputs_for_compute_scores_per_image(rank.ALPHA, label=lab, prediction=pred,
                                                                    min_possible_similarity=least)
               for lab, pred in zip(labels, predictions)]
        return (list(rank.compute_badloc_box_scores(auxiliary_inputs=aux)),
                list(rank.compute_swap_box_scores(auxiliary_inputs=aux)),
                list(rank.compute_overlooked_box_scores(auxiliary_inputs=aux)))


def _box_scores(labels: list, predictions: list) -> tuple[list, list, list]:
    """cleanlab's badloc, swap and overlooked scores per box, as its compute_*_box_scores give them
    (the test compares): its one dataset-wide input, the least similarity of any two boxes, is the
    minimum over chunks of images; then each image's matrices are computed once (cleanlab's
    `auxiliary_inputs`, where each compute_* call would compute them again) and scored, chunks of
    images in one process per core."""
    from pixelscope.io.parallel import die_with_parent, pool_context, resolve_workers

    chunks = [(labels[s:s + CLEANLAB_CHUNK], predictions[s:s + CLEANLAB_CHUNK])
              for s in range(0, len(labels), CLEANLAB_CHUNK)]
    workers = resolve_workers(0, len(chunks))
    if workers <= 1:
        least = min(map(_chunk_min_similarity, chunks), default=1.0)
        done = [_chunk_scores((*c, least)) for c in chunks]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=pool_context("cleanlab.object_detection.rank"),
                                 initializer=die_with_parent) as pool:
            least = min(pool.map(_chunk_min_similarity, chunks), default=1.0)
            done = list(pool.map(_chunk_scores, [(*c, least) for c in chunks]))
    return tuple([s for d in done for s in d[k]] for k in range(3))  # type: ignore[return-value]


def label_issues(images: pd.DataFrame, gt: pd.DataFrame, pred: pd.DataFrame) -> pd.DataFrame:
    """cleanlab.object_detection's per-box scores (lower = more likely an annotation error): one row per
    ground-truth box (badloc: badly located, swap: another class) and per overlooked candidate
    (a predicted box where no annotation is), with the image's path and the box."""
    paths, labels, predictions, classes = to_cleanlab(images, gt, pred)
    badloc, swap, overlooked = _box_scores(labels, predictions)
    # the scores come image by image in to_cleanlab's order: annotations in table order, predictions by class
    g = _by_image(gt, {p: k for k, p in enumerate(paths)})
    flat = lambda scores: np.concatenate([np.asarray(s, float).reshape(-1) for s in scores]) if len(scores) \
        else np.zeros(0)  # noqa: E731
    annotated = pd.DataFrame({"path": g["path"].to_numpy(), "object": g["object"].astype("Int64").to_numpy(),
                              "kind": "annotated", "class": g["class"].to_numpy(), "badloc": flat(badloc),
                              "swap": flat(swap), "overlooked": np.nan,
                              "box": list(g[["x0", "y0", "x1", "y1"]].to_numpy(float))})
    boxes = [np.vstack(per_class) for per_class in predictions]
    owner = np.repeat(np.arange(len(paths)), [len(b) for b in boxes])
    names = [c for per_class in predictions for c, arr in zip(classes, per_class) for _ in range(len(arr))]
    every = np.vstack(boxes) if boxes else np.zeros((0, 5))
    said = flat(overlooked)
    keep = ~np.isnan(said)
    predicted = pd.DataFrame({"path": np.asarray(paths, dtype=object)[owner][keep], "object": pd.NA, "kind": "predicted",
                              "class": np.asarray(names, dtype=object)[keep], "badloc": np.nan, "swap": np.nan,
                              "overlooked": said[keep], "box": list(every[keep, :4].astype(float))})
    out = pd.concat([annotated, predicted], ignore_index=True)
    out["box"] = [b.tolist() for b in out["box"]]
    return out[["path", "object", "kind", "class", "badloc", "swap", "overlooked", "box"]]


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
