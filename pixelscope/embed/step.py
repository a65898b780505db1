"""The preprocess and embed steps: manifest images -> model-ready tensors -> embeddings.

Both are incremental: stores are keyed by image id (content hash), and only ids missing
from the store for the current preprocessing (tensors) or model + weights + preprocessing
(embeddings) are computed. The embed step reads the tensors when the preprocess step has
stored them all, else it decodes the files itself, decoding overlapping with inference.
Counts add up: images = reused + computed + errors (ingest errors are counted apart).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from pixelscope.config import Params
from pixelscope.embed.loader import Batch, Item, batches, resolve_device
from pixelscope.embed.projection import write_projection
from pixelscope.embed.semantic import write_semantic
from pixelscope.embed.transforms import Preprocess, build
from pixelscope.errors import InputMissing, StoreError
from pixelscope.io.atomic import write_bytes_atomic
from pixelscope.io.store import CURRENT, SEMANTIC, ShardStore
from pixelscope.io.url import Url
from pixelscope.pipeline.steps import ProgressFn, StepResult, by_reason, reason_notes, write_metrics


def _result(stage: str, store: ShardStore, images: int, todo: int, errors: list[dict[str, Any]], ingest_errors: int,
            seconds: float, info: dict[str, Any]) -> StepResult:
    """Counts add up: images = reused + computed + errors (ingest error rows are counted apart)."""
    reasons = dict(sorted(Counter(e["reason"] for e in errors).items()))
    counts = {"images": images, "reused": images - todo, "computed": todo - len(errors), "errors": len(errors),
              "ingest_errors": ingest_errors}
    rate = counts["computed"] / seconds if seconds > 0 else 0.0
    metrics = {**counts, "images_per_s": round(rate, 1), "seconds": round(seconds, 3), **by_reason("errors_", reasons)}
    verb = {"preprocess": "preprocessed", "embed": "embedded"}[stage]
    summary = (f"{verb} {counts['computed']} new images in {seconds:.1f}s ({rate:,.0f} img/s), {counts['reused']} "
               f"already stored, {len(errors)} errors; {images} distinct readable images (+{ingest_errors} ingest "
               f"error rows); " + ", ".join(f"{k} {v}" for k, v in info.items()))
    return StepResult(stage=stage, summary=summary, seconds=seconds, counts=counts, outputs={"store": str(store.folder)},
                      metrics=metrics, details={**info, "errors_by_reason": reasons, "images_per_s": round(rate, 1)},
                      notes=reason_notes(reasons))


def _manifest_for(params: Params, project: str | Path) -> Path:
    manifest = params.paths.under(project).manifest
    if not manifest.exists():
        raise InputMissing(f"manifest not found: {manifest} (run `pixelscope ingest` first)")
    return manifest


def manifest_items(manifest: Path, raw: Path | Url) -> tuple[list[Item], dict[str, str | None], int]:
    """Distinct readable images of the manifest (first path per id), their labels, and the error rows."""
    t = pq.read_table(manifest, columns=["id", "path", "status", "label"]).to_pydict()
    items: dict[str, Item] = {}
    labels: dict[str, str | None] = {}
    errors = 0
    for i, path, status, label in zip(t["id"], t["path"], t["status"], t["label"]):
        if status != "ok":
            errors += 1
        elif i not in items:
            items[i] = Item(i, str(raw / path))
            labels[i] = label
    return list(items.values()), labels, errors


def _row_shape(prep: Preprocess) -> tuple[int, ...]:
    return tuple(prep.apply(torch.zeros(3, 64, 64, dtype=torch.uint8)).shape)


def _save_errors(folder: Path, errors: list[dict[str, Any]]) -> None:
    write_bytes_atomic(folder / "errors.json", json.dumps(errors, indent=1).encode())


class _Buffered:
    """Collects rows and appends them to the store a shard at a time."""

    def __init__(self, store: ShardStore, shard_rows: int):
        self.store, self.shard_rows = store, shard_rows
        self.ids: list[str] = []
        self.rows: list[np.ndarray] = []

    def add(self, ids: list[str], rows: np.ndarray) -> None:
        if ids:
            self.ids += ids
            self.rows.append(rows)
        if len(self.ids) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if self.ids:
            self.store.add(self.ids, np.concatenate(self.rows))
            self.ids, self.rows = [], []


def _consume(stream: Iterator[Batch], out: _Buffered, compute: Callable[[torch.Tensor], np.ndarray], total: int,
             progress: ProgressFn | None) -> list[dict[str, Any]]:
    """Run compute over every batch into the store; return the error rows."""
    errors: list[dict[str, Any]] = []
    done = 0
    for batch in stream:
        errors += batch.errors
        out.add(batch.ids, compute(batch.images) if batch.ids else np.empty(0))
        done += len(batch.ids) + len(batch.errors)
        if progress:
            progress(done, total)
    out.flush()
    _save_errors(out.store.folder, errors)
    return errors


def preprocess_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Manifest images -> model-ready uint8 tensors (paths.tensors), new images only: decode and
    transform every new image once, keep the tensors before normalize."""
    t0 = time.perf_counter()
    paths = params.paths.under(project)
    manifest = _manifest_for(params, project)
    prep = build(params.preprocess)
    items, _, ingest_errors = manifest_items(manifest, paths.raw)
    store = ShardStore.create(paths.tensors, prep.id, "uint8", _row_shape(prep), preprocess=prep.spec)
    have = store.ids()
    todo = [it for it in items if it.id not in have]
    errors = _consume(batches(todo, params.preprocess), _Buffered(store, params.embed.shard_rows),
                      lambda images: images.cpu().numpy(), len(todo), progress)
    result = _result("preprocess", store, len(items), len(todo), errors, ingest_errors, time.perf_counter() - t0,
                     {"preprocess": prep.id})
    return write_metrics(params, project, result)


