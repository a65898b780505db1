"""The objects table: every annotated object of a dataset, checked against its image, one row each.

    read = formats.read(Path("annotations/instances.json"))        # COCO, YOLO, VOC or masks
    objects, images, counts = objects_table(read, manifest)        # manifest: path, id, width, height, status

Images are matched by name: the annotation's name as the manifest path, that path without its
suffix, or its last parts (`train2017/x.jpg` matches `images/train2017/x.jpg`; a YOLO `x.txt`
matches `x.jpg`); a name that matches two images is `ambiguous_image`, one that matches none
`image_missing`. Boxes are in the pixels of the image as ingest reads it (width x height, EXIF
orientation applied).

Every object read is a row: `status` ok, or `flagged` with the `rule` it broke and a `detail`
naming the file and the object — objects read = kept + flagged, always. The rules:

    image_missing    the image is not in the manifest (or is unreadable there)
    ambiguous_image  the name matches more than one image
    unknown_class    a class id the categories / names do not declare
    no_geometry      neither a box nor a polygon / RLE / mask
    bad_polygon      a polygon with fewer than 3 points
    bad_box          a box with non-positive width or height, or not finite
    box_outside      a box more than 1 px outside its image
    mask_size        a mask (RLE or PNG) whose size differs from its image's
    bad_mask         a polygon or RLE mask pycocotools cannot decode
    size_mismatch    the annotation file gives the image another size than the image has

Columns: path, id, object (index within the image), class, class_id, x0, y0, x1, y1, width,
height (pixels), cx, cy (centre, shares of the image), area (box, px^2), rel_area (of the image),
aspect (w / h), mask_area (px^2; polygons and RLE through pycocotools.mask), fill (mask area /
box area), crowd, truncated (the box touches the image border within 1 px, or the file says so),
score (predictions), crop_brightness, crop_contrast, crop_sharpness (pixelscope.annotations.crops,
filled by the objects stage), status, rule, detail, source (the annotation file), segmentation (the
mask as COCO writes it, JSON: polygons in pixels, or a compressed RLE {size: [h, w], counts}; PNG
masks become RLE; empty for a box alone).

Per image (every readable manifest image, annotated or not: "no objects" is data): objects
(kept), classes present, coverage (share of the image under the union of kept boxes, on a
100 x 100 grid).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixelscope.annotations.formats import RawObject, Read

TOLERANCE_PX = 1.0  # annotation tools round; a box this far past the border is still inside
GRID = 100  # coverage is measured on a GRID x GRID raster of the image

OBJECT_SCHEMA = pa.schema([
    ("path", pa.string()), ("id", pa.string()), ("object", pa.int32()), ("class", pa.string()),
    ("class_id", pa.int64()), ("x0", pa.float64()), ("y0", pa.float64()), ("x1", pa.float64()),
    ("y1", pa.float64()), ("width", pa.float64()), ("height", pa.float64()), ("cx", pa.float64()),
    ("cy", pa.float64()), ("area", pa.float64()), ("rel_area", pa.float64()), ("aspect", pa.float64()),
    ("mask_area", pa.float64()), ("fill", pa.float64()), ("crowd", pa.bool_()), ("truncated", pa.bool_()),
    ("score", pa.float64()), ("crop_brightness", pa.float64()), ("crop_contrast", pa.float64()),
    ("crop_sharpness", pa.float64()), ("status", pa.string()), ("rule", pa.string()), ("detail", pa.string()),
    ("source", pa.string()), ("segmentation", pa.string()),
])
IMAGE_SCHEMA = pa.schema([("path", pa.string()), ("id", pa.string()), ("objects", pa.int32()),
                          ("classes", pa.list_(pa.string())), ("coverage", pa.float64())])


class Matcher:
    """Annotation image names -> manifest paths (see the module doc)."""

    def __init__(self, paths: list[str]):
        self.by: dict[str, set[str]] = {}
        for p in paths:
            parts = PurePosixPath(p).parts
            for k in range(len(parts)):
                tail = PurePosixPath(*parts[k:])
                for key in (tail.as_posix(), tail.with_suffix("").as_posix()):
                    self.by.setdefault(key, set()).add(p)

    def match(self, name: str) -> tuple[str | None, str | None]:
        """(the manifest path, None) or (None, the rule it broke)."""
        name = PurePosixPath(name.replace("\\", "/").lstrip("./")).as_posix()
        hits = self.by.get(name) or self.by.get(PurePosixPath(name).with_suffix("").as_posix()) or set()
        if len(hits) == 1:
            return next(iter(hits)), None
        return None, "ambiguous_image" if hits else "image_missing"


def _polygon_area(polygons: list[list[float]], w: int, h: int) -> float:
    from pycocotools import mask as cocomask

    rles = cocomask.frPyObjects(polygons, h, w)
    return float(cocomask.area(cocomask.merge(rles)))


def _compressed(rle: dict[str, Any]) -> dict[str, Any]:
    """An RLE as pycocotools computes with it: uncompressed counts (a list) compressed."""
    from pycocotools import mask as cocomask

    return cocomask.frPyObjects(rle, *rle["size"]) if isinstance(rle["counts"], list) else rle


def _segmentation(polygons: list[list[float]], rle: dict[str, Any] | None) -> str | None:
    """The mask as the COCO export writes it (JSON), or None for a box alone (rle: compressed)."""
    if polygons:
        return json.dumps(polygons)
    if rle is None:
        return None
    counts = rle["counts"]
    return json.dumps({"size": [int(v) for v in rle["size"]],
                       "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts})


def _row(o: RawObject, read: Read, path: str | None, image_id: str | None, size: tuple[int, int] | None,
         rule: str | None) -> dict[str, Any]:
    """One object -> a row of the table (flagged with the first rule it breaks)."""
    name = o.class_name or (read.categories.get(o.class_id) if o.class_id is not None else None)
    row: dict[str, Any] = {"path": path, "id": image_id, "object": o.index, "class_id": o.class_id,
                           "class": name if name is not None else (None if o.class_id is None else str(o.class_id)),
                           "crowd": o.crowd, "score": o.score, "source": o.source}
    where = f"{o.source}: image {o.image!r}, object #{o.index}"

    def flag(r: str, why: str) -> dict[str, Any]:
        return {**row, "status": "flagged", "rule": r, "detail": f"{where}: {why}"}

    if rule is not None:
        return flag(rule, "no such image in the manifest" if rule == "image_missing" else "names more than one image")
    assert size is not None
    w, h = size
    given = read.images.get(o.image)
    if given is not None and given != (w, h):
        return flag("size_mismatch", f"the file says {given[0]} x {given[1]}, the image is {w} x {h}")
    if o.class_id is None or (read.categories and o.class_id not in read.categories):
        return flag("unknown_class", f"class {o.class_id} is not among the declared {sorted(read.categories)[:10]}")
    scale = (w, h) if o.normalised else (1, 1)
    polygons = [[v * scale[k % 2] for k, v in enumerate(p)] for p in o.polygons or []]
    if o.polygons is not None and (not polygons or any(len(p) < 6 for p in polygons)):
        return flag("bad_polygon", "a polygon with fewer than 3 points")
    box = o.box
    if box is not None:
        box = (box[0] * scale[0], box[1] * scale[1], box[2] * scale[0], box[3] * scale[1])
    elif polygons:
        xs, ys = [v for p in polygons for v in p[0::2]], [v for p in polygons for v in p[1::2]]
        box = (min(xs), min(ys), max(xs), max(ys))
    elif o.rle is None:
        return flag("no_geometry", "neither a box nor a polygon or mask")
    mask_area, rle = o.mask_area, None
    if o.mask_size is not None and o.mask_size != (w, h):
        return flag("mask_size", f"the mask is {o.mask_size[0]} x {o.mask_size[1]}, the image {w} x {h}")
    try:
        if o.rle is not None:
            rh, rw = (int(v) for v in o.rle["size"])
            if (rw, rh) != (w, h):
                return flag("mask_size", f"the RLE mask is {rw} x {rh}, the image {w} x {h}")
            from pycocotools import mask as cocomask

            rle = _compressed(o.rle)
            mask_area = float(cocomask.area(rle))
            if box is None:
                x, y, bw, bh = (float(v) for v in cocomask.toBbox(rle))
                box = (x, y, x + bw, y + bh)
        elif polygons:
            mask_area = _polygon_area(polygons, w, h)
    except (ValueError, TypeError, KeyError, OverflowError) as e:  # pycocotools refuses what it cannot decode
        return flag("bad_mask", f"a polygon or RLE mask that cannot be decoded ({type(e).__name__}: {str(e)[:80]})")
    if mask_area is not None and mask_area > w * h:  # RLE counts that run past the image decode without an error
        return flag("bad_mask", f"a mask of {mask_area:,.0f} pixels in a {w} x {h} image")
    assert box is not None
    x0, y0, x1, y1 = box
    if not np.isfinite(box).all() or x1 <= x0 or y1 <= y0:
        return flag("bad_box", f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area")
    if x0 < -TOLERANCE_PX or y0 < -TOLERANCE_PX or x1 > w + TOLERANCE_PX or y1 > h + TOLERANCE_PX:
        return flag("box_outside", f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {w} x {h} image")
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
    bw, bh = x1 - x0, y1 - y0
    area = bw * bh
    at_border = x0 <= TOLERANCE_PX or y0 <= TOLERANCE_PX or x1 >= w - TOLERANCE_PX or y1 >= h - TOLERANCE_PX
    row.update(x0=x0, y0=y0, x1=x1, y1=y1, width=bw, height=bh, cx=(x0 + x1) / 2 / w, cy=(y0 + y1) / 2 / h,
               area=area, rel_area=area / (w * h), aspect=bw / bh, mask_area=mask_area,
               fill=None if mask_area is None else mask_area / area,
               truncated=bool(o.truncated) or at_border, status="ok", rule=None, detail=None,
               segmentation=_segmentation(polygons, rle))
    return row


def coverage(boxes: Any, w: int, h: int) -> float:
    """The share of the image under the union of the boxes (rows of x0, y0, x1, y1), on a GRID x GRID raster."""
    if len(boxes) == 0:
        return 0.0
    grid = np.zeros((GRID, GRID), bool)
    for x0, y0, x1, y1 in boxes:
        grid[int(y0 / h * GRID):int(np.ceil(y1 / h * GRID)), int(x0 / w * GRID):int(np.ceil(x1 / w * GRID))] = True
    return float(grid.mean())


def objects_of(path: Path, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The objects table at path when it has rows and its kept objects are this manifest frame's
    readable images (a table written for another manifest is not used)."""
    if not path.exists():
        return None
    table = pq.read_table(path).to_pandas()
    kept = table[table["status"] == "ok"]
    if table.empty or not set(kept["id"]) <= set(frame.loc[frame["status"] == "ok", "id"]):
        return None
    return table


