"""What models (and annotations) say about each image, joined to the manifest rows before they are profiled.

Three sources, all optional:
- semantic columns (`semantic_class`, `semantic_confidence`): the embedding model's own
  top-1 class, written by the embed step beside the vectors (pixelscope.embed.semantic);
- the user's predictions file (`profile.predictions`, pixelscope.io.predictions): `pred_label`,
  `pred_confidence`, and for detection `pred_boxes`, `pred_box_area`; joined by id (every
  manifest row with that content) or by path. With labels, `pred_agrees` is 1 where the
  prediction equals the label and 0 where it does not, so its mean per label segment is the
  per-class agreement rate (exact: means are exact in the profile);
- the objects stage's per-image table (paths.object_images, pixelscope.annotations): `object_count`
  (kept objects) and `object_coverage` (share of the image under its boxes) — the objects-per-image
  distribution, profiled with the images and tested for drift in the `objects` family.

The join never drops a row: images without an output get nulls (counted as the column's
nulls), and predictions that match no image are counted and named in the step's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixelscope.io.predictions import NUMERIC as PREDICTION_NUMERIC
from pixelscope.io.predictions import read_predictions
from pixelscope.io.store import SEMANTIC, current_store

SEMANTIC_KINDS = {"semantic_class": "categorical", "semantic_confidence": "numeric"}
PREDICTION_KINDS = {"pred_label": "categorical", **{c: "numeric" for c in PREDICTION_NUMERIC}, "pred_agrees": "numeric"}
OBJECT_IMAGE_KINDS = {"object_count": "numeric", "object_coverage": "numeric"}  # from the per-image objects table
SEGMENT = "pred_label"  # with predictions, the profile is also cut per predicted class


@dataclass
class Outputs:
    """Per manifest path: the output columns (only the ones some source gives)."""

    table: pa.Table  # column `path` + output columns, one row per manifest path
    kinds: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)  # a few predictions keys that match no image
    key: str | None = None  # what the predictions file names images by: id | path

    @property
    def segments(self) -> list[str]:
        return [SEGMENT] if SEGMENT in self.kinds else []

    def join(self, batch: pa.Table) -> pa.Table:
        """batch (manifest rows, any order) with the output columns appended, row for row."""
        at = pc.index_in(batch.column("path"), value_set=self.table.column("path"))
        for name in self.kinds:
            batch = batch.append_column(name, self.table.column(name).take(at))
        return batch


def _semantic(embeddings: Path) -> pa.Table | None:
    store = current_store(embeddings)
    if store is None or not (store.folder / SEMANTIC).exists():
        return None
    return pq.read_table(store.folder / SEMANTIC)


def _object_images(path: Path | None, rows: pa.Table) -> pa.Table | None:
    """The per-image objects table when it has rows and describes these manifest rows."""
    if path is None or not path.exists():
        return None
    table = pq.read_table(path, columns=["path", "id", "objects", "coverage"])
    if table.num_rows == 0:
        return None
    ok = rows.filter(pc.equal(rows.column("status"), "ok"))
    if not pc.all(pc.is_in(table.column("id"), value_set=ok.column("id").combine_chunks())).as_py():
        return None  # written for another manifest
    return table


def model_outputs(manifest: Path, embeddings: Path, predictions: Path | None,
                  object_images: Path | None = None) -> Outputs | None:
    """The output columns for every manifest row (None when there are none to join)."""
    semantic = _semantic(embeddings)
    rows = pq.read_table(manifest, columns=["id", "path", "status", "label"])
    per_image = _object_images(object_images, rows)
    if semantic is None and predictions is None and per_image is None:
        return None
    ok = pc.equal(rows.column("status"), "ok").to_numpy(zero_copy_only=False)
    columns: dict[str, pa.Array] = {"path": rows.column("path").combine_chunks()}
    kinds: dict[str, str] = {}
    counts: dict[str, int] = {}
    unmatched: list[str] = []
    if per_image is not None:
        at = pc.index_in(rows.column("path").combine_chunks(), value_set=per_image.column("path").combine_chunks())
        columns["object_count"] = pc.cast(per_image.column("objects").combine_chunks().take(at), pa.float64())
        columns["object_coverage"] = per_image.column("coverage").combine_chunks().take(at)
        kinds.update(OBJECT_IMAGE_KINDS)
        counts["object_images"] = int(at.is_valid().to_numpy(zero_copy_only=False).sum())
    if semantic is not None:
        at = pc.index_in(rows.column("id").combine_chunks(), value_set=semantic.column("id"))
        for name, kind in SEMANTIC_KINDS.items():
            columns[name] = semantic.column(name).combine_chunks().take(at)
            kinds[name] = kind
        counts["semantic_images"] = int((ok & at.is_valid().to_numpy(zero_copy_only=False)).sum())
    if predictions is not None:
        key, preds = read_predictions(predictions)
        at = pc.index_in(rows.column(key).combine_chunks(), value_set=preds.column(key))
        for name in preds.column_names:
            if name != key:
                columns[name] = preds.column(name).combine_chunks().take(at)
                kinds[name] = PREDICTION_KINDS[name]
        matched = at.is_valid().to_numpy(zero_copy_only=False)
        keys = preds.column(key)
        known_ok = pc.is_in(keys, value_set=rows.column(key).filter(pa.array(ok)).combine_chunks()).to_numpy(
            zero_copy_only=False)
        known_any = pc.is_in(keys, value_set=rows.column(key).combine_chunks()).to_numpy(zero_copy_only=False)
        counts.update({
            "predictions": preds.num_rows,
            "predictions_matched": int(known_ok.sum()),  # name a readable image
            "predictions_on_unreadable": int((known_any & ~known_ok).sum()),  # name only error rows
            "predictions_unmatched": int((~known_any).sum()),  # name no manifest row (listed in `unmatched`)
            "images_with_prediction": int((ok & matched).sum()),
            "images_without_prediction": int((ok & ~matched).sum()),
        })
        unmatched = keys.filter(pa.array(~known_any)).slice(0, 5).to_pylist()
        label = rows.column("label").combine_chunks()
        both = pc.and_(label.is_valid(), columns["pred_label"].is_valid())
        agrees = pc.if_else(both, pc.cast(pc.equal(label, columns["pred_label"]), pa.float64()), None)
        if pc.any(both).as_py():
            columns["pred_agrees"] = agrees
            kinds["pred_agrees"] = "numeric"
    return Outputs(pa.table(columns), kinds, counts, unmatched, key if predictions is not None else None)


def agreement(profile: Any) -> dict[str, dict[str, float | int]] | None:
    """Label / prediction agreement overall and per label: {label: {images, agreement}} (exact
    means of pred_agrees), or None without both labels and predictions."""
    sk = profile.columns.get("pred_agrees")
    if sk is None or not sk.count:
        return None
    out = {"(all)": {"images": sk.count, "agreement": sk.mean}}
    for label, sketches in sorted(profile.segments.get("label", {}).items()):
        s = sketches.get("pred_agrees")
        if s is not None and s.count:
            out[label] = {"images": s.count, "agreement": s.mean}
    return out
