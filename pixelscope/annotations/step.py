"""The objects step: ingest.annotations (COCO / YOLO / VOC / masks) checked against the manifest's
images into the objects table (paths.objects) and the per-image table (paths.object_images).

With ingest.annotations.crop_features, each kept object gets the brightness, contrast and sharpness
of its box (pixelscope.annotations.crops: one reduced decode per annotated image).

Without annotations it writes both tables empty, so the stage's outputs always exist (DVC) and a
project that adds annotations later only sets ingest.annotations.path."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.annotations.crops import with_crop_features
from pixelscope.annotations.formats import read
from pixelscope.annotations.objects import IMAGE_SCHEMA, OBJECT_SCHEMA, objects_table
from pixelscope.config import Params
from pixelscope.errors import InputMissing
from pixelscope.io.atomic import atomic_set
from pixelscope.pipeline.steps import ProgressFn, StepResult, write_metrics

STAGE = "objects"
SHOWN = 5  # flagged objects named in the notes (all of them are in the table)


def objects_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    t0 = time.perf_counter()
    project = Path(project)
    paths, cfg = params.paths.under(project), params.ingest.annotations
    if not paths.manifest.exists():
        raise InputMissing(f"{paths.manifest} not found: run `pixelscope ingest` first")
    notes: list[str] = []
    predicted = OBJECT_SCHEMA.empty_table()
    if cfg.path is None:
        objects, images = OBJECT_SCHEMA.empty_table(), IMAGE_SCHEMA.empty_table()
        counts: dict = {"objects_read": 0, "kept": 0, "flagged": 0}
        summary = "no annotations (set ingest.annotations.path to a COCO JSON, or a YOLO / VOC / masks folder)"
    else:
        where = cfg.path if cfg.path.is_absolute() else project / cfg.path
        found = read(where, None if cfg.format == "auto" else cfg.format)
        manifest = pq.read_table(paths.manifest, columns=["path", "id", "width", "height", "status"])
        objects, images, counts = objects_table(found, manifest)
        if cfg.crop_features and counts["kept"]:
            t1 = time.perf_counter()
            objects, counts["crop_images_not_decoded"] = with_crop_features(
                objects, lambda p: str(paths.raw / p), params.features.working_size, params.ingest.max_image_pixels,
                params.ingest.workers, progress)
            counts["crop_seconds"] = round(time.perf_counter() - t1, 3)
            if counts["crop_images_not_decoded"]:
                notes.append(f"crop features: {counts['crop_images_not_decoded']} annotated images no longer decode; "
                             "their objects are kept without crop features")
        if cfg.predictions is not None:
            where = cfg.predictions if cfg.predictions.is_absolute() else project / cfg.predictions
            fmt = None if cfg.predictions_format == "auto" else cfg.predictions_format
            said = read(where, fmt, ground_truth=found)
            if said.format == "coco" and not said.categories:
                said.categories = dict(found.categories)
            predicted, _, pc = objects_table(said, manifest)
            counts.update({f"predicted_{k}": v for k, v in pc.items() if k in ("objects_read", "kept", "flagged")})
            if pc["flagged"]:
                notes.append(f"predictions: {pc['flagged']} boxes flagged ({pc['flagged_by_rule']}), "
                             f"in {paths.predicted_objects}")
        flagged = objects.filter(pa.compute.equal(objects.column("status"), "flagged"))
        notes += [f"{r}: {d}" for r, d in zip(flagged.column("rule").to_pylist()[:SHOWN],
                                              flagged.column("detail").to_pylist()[:SHOWN])]
        notes += [f"{p.rule}: {p.source}: {p.detail}" for p in found.problems[:SHOWN]]
        if counts["flagged"] > SHOWN:
            notes.append(f"... {counts['flagged'] - SHOWN} more flagged objects: status = 'flagged' in {paths.objects}")
        summary = (f"{counts['format']}: {counts['objects_read']:,} objects read = {counts['kept']:,} kept + "
                   f"{counts['flagged']:,} flagged, {counts['classes']} classes; {counts['images']:,} images, "
                   f"{counts['images_without_objects']:,} without objects"
                   + (f"; {counts['entries_not_read']} entries not read" if counts["entries_not_read"] else ""))
    with atomic_set([paths.objects, paths.object_images, paths.predicted_objects]) as (o_tmp, i_tmp, p_tmp):
        pq.write_table(objects, o_tmp)
        pq.write_table(images, i_tmp)
        pq.write_table(predicted, p_tmp)
    result = StepResult(stage=STAGE, summary=summary, seconds=round(time.perf_counter() - t0, 3),
                        counts={k: v for k, v in counts.items() if isinstance(v, int)},
                        outputs={"objects": str(paths.objects), "object_images": str(paths.object_images),
                                 "predicted_objects": str(paths.predicted_objects)},
                        metrics={**counts, "seconds": round(time.perf_counter() - t0, 3)}, notes=notes)
    return write_metrics(params, project, result)