def objects_table(read: Read, manifest: pa.Table) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """(objects, per-image table, counts) for the readable images of a manifest (columns path, id,
    width, height, status). Consumes read.objects (emptied: at a million boxes the RawObjects and
    the table would otherwise both be held)."""
    m = manifest.select(["path", "id", "width", "height", "status"]).to_pydict()
    images = {p: (i, (int(w), int(h))) for p, i, w, h, s in zip(m["path"], m["id"], m["width"], m["height"], m["status"])
              if s == "ok" and w and h}
    matcher = Matcher(list(images))
    matched: dict[str, tuple[str | None, str | None]] = {}
    columns: dict[str, list[Any]] = {name: [] for name in OBJECT_SCHEMA.names}  # column lists: no dict kept per row
    for o in read.objects:
        if o.image not in matched:
            matched[o.image] = matcher.match(o.image)
        path, rule = matched[o.image]
        image_id, size = images[path] if path is not None else (None, None)
        row = _row(o, read, path, image_id, size, rule)
        for name, values in columns.items():
            values.append(row.get(name))
    read.objects = []  # read once: the table holds them now (a million RawObjects are ~0.3 GB)
    objects = pa.table(columns, schema=OBJECT_SCHEMA)
    del columns
    kept = objects.filter(pc.equal(objects.column("status"), "ok"))
    per_image = _per_image(kept, images)
    for name in read.images:  # images the files name without an object (an empty YOLO txt) are annotated too
        if name not in matched:
            matched[name] = matcher.match(name)
    flagged = Counter(r for r in objects.column("rule").to_pylist() if r is not None)
    named = {p for p, _ in matched.values() if p is not None}
    counts = {"format": read.format, "objects_read": objects.num_rows, "kept": kept.num_rows,
              "flagged": sum(flagged.values()), "flagged_by_rule": dict(sorted(flagged.items())),
              "entries_not_read": len(read.problems),
              "problems_by_rule": dict(sorted(Counter(p.rule for p in read.problems).items())),
              "images": len(images), "images_annotated": len(named),
              "images_without_objects": sum(1 for n in per_image.column("objects").to_pylist() if n == 0),
              "images_not_annotated": len(images) - len(named),
              "classes": len(set(kept.column("class").to_pylist()))}
    return objects, per_image, counts


