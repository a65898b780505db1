"""The detection demo set: scenes composed from the photos scikit-image ships (no downloads), so
every box is known, with annotation faults planted where the finders must catch them.

Each scene is a crop of a texture photo (brick, grass, gravel, ...) with 2-5 objects pasted at
known positions and scales: crops of the demo's class photos (astronaut, cat, coffee, rocket,
motorcycle), each a rectangle, so its box is exact. Written as JPEGs under `images/`, with:

- `annotations.json`: COCO ground truth, with planted faults on some scenes — a box shifted by
  half its width (`shifted`), a box annotated twice (`duplicated`), an object left unannotated
  (`missing`), a box given another class (`wrong_class`);
- `predictions.json`: a COCO results file from a *simulated* model: the true boxes (before the
  faults) jittered by up to 2 px, scores 0.96-0.995, plus a few low-score false positives;
- `planted.json`: which scene got which fault (file name, kind, object), for measuring the
  finders' recall and precision.

`write_as(out, "yolo")` / `write_as(out, "voc")` writes the same ground truth as a YOLO folder
(`labels/`, one txt per image + data.yaml) or as Pascal VOC XML (`voc/`), and the model's boxes as
YOLO txt with a confidence per line (`predictions/`), so the same scenes go through every reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixelscope.demo import BACKGROUNDS, background_photo, base_photo

CLASSES = ("astronaut", "cat", "coffee", "rocket", "motorcycle")
FAULTS = ("shifted", "duplicated", "missing", "wrong_class")
SIZE = (512, 384)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def scene(rng: np.random.Generator) -> tuple[Image.Image, list[tuple[str, tuple[float, float, float, float]]]]:
    """One scene and its true objects (class, (x0, y0, x1, y1))."""
    bg = background_photo(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    side = int(min(bg.size) * rng.uniform(0.6, 1.0))
    x, y = int(rng.integers(0, bg.width - side + 1)), int(rng.integers(0, bg.height - side + 1))
    canvas = bg.crop((x, y, x + side, y + side)).resize(SIZE, Image.Resampling.BILINEAR)
    objects: list[tuple[str, tuple[float, float, float, float]]] = []
    for _ in range(int(rng.integers(2, 6))):
        name = CLASSES[int(rng.integers(len(CLASSES)))]
        photo = base_photo(name)
        w = int(SIZE[0] * rng.uniform(0.12, 0.35))
        h = max(8, int(w * rng.uniform(0.7, 1.4)))
        for _try in range(20):
            x0, y0 = int(rng.integers(0, SIZE[0] - w)), int(rng.integers(0, SIZE[1] - h))
            box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
            if all(_iou(box, b) < 0.1 for _, b in objects):
                break
        else:
            continue
        cw, ch = photo.width // 2, photo.height // 2  # the photo's central half: its subject
        cut = photo.crop((photo.width // 4, photo.height // 4, photo.width // 4 + cw, photo.height // 4 + ch))
        canvas.paste(cut.resize((w, h), Image.Resampling.BILINEAR), (x0, y0))
        objects.append((name, box))
    return canvas, objects


def build_detection_demo(out: str | Path, scenes: int = 120, fault_share: float = 0.25, seed: int = 0) -> dict[str, Any]:
    """Write the scenes, the COCO ground truth with planted faults, the simulated model's boxes and
    the list of planted faults into `out`; returns counts."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cat = {c: k + 1 for k, c in enumerate(CLASSES)}
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    preds: list[dict[str, Any]] = []
    planted: list[dict[str, Any]] = []
    for k in range(scenes):
        canvas, objects = scene(rng)
        name = f"scene_{k:04d}.jpg"
        canvas.save(out / "images" / name, quality=90)
        images.append({"id": k + 1, "file_name": f"images/{name}", "width": SIZE[0], "height": SIZE[1]})
        for c, (x0, y0, x1, y1) in objects:  # the simulated model sees every true object
            jitter = rng.uniform(-2, 2, 4)
            preds.append({"image_id": k + 1, "category_id": cat[c], "score": round(float(rng.uniform(0.96, 0.995)), 3),
                          "bbox": [round(x0 + jitter[0], 1), round(y0 + jitter[1], 1), round(x1 - x0 + jitter[2], 1),
                                   round(y1 - y0 + jitter[3], 1)]})
        if rng.random() < 0.3:  # and now and then a weak false alarm
            preds.append({"image_id": k + 1, "category_id": int(rng.integers(1, len(CLASSES) + 1)), "score": 0.3,
                          "bbox": [float(rng.integers(0, 400)), float(rng.integers(0, 300)), 40.0, 40.0]})
        fault = FAULTS[int(rng.integers(len(FAULTS)))] if rng.random() < fault_share and objects else None
        hit = int(rng.integers(len(objects))) if fault else -1
        for j, (c, (x0, y0, x1, y1)) in enumerate(objects):
            box: list[float] = [x0, y0, x1 - x0, y1 - y0]
            if j == hit and fault == "missing":
                planted.append({"file_name": f"images/{name}", "kind": fault, "class": c, "bbox": box})
                continue
            if j == hit and fault == "shifted":
                right = x0 + box[2] * 1.5 <= SIZE[0]  # half its width to the right, or to the left at the border
                box = [x0 + box[2] * 0.5 if right else x0 - box[2] * 0.5, y0, box[2], box[3]]
            if j == hit and fault == "wrong_class":
                c = CLASSES[(CLASSES.index(c) + 1 + int(rng.integers(len(CLASSES) - 1))) % len(CLASSES)]
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": cat[c], "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
            if j == hit and fault == "duplicated":
                anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": cat[c], "area": box[2] * box[3],
                             "bbox": [box[0] + 1, box[1] + 1, box[2], box[3]], "iscrowd": 0})
            if j == hit:
                planted.append({"file_name": f"images/{name}", "kind": fault, "class": c, "bbox": box})
    categories = [{"id": i, "name": c, "supercategory": ""} for c, i in cat.items()]
    (out / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    (out / "predictions.json").write_text(json.dumps(preds))
    (out / "planted.json").write_text(json.dumps(planted, indent=1))
    return {"scenes": scenes, "objects": len(anns), "predicted": len(preds), "planted": len(planted)}


def write_as(out: str | Path, fmt: str) -> dict[str, str]:
    """The ground truth and predictions of `out` (written by build_detection_demo) in another format:
    fmt "coco" (as built), "yolo" or "voc". Returns the ingest.annotations params that read them."""
    out = Path(out)
    if fmt == "coco":
        return {"path": "annotations.json", "predictions": "predictions.json"}
    gt = json.loads((out / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    index = {i: k for k, i in enumerate(sorted(names))}
    data_yaml = "names:\n" + "".join(f"  {index[i]}: {names[i]}\n" for i in sorted(names))
    by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    predicted: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in gt["images"]}
    for p in json.loads((out / "predictions.json").read_text()):
        predicted[p["image_id"]].append(p)

    def yolo_lines(anns: list[dict[str, Any]], w: int, h: int, scores: bool) -> str:
        return "".join(f"{index[a['category_id']]} {(a['bbox'][0] + a['bbox'][2] / 2) / w:.6f} "
                       f"{(a['bbox'][1] + a['bbox'][3] / 2) / h:.6f} {a['bbox'][2] / w:.6f} {a['bbox'][3] / h:.6f}"
                       + (f" {a['score']}" if scores else "") + "\n" for a in anns)

    preds = out / "predictions"
    preds.mkdir(exist_ok=True)
    (preds / "data.yaml").write_text(data_yaml)
    folder = out / ("labels" if fmt == "yolo" else "voc")
    folder.mkdir(exist_ok=True)
    if fmt == "yolo":
        (folder / "data.yaml").write_text(data_yaml)
    for im in gt["images"]:
        stem, (w, h) = Path(im["file_name"]).stem, (im["width"], im["height"])
        (preds / f"{stem}.txt").write_text(yolo_lines(predicted[im["id"]], w, h, scores=True))
        if fmt == "yolo":
            (folder / f"{stem}.txt").write_text(yolo_lines(by_image[im["id"]], w, h, scores=False))
        else:
            objs = "".join(f"<object><name>{names[a['category_id']]}</name><truncated>0</truncated><difficult>0</difficult>"
                           f"<bndbox><xmin>{a['bbox'][0]}</xmin><ymin>{a['bbox'][1]}</ymin>"
                           f"<xmax>{a['bbox'][0] + a['bbox'][2]}</xmax><ymax>{a['bbox'][1] + a['bbox'][3]}</ymax>"
                           "</bndbox></object>" for a in by_image[im["id"]])
            (folder / f"{stem}.xml").write_text(f"<annotation><filename>{Path(im['file_name']).name}</filename>"
                                                f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
                                                f"{objs}</annotation>\n")
    return {"path": folder.name, "format": fmt, "predictions": "predictions", "predictions_format": "yolo"}


def found_faults(planted: list[dict[str, Any]], issues: Any, scenes: list[str]) -> dict[str, dict[str, Any]]:
    """Recall per planted fault kind (the scene is flagged by its finder: duplicate_boxes for a box
    annotated twice, box_label_issue for the others) and each finder's precision over all scenes
    (flagged scenes that had that kind of fault planted)."""
    finder = {"duplicated": "duplicate_boxes", "shifted": "box_label_issue", "missing": "box_label_issue",
              "wrong_class": "box_label_issue"}
    flagged = {name: {p for p, f in zip(issues["path"], issues[name]) if f} for name in set(finder.values())}
    out: dict[str, dict[str, Any]] = {}
    for kind in FAULTS:
        mine = {p["file_name"] for p in planted if p["kind"] == kind}
        hit = mine & flagged[finder[kind]]
        out[kind] = {"planted": len(mine), "found": len(hit), "recall": round(len(hit) / len(mine), 3) if mine else None}
    for name, got in flagged.items():
        right = {p["file_name"] for p in planted if finder[p["kind"]] == name}
        out[name] = {"flagged": len(got), "right": len(got & right),
                     "precision": round(len(got & right) / len(got), 3) if got else None, "scenes": len(scenes)}
    return out