def _stored_batches(store: ShardStore, todo: list[Item], batch_size: int) -> Iterator[Batch]:
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        ids = [it.id for it in chunk]
        yield Batch(ids, torch.from_numpy(store.get(ids)))


def embed_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Manifest images -> embedding store (paths.embeddings), new images only; then the 2-D map
    of all the manifest's images."""
    from pixelscope.embed.infer import Embedder

    t0 = time.perf_counter()
    paths = params.paths.under(project)
    manifest = _manifest_for(params, project)
    prep = build(params.preprocess)
    device = resolve_device(params.preprocess.device)
    embedder = Embedder(params.embed, prep, device)
    items, labels, ingest_errors = manifest_items(manifest, paths.raw)
    store = ShardStore.create(paths.embeddings, embedder.key, "float16", (embedder.dim,), model=embedder.model.name,
                              weights_sha256=embedder.model.weights_sha256, preprocess=prep.spec)
    have = store.ids()
    todo = [it for it in items if it.id not in have]
    source, tensor_store = "files", None
    try:
        tensor_store = ShardStore.open(paths.tensors, prep.id)
        if todo and {it.id for it in todo} <= tensor_store.ids():
            source = "tensors"
    except StoreError:
        pass
    stream = (_stored_batches(tensor_store, todo, params.embed.batch_size) if tensor_store is not None and source == "tensors"
              else batches(todo, params.preprocess, params.embed.batch_size))
    errors = _consume(stream, _Buffered(store, params.embed.shard_rows), embedder, len(todo), progress)
    seconds = time.perf_counter() - t0
    method, n_clusters = write_projection(store, items, labels, params.embed.projection, params.embed.clusters,
                                          params.embed.cluster_min_size)
    head, classes = embedder.model.head, embedder.model.classes
    semantic = params.embed.semantic and head is not None and bool(classes)
    if semantic and head is not None and classes:
        write_semantic(store, [it.id for it in items], head, classes)
    else:
        (store.folder / SEMANTIC).unlink(missing_ok=True)
    write_bytes_atomic(paths.embeddings / CURRENT, json.dumps({"key": embedder.key, "model": embedder.model.name,
                                                              "dim": embedder.dim}, indent=1).encode())
    info = {"model": embedder.model.name, "key": embedder.key, "backend": embedder.backend, "device": device,
            "source": source, "projection": method, "clusters": n_clusters, "semantic": semantic}
    result = _result("embed", store, len(items), len(todo), errors, ingest_errors, seconds, info)
    return write_metrics(params, project, result)