def _per_image(kept: pa.Table, images: dict[str, tuple[str, tuple[int, int]]]) -> pa.Table:
    """Every readable image: its kept objects, classes present and the share its boxes cover."""
    paths = np.asarray(kept.column("path").to_pylist(), dtype=object)
    order = np.argsort(paths, kind="stable")  # each image's objects side by side: slices, not groupby frames
    paths, classes = paths[order], np.asarray(kept.column("class").to_pylist(), dtype=object)[order]
    boxes = np.column_stack([kept.column(c).to_numpy() for c in ("x0", "y0", "x1", "y1")])[order] if len(order) \
        else np.zeros((0, 4))
    starts = np.flatnonzero(np.r_[True, paths[1:] != paths[:-1]]) if len(paths) else np.zeros(0, int)
    span = {paths[s]: (s, e) for s, e in zip(starts, np.r_[starts[1:], len(paths)])}
    out: dict[str, list[Any]] = {"path": [], "id": [], "objects": [], "classes": [], "coverage": []}
    for path, (image_id, (w, h)) in images.items():
        s, e = span.get(path, (0, 0))
        out["path"].append(path)
        out["id"].append(image_id)
        out["objects"].append(e - s)
        out["classes"].append(sorted(set(classes[s:e])))
        out["coverage"].append(coverage(boxes[s:e], w, h))
    return pa.table(out, schema=IMAGE_SCHEMA)
