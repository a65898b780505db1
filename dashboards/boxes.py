"""Boxes drawn on an image: annotated objects (solid) and the model's boxes (dashed), one colour
per class (the same colour on every page), with the class as a label; an object with a mask
(the objects table's `segmentation`: polygons, or an RLE decoded by pycocotools) gets its outline too. Pure drawing over an RGB
array or encoded thumbnail bytes; the objects come from the bundle's tables."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pandas as pd

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
           "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]


def colour(name: str) -> str:
    """A class's colour: fixed by its name, so it is the same on every page and every run."""
    return PALETTE[int(hashlib.sha256(str(name).encode()).hexdigest(), 16) % len(PALETTE)]


def as_rgb(image: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        return np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    return np.asarray(image)


def draw(image: Any, size: tuple[int, int], truth: pd.DataFrame | None, predicted: pd.DataFrame | None) -> np.ndarray:
    """The image with the boxes of `truth` (solid) and `predicted` (dashed, with the score), scaled from
    the image's own size (width, height, as ingest read it) to the pixels given."""
    from PIL import Image, ImageDraw

    rgb = as_rgb(image)
    canvas = Image.fromarray(rgb).convert("RGB")
    sx, sy = canvas.width / max(size[0], 1), canvas.height / max(size[1], 1)
    pen = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 300))
    for table, dashed in ((truth, False), (predicted, True)):
        if table is None:
            continue
        scores = table["score"] if "score" in table else pd.Series(np.nan, index=table.index)
        masks = table["segmentation"] if "segmentation" in table else pd.Series(None, index=table.index)
        for x0, y0, x1, y1, name, score, mask in zip(table["x0"], table["y0"], table["x1"], table["y1"], table["class"],
                                                     scores, masks):
            box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
            c = colour(name)
            if isinstance(mask, str):
                _outline(pen, mask, size, canvas.size, c, width)
            if dashed:
                _dashed(pen, box, c, width)
            else:
                pen.rectangle(box, outline=c, width=width)
            text = f"{name} {score:.2f}" if dashed and score == score else str(name)
            pen.text((box[0] + 2, max(0, box[1] - 11)), text, fill=c)
    return np.asarray(canvas)


def _outline(pen: Any, segmentation: str, size: tuple[int, int], canvas: tuple[int, int], c: str, width: int) -> None:
    """A mask's outline on the canvas: a polygon as lines, scaled; an RLE decoded (pycocotools),
    scaled to the canvas and its border pixels drawn. Nothing when the mask cannot be read."""
    from PIL import Image

    sx, sy = canvas[0] / max(size[0], 1), canvas[1] / max(size[1], 1)
    data = json.loads(segmentation)
    if isinstance(data, list):
        for p in data:
            if len(p) >= 6:
                line = [(p[k] * sx, p[k + 1] * sy) for k in range(0, len(p) - 1, 2)]
                pen.line([*line, line[0]], fill=c, width=width)
        return
    try:
        from pixelscope.annotations.masks import decode, outline
    except ImportError:  # pycocotools not installed: boxes only
        return
    mask = decode(segmentation, size)
    if mask is None:
        return
    small = np.asarray(Image.fromarray(mask).resize(canvas, Image.Resampling.NEAREST))
    ys, xs = np.nonzero(outline(small))
    pen.point(list(zip(xs.tolist(), ys.tolist())), fill=c)


def _dashed(pen: Any, box: tuple[float, float, float, float], c: str, width: int, dash: float = 6.0) -> None:
    x0, y0, x1, y1 = box
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        steps = max(1, int(length // (2 * dash)))
        for k in range(steps):
            t0, t1 = (2 * k) / (2 * steps), (2 * k + 1) / (2 * steps)
            pen.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                      (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=c, width=width)


def crop(image: Any, size: tuple[int, int], box: tuple[float, float, float, float], pad: float = 0.15,
         side: int = 160) -> np.ndarray:
    """An object's patch: its box with `pad` of its size around it, from an image of any resolution
    (scaled from the image's own size), resized so its longer side is `side`."""
    from PIL import Image

    rgb = as_rgb(image)
    sx, sy = rgb.shape[1] / max(size[0], 1), rgb.shape[0] / max(size[1], 1)
    x0, y0, x1, y1 = box
    px, py = (x1 - x0) * pad, (y1 - y0) * pad
    left, top = max(0, int((x0 - px) * sx)), max(0, int((y0 - py) * sy))
    right, bottom = min(rgb.shape[1], int(np.ceil((x1 + px) * sx))), min(rgb.shape[0], int(np.ceil((y1 + py) * sy)))
    patch = Image.fromarray(rgb[top:max(bottom, top + 1), left:max(right, left + 1)])
    scale = side / max(patch.size)
    return np.asarray(patch.resize((max(1, round(patch.width * scale)), max(1, round(patch.height * scale)))))
