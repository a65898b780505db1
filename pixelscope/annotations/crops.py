"""Crop features: how each kept object looks — brightness, contrast and sharpness of its box.

    table = with_crop_features(objects, raw, working_size=256, max_pixels=..., workers=0)

Each annotated image is decoded once with ingest's own decoder at ingest's working size
(features.working_size: the longer side at most 256 px, JPEG decoded reduced), so a crop's
figures are in the units of the image-level features of the same names:

    crop_brightness   mean luma of the box, 0-1                  (image: brightness_mean)
    crop_contrast     standard deviation of its luma, 0-1        (image: contrast_rms)
    crop_sharpness    variance of the Laplacian of its luma      (image: sharpness)

A box under MIN_SIDE working pixels on a side gets no sharpness (a Laplacian of two pixels says
nothing); an image that no longer decodes leaves its objects' crop columns empty (ingest already
said why). The objects stage runs it unless ingest.annotations.crop_features is false; its cost is
one reduced decode per annotated image (BENCHMARKS.md, "crop features").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pixelscope.io.parallel import pool_context, resolve_workers

CROP_COLUMNS = ("crop_brightness", "crop_contrast", "crop_sharpness")
MIN_SIDE = 3  # working pixels: smaller boxes have no sharpness
CHUNK = 64  # images per task

Job = tuple[str, list[tuple[int, float, float, float, float]], int, int]  # location, (row, box)..., size, max pixels


def crop_values(luma: np.ndarray, box: tuple[float, float, float, float], scale: float) -> tuple[float, float, float | None]:
    """(brightness, contrast, sharpness) of a box (full-size pixels) on the working-size luma."""
    import cv2

    h, w = luma.shape
    x0, y0 = min(int(box[0] * scale), w - 1), min(int(box[1] * scale), h - 1)
    x1, y1 = max(x0 + 1, min(w, int(np.ceil(box[2] * scale)))), max(y0 + 1, min(h, int(np.ceil(box[3] * scale))))
    crop = luma[y0:y1, x0:x1]
    values = crop.astype(np.float64) / 255.0
    sharp = None
    if min(crop.shape) >= MIN_SIDE:
        sharp = float(cv2.Laplacian(crop, cv2.CV_16S).astype(np.float64).var())
    return float(values.mean()), float(values.std()), sharp


def _image(job: Job) -> list[tuple[int, float, float, float | None]] | None:
    import cv2

    from pixelscope.io.decode import ImageError, decode
    from pixelscope.io.location import read_bytes

    location, boxes, working_size, max_pixels = job
    try:
        d = decode(read_bytes(location), working_size, max_pixels)
    except (ImageError, OSError):
        return None  # counted: its objects keep their rows, without crop features
    luma = cv2.cvtColor(d.rgb, cv2.COLOR_RGB2GRAY)
    scale = luma.shape[1] / d.width
    return [(row, *crop_values(luma, (x0, y0, x1, y1), scale)) for row, x0, y0, x1, y1 in boxes]


Values = list[tuple[int, float, float, float | None]]


def _chunk(jobs: list[Job]) -> tuple[Values, int]:
    """The chunk's crop values and how many of its images did not decode."""
    done = [_image(job) for job in jobs]
    return [v for d in done if d is not None for v in d], sum(d is None for d in done)


def _done(jobs: list[Job], workers: int) -> Iterator[tuple[int, tuple[Values, int]]]:
    chunks = [jobs[s:s + CHUNK] for s in range(0, len(jobs), CHUNK)]
    workers = min(resolve_workers(workers), len(chunks))
    if workers <= 1:
        for c in chunks:
            yield len(c), _chunk(c)
        return
    from pixelscope.io.location import Access, start_worker

    with ProcessPoolExecutor(workers, mp_context=pool_context("pixelscope.io.decode"),
                             initializer=start_worker, initargs=(Access.here(),)) as pool:
        yield from zip(map(len, chunks), pool.map(_chunk, chunks))


def with_crop_features(objects: pa.Table, location: Callable[[str], str], working_size: int, max_pixels: int,
                       workers: int = 0, progress: Callable[[int, int], None] | None = None) -> tuple[pa.Table, int]:
    """The objects table with CROP_COLUMNS filled for its kept objects (location: manifest path ->
    what read_bytes opens), and how many annotated images did not decode (their objects' crop
    columns stay empty)."""
    n = objects.num_rows
    out = {c: np.full(n, np.nan) for c in CROP_COLUMNS}
    ok = pc.equal(objects.column("status"), "ok").to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(ok)
    by_image: dict[str, list[tuple[int, float, float, float, float]]] = {}
    paths = objects.column("path").to_pylist()
    corners = [objects.column(c).to_numpy(zero_copy_only=False) for c in ("x0", "y0", "x1", "y1")]
    for r in rows.tolist():
        by_image.setdefault(paths[r], []).append((r, float(corners[0][r]), float(corners[1][r]), float(corners[2][r]),
                                                  float(corners[3][r])))
    jobs: list[Job] = [(location(p), b, working_size, max_pixels) for p, b in by_image.items()]
    seen = not_decoded = 0
    for images, (values, failed) in _done(jobs, workers):
        not_decoded += failed
        for row, bright, contrast, sharp in values:
            out["crop_brightness"][row], out["crop_contrast"][row] = bright, contrast
            out["crop_sharpness"][row] = np.nan if sharp is None else sharp
        seen += images
        if progress:
            progress(seen, len(jobs))
    for c in CROP_COLUMNS:
        arr = pa.array(out[c], mask=np.isnan(out[c]))
        at = objects.schema.get_field_index(c)
        objects = objects.set_column(at, c, arr) if at >= 0 else objects.append_column(c, arr)
    return objects, not_decoded
