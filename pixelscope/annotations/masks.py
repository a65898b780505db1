"""An object's mask from the objects table's `segmentation` column, as pixels, and its outline.

    mask = decode(segmentation, (width, height))   # bool, height x width; None if it cannot be read
    edge = outline(mask)                           # the mask's border pixels

`segmentation` is the mask as COCO writes it (JSON: polygons in pixels, or a compressed RLE);
pycocotools, the format's own code, rasterises and decodes it. Light on purpose: the dashboard
draws outlines with it (numpy and pycocotools, loaded when a mask is drawn).
"""

from __future__ import annotations

import json

import numpy as np


def decode(segmentation: str, size: tuple[int, int]) -> np.ndarray | None:
    from pycocotools import mask as cocomask

    w, h = size
    try:
        data = json.loads(segmentation)
        if isinstance(data, list):
            rle = cocomask.merge(cocomask.frPyObjects(data, h, w))
        else:
            rle = {"size": [int(v) for v in data["size"]], "counts": str(data["counts"]).encode()}
        return cocomask.decode(rle).astype(bool)
    except (ValueError, TypeError, KeyError, OverflowError):
        return None


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of the mask with a 4-neighbour outside it."""
    pad = np.pad(mask, 1)
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return mask & ~inner
